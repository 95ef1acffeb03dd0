//! The terminal display: a line per running cell with its phase and elapsed time and an overall bar
//! on a TTY; plain timestamped lines otherwise (CI logs). At the end of the run, on stdout: the
//! summary line, a line per cell that did not pass, and what may have been left behind.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, Reporter};
use crate::results::{CellResult, CellStatus, NotRemoved, RunResults};
use crate::text::printable;

pub struct Terminal {
    started: Instant,
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    /// A running cell's bar, its phase and its screenshot count.
    cells: HashMap<String, (ProgressBar, &'static str, usize)>,
}

fn status(phase: &str, shots: usize) -> String {
    if shots == 0 {
        phase.to_string()
    } else {
        format!("{phase} ({shots} screenshots)")
    }
}

impl Terminal {
    pub fn new() -> Self {
        // Bars only for a person at a terminal; CI logs (stdout or stderr redirected) get plain lines.
        let interactive = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        let bars = interactive.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} cells {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(250));
            Bars { multi, overall, cells: HashMap::new() }
        });
        Terminal { started: Instant::now(), bars }
    }

    fn line(&self, text: &str) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(text);
            }
            None => eprintln!("[{:>6.1}s] {text}", self.started.elapsed().as_secs_f64()),
        }
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new()
    }
}

fn verdict_of(cell: &crate::results::CellResult) -> &'static str {
    if cell.flaky {
        "FLAKY"
    } else {
        verdict(cell.status)
    }
}

fn verdict(status: CellStatus) -> &'static str {
    match status {
        CellStatus::Passed => "PASS",
        CellStatus::Failed => "FAIL",
        CellStatus::Error => "ERROR",
        CellStatus::TimedOut => "TIMEOUT",
        CellStatus::Interrupted => "INTERRUPTED",
        CellStatus::NotRun => "NOT RUN",
        CellStatus::Running => "RUNNING",
    }
}

/// One line per finished cell: verdict, id, duration and, when it did not pass, why.
pub fn cell_line(cell: &CellResult) -> String {
    let took = cell.timings.ended_s.map(|s| format!(" {s:.1}s")).unwrap_or_default();
    let shots =
        if cell.screenshots.is_empty() { String::new() } else { format!(", {} screenshots", cell.screenshots.len()) };
    // The reason may quote the guest's console or an API's message: never raw bytes to a terminal.
    let tries = match cell.earlier_tries.len() {
        0 => String::new(),
        n => format!(" (try {})", n + 1),
    };
    match (&cell.reason, cell.earlier_tries.last()) {
        (Some(reason), _) => format!("{:>7} {}{tries}{took}{shots}: {}", verdict_of(cell), cell.id, printable(reason)),
        // A flaky pass names what went wrong before it.
        (None, Some(before)) if cell.flaky => format!(
            "{:>7} {}{tries}{took}{shots}: passed after {}",
            verdict_of(cell),
            cell.id,
            printable(before.reason.as_deref().unwrap_or("a failed try"))
        ),
        (None, _) => format!("{:>7} {}{tries}{took}{shots}", verdict_of(cell), cell.id),
    }
}

/// One line per resource the run could not confirm removed.
pub fn not_removed_line(gone: &NotRemoved) -> String {
    format!("NOT REMOVED {}: {}", gone.resource, printable(&gone.error))
}

/// The closing words on leftovers: each one, and how to remove them.
pub fn not_removed_summary(results: &RunResults) -> String {
    let mut text: Vec<String> = results.not_removed.iter().map(not_removed_line).collect();
    text.push(format!(
        "{} resources may still exist (and cost): remove them with `amiprobe sweep --run-id {}`",
        results.not_removed.len(),
        results.run_id
    ));
    text.join("\n")
}

impl Reporter for Terminal {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted { out_dir, results } => {
                let cells = results.cells.len();
                let account = results.account.as_ref().map(|a| format!(" in account {}", a.id)).unwrap_or_default();
                self.line(&format!("run {}: {cells} cells{account}, results in {out_dir}", results.run_id));
                if let Some(b) = &self.bars {
                    b.overall.set_length(cells as u64);
                }
            }
            Event::Warning(w) => self.line(&format!("warning: {}", printable(w))),
            Event::Phase { cell, phase } => match &mut self.bars {
                Some(b) => {
                    let entry = b.cells.entry(cell.clone()).or_insert_with(|| {
                        let bar = b.multi.insert_before(&b.overall, ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("  {spinner} {prefix:40} {elapsed:>4} {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_prefix(cell.clone());
                        bar.enable_steady_tick(Duration::from_millis(200));
                        (bar, "", 0)
                    });
                    entry.1 = phase.label();
                    entry.0.set_message(status(entry.1, entry.2));
                }
                None => eprintln!("[{:>6.1}s] {cell}: {}", self.started.elapsed().as_secs_f64(), phase.label()),
            },
            Event::Timeline { cell, event } => {
                if self.bars.is_none() {
                    self.line(&format!("{cell}: {}", printable(&event.message)));
                }
            }
            Event::NotRemoved(gone) => self.line(&not_removed_line(gone)),
            Event::Screenshot { cell, count } => {
                if let Some(b) = &mut self.bars {
                    if let Some(entry) = b.cells.get_mut(cell) {
                        entry.2 = *count;
                        entry.0.set_message(status(entry.1, entry.2));
                    }
                }
            }
            Event::CellFinished { cell: result, .. } => {
                if let Some(b) = &mut self.bars {
                    if let Some((bar, ..)) = b.cells.remove(&result.id) {
                        bar.finish_and_clear();
                        b.multi.remove(&bar);
                    }
                    b.overall.inc(1);
                }
                self.line(&cell_line(result));
            }
            Event::Interrupt { message, .. } => self.line(message),
            Event::RunFinished(results) => {
                // The bars go first: the summary and the report paths after it are plain stdout.
                self.clear();
                println!("{}", summary_line(results));
                for cell in results.cells.iter().filter(|c| !c.status.is_pass() || c.flaky) {
                    println!("{}", cell_line(cell));
                }
                if !results.not_removed.is_empty() {
                    println!("{}", not_removed_summary(results));
                }
                for line in results.promotions.iter().flat_map(super::promotion::lines) {
                    println!("{}", super::promotion::text(&line));
                }
                if let Some(comparison) = &results.since_last_night {
                    print!("\n{}", super::compare::markdown(comparison));
                }
            }
            // The process exits next, without running destructors: the bars would stay drawn.
            Event::RunAborted(_) => self.clear(),
        }
    }
}

/// The closing line: the spec, the counts and how long the run took.
pub fn summary_line(results: &RunResults) -> String {
    let c = results.counts;
    let flaky = if c.flaky > 0 { format!(" ({} flaky)", c.flaky) } else { String::new() };
    format!(
        "{}: {} passed{flaky}, {} failed, {} errors, {} not run in {:.1}s",
        results.spec.name, c.passed, c.failed, c.errored, c.not_run, results.duration_s
    )
}

impl Terminal {
    fn clear(&mut self) {
        if let Some(b) = self.bars.take() {
            for (bar, ..) in b.cells.values() {
                bar.finish_and_clear();
            }
            b.overall.finish_and_clear();
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.clear();
    }
}
