//! `results.json`: written as the run goes by `reporter::ResultsJson`; here its schema and its loading.

use std::path::Path;

use crate::results::{RunResults, SCHEMA_VERSION};

/// The JSON Schema of results.json, as checked into `schemas/`.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RunResults)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "amiprobe results".into());
    }
    schema
}

/// Reads `DIR/results.json`, refusing versions this amiprobe does not know.
pub fn load(dir: &Path) -> Result<RunResults, String> {
    let file = dir.join("results.json");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("failed to read {}: {e}", file.display()))?;
    let results: RunResults =
        serde_json::from_str(&text).map_err(|e| format!("failed to parse {}: {e}", file.display()))?;
    if results.schema_version > SCHEMA_VERSION {
        return Err(format!(
            "{} has schema version {}, newer than this amiprobe understands ({SCHEMA_VERSION})",
            file.display(),
            results.schema_version
        ));
    }
    Ok(results)
}
