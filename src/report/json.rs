//! `results.json` and its journal: the format's [`Writer`], the schema, the loading, and the
//! journal a run appends to.
//!
//! While a run goes, `reporter::ResultsJson` appends to `results.jsonl` (the journal), one JSON line
//! per event worth keeping: a header with the run as planned (every cell not run), a line when a cell
//! begins, one with each finished cell's result, one per resource not removed, and an end line. Each
//! line is one `write` of a whole line, so the bytes written grow with the cells, not with their
//! square, and a run killed at any moment (even by SIGKILL) leaves everything up to its last event.
//! At the end of the run (or when a third signal aborts it) results.json is written whole, exactly as
//! before, and the journal is removed: a finished directory holds one copy of its results.
//!
//! [`load`] reads results.json when it is complete, and otherwise rebuilds the results from the
//! journal: `running` while the run's process still holds the journal's lock, `interrupted` once it
//! is gone (cells begun and not finished are `interrupted`, the others `not_run`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{ReportError, ResultsError};
use super::reporter::ResultsJson;
use super::{Format, Writer};
use crate::engine::Reporter;

use crate::results::{CellResult, CellStatus, CleanupStep, NotRemoved, RunResults, RunStatus, SCHEMA_VERSION};

/// The results of a finished (or aborted) run, written whole.
pub const RESULTS: &str = "results.json";
/// The journal of a run that has not finished: removed once results.json is written.
pub const JOURNAL: &str = "results.jsonl";

/// `--report json`: `results.json`, kept through a run by its journal.
pub const FORMAT: Format = Format::new(&Json);

struct Json;

impl Writer for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn write(&self, results: &RunResults, dir: &Path, _templates: Option<&Path>) -> Result<PathBuf, ReportError> {
        results.write(dir).map_err(ReportError::ResultsJson)?;
        Ok(dir.join(RESULTS))
    }

    /// The journal, then results.json written whole (see [`ResultsJson`]).
    fn reporter(&self, _format: Format, dir: &Path, _templates: Option<&Path>, listed: bool) -> Box<dyn Reporter> {
        Box::new(ResultsJson::new(dir, listed))
    }
}

/// The JSON Schema of results.json, as checked into `schemas/`.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RunResults)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "amiprobe results".into());
    }
    schema
}

/// The results in `dir`: its results.json when that is complete (the run ended, or was aborted);
/// otherwise rebuilt from its journal, as far as the run got. Refuses versions this amiprobe does
/// not know.
pub fn load(dir: &Path) -> Result<RunResults, ResultsError> {
    let file = dir.join(RESULTS);
    let journal = dir.join(JOURNAL);
    let whole = match std::fs::read_to_string(&file) {
        Ok(text) => Some(
            serde_json::from_str::<RunResults>(&text)
                .map_err(|source| ResultsError::Parse { path: file.clone(), source }),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => Some(Err(ResultsError::Read { path: file.clone(), source })),
    };
    let has_journal = journal.exists();
    let results = match whole {
        Some(Ok(results)) if results.status != RunStatus::Running || !has_journal => results,
        Some(Err(e)) if !has_journal => return Err(e),
        None if !has_journal => return Err(ResultsError::NoResults { dir: dir.to_path_buf() }),
        // No results.json, or one written mid-run by an older amiprobe, or an unreadable one: the
        // journal knows more.
        _ => read_journal(&journal)?,
    };
    if results.schema_version > SCHEMA_VERSION {
        return Err(ResultsError::TooNew { dir: dir.to_path_buf(), version: results.schema_version });
    }
    Ok(results)
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
enum Line {
    /// The first line: the run as planned, every cell not run.
    Start { results: RunResults },
    /// A cell has begun (its first phase).
    Began { cell: String },
    /// A cell ended: its result, with the run's duration then and the warnings added since the last line.
    Cell {
        duration_s: f64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
        result: CellResult,
    },
    /// A resource the run created and could not confirm removed.
    NotRemoved { not_removed: NotRemoved },
    /// The run is over: what only its end knows.
    End {
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finished_at: Option<String>,
        duration_s: f64,
        #[serde(default)]
        warnings: Vec<String>,
        #[serde(default)]
        leftover_cleanup: Vec<CleanupStep>,
        #[serde(default)]
        not_removed: Vec<NotRemoved>,
    },
}

/// The journal of a run, open for appending, locked for as long as the run's process lives.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes written so far: a line that fails half-written is cut back off.
    len: u64,
    /// Warnings of the results already in the journal.
    warnings: usize,
    began: HashSet<String>,
}

impl Journal {
    /// Starts the journal of a run in `dir` with its header (replacing a previous run's journal).
    pub fn create(dir: &Path, results: &RunResults) -> Result<Journal, ResultsError> {
        let path = dir.join(JOURNAL);
        let failed = |source: std::io::Error| ResultsError::Write { path: path.clone(), source };
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(failed)?;
        // The lock tells `load` the run is alive; the kernel drops it with the process, however it dies.
        match lock(&file, Lock::Exclusive) {
            Ok(true) => {}
            Ok(false) => return Err(ResultsError::Locked { path }),
            Err(e) => return Err(failed(e)),
        }
        file.set_len(0).map_err(failed)?;
        let mut journal = Journal { file, path, len: 0, warnings: results.warnings.len(), began: HashSet::new() };
        journal.append(&Line::Start { results: results.clone() })?;
        Ok(journal)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notes that a cell has begun (once per cell: later phases add nothing a reader needs).
    pub fn began(&mut self, cell: &str) -> Result<(), ResultsError> {
        if !self.began.insert(cell.to_string()) {
            return Ok(());
        }
        self.append(&Line::Began { cell: cell.to_string() })
    }

    /// Appends a finished cell; `results` (the run as it stands) gives the duration and new warnings.
    /// Appends a finished cell, with the run's time and the warnings `all` has that earlier lines
    /// did not.
    pub fn cell(&mut self, cell: &CellResult, duration_s: f64, all: &[String]) -> Result<(), ResultsError> {
        let warnings = all.get(self.warnings..).unwrap_or_default().to_vec();
        self.append(&Line::Cell { duration_s, warnings, result: cell.clone() })?;
        self.warnings = all.len();
        Ok(())
    }

    pub fn not_removed(&mut self, not_removed: &NotRemoved) -> Result<(), ResultsError> {
        self.append(&Line::NotRemoved { not_removed: not_removed.clone() })
    }

    /// Appends the end of the run: its status and what only the end knows.
    pub fn end(&mut self, results: &RunResults) -> Result<(), ResultsError> {
        self.append(&Line::End {
            status: results.status,
            finished_at: results.finished_at.clone(),
            duration_s: results.duration_s,
            warnings: results.warnings.clone(),
            leftover_cleanup: results.leftover_cleanup.clone(),
            not_removed: results.not_removed.clone(),
        })
    }

    /// Removes the journal, once results.json holds everything it did.
    pub fn remove(self) -> Result<(), ResultsError> {
        std::fs::remove_file(&self.path).map_err(|source| ResultsError::Remove { path: self.path.clone(), source })
    }

    /// Appends one line in one write. A line that fails part-way is cut off again, so that the next
    /// one starts on a line of its own; a line torn by a kill is the last one, which readers skip.
    fn append(&mut self, line: &Line) -> Result<(), ResultsError> {
        let mut bytes = serde_json::to_vec(line).map_err(ResultsError::Encode)?;
        bytes.push(b'\n');
        if let Err(source) = self.file.write_all(&bytes) {
            let _ = self.file.set_len(self.len);
            return Err(ResultsError::Write { path: self.path.clone(), source });
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// Rebuilds the results of a run from its journal.
pub fn read_journal(path: &Path) -> Result<RunResults, ResultsError> {
    let bytes = std::fs::read(path).map_err(|source| ResultsError::Read { path: path.to_path_buf(), source })?;
    let alive = std::fs::File::open(path).ok().is_some_and(|f| matches!(lock(&f, Lock::Shared), Ok(false)));
    replay(&bytes, path, alive)
}

/// The results a journal's lines add up to. `alive`: the run's process still holds the journal, so
/// what has not ended is still running; otherwise it was killed.
fn replay(bytes: &[u8], path: &Path, alive: bool) -> Result<RunResults, ResultsError> {
    // Whole lines only: what follows the last newline is a line torn by a kill.
    let whole = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..=end],
        None => &[],
    };
    let text =
        std::str::from_utf8(whole).map_err(|source| ResultsError::NotUtf8 { path: path.to_path_buf(), source })?;
    let mut lines = text.lines().enumerate().map(|(n, line)| {
        serde_json::from_str::<Line>(line).map_err(|source| ResultsError::Line {
            line: n + 1,
            path: path.to_path_buf(),
            source,
        })
    });
    let mut results = match lines.next() {
        Some(Ok(Line::Start { results })) => results,
        Some(Err(e)) => return Err(e),
        _ => return Err(ResultsError::NoHeader { path: path.to_path_buf() }),
    };
    let position: HashMap<String, usize> = results.cells.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
    let mut ended = false;
    for line in lines {
        match line? {
            Line::Start { .. } => return Err(ResultsError::SecondHeader { path: path.to_path_buf() }),
            Line::Began { cell } => {
                if let Some(cell) = position.get(&cell).map(|&i| &mut results.cells[i]) {
                    if cell.status == CellStatus::NotRun {
                        cell.status = CellStatus::Running;
                    }
                }
            }
            Line::Cell { duration_s, warnings, result } => {
                results.duration_s = duration_s;
                results.warnings.extend(warnings);
                match position.get(&result.id) {
                    Some(&i) => results.cells[i] = result,
                    None => return Err(ResultsError::NotPlanned { path: path.to_path_buf(), cell: result.id }),
                }
            }
            Line::NotRemoved { not_removed } => results.not_removed.push(not_removed),
            Line::End { status, finished_at, duration_s, warnings, leftover_cleanup, not_removed } => {
                results.status = status;
                results.finished_at = finished_at;
                results.duration_s = duration_s;
                results.warnings = warnings;
                results.leftover_cleanup = leftover_cleanup;
                results.not_removed = not_removed;
                ended = true;
            }
        }
    }
    if !ended && !alive {
        killed(&mut results);
    }
    results.recount();
    Ok(results)
}

/// The results of a run whose process died before its end: what was running was interrupted.
fn killed(results: &mut RunResults) {
    results.status = RunStatus::Interrupted;
    for cell in results.cells.iter_mut().filter(|c| c.status == CellStatus::Running) {
        cell.status = CellStatus::Interrupted;
        cell.reason = Some("interrupted: amiprobe was killed before the cell finished".into());
    }
    results.warnings.push(format!(
        "amiprobe was killed before the run ended: these results are rebuilt from {JOURNAL}; \
         `amiprobe sweep --run-id {}` removes what the run may have left",
        results.run_id
    ));
}

#[derive(Clone, Copy)]
enum Lock {
    /// The writer's: held for the whole run.
    Exclusive,
    /// A reader's test of whether the writer still holds its lock.
    Shared,
}

/// Tries to take a lock on `file` without waiting: `Ok(false)` when another open file holds it.
#[cfg(unix)]
fn lock(file: &File, kind: Lock) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let operation = match kind {
        Lock::Exclusive => libc::LOCK_EX,
        Lock::Shared => libc::LOCK_SH,
    };
    // SAFETY: flock(2) on a descriptor this `File` owns for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Without flock, a journal without an end is taken for a killed run.
#[cfg(not(unix))]
fn lock(_file: &File, _kind: Lock) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report fixture's results (four cells, two failed), and the same run as it started.
    fn fixture() -> (RunResults, RunResults) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/run");
        let done = load(&dir).expect("fixture results.json");
        let mut start = done.clone();
        start.status = RunStatus::Running;
        start.finished_at = None;
        start.duration_s = 0.0;
        start.warnings.clear();
        for cell in &mut start.cells {
            cell.status = CellStatus::NotRun;
            cell.reason = None;
        }
        (done, start)
    }

    /// A journal in a fresh directory with the first `finished` cells of the fixture done, the next
    /// one begun; the writer still open.
    fn journal(finished: usize) -> (tempfile::TempDir, Journal, RunResults) {
        let tmp = tempfile::tempdir().unwrap();
        let (done, start) = fixture();
        let mut journal = Journal::create(tmp.path(), &start).unwrap();
        let mut now = start.clone();
        now.warnings = done.warnings.clone();
        for cell in &done.cells[..finished] {
            journal.began(&cell.id).unwrap();
            journal.began(&cell.id).unwrap();
            now.duration_s += 1.0;
            journal.cell(cell, now.duration_s, &now.warnings).unwrap();
        }
        if let Some(next) = done.cells.get(finished) {
            journal.began(&next.id).unwrap();
        }
        (tmp, journal, done)
    }

    fn statuses(results: &RunResults) -> Vec<CellStatus> {
        results.cells.iter().map(|c| c.status).collect()
    }

    #[test]
    fn a_killed_run_is_interrupted_with_what_it_finished() {
        let (tmp, journal, done) = journal(2);
        drop(journal);
        let results = load(tmp.path()).unwrap();
        assert_eq!(results.status, RunStatus::Interrupted);
        use CellStatus::*;
        assert_eq!(statuses(&results), [done.cells[0].status, done.cells[1].status, Interrupted, NotRun]);
        assert_eq!(serde_json::to_value(&results.cells[1]).unwrap(), serde_json::to_value(&done.cells[1]).unwrap());
        assert!(results.cells[2].reason.as_deref().unwrap().contains("killed"));
        assert_eq!(results.counts.total, 4);
        assert_eq!(results.counts.not_run, 2);
        assert_eq!(results.duration_s, 2.0);
        // The run's own warning once, then the one that says how the results were made.
        assert_eq!(results.warnings[..1], done.warnings[..]);
        assert!(
            results.warnings[1].contains(&format!("amiprobe sweep --run-id {}", done.run_id)),
            "{:?}",
            results.warnings
        );
    }

    #[test]
    fn a_live_run_is_running() {
        let (tmp, journal, _) = journal(1);
        let results = load(tmp.path()).unwrap();
        assert_eq!(results.status, RunStatus::Running);
        assert_eq!(results.cells[1].status, CellStatus::Running);
        assert!(results.warnings.iter().all(|w| !w.contains("killed")));
        drop(journal);
        assert_eq!(load(tmp.path()).unwrap().status, RunStatus::Interrupted);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_broken_one_before_it_is_an_error() {
        let (tmp, journal, done) = journal(3);
        drop(journal);
        let path = tmp.path().join(JOURNAL);
        let whole = std::fs::read(&path).unwrap();
        let last = serde_json::to_vec(&Line::Cell { duration_s: 9.0, warnings: vec![], result: done.cells[3].clone() })
            .unwrap();
        // Cut in the middle of a multi-byte character: the torn part need not even be UTF-8.
        let mut torn = whole.clone();
        torn.extend_from_slice(&last[..last.len() / 2]);
        torn.extend_from_slice("é".as_bytes().split_at(1).0);
        std::fs::write(&path, &torn).unwrap();
        let results = load(tmp.path()).unwrap();
        let finished =
            results.cells.iter().filter(|c| ![CellStatus::NotRun, CellStatus::Interrupted].contains(&c.status));
        assert_eq!(finished.count(), 3);
        assert_eq!(results.cells[3].status, CellStatus::Interrupted, "begun, its result torn");

        // A broken line followed by others: not a kill's doing, refused and placed.
        let mut broken = whole.clone();
        broken.extend_from_slice(&last[..last.len() / 2]);
        broken.extend_from_slice(b"\n{\"line\":\"began\",\"cell\":\"ok\"}\n");
        std::fs::write(&path, &broken).unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("failed to parse line 9 of {}", path.display())), "{e}");
    }

    #[test]
    fn the_end_line_alone_completes_the_journal() {
        let (tmp, mut journal, done) = journal(4);
        journal
            .not_removed(&NotRemoved { resource: "instance i-1".into(), cell: "ok".into(), error: "x".into() })
            .unwrap();
        journal.end(&done).unwrap();
        let results = load(tmp.path()).unwrap();
        assert_eq!(results.status, done.status);
        assert_eq!(results.finished_at, done.finished_at);
        assert_eq!(results.not_removed, done.not_removed, "the end's list replaces the lines before it");
        assert_eq!(serde_json::to_value(&results).unwrap(), serde_json::to_value(&done).unwrap());
    }

    #[test]
    fn load_prefers_a_complete_results_json_and_says_when_there_is_nothing() {
        let (tmp, journal, done) = journal(1);
        drop(journal);
        done.write(tmp.path()).unwrap();
        assert_eq!(load(tmp.path()).unwrap().status, done.status);
        // An older amiprobe's results.json written mid-run: the journal knows more.
        let mut partial = done.clone();
        partial.status = RunStatus::Running;
        partial.write(tmp.path()).unwrap();
        assert_eq!(load(tmp.path()).unwrap().status, RunStatus::Interrupted);
        // Without a journal, such a results.json is all there is.
        std::fs::remove_file(tmp.path().join(JOURNAL)).unwrap();
        assert_eq!(load(tmp.path()).unwrap().status, RunStatus::Running);
        std::fs::remove_file(tmp.path().join(RESULTS)).unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(e.starts_with("no results in") && e.contains("results.jsonl"), "{e}");
    }

    #[test]
    fn a_second_writer_is_refused_and_a_journal_without_header_is_an_error() {
        let (tmp, journal, done) = journal(0);
        let e = Journal::create(tmp.path(), &done).err().unwrap().to_string();
        assert!(e.contains("another amiprobe run"), "{e}");
        drop(journal);
        std::fs::write(tmp.path().join(JOURNAL), "{\"line\":\"began\",\"cell\":\"ok\"}\n").unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("does not begin with the run's header"), "{e}");
    }
}
