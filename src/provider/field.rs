//! Launch fields: what a provider lets a spec set for a cell, either fixed in `launch:` or varied as
//! a matrix axis of the same name. Each provider lists its own ([`super::ProviderKind::fields`]); the plan checks
//! every value against them, with its place in the file, before anything runs.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::spec::{FieldPath, Problem};

/// One launch field of a provider.
pub struct Field {
    pub name: &'static str,
    /// The field's one value is itself a list (`security_groups`): as an axis, `[a, b]` is one value
    /// and `[[a], [b]]` two.
    pub list_valued: bool,
    /// Every cell must have a value, from an axis, an `include` entry or `launch:`.
    pub required: bool,
    /// Checks one value; problems are placed under the given path.
    pub check: fn(&serde_yaml::Value, &FieldPath) -> Vec<Problem>,
    /// The value's JSON Schema, for editors.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

impl Field {
    /// A field whose one value only has to be a `T` (`image: ami-1`, `public_ip: true`).
    pub const fn plain<T: DeserializeOwned + JsonSchema>(name: &'static str, required: bool) -> Field {
        Field { name, list_valued: false, required, check: check_as::<T>, schema: schema_of::<T> }
    }
}

/// A value read as `T`: every unknown key and the first type error, placed under `at`.
pub fn typed<T: DeserializeOwned>(value: &serde_yaml::Value, at: &FieldPath) -> Result<T, Vec<Problem>> {
    match read_as::<T>(value, at) {
        (Some(v), problems) if problems.is_empty() => Ok(v),
        (_, problems) => Err(problems),
    }
}

/// A value read as `T` where unknown keys are reported but don't stop it: the value (unless a type
/// error stopped it) and every problem, placed under `at`.
pub fn read_as<T: DeserializeOwned>(value: &serde_yaml::Value, at: &FieldPath) -> (Option<T>, Vec<Problem>) {
    let read = Read::<T>::of(value, at);
    let mut problems: Vec<Problem> = read.unknown.iter().map(|path| unknown_key(path, at, None)).collect();
    problems.extend(read.type_error);
    (read.value, problems)
}

/// What reading a value as `T` found: the value (unless a type error stopped it), the unknown keys
/// (relative to the value) and the type error, placed under `at`.
pub struct Read<T> {
    pub value: Option<T>,
    pub unknown: Vec<FieldPath>,
    pub type_error: Option<Problem>,
}

impl<T: DeserializeOwned> Read<T> {
    pub fn of(value: &serde_yaml::Value, at: &FieldPath) -> Read<T> {
        let mut unknown = Vec::new();
        let result: Result<T, _> = {
            let mut on_unknown = |path: serde_ignored::Path| unknown.push(FieldPath::from_ignored(&path));
            let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
            serde_path_to_error::deserialize(de)
        };
        match result {
            Ok(v) => Read { value: Some(v), unknown, type_error: None },
            Err(e) => {
                let problem = Problem::at(
                    at.join(&FieldPath::from_tracked(e.path())),
                    crate::spec::clean_yaml_message(&e.inner().to_string()),
                );
                Read { value: None, unknown, type_error: Some(problem) }
            }
        }
    }
}

/// The problem of an unknown key at `path` (relative to `at`), with `help` when there is one.
pub fn unknown_key(path: &FieldPath, at: &FieldPath, help: Option<String>) -> Problem {
    let key = path.last_key().unwrap_or_default().to_string();
    let problem = Problem::at_key(
        at.join(path),
        format!("unknown key `{key}` in {}", at.join(&path.parent().unwrap_or_default())),
    );
    match help {
        Some(help) => problem.help(help),
        None => problem,
    }
}

/// [`Field::check`] for a value that only has to be a `T`.
pub fn check_as<T: DeserializeOwned>(value: &serde_yaml::Value, at: &FieldPath) -> Vec<Problem> {
    typed::<T>(value, at).err().unwrap_or_default()
}

/// [`Field::schema`] of a `T`.
pub fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A short label of a value for cell ids and report columns: `ami-1`, `sg-a+sg-b`, `30-io2-3000`.
pub fn label(value: &serde_json::Value) -> String {
    use serde_json::Value as V;
    match value {
        V::Null => String::new(),
        V::String(s) => s.clone(),
        V::Bool(b) => b.to_string(),
        V::Number(n) => n.to_string(),
        V::Array(items) => items.iter().map(label).collect::<Vec<_>>().join("+"),
        // A flag reads better by its name: `{size: 30, encrypted: true}` -> `30-encrypted`.
        V::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                V::Bool(true) => k.clone(),
                V::Bool(false) => format!("no-{k}"),
                _ => label(v),
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// One value a written launch field value stands for ([`super::ProviderSettings::expand_value`]): a
/// Packer manifest stands for each of its images.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    /// The cell's value: what names it, what `include` and `exclude` match and results record.
    pub value: serde_json::Value,
    /// What the machine launches with, when it is not `value` (a manifest's image id).
    pub launch: Option<serde_json::Value>,
    /// Other fields this value decides (an image's region): a cell pairs it with these values only,
    /// and takes them when it has none.
    pub ties: Vec<(String, serde_json::Value)>,
}

impl Expanded {
    /// A value that stands for itself.
    pub fn itself(value: serde_json::Value) -> Expanded {
        Expanded { value, launch: None, ties: Vec::new() }
    }
}
