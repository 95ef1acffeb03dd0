//! Screenshots while the machine runs: taken on the plan's schedule (counted from `running`, and
//! again from the reboot), stored under the cell's directory, given up after repeated failures.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::CellError;
use super::recorder::{round_ms, Recorder};
use crate::capture::{self, Screenshot};
use crate::engine::event::Event;
use crate::plan::Plan;
use crate::provider::{ErrorKind, Machine};

/// After this many failed screenshots in a row, stop trying.
const MAX_SCREENSHOT_FAILURES: usize = 5;

/// The screenshot schedule and how it is going.
pub struct Shots {
    plan: Arc<Plan>,
    /// What the schedule counts from: `running`, then the reboot. Time queued for a launch slot and
    /// time pending differ from cell to cell, and would otherwise eat the early, dense phase of the
    /// schedule; it starts again with the second boot, so that it is filmed as closely as the first.
    from: Instant,
    /// The next slot, from `from`; `None` once the schedule is over.
    next: Option<Duration>,
    /// Failures in a row.
    failures: usize,
    /// Screenshots attempted so far.
    pub tried: usize,
    /// Whether screenshots are still taken (not unsupported, not given up).
    pub on: bool,
}

impl Shots {
    pub fn new(plan: Arc<Plan>, from: Instant) -> Shots {
        let next = plan.schedule.next(None);
        Shots { plan, from, next, failures: 0, tried: 0, on: true }
    }

    /// The schedule again from `from` (the reboot).
    pub fn restart(&mut self, from: Instant) {
        self.from = from;
        self.next = self.plan.schedule.next(None);
    }

    /// Whether the schedule still has screenshots to take.
    pub fn left(&self) -> bool {
        self.on && self.next.is_some()
    }

    /// When the next screenshot is due, if any is.
    pub fn due_at(&self) -> Option<Instant> {
        self.next.filter(|_| self.on).map(|t| self.from + t)
    }

    /// Takes the screenshot that is due, and schedules the next.
    pub async fn take(&mut self, rec: &mut Recorder, machine: &mut dyn Machine, cell_dir: &Path) {
        let taken_at = rec.t0.elapsed();
        self.tried += 1;
        match machine.screenshot().await {
            Ok(bytes) => {
                self.failures = 0;
                save(rec, &bytes, taken_at, cell_dir);
            }
            Err(e) if e.kind == ErrorKind::Unsupported => {
                self.on = false;
                rec.result.screenshots_note = Some(format!("screenshots unavailable: {e}"));
            }
            Err(e) => {
                self.failures += 1;
                if self.failures == 1 {
                    rec.error(CellError::Screenshot(e.clone()));
                }
                if self.failures >= MAX_SCREENSHOT_FAILURES {
                    self.on = false;
                    rec.result.screenshots_note =
                        Some(format!("screenshots stopped after {} failures: {e}", self.failures));
                }
            }
        }
        // Late captures (a slow API) resume at the next slot, not in a burst.
        self.next = self.plan.schedule.next(Some(self.from.elapsed()));
    }

    /// One more screenshot when the cell must end: the screen at the moment of failure (a panic, a
    /// shell) is usually the answer.
    pub async fn last_look(&self, rec: &mut Recorder, machine: &mut dyn Machine, cell_dir: &Path) {
        if !self.on {
            return;
        }
        if let Ok(bytes) = machine.screenshot().await {
            let taken_at = rec.t0.elapsed();
            save(rec, &bytes, taken_at, cell_dir);
        }
    }
}

/// Stores a screenshot taken `taken_at` after launch, noting whether it shows the same picture as
/// the one before.
fn save(rec: &mut Recorder, bytes: &[u8], taken_at: Duration, cell_dir: &Path) {
    let index = rec.result.screenshots.len();
    let ext = match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg) => "jpg",
        _ => "png",
    };
    let name = format!("{:04}-{:07.1}s.{ext}", index + 1, taken_at.as_secs_f64());
    let file = cell_dir.join("screenshots").join(&name);
    let (width, height, hash) = match capture::store(bytes, &file) {
        Ok(stored) => stored,
        Err(e) => return rec.error(CellError::StoreScreenshot(e.to_string())),
    };
    let duplicate_of = rec
        .result
        .screenshots
        .last()
        .and_then(|prev| capture::same_picture(&prev.hash, &hash).then(|| prev.duplicate_of.unwrap_or(index - 1)));
    if rec.result.timings.first_screenshot_s.is_none() {
        rec.result.timings.first_screenshot_s = Some(round_ms(taken_at));
    }
    rec.result.screenshots.push(
        Screenshot {
            path: format!("cells/{}/screenshots/{name}", rec.result.id),
            offset_s: round_ms(taken_at),
            width,
            height,
            hash,
            duplicate_of,
        }
        .into(),
    );
    let _ = rec.ctx.events.send(Event::Screenshot { cell: rec.result.id.clone(), count: rec.result.screenshots.len() });
}
