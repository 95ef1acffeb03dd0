//! An `image` value as the plan expands it: a Packer manifest stands for each image of its last run,
//! each tied to its region; `REGION:ami-...` is tied to its region; the rest stand for themselves
//! (an SSM parameter and a lookup are resolved by the preflight). Cells are named after the build,
//! the parameter or the lookup, never after tonight's id.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::manifest;
use crate::provider::field::Expanded;
use crate::spec::{FieldPath, ImageSource, PackerSource, Problem};

/// One image of a manifest as a cell's value: where it was read, its build, region and id (what
/// `plan` and results.json show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestImage {
    pub packer: String,
    pub build: String,
    pub region: String,
    pub image: String,
}

/// The values an `image` value (found at `at`) stands for, a manifest read relative to `base`.
pub fn expand(value: &Value, base: &Path, at: &FieldPath) -> Result<Vec<Expanded>, Vec<Problem>> {
    let in_region = |region: &str, image: &str| Expanded {
        value: value.clone(),
        launch: Some(Value::String(image.to_string())),
        ties: vec![("region".to_string(), Value::String(region.to_string()))],
    };
    // The field's check has read it already: anything else stands for itself. A string is read
    // without serde: a matrix of thousands of cells expands thousands of ids.
    let source = match value {
        Value::String(text) => ImageSource::from_text(text).map_err(|_| ()),
        other => serde_json::from_value::<ImageSource>(other.clone()).map_err(|_| ()),
    };
    match source {
        Ok(ImageSource::InRegion { region, id }) => Ok(vec![in_region(&region, &id)]),
        Ok(ImageSource::Packer(source)) => from_manifest(&source, base, at),
        _ => Ok(vec![Expanded::itself(value.clone())]),
    }
}

/// Each image of the manifest's last run (of `source.build`), tied to its region.
fn from_manifest(source: &PackerSource, base: &Path, at: &FieldPath) -> Result<Vec<Expanded>, Vec<Problem>> {
    let file = base.join(&source.packer);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        vec![Problem::at(at.key("packer"), format!("failed to read Packer manifest `{}`: {e}", source.packer))
            .help("the path is relative to the spec file")]
    })?;
    let found = manifest::images(&text, source.build.as_deref()).map_err(|e| {
        let place = match e {
            manifest::ManifestError::NoSuchBuild { .. } => at.key("build"),
            _ => at.key("packer"),
        };
        vec![Problem::at(place, format!("Packer manifest `{}` {e}", source.packer))]
    })?;
    Ok(found
        .into_iter()
        .map(|b| {
            let image =
                ManifestImage { packer: source.packer.clone(), build: b.build, region: b.region, image: b.image };
            Expanded {
                value: serde_json::to_value(&image).unwrap_or(Value::Null),
                launch: Some(Value::String(image.image.clone())),
                ties: vec![("region".to_string(), Value::String(image.region))],
            }
        })
        .collect())
}

/// How a cell's id names an `image` value: a manifest's image by its build, a parameter by its
/// path, a lookup by its name, an id by itself.
pub fn label(value: &Value) -> String {
    if let Value::String(text) = value {
        return ImageSource::from_text(text).map_or_else(|_| text.clone(), |s| s.label());
    }
    if let Ok(image) = serde_json::from_value::<ManifestImage>(value.clone()) {
        return image.build;
    }
    match serde_json::from_value::<ImageSource>(value.clone()) {
        Ok(source) => source.label(),
        Err(_) => crate::provider::field::label(value),
    }
}
