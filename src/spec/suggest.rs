//! "Did you mean …?" for unknown keys, using the spec's own JSON Schema as the list of valid keys.

use std::sync::OnceLock;

use serde_json::Value;

use super::model::Spec;
use super::path::{FieldPath, Segment};

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::to_value(schemars::schema_for!(Spec)).unwrap_or(Value::Null))
}

/// The keys valid in the mapping at `path`, in schema order.
pub fn valid_keys(path: &FieldPath) -> Vec<String> {
    valid_keys_in(schema(), path)
}

/// The keys valid in the mapping at `path` of a document described by the JSON Schema `root` (a
/// provider's own section).
pub fn valid_keys_in(root: &Value, path: &FieldPath) -> Vec<String> {
    let mut nodes = vec![root];
    for segment in path.segments() {
        let mut next = Vec::new();
        for node in nodes.iter().flat_map(|n| branches(root, n)) {
            match segment {
                Segment::Key(key) => {
                    if let Some(prop) = node.get("properties").and_then(|p| p.get(key)) {
                        next.push(prop);
                    } else if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
                        next.push(extra);
                    }
                }
                Segment::Index(_) => next.extend(node.get("items")),
            }
        }
        nodes = next;
    }
    let mut keys = Vec::new();
    for node in nodes.iter().flat_map(|n| branches(root, n)) {
        if let Some(Value::Object(props)) = node.get("properties") {
            for key in props.keys() {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
        }
    }
    keys
}

/// The node itself with `$ref` resolved, and its `anyOf`/`oneOf`/`allOf` branches.
fn branches<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let node = resolve(root, node);
    let mut out = vec![node];
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(items)) = node.get(combinator) {
            out.extend(items.iter().map(|b| resolve(root, b)));
        }
    }
    out
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/")
            .and_then(|p| p.split('/').try_fold(root, |v, part| v.get(part)))
            .unwrap_or(node),
        None => node,
    }
}

/// The help for an unknown key among `valid` keys: the nearest one if it is a likely typo, else the
/// list of them (none when there are none).
pub fn unknown_key_help(unknown: &str, valid: &[String]) -> Option<String> {
    match nearest(unknown, valid) {
        Some(near) => Some(format!("did you mean `{near}`?")),
        None if !valid.is_empty() => Some(format!("valid keys here: {}", valid.join(", "))),
        None => None,
    }
}

/// The valid key nearest to `unknown`, if one is close enough to be a likely typo.
pub fn nearest(unknown: &str, valid: &[String]) -> Option<String> {
    valid
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_keys_of_nested_and_optional_sections() {
        let probe = FieldPath::root().key("probes").index(0);
        assert!(valid_keys(&probe).contains(&"within".to_string()));
        let expect = probe.key("expect");
        assert!(valid_keys(&expect).contains(&"body_regex".to_string()));
        assert_eq!(nearest("expct", &valid_keys(&probe)), Some("expect".to_string()));
        assert_eq!(nearest("zzzz", &valid_keys(&probe)), None);
    }
}
