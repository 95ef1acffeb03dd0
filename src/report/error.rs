//! The errors of reporting, one enum per boundary: writing a report file ([`ReportError`]), reading
//! results back and keeping the journal ([`ResultsError`]), merging shards ([`MergeError`]), the
//! Markdown summary ([`SummaryError`]) and naming a format ([`UnknownFormat`]). Messages are lowercase
//! fragments, printed after `error: ` or `warning: `.

use std::path::PathBuf;

use super::json::{JOURNAL, RESULTS};
use crate::results::SCHEMA_VERSION;

/// A report file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to read template {}: {source}", path.display())]
    ReadTemplate { path: PathBuf, source: std::io::Error },
    #[error("bad template {name}: {source}")]
    BadTemplate { name: &'static str, source: Box<handlebars::TemplateError> },
    #[error("failed to render report: {0}")]
    Render(Box<handlebars::RenderError>),
    #[error("failed to render report: {0}")]
    NotUtf8(std::string::FromUtf8Error),
    #[error("failed to write report: {0}")]
    Flush(std::io::Error),
    #[error("failed to render junit: {0}")]
    Junit(quick_junit::SerializeError),
    #[error("failed to create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to write results.json: {0}")]
    ResultsJson(std::io::Error),
}

/// Results that could not be read back, or a journal that could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to read {}: {source}", path.display())]
    NotUtf8 { path: PathBuf, source: std::str::Utf8Error },
    #[error("failed to parse {}: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("no results in {}: neither {RESULTS} nor {JOURNAL} is there", dir.display())]
    NoResults { dir: PathBuf },
    #[error("{} has schema version {version}, newer than this amiprobe understands ({SCHEMA_VERSION})", dir.display())]
    TooNew { dir: PathBuf, version: u32 },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{} is being written by another amiprobe run", path.display())]
    Locked { path: PathBuf },
    #[error("failed to remove {}: {source}", path.display())]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("failed to encode a journal line: {0}")]
    Encode(serde_json::Error),
    #[error("failed to parse line {line} of {}: {source}", path.display())]
    Line { line: usize, path: PathBuf, source: serde_json::Error },
    #[error("{} does not begin with the run's header", path.display())]
    NoHeader { path: PathBuf },
    #[error("{} has a second header", path.display())]
    SecondHeader { path: PathBuf },
    #[error("{} has a result for `{cell}`, a cell not planned", path.display())]
    NotPlanned { path: PathBuf, cell: String },
}

/// Shard results that could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Nothing,
    #[error("{} holds results of `{name}` on {provider}, not of `{merged_name}` on {merged_provider}", dir.display())]
    OtherSpec { dir: PathBuf, name: String, provider: String, merged_name: String, merged_provider: String },
    #[error("cell `{0}` is in more than one of the merged results")]
    SameCell(String),
    #[error("failed to copy {}: {source}", path.display())]
    Copy { path: PathBuf, source: std::io::Error },
    #[error("failed to write merged results.json: {0}")]
    Write(std::io::Error),
}

/// The Markdown summary could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("failed to open {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// A `--report` value that names no format.
#[derive(Debug, thiserror::Error)]
#[error("unknown report format `{name}`: expected {expected}")]
pub struct UnknownFormat {
    pub name: String,
    /// The formats there are: "html, junit or json".
    pub expected: String,
}
