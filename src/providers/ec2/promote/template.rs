//! The placeholders of `on_pass` values (`{run_id}`, `{time}`, `{spec}`, `{image}`, `{region}`),
//! filled in per image, and what `validate` refuses of them: an unknown placeholder, a tag EC2 would
//! refuse, a parameter name SSM would refuse or one that would change from run to run.

use crate::providers::ec2::tags::{MAX_KEY_CHARS, MAX_TAGS};
use crate::providers::ec2::OnPassSpec;
use crate::spec::{FieldPath, Problem};

/// Every placeholder, and whether it may be in a parameter's name (a name must stay the same from
/// run to run: the parameter is where the next deploy looks).
const PLACEHOLDERS: &[(&str, bool)] =
    &[("run_id", false), ("time", false), ("spec", true), ("image", true), ("region", true)];

/// SSM's longest parameter name, and its deepest hierarchy.
const MAX_PARAMETER_CHARS: usize = 1011;
const MAX_PARAMETER_LEVELS: usize = 15;

/// What the placeholders stand for, for one image.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub run_id: &'a str,
    pub time: &'a str,
    pub spec: &'a str,
    pub image: &'a str,
    pub region: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "run_id" => Some(self.run_id),
            "time" => Some(self.time),
            "spec" => Some(self.spec),
            "image" => Some(self.image),
            "region" => Some(self.region),
            _ => None,
        }
    }
}

/// A text's pieces: literal text, and the names of `{placeholders}`. An unmatched brace is text.
fn pieces(text: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else { break };
        out.push((false, &rest[..open]));
        out.push((true, &rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push((false, rest));
    out
}

/// `text` with its placeholders filled in (an unknown one is left as written: `validate` refused it).
pub fn render(text: &str, values: &Values<'_>) -> String {
    pieces(text)
        .into_iter()
        .map(|(placeholder, piece)| match placeholder {
            true => values.get(piece).map_or_else(|| format!("{{{piece}}}"), str::to_string),
            false => piece.to_string(),
        })
        .collect()
}

/// `text` with each placeholder a `*` (an IAM policy's wildcard).
pub fn wildcard(text: &str) -> String {
    pieces(text).into_iter().map(|(p, piece)| if p { "*" } else { piece }).collect()
}

/// The placeholders `text` uses.
pub fn used(text: &str) -> impl Iterator<Item = &str> {
    pieces(text).into_iter().filter(|(p, _)| *p).map(|(_, name)| name)
}

/// What SSM refuses of a parameter's name, as a fragment; `None` when it takes it. Letters, digits and
/// `_.-/`; a hierarchy starts with `/`; no level may start with `aws` or `ssm`, in any case.
pub fn parameter_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_PARAMETER_CHARS {
        return Some(format!("a parameter's name has 1 to {MAX_PARAMETER_CHARS} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c))) {
        return Some(format!("`{bad}` can't be in a parameter's name (letters, digits and _.-/ can)"));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Some("a parameter's name with `/` must start with `/`".into());
    }
    if name.split('/').filter(|l| !l.is_empty()).count() > MAX_PARAMETER_LEVELS {
        return Some(format!("a parameter's name has at most {MAX_PARAMETER_LEVELS} levels"));
    }
    let first = name.trim_start_matches('/').get(..3).unwrap_or_default().to_ascii_lowercase();
    if first == "aws" || first == "ssm" {
        return Some("a parameter's name can't start with `aws` or `ssm`, in any case".into());
    }
    None
}

/// `validate`'s checks of `on_pass`, at their places.
pub fn check(on_pass: &OnPassSpec, path: &FieldPath, problems: &mut Vec<Problem>) {
    if on_pass.tags.is_empty() && on_pass.ssm_parameter.is_none() {
        problems
            .push(Problem::at_key(path.clone(), "`on_pass` does nothing").help("give `tags`, `ssm_parameter` or both"));
    }
    let tags = path.key("tags");
    for (key, value) in &on_pass.tags {
        let at = tags.key(key.clone());
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("aws:") || lower.starts_with("amiprobe:") {
            problems.push(
                Problem::at_key(at.clone(), format!("tag `{key}` uses a reserved prefix"))
                    .help("EC2 keeps `aws:` for itself and amiprobe `amiprobe:` for what a run creates and removes"),
            );
        }
        if !(1..=MAX_KEY_CHARS).contains(&key.chars().count()) {
            problems.push(Problem::at_key(at.clone(), format!("a tag key has 1 to {MAX_KEY_CHARS} characters")));
        }
        unknown_placeholders(value, &at, true, problems);
    }
    if on_pass.tags.len() > MAX_TAGS {
        problems.push(Problem::at_key(tags, format!("EC2 takes at most {MAX_TAGS} tags on an image")));
    }
    if let Some(name) = &on_pass.ssm_parameter {
        let at = path.key("ssm_parameter");
        unknown_placeholders(name, &at, false, problems);
        // The literal part as SSM would see it, placeholders standing for a plain word.
        let sample: String = pieces(name).into_iter().map(|(p, piece)| if p { "x" } else { piece }).collect();
        if let Some(problem) = parameter_problem(&sample) {
            problems.push(Problem::at(at, problem));
        }
    }
}

/// Each placeholder in `text` that is unknown, or (in a parameter's name) one that changes each run.
fn unknown_placeholders(text: &str, at: &FieldPath, in_tag: bool, problems: &mut Vec<Problem>) {
    let names: Vec<String> = PLACEHOLDERS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
    for name in used(text) {
        match PLACEHOLDERS.iter().find(|(n, _)| *n == name) {
            None => problems.push(
                Problem::at(at.clone(), format!("unknown placeholder `{{{name}}}`"))
                    .help(format!("the placeholders are {}", names.join(", "))),
            ),
            Some((_, false)) if !in_tag => problems.push(
                Problem::at(at.clone(), format!("`{{{name}}}` would make a new parameter every run"))
                    .help("a parameter's name may hold {spec}, {image} and {region}"),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: Values<'static> =
        Values { run_id: "r1", time: "2026-12-06T22:00:00Z", spec: "web", image: "ami-1", region: "eu-west-1" };

    #[test]
    fn placeholders_are_filled_in_and_unknown_ones_kept() {
        assert_eq!(render("{spec} at {time} ({run_id})", &VALUES), "web at 2026-12-06T22:00:00Z (r1)");
        assert_eq!(render("/images/{region}/{image}", &VALUES), "/images/eu-west-1/ami-1");
        assert_eq!(render("{nope} {unclosed", &VALUES), "{nope} {unclosed");
    }

    #[test]
    fn validate_refuses_unknown_placeholders_changing_names_and_reserved_keys() {
        let spec = OnPassSpec {
            tags: [("AWS:x".to_string(), "{when}".to_string())].into(),
            ssm_parameter: Some("/images/{time}/x".into()),
        };
        let mut problems = Vec::new();
        check(&spec, &FieldPath::root(), &mut problems);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "tag `AWS:x` uses a reserved prefix",
                "unknown placeholder `{when}`",
                "`{time}` would make a new parameter every run"
            ]
        );
    }

    #[test]
    fn parameter_names_as_ssm_takes_them() {
        assert_eq!(parameter_problem("/images/web/latest"), None);
        assert_eq!(parameter_problem("latest-web"), None);
        assert!(parameter_problem("images/web").is_some());
        assert!(parameter_problem("/AWS/x").is_some());
        assert!(parameter_problem("/a b").is_some());
    }
}
