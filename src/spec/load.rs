//! Reading a spec file: variables, YAML, unknown keys, and type errors with their places.
//!
//! The pipeline is: bytes -> size and encoding checks -> text -> `${VAR}` substitution -> nesting
//! estimate -> position index (exact nesting and alias checks) -> deserialize (collecting every unknown key with
//! serde_ignored, and the path of a type error with serde_path_to_error) -> [`LoadedSpec`].
//! Semantic checks follow in `plan::resolve`, which reports through [`LoadedSpec::error`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diagnostic::{Diagnostic, Problem, SpecError};
use super::limits::{self, LimitError};
use super::locate::{Locations, Position};
use super::model::Spec;
use super::path::FieldPath;
use super::suggest;
use super::vars::{self, Substituted, Vars};

/// A spec that deserialized, with what is needed to point back into its file.
#[derive(Debug)]
pub struct LoadedSpec {
    pub spec: Spec,
    /// The original text, for showing lines in errors.
    pub source: String,
    places: Places,
    /// Unknown keys: reported together with the semantic errors found later, not on their own.
    unknown_keys: Vec<Diagnostic>,
}

/// Where things are in the file: field paths to positions, mapped back through substitution.
#[derive(Debug)]
struct Places {
    file: PathBuf,
    locations: Locations,
    substituted: Substituted,
}

/// Variables given on the command line (`--var KEY=VALUE`), which win over the environment.
pub type VarOverrides = BTreeMap<String, String>;

pub fn load_file(file: &Path, overrides: &VarOverrides) -> Result<LoadedSpec, SpecError> {
    let bytes = read_bounded(file).map_err(|e| SpecError::single(file, format!("failed to read spec: {e}")))?;
    let source = match limits::check_bytes(&bytes) {
        Ok(text) => text.to_string(),
        Err(e) => return Err(limit_error(file, e, String::from_utf8_lossy(&bytes).into_owned())),
    };
    let env = |name: &str| std::env::var(name).ok();
    load_str(file, source, &Vars { overrides, env: &env })
}

/// Reads at most one byte more than a spec may have: enough to tell it is too big, and a spec
/// pointed at `/dev/zero` or a huge file costs nothing.
fn read_bounded(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?.take(limits::MAX_SPEC_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn limit_error(file: &Path, e: LimitError, source: String) -> SpecError {
    SpecError {
        diagnostics: vec![Diagnostic {
            file: file.to_path_buf(),
            position: Some(e.position),
            path: None,
            message: e.message,
            help: e.help,
        }],
        source: Some(source),
    }
}

pub fn load_str(file: &Path, source: String, vars: &Vars) -> Result<LoadedSpec, SpecError> {
    if let Err(e) = limits::check_bytes(source.as_bytes()) {
        return Err(limit_error(file, e, source));
    }
    let substituted = match vars::substitute(&source, vars) {
        Ok(s) => s,
        Err(errors) => return Err(var_errors(file, errors, source)),
    };
    if substituted.text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        let empty = Diagnostic {
            file: file.to_path_buf(),
            position: Some(Position { line: 1, column: 1 }),
            path: None,
            message: "spec is empty".into(),
            help: Some("a spec needs at least `name`, `provider` and `matrix`".into()),
        };
        return Err(SpecError { diagnostics: vec![empty], source: Some(source) });
    }
    let locations = match locate(&substituted) {
        Ok(locations) => locations,
        Err(e) => return Err(limit_error(file, e, source)),
    };
    let (result, unknown) = deserialize(&substituted.text);
    let places = Places { file: file.to_path_buf(), locations, substituted };
    let mut diagnostics: Vec<Diagnostic> = unknown.iter().map(|path| places.unknown_key(path)).collect();
    match result {
        Ok(spec) => Ok(LoadedSpec { spec, source, places, unknown_keys: diagnostics }),
        Err(e) => {
            diagnostics.push(places.type_error(&e));
            diagnostics.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
            Err(SpecError { diagnostics, source: Some(source) })
        }
    }
}

/// Every `${...}` that could not be substituted, as the file has it.
fn var_errors(file: &Path, errors: Vec<vars::VarError>, source: String) -> SpecError {
    let diagnostics = errors
        .into_iter()
        .map(|e| Diagnostic {
            file: file.to_path_buf(),
            position: Some(Position { line: e.line, column: e.column }),
            path: None,
            message: e.message,
            help: None,
        })
        .collect();
    SpecError { diagnostics, source: Some(source) }
}

/// The nesting estimate, then the position index (exact nesting and alias checks). Both read the text
/// the parsers will read; an error is placed where the file has it.
fn locate(substituted: &Substituted) -> Result<Locations, LimitError> {
    let located = limits::check_depth(&substituted.text).and_then(|()| Locations::index(&substituted.text));
    located.map_err(|mut e| {
        let (line, column) = substituted.original_position(e.position.line, e.position.column);
        e.position = Position { line, column };
        e
    })
}

/// The spec deserialized, with the path of every unknown key met on the way.
fn deserialize(text: &str) -> (Result<Spec, serde_path_to_error::Error<serde_yaml::Error>>, Vec<FieldPath>) {
    let mut unknown = Vec::new();
    let de = serde_yaml::Deserializer::from_str(text);
    let mut on_unknown = |path: serde_ignored::Path| unknown.push(FieldPath::from_ignored(&path));
    let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
    let result = serde_path_to_error::deserialize(de);
    (result, unknown)
}

impl LoadedSpec {
    pub fn file(&self) -> &Path {
        &self.places.file
    }

    /// The directory relative paths in the spec are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.file().parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    /// Whether anything is wrong so far (unknown keys).
    pub fn has_errors(&self) -> bool {
        !self.unknown_keys.is_empty()
    }

    /// Where the value at `path` was written, `spec.yaml:7:12 (matrix.image[1])`: for what is found
    /// wrong with it once the spec has been read (a parameter the preflight could not resolve).
    pub fn place(&self, path: &FieldPath) -> String {
        let found = self.places.problem(Problem::at(path.clone(), String::new()));
        match found.position {
            Some(p) => format!("{}:{}:{} ({path})", found.file.display(), p.line, p.column),
            None => format!("{} ({path})", found.file.display()),
        }
    }

    /// Turns problems found after deserializing, and the unknown keys, into one located error.
    pub fn error(&self, problems: Vec<Problem>) -> SpecError {
        let mut diagnostics: Vec<Diagnostic> = problems.into_iter().map(|p| self.places.problem(p)).collect();
        diagnostics.extend(self.unknown_keys.iter().cloned());
        diagnostics.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
        SpecError { diagnostics, source: Some(self.source.clone()) }
    }
}

impl Places {
    fn position(&self, pos: Option<Position>) -> Option<Position> {
        pos.map(|p| {
            let (line, column) = self.substituted.original_position(p.line, p.column);
            Position { line, column }
        })
    }

    fn problem(&self, p: Problem) -> Diagnostic {
        let pos = if p.at_key { self.locations.key_or_value(&p.path) } else { self.locations.value(&p.path) };
        Diagnostic {
            file: self.file.clone(),
            position: self.position(pos),
            path: Some(p.path),
            message: p.message,
            help: p.help,
        }
    }

    fn unknown_key(&self, path: &FieldPath) -> Diagnostic {
        let key = path.last_key().unwrap_or_default().to_string();
        let parent = path.parent().unwrap_or_default();
        let valid = suggest::valid_keys(&parent);
        let help = suggest::unknown_key_help(&key, &valid);
        let where_ = if parent.segments().is_empty() { "at the top level".to_string() } else { format!("in {parent}") };
        Diagnostic {
            file: self.file.clone(),
            position: self.position(self.locations.key_or_value(path)),
            path: Some(path.clone()),
            message: format!("unknown key `{key}` {where_}"),
            help,
        }
    }

    fn type_error(&self, e: &serde_path_to_error::Error<serde_yaml::Error>) -> Diagnostic {
        let path = FieldPath::from_tracked(e.path());
        let inner = e.inner();
        let position = inner
            .location()
            .map(|l| Position { line: l.line(), column: l.column() })
            .or_else(|| self.locations.value(&path));
        let mut message = clean_yaml_message(&inner.to_string());
        // serde_yaml prefixes nested errors with its own rendering of the path, which we print anyway.
        if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
            message = rest.to_string();
        }
        Diagnostic {
            file: self.file.clone(),
            position: self.position(position),
            path: (!path.segments().is_empty()).then_some(path),
            message,
            help: None,
        }
    }
}

/// serde_yaml appends "at line L column C" (we print that ourselves) and names Rust types.
pub(crate) fn clean_yaml_message(message: &str) -> String {
    static POSITION: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let position =
        POSITION.get_or_init(|| regex::Regex::new(r" at line \d+ column \d+").unwrap_or_else(|_| unreachable!()));
    let message = position.replace_all(message, "");
    let message = message.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    message
        .replace("struct ", "")
        .replace("expected a duration", "expected a duration like 500ms, 15s, 5m or 1h30m")
        .replace("expected u16", "expected a port number (0-65535)")
        .replace("expected u32", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a nonzero usize", "expected a whole number above 0")
        .replace("nonzero usize", "whole number above 0")
        .replace("a sequence", "a list")
        .replace("sequence,", "list,")
        .replace("a map", "a mapping")
        .replace("expected Spec", "expected a mapping of spec keys")
}
