//! What is recorded while a machine boots: the screenshot schedule and the screenshots themselves
//! (stored as PNG or JPEG, with a perceptual hash to tell a new picture from the same one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::{FieldPath, Problem, ScreenshotPhase};

/// When to take screenshots, as offsets from launch: every `every` until `until`, phase after phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    phases: Vec<ScreenshotPhase>,
}

impl Schedule {
    pub fn resolve(phases: &[ScreenshotPhase], path: &FieldPath, problems: &mut Vec<Problem>) -> Schedule {
        let mut previous_until = Duration::ZERO;
        for (i, phase) in phases.iter().enumerate() {
            let at = path.index(i);
            if phase.every.is_zero() {
                problems.push(Problem::at(at.key("every"), "interval must be above 0s"));
            }
            if phase.until <= previous_until {
                problems.push(
                    Problem::at(
                        at.key("until"),
                        format!(
                            "`until` must be later than the previous phase's ({})",
                            humantime::format_duration(previous_until)
                        ),
                    )
                    .help("phases run in order, each until its own `until` since the machine is running"),
                );
            }
            previous_until = phase.until;
        }
        Schedule { phases: phases.to_vec() }
    }

    /// No screenshots at all.
    pub fn none() -> Schedule {
        Schedule { phases: Vec::new() }
    }

    /// The first capture time strictly after `after` (or at 0 when `after` is None).
    ///
    /// Computed, not stepped to: a phase of `every: 1ms` until `24h` has 86 million slots.
    pub fn next(&self, after: Option<Duration>) -> Option<Duration> {
        let Some(after) = after else {
            return (!self.phases.is_empty()).then_some(Duration::ZERO);
        };
        // Each phase's slots are `start + k * every` (k >= 1), cut at its `until`, which is the next
        // phase's start.
        let mut start = Duration::ZERO;
        for phase in &self.phases {
            if phase.every.is_zero() {
                return None;
            }
            if start >= phase.until {
                continue;
            }
            if after < phase.until {
                let k = if after < start { 1 } else { (after - start).as_nanos() / phase.every.as_nanos() + 1 };
                let t = start.as_nanos().saturating_add(k.saturating_mul(phase.every.as_nanos()));
                let t = t.min(phase.until.as_nanos());
                return Some(Duration::from_nanos(u64::try_from(t).unwrap_or(u64::MAX)));
            }
            start = phase.until;
        }
        None
    }

    /// The last capture time: captures stop here even if probes are still running.
    pub fn end(&self) -> Duration {
        self.phases.last().map_or(Duration::ZERO, |p| p.until)
    }
}

/// A screenshot as stored next to the results.
#[derive(Debug, Clone, PartialEq)]
pub struct Screenshot {
    /// Relative to the results directory.
    pub path: String,
    /// Seconds since launch at which it was taken.
    pub offset_s: f64,
    pub width: u32,
    pub height: u32,
    /// Perceptual hash (base64), to collapse identical consecutive frames in reports.
    pub hash: String,
    /// Index of the first screenshot of the run of identical frames this one belongs to.
    pub duplicate_of: Option<usize>,
}

/// Why a screenshot could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to decode screenshot: {0}")]
    Decode(#[source] image::ImageError),
    #[error("failed to write {}: {source}", file.display())]
    Write { file: PathBuf, source: std::io::Error },
    #[error("failed to write {}: {source}", file.display())]
    Encode { file: PathBuf, source: image::ImageError },
}

/// Decodes an image (PNG, JPEG or PPM), re-encodes it as PNG or JPEG into `file` and hashes it:
/// width, height and hash.
pub fn store(bytes: &[u8], file: &Path) -> Result<(u32, u32, String), StoreError> {
    let img = image::load_from_memory(bytes).map_err(StoreError::Decode)?;
    let hash = hasher().hash_image(&img).to_base64();
    let is_same_format = image::guess_format(bytes).ok() == image::ImageFormat::from_path(file).ok();
    if is_same_format {
        std::fs::write(file, bytes).map_err(|source| StoreError::Write { file: file.to_path_buf(), source })?;
    } else {
        img.save(file).map_err(|source| StoreError::Encode { file: file.to_path_buf(), source })?;
    }
    Ok((img.width(), img.height(), hash))
}

fn hasher() -> image_hasher::Hasher {
    image_hasher::HasherConfig::new().hash_size(16, 16).to_hasher()
}

/// Whether two hashes are of the same picture (a blinking cursor is not a change).
pub fn same_picture(a: &str, b: &str) -> bool {
    match distance(a, b) {
        Some(bits) => bits <= 2,
        None => a == b,
    }
}

/// How many bits of two perceptual hashes (as [`store`] writes them) differ; `None` when either is
/// not one.
pub fn distance(a: &str, b: &str) -> Option<u32> {
    let a = image_hasher::ImageHash::<Box<[u8]>>::from_base64(a).ok()?;
    let b = image_hasher::ImageHash::<Box<[u8]>>::from_base64(b).ok()?;
    Some(a.dist(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(every: u64, until: u64) -> ScreenshotPhase {
        ScreenshotPhase { every: Duration::from_secs(every), until: Duration::from_secs(until) }
    }

    #[test]
    fn default_schedule_times() {
        let s = Schedule { phases: vec![phase(1, 15), phase(15, 300)] };
        let mut times = Vec::new();
        let mut last = None;
        while let Some(t) = s.next(last) {
            times.push(t.as_secs());
            last = Some(t);
        }
        let mut expected: Vec<u64> = (0..=15).collect();
        expected.extend((2..=20).map(|i| i * 15));
        assert_eq!(times, expected);
        // After a late capture (throttling), the schedule resumes at the next slot.
        assert_eq!(s.next(Some(Duration::from_millis(15_500))), Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_fine_schedule_is_computed_not_stepped_through() {
        let s = Schedule {
            phases: vec![
                phase(1, 15),
                ScreenshotPhase { every: Duration::from_nanos(1), until: Duration::from_secs(86_400) },
            ],
        };
        let late = Duration::from_secs(86_000);
        assert_eq!(s.next(Some(late)), Some(late + Duration::from_nanos(1)));
        assert_eq!(s.next(Some(Duration::from_secs(86_400))), None);
        assert_eq!(s.next(Some(Duration::from_millis(14_500))), Some(Duration::from_secs(15)));
    }

    #[test]
    fn rejects_phases_out_of_order() {
        let mut problems = Vec::new();
        Schedule::resolve(&[phase(1, 15), phase(0, 10)], &FieldPath::root(), &mut problems);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
    }
}
