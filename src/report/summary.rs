//! `--summary FILE`: a short Markdown account of a run for a CI's job page (`$GITHUB_STEP_SUMMARY`)
//! or a merge-request comment: the counts, then every cell that did not pass with its one-line
//! reason and a link to its section of the HTML report; with a baseline, what changed since.
//!
//! The file is appended to, as GitHub's step summary expects (several steps may write to it).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::compare::markdown;
use super::error::SummaryError;
use super::html;
use crate::results::since::Comparison;
use crate::results::RunResults;

/// Where the summary goes and how it links to the report.
#[derive(Debug, Clone)]
pub struct SummaryTarget {
    pub file: PathBuf,
    /// The report as a reader of the summary reaches it (a CI artifact's address); default the
    /// local `report.html` next to the results.
    pub report_url: Option<String>,
}

/// Cells listed at most: a summary is read on a job page, the report holds the rest.
const MAX_LISTED: usize = 50;

pub fn render(results: &RunResults, report_url: &str) -> String {
    let c = &results.counts;
    let verdict = match results.status {
        crate::results::RunStatus::Passed => "passed",
        crate::results::RunStatus::Interrupted => "interrupted",
        crate::results::RunStatus::Refused => "refused",
        _ => "failed",
    };
    let mut out = format!(
        "### amiprobe: {} {verdict}\n\n{} cells: {} passed{}, {} failed, {} errors, {} not run (run `{}`{}).\n\n",
        escape(&results.spec.name),
        c.total,
        c.passed,
        if c.flaky > 0 { format!(" ({} flaky)", c.flaky) } else { String::new() },
        c.failed,
        c.errored,
        c.not_run,
        escape(&results.run_id),
        results.shard.as_deref().map(|s| format!(", shard {s}")).unwrap_or_default(),
    );
    // Flaky cells too: they passed, but not on their first try.
    let listed: Vec<_> = results.cells.iter().filter(|cell| !cell.status.is_pass() || cell.flaky).collect();
    if !listed.is_empty() {
        out.push_str("| cell | status | reason |\n| --- | --- | --- |\n");
        for cell in listed.iter().take(MAX_LISTED) {
            let (status, reason) = match cell.earlier_tries.last() {
                Some(before) if cell.flaky => (
                    "flaky",
                    format!(
                        "passed on try {} after: {}",
                        cell.earlier_tries.len() + 1,
                        before.reason.as_deref().unwrap_or("")
                    ),
                ),
                _ => (html::status_label(cell.status), cell.reason.clone().unwrap_or_default()),
            };
            out.push_str(&format!(
                "| [{}]({report_url}#{}) | {status} | {} |\n",
                escape(&cell.id),
                html::anchor(&cell.id),
                escape(&reason)
            ));
        }
        if listed.len() > MAX_LISTED {
            out.push_str(&format!("\n…and {} more in the report.\n", listed.len() - MAX_LISTED));
        }
        out.push('\n');
    }
    if !results.not_removed.is_empty() {
        out.push_str(&format!(
            "**{} resources were not removed**: `amiprobe sweep --run-id {}`\n\n",
            results.not_removed.len(),
            results.run_id
        ));
    }
    if let Some(promotions) = &results.promotions {
        out.push_str("| image | region | promotion |\n| --- | --- | --- |\n");
        for line in super::promotion::lines(promotions) {
            let status = format!("{}: {}", line.label, line.detail);
            out.push_str(&format!("| {} | {} | {} |\n", escape(&line.image), escape(&line.region), escape(&status)));
        }
        out.push('\n');
    }
    if let Some(since) = &results.since_last_night {
        out.push_str(&since_last_night(since, report_url));
    }
    out.push_str(&format!("[The full report]({report_url})\n\n"));
    out
}

/// What changed since the baseline: a line per changed cell (at most [`MAX_LISTED`]), regressions first.
fn since_last_night(since: &Comparison, report_url: &str) -> String {
    let regressed = since.cells.iter().filter(|c| c.regressed()).count();
    let mut out = format!(
        "**Since last night** (run `{}`): {} of {} cells changed, {regressed} regressed.\n\n",
        escape(&since.base_run),
        since.cells.len(),
        since.matched
    );
    let mut cells: Vec<_> = since.cells.iter().collect();
    cells.sort_by_key(|c| !c.regressed());
    for cell in cells.iter().take(MAX_LISTED) {
        let lines: Vec<String> = markdown::lines(cell, markdown::Style::Markdown).iter().map(|l| escape(l)).collect();
        out.push_str(&format!(
            "- [{}]({report_url}#{}){}: {}\n",
            escape(&cell.new_id),
            html::anchor(&cell.new_id),
            if cell.regressed() { " **regressed**" } else { "" },
            lines.join("; ")
        ));
    }
    if cells.len() > MAX_LISTED {
        out.push_str(&format!("\n…and {} more in the report.\n", cells.len() - MAX_LISTED));
    }
    out.push('\n');
    out
}

/// Appends the summary of `results` (written to `dir`) to the target file.
pub fn append(results: &RunResults, dir: &Path, target: &SummaryTarget) -> Result<(), SummaryError> {
    let local = dir.join("report.html");
    let url = target.report_url.clone().unwrap_or_else(|| local.display().to_string());
    let text = render(results, &url);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&target.file)
        .map_err(|source| SummaryError::Open { path: target.file.clone(), source })?;
    file.write_all(text.as_bytes()).map_err(|source| SummaryError::Write { path: target.file.clone(), source })
}

/// Text safe in a Markdown table cell: no pipes or line breaks, no HTML.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> RunResults {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/run");
        crate::report::json::load(&dir).expect("fixture results.json")
    }

    #[test]
    fn lists_every_cell_that_did_not_pass_with_a_link_into_the_report() {
        let results = fixture();
        let text = render(&results, "https://ci.example/artifacts/report.html");
        let failing: Vec<_> = results.cells.iter().filter(|c| !c.status.is_pass()).collect();
        assert!(!failing.is_empty());
        for cell in failing {
            let link = format!("(https://ci.example/artifacts/report.html#{})", html::anchor(&cell.id));
            let row =
                text.lines().find(|l| l.contains(&link)).unwrap_or_else(|| panic!("{} not listed:\n{text}", cell.id));
            assert!(row.contains(&escape(cell.reason.as_deref().unwrap())), "{row}");
        }
        let passed = results.cells.iter().find(|c| c.status.is_pass()).unwrap();
        assert!(!text.contains(&format!("[{}]", passed.id)), "a passed cell is listed:\n{text}");
        assert!(text.contains(&format!("{} passed, {} failed", results.counts.passed, results.counts.failed)));
    }

    #[test]
    fn table_cells_stay_one_cell() {
        assert_eq!(escape("a | b\nc <b>"), "a \\| b c &lt;b&gt;");
    }

    #[test]
    fn appends_so_other_steps_keep_their_part() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("summary.md");
        std::fs::write(&file, "earlier step\n").unwrap();
        let target = SummaryTarget { file: file.clone(), report_url: None };
        append(&fixture(), dir.path(), &target).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("earlier step\n### amiprobe: "), "{text}");
        assert!(text.contains(&format!("]({}#", dir.path().join("report.html").display())), "{text}");
    }
}
