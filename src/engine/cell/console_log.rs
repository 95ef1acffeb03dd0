//! The machine's console, read two ways: a look while it runs (new lines checked for fatal signs,
//! host keys for SSH, whether the machine stopped or is unwell), and the whole log at the end, kept
//! in the cell's directory, checked against the plan's console rules and read for the boot's phases.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use super::error::CellError;
use super::recorder::Recorder;
use crate::console::{self, ConsoleFinding, ConsoleWatch, LaunchTimes};
use crate::engine::verdict::Ending;
use crate::probe::host_key::ConsoleHostKeys;
use crate::provider::{Health, Machine};
use crate::results::EventKind;

/// One look at the running machine: new console lines checked for fatal signs, whether it
/// stopped by itself, and whether its provider finds it unwell. Returns how the cell ends, if it must.
pub async fn look(
    rec: &mut Recorder,
    machine: &mut dyn Machine,
    watch: &mut ConsoleWatch,
    host_keys: &watch::Sender<ConsoleHostKeys>,
) -> Option<Ending> {
    if let Err(e) = machine.poll_console().await {
        tracing::debug!("console poll failed: {e}");
    }
    if let Ok(raw) = machine.console_log().await {
        let text = crate::text::clean(raw.as_bytes());
        // SSH probes trust the host keys the machine announces here.
        if text.len() != rec.host_keys_read_len && text.contains("-----END SSH HOST KEY") {
            rec.host_keys_read_len = text.len();
            let keys = ConsoleHostKeys::parse(&text);
            host_keys.send_if_modified(|known| std::mem::replace(known, keys.clone()) != keys);
        }
        if let Some(sign) = watch.scan(&rec.ctx.plan.console, &text, rec.now_s()) {
            if rec.ctx.plan.stop_on_fatal {
                let message = format!("console line {} matches `{}`: stopping the machine", sign.line, sign.rule);
                rec.event_at(sign.at_s, EventKind::ConsoleMatch, message);
                return Some(Ending::Fatal(sign));
            }
        }
    }
    if let Some(why) = machine.stopped().await {
        rec.event(EventKind::Error, format!("machine stopped by itself: {why}"));
        return Some(Ending::Stopped(why));
    }
    match machine.health().await? {
        Health::ImageFailure(why) => {
            rec.event(EventKind::Error, why.clone());
            Some(Ending::Unwell(why))
        }
        Health::InfrastructureError(why) => {
            rec.error(&why);
            Some(Ending::Infrastructure(why))
        }
    }
}

/// Reads the whole console, keeps it (cleaned for people, raw as the guest wrote it) and checks it.
pub async fn collect(
    rec: &mut Recorder,
    machine: &mut dyn Machine,
    cell_dir: &Path,
    watch: &ConsoleWatch,
    ending: &Ending,
) {
    let fresh = rec.console_read_at.is_some_and(|at| at.elapsed() < Duration::from_secs(1));
    if !fresh {
        if let Err(e) = machine.poll_console().await {
            rec.error(CellError::ReadConsole(e));
        }
    }
    let raw = match machine.console_log().await {
        Ok(raw) => raw,
        Err(e) => return rec.error(CellError::ReadConsole(e)),
    };
    let text = crate::text::clean(raw.as_bytes());
    if text.trim().is_empty() {
        rec.silent_console = machine.before_console().await;
    }
    keep(rec, cell_dir, &text, &raw);
    let launch = LaunchTimes { running_s: rec.result.timings.running_s, ready_s: rec.result.timings.ready_s };
    rec.result.boot_phases = console::boot_phases(&text, &launch, watch.first_seen());
    // An interrupted run proves nothing about what the console should have shown.
    if matches!(ending, Ending::Interrupted) {
        return;
    }
    check(rec, watch, &text, ending);
}

/// Writes the log as `console.log`, and as the guest wrote it as `console.raw.log` when cleaning
/// changed it.
fn keep(rec: &mut Recorder, cell_dir: &Path, text: &str, raw: &str) {
    let mut written = std::fs::write(cell_dir.join("console.log"), text);
    if text != raw {
        written = written.and_then(|()| std::fs::write(cell_dir.join("console.raw.log"), raw));
    }
    match written {
        Ok(()) => rec.result.console_log = Some(format!("cells/{}/console.log", rec.result.id)),
        Err(e) => rec.error(CellError::WriteConsole(e)),
    }
}

/// Checks the whole log against the console rules, and puts the fatal signs found in the timeline
/// (all but the one the cell already stopped on).
fn check(rec: &mut Recorder, watch: &ConsoleWatch, text: &str, ending: &Ending) {
    let mut findings = rec.ctx.plan.console.check(text);
    watch.stamp(&mut findings);
    // After a reboot the second boot must show the required lines too.
    if watch.rebooted() {
        for line in watch.missing_since_reboot(&rec.ctx.plan.console, text) {
            findings.push(ConsoleFinding {
                kind: console::RuleKind::MustContain,
                rule: format!("{line} (after the reboot)"),
                passed: false,
                hits: Vec::new(),
            });
        }
    }
    let stopped_on = match ending {
        Ending::Fatal(sign) => Some(sign.line),
        _ => None,
    };
    let now = rec.now_s();
    let hits: Vec<(f64, String)> = findings
        .iter()
        .filter(|f| f.is_fatal())
        .filter_map(|f| f.hits.first().map(|h| (f, h)))
        .filter(|(_, h)| Some(h.line) != stopped_on)
        .map(|(f, h)| (h.first_seen_s.unwrap_or(now), format!("console line {} matches `{}`", h.line, f.rule)))
        .collect();
    for (at_s, message) in hits {
        rec.event_at(at_s, EventKind::ConsoleMatch, message);
    }
    rec.result.console = findings.iter().cloned().map(Into::into).collect();
    rec.findings = findings;
}
