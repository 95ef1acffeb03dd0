//! The spec language: the YAML a user checks in, how it is read, and how its errors are reported.
//!
//! `spec` only knows what was written. Turning it into something runnable (matrix expansion, compiled
//! probes, semantic checks) is `plan`'s job.

mod axes;
mod diagnostic;
pub(crate) mod duration;
mod limits;
mod load;
mod locate;
mod model;
mod path;
mod suggest;
mod values;
mod vars;

pub use axes::{Fields, MatrixSpec};
pub use diagnostic::{Diagnostic, Problem, SpecError};
pub use limits::{MAX_ALIAS_NODES, MAX_DEPTH, MAX_DURATION, MAX_SPEC_BYTES};
pub(crate) use load::clean_yaml_message;
pub use load::{load_file, load_str, LoadedSpec, VarOverrides};
pub use locate::Position;
pub use model::*;
pub use path::{FieldPath, Segment};
pub use suggest::nearest;
pub use values::{ByteSize, ByteSizeError, DurationSchema, KeyPair, StatusMatcher};
pub use vars::Vars;

/// The JSON Schema of the spec, as checked into `schemas/`. The matrix axes, `include`/`exclude`
/// keys and `launch:` fields are the providers' launch fields, added here from their own list.
pub fn json_schema() -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut generator = schemars::generate::SchemaSettings::default().into_generator();
    let mut fields: Map<String, Value> = Map::new();
    for field in crate::provider::all_fields() {
        if !fields.contains_key(field.name) {
            let schema = serde_json::to_value((field.schema)(&mut generator)).unwrap_or_default();
            fields.insert(field.name.to_string(), schema);
        }
    }
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<Spec>()).unwrap_or_default();
    let Some(defs) = schema.get_mut("$defs").and_then(Value::as_object_mut) else {
        return schema;
    };
    let one_or_many = |s: &Value| {
        let mut axis = json!({ "anyOf": [s, { "type": "array", "items": s }] });
        if let (Some(doc), Some(obj)) = (s.get("description"), axis.as_object_mut()) {
            obj.insert("description".into(), doc.clone());
        }
        axis
    };
    if let Some(matrix) = defs.get_mut("MatrixSpec").and_then(Value::as_object_mut) {
        let axes: Map<String, Value> = fields.iter().map(|(k, s)| (k.clone(), one_or_many(s))).collect();
        let entry = json!({ "type": "object", "properties": fields, "additionalProperties": false });
        if let Some(props) = matrix.get_mut("properties").and_then(Value::as_object_mut) {
            props.extend(axes);
            for key in ["include", "exclude"] {
                if let Some(list) = props.get_mut(key).and_then(Value::as_object_mut) {
                    list.insert("items".into(), entry.clone());
                }
            }
        }
        matrix.insert("additionalProperties".into(), false.into());
    }
    if let Some(props) = defs.get_mut("LaunchSpec").and_then(|l| l.get_mut("properties")).and_then(Value::as_object_mut)
    {
        props.extend(fields);
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "amiprobe spec".into());
    }
    schema
}
