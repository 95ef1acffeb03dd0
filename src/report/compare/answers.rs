//! Probe answers against the baseline's: the HTTP status or a command's exit status, and the shape
//! of the body or the output. A shape is the set of JSON paths with their types (`$.items[]:
//! object`), so that tonight's values (a version, a time) change nothing and a field gone or
//! retyped shows; what is not JSON is `$: text` (or `$: empty`). Answers cut short are not
//! compared by shape (half a JSON document is not JSON), nor are probes without an answer (TCP).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::results::since::{AnswerChange, AnswerDiff};
use crate::results::{CellResult, ProbeResult};

/// The most paths a shape keeps; a body with more is not compared by shape (which paths a cut
/// shape keeps depends on the order of the fields).
const MAX_PATHS: usize = 200;

/// The probes of `new` whose answer's status or shape differs from the same probe's in `base`.
pub fn answers(base: &CellResult, new: &CellResult) -> Vec<AnswerChange> {
    new.probes
        .iter()
        .filter_map(|probe| {
            let before = base.probes.iter().find(|b| b.name == probe.name)?;
            let change = diff(&Answer::of(before)?, &Answer::of(probe)?)?;
            let regressed = match &change {
                AnswerDiff::Status { .. } => before.passed && !probe.passed,
                AnswerDiff::Shape { lost, .. } => !lost.is_empty(),
            };
            Some(AnswerChange { probe: probe.name.clone(), change, regressed })
        })
        .collect()
}

/// What a probe last got back.
struct Answer<'a> {
    status: Option<u32>,
    body: &'a str,
    cut: bool,
}

impl<'a> Answer<'a> {
    fn of(probe: &'a ProbeResult) -> Option<Answer<'a>> {
        if let Some(x) = &probe.last_exchange {
            return Some(Answer { status: x.status.map(u32::from), body: &x.body_excerpt, cut: x.body_truncated });
        }
        let x = probe.last_ssh.as_ref()?;
        Some(Answer { status: x.exit_status, body: &x.stdout, cut: x.truncated })
    }
}

fn diff(base: &Answer, new: &Answer) -> Option<AnswerDiff> {
    if base.status != new.status {
        return Some(AnswerDiff::Status { base: base.status, new: new.status });
    }
    if base.cut || new.cut {
        return None;
    }
    let (before, after) = (shape(base.body), shape(new.body));
    // A shape cut at MAX_PATHS depends on where it was cut: not compared.
    if before.len() >= MAX_PATHS || after.len() >= MAX_PATHS {
        return None;
    }
    let lost: Vec<String> = before.difference(&after).cloned().collect();
    let gained: Vec<String> = after.difference(&before).cloned().collect();
    (!lost.is_empty() || !gained.is_empty()).then_some(AnswerDiff::Shape { lost, gained })
}

/// The shape of a body: its JSON paths with their types, or `$: text` / `$: empty`.
pub fn shape(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match serde_json::from_str::<Value>(body) {
        Ok(value) => walk("$", &value, &mut out),
        Err(_) if body.trim().is_empty() => {
            out.insert("$: empty".to_string());
        }
        Err(_) => {
            out.insert("$: text".to_string());
        }
    }
    out
}

fn walk(path: &str, value: &Value, out: &mut BTreeSet<String>) {
    if out.len() >= MAX_PATHS {
        return;
    }
    out.insert(format!("{path}: {}", type_name(value)));
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                walk(&member(path, key), v, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(&format!("{path}[]"), v, out);
            }
        }
        _ => {}
    }
}

/// `$.name`, or `$['odd name']` when the key is not a plain identifier.
fn member(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}['{}']", key.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(probes: serde_json::Value) -> CellResult {
        serde_json::from_value(serde_json::json!({"id": "c", "params": {}, "status": "passed", "probes": probes}))
            .expect("a cell")
    }

    fn http(status: u16, body: &str, cut: bool) -> serde_json::Value {
        serde_json::json!([{"name": "api", "kind": "http", "passed": status < 400, "attempts_count": 1, "message": "",
            "last_exchange": {"method": "GET", "url": "http://127.0.0.1/", "status": status, "headers": [],
                "body_excerpt": body, "body_truncated": cut}}])
    }

    #[test]
    fn values_do_not_count_fields_and_types_do() {
        let base = cell(http(200, r#"{"version": "1.2", "items": [{"id": 1}], "odd key": true}"#, false));
        let same = cell(http(200, r#"{"version": "1.3", "items": [{"id": 7}, {"id": 8}], "odd key": false}"#, false));
        assert!(answers(&base, &same).is_empty());

        let other = cell(http(200, r#"{"version": 2, "items": [], "extra": null, "odd key": true}"#, false));
        let found = answers(&base, &other);
        let AnswerDiff::Shape { lost, gained } = &found[0].change else { panic!("{found:?}") };
        assert_eq!(lost, &["$.items[].id: number", "$.items[]: object", "$.version: string"]);
        assert_eq!(gained, &["$.extra: null", "$.version: number"]);
        assert!(found[0].regressed);
        assert!(shape(r#"{"odd key": 1}"#).contains("$['odd key']: number"));
    }

    #[test]
    fn a_status_change_and_text_bodies() {
        let base = cell(http(200, "<html>welcome</html>", false));
        assert!(answers(&base, &cell(http(200, "<html>hello</html>", false))).is_empty());
        let down = answers(&base, &cell(http(503, "busy", false)));
        assert_eq!(down[0].change, AnswerDiff::Status { base: Some(200), new: Some(503) });
        assert!(down[0].regressed, "passed, fails now");
        let up = answers(&cell(http(503, "busy", false)), &base);
        assert!(!up[0].regressed, "failed, passes now: fixed, not worse");
        let other = answers(&base, &cell(http(204, "", false)));
        assert!(!other[0].regressed, "another status, still passing");
        let json = answers(&base, &cell(http(200, "{}", false)));
        assert_eq!(
            json[0].change,
            AnswerDiff::Shape { lost: vec!["$: text".into()], gained: vec!["$: object".into()] }
        );
        assert!(answers(&base, &cell(http(200, "{\"cut", true))).is_empty(), "a cut answer is not compared");
    }

    #[test]
    fn only_added_fields_are_no_regression() {
        let base = cell(http(200, r#"{"a": 1}"#, false));
        let found = answers(&base, &cell(http(200, r#"{"a": 1, "b": "new"}"#, false)));
        assert_eq!(found.len(), 1);
        assert!(!found[0].regressed);
    }
}
