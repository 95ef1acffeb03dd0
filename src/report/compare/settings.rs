//! How a comparison is made, settled once for `run --baseline` and `report compare` alike: the
//! command line's flags over the spec's `baseline:` (as the run kept it in results.json) over the
//! defaults. Ignored lines add up; `fail_on_regression` holds when either says so.

use super::normalise::Ignored;
use crate::results::since::{BaselineRules, Thresholds};

/// What the command line said; `None` where it said nothing.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub ratio: Option<f64>,
    pub floor_s: Option<f64>,
    pub ignore_lines: Vec<String>,
    pub fail_on_regression: bool,
}

/// The comparison's settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub thresholds: Thresholds,
    pub ignored: Ignored,
    pub fail_on_regression: bool,
}

/// Why the settings can't be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the regression ratio must be a number of 0 or more, not {0}")]
    Ratio(f64),
    #[error("the regression floor must be 0s or more, not {0}s")]
    Floor(f64),
    #[error("an ignored line is not a regular expression: {0}")]
    Ignore(#[source] regex::Error),
}

/// `flags` over `spec` (the new run's `baseline`) over [`Thresholds::default`].
pub fn settle(flags: &Flags, spec: Option<&BaselineRules>) -> Result<Settings, SettingsError> {
    let defaults = Thresholds::default();
    let ratio = flags.ratio.or(spec.and_then(|s| s.ratio)).unwrap_or(defaults.ratio);
    if !(ratio.is_finite() && ratio >= 0.0) {
        return Err(SettingsError::Ratio(ratio));
    }
    let floor_s = flags.floor_s.or(spec.and_then(|s| s.floor_s)).unwrap_or(defaults.floor_s);
    if !(floor_s.is_finite() && floor_s >= 0.0) {
        return Err(SettingsError::Floor(floor_s));
    }
    let from_spec = spec.iter().flat_map(|s| &s.ignore_lines);
    let patterns: Vec<String> = from_spec.chain(&flags.ignore_lines).cloned().collect();
    let ignored = Ignored::new(&patterns).map_err(SettingsError::Ignore)?;
    let fail_on_regression = flags.fail_on_regression || spec.is_some_and(|s| s.fail_on_regression);
    Ok(Settings { thresholds: Thresholds { ratio, floor_s }, ignored, fail_on_regression })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_spec_which_wins_over_the_defaults() {
        let spec = BaselineRules {
            ratio: Some(0.5),
            floor_s: Some(8.0),
            ignore_lines: vec!["hv_balloon".into()],
            fail_on_regression: true,
            ..BaselineRules::default()
        };
        let none = settle(&Flags::default(), None).unwrap();
        assert_eq!(none.thresholds, Thresholds::default());
        assert!(!none.fail_on_regression);
        let from_spec = settle(&Flags::default(), Some(&spec)).unwrap();
        assert_eq!(from_spec.thresholds, Thresholds { ratio: 0.5, floor_s: 8.0 });
        assert!(from_spec.fail_on_regression && from_spec.ignored.matches("hv_balloon: unsupported"));
        let flags = Flags { ratio: Some(0.1), ignore_lines: vec!["acpi".into()], ..Flags::default() };
        let both = settle(&flags, Some(&spec)).unwrap();
        assert_eq!(both.thresholds, Thresholds { ratio: 0.1, floor_s: 8.0 });
        assert!(both.ignored.matches("hv_balloon") && both.ignored.matches("acpi"), "ignored lines add up");
        let bad = Flags { ratio: Some(-1.0), ..Flags::default() };
        assert!(matches!(settle(&bad, None), Err(SettingsError::Ratio(_))));
        let bad = Flags { ignore_lines: vec!["(".into()], ..Flags::default() };
        assert!(matches!(settle(&bad, None), Err(SettingsError::Ignore(_))));
    }
}
