//! The spec's JSON Schema, as checked into `schemas/`: the spec's own types, with the `provider:`
//! section, the matrix axes, `include`/`exclude` keys and `launch:` fields filled in from every
//! provider the registry lists.

use serde_json::{json, Map, Value};

use super::ALL;
use crate::provider::ProviderKind;
use crate::spec::{Spec, PROVIDER_SECTION_DEF};

/// The JSON Schema of a spec.
pub fn spec_schema() -> Value {
    schema_among(ALL)
}

/// [`spec_schema`] with the providers `kinds`.
pub(super) fn schema_among(kinds: &[&'static dyn ProviderKind]) -> Value {
    let mut generator = schemars::generate::SchemaSettings::default().into_generator();
    let fields = field_schemas(kinds, &mut generator);
    add_provider_section(kinds, &mut generator);
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<Spec>()).unwrap_or_default();
    if let Some(provider) = schema.pointer_mut("/properties/provider") {
        let description = format!("Where the cells run: exactly one of {}.", super::either(kinds));
        *provider = json!({ "description": description, "$ref": format!("#/$defs/{PROVIDER_SECTION_DEF}") });
    }
    if let Some(defs) = schema.get_mut("$defs").and_then(Value::as_object_mut) {
        add_fields(defs, fields);
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "amiprobe spec".into());
    }
    schema
}

/// Every provider's launch fields by name, their definitions added to the generator.
fn field_schemas(kinds: &[&dyn ProviderKind], generator: &mut schemars::SchemaGenerator) -> Map<String, Value> {
    let mut fields = Map::new();
    for field in kinds.iter().flat_map(|kind| kind.fields()) {
        if !fields.contains_key(field.name) {
            let schema = serde_json::to_value((field.schema)(generator)).unwrap_or_default();
            fields.insert(field.name.to_string(), schema);
        }
    }
    fields
}

/// The `provider:` section: one optional key per provider, each its provider's section schema.
fn add_provider_section(kinds: &[&dyn ProviderKind], generator: &mut schemars::SchemaGenerator) {
    // Defined first, so it comes before the sections it lists (as schemars orders a type's own).
    generator.definitions_mut().insert(PROVIDER_SECTION_DEF.into(), Value::Null);
    let mut properties = Map::new();
    for kind in kinds {
        let section = serde_json::to_value(kind.section_schema(generator)).unwrap_or_default();
        properties.insert(kind.name().into(), json!({ "anyOf": [section, { "type": "null" }], "default": null }));
    }
    let section = json!({
        "description": "Exactly one provider section.",
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    generator.definitions_mut().insert(PROVIDER_SECTION_DEF.into(), section);
}

/// The launch fields as matrix axes (one value or a list of them), as `include`/`exclude` entries'
/// keys, and as `launch:` keys.
fn add_fields(defs: &mut Map<String, Value>, fields: Map<String, Value>) {
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
}

#[cfg(test)]
mod tests {
    use crate::spec::{valid_keys_in, FieldPath};

    #[test]
    fn the_schema_knows_the_keys_of_each_provider_section() {
        let schema = super::spec_schema();
        let qemu_image = FieldPath::root().key("provider").key("qemu").key("images").key("ok");
        assert!(valid_keys_in(&schema, &qemu_image).contains(&"kernel".to_string()));
        let ec2 = FieldPath::root().key("provider").key("ec2");
        assert!(valid_keys_in(&schema, &ec2).contains(&"region".to_string()));
    }
}
