//! A matrix's values as the provider's launch fields read them: a field by name (or a placed problem
//! naming the ones that exist), one value, the values of an axis, and an `include`/`exclude` entry.

use std::collections::HashSet;

use serde_json::Value;

use super::{Combo, Fields};
use crate::provider::field::label;
use crate::provider::field::Expanded;
use crate::provider::Field;
use crate::spec::{self, FieldPath, Problem};

/// One value of an axis, as the provider's field reads it; `None` if the field or the provider's
/// settings refused it.
pub(super) fn one_value(
    fields: &Fields,
    field: &Field,
    value: &serde_yaml::Value,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    let found = (field.check)(value, at);
    if !found.is_empty() {
        problems.extend(found);
        return None;
    }
    // A lone id for a list-valued field is a list of one.
    let value = match (field.list_valued, value) {
        (true, serde_yaml::Value::String(_)) => serde_yaml::Value::Sequence(vec![value.clone()]),
        _ => value.clone(),
    };
    match serde_json::to_value(&value) {
        Ok(v) => {
            let found = (fields.check)(field.name, &v, at);
            if !found.is_empty() {
                problems.extend(found);
                return None;
            }
            Some(v)
        }
        Err(e) => {
            problems.push(Problem::at(at.clone(), format!("value can't be used: {e}")));
            None
        }
    }
}

/// The values of one axis, each with its place: a list is several values, anything else one. For a
/// list-valued field a list of lists is several values, a plain list one.
pub(super) fn axis_values(
    fields: &Fields,
    field: &Field,
    raw: &serde_yaml::Value,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Vec<(FieldPath, Value)> {
    let many = match raw {
        serde_yaml::Value::Sequence(items) if field.list_valued => {
            let lists = items.iter().filter(|i| matches!(i, serde_yaml::Value::Sequence(_))).count();
            if lists > 0 && lists < items.len() {
                problems.push(
                    Problem::at(at.clone(), "mixes single values and lists: write every value as a list")
                        .help("`[a, b]` is one value, `[[a], [b, c]]` two"),
                );
                return Vec::new();
            }
            lists > 0
        }
        serde_yaml::Value::Sequence(_) => true,
        _ => false,
    };
    if !many {
        return one_value(fields, field, raw, at, problems).map(|v| (at.clone(), v)).into_iter().collect();
    }
    let items = raw.as_sequence().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        let name = at.last_key().unwrap_or_default();
        problems.push(Problem::at(at.clone(), format!("axis `{name}` has no values")));
    }
    let values: Vec<(FieldPath, Value)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| one_value(fields, field, item, &at.index(i), problems).map(|v| (at.index(i), v)))
        .collect();
    let mut seen = HashSet::new();
    for (place, v) in &values {
        if !seen.insert(v.to_string()) {
            problems.push(Problem::at(place.clone(), format!("`{}` is listed twice", label(v))));
        }
    }
    values
}

/// The values `value` (found at `at`) stands for, as the provider expands it (a Packer manifest:
/// each of its images); none, with the provider's problems, when it can't be expanded.
pub(super) fn expanded(
    fields: &Fields,
    name: &str,
    value: &Value,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Vec<Expanded> {
    match (fields.expand)(name, value, at) {
        Ok(values) => values,
        Err(found) => {
            problems.extend(found);
            Vec::new()
        }
    }
}

/// `head` and then `names`, comma-separated, over as many lines as keep each short: the lines after
/// the first are indented to sit under the diagnostic's `= help: `.
fn wrap_list(head: &str, names: &[String]) -> String {
    const WIDTH: usize = 100;
    let mut out = head.to_string();
    let mut line = out.len();
    for (i, name) in names.iter().enumerate() {
        let piece = if i + 1 < names.len() { format!("{name},") } else { name.clone() };
        if line + 1 + piece.len() > WIDTH {
            out.push_str("\n         ");
            line = 9;
        }
        out.push(' ');
        out.push_str(&piece);
        line += 1 + piece.len();
    }
    out
}

/// A provider field by name, or a placed problem naming the ones that exist.
pub(super) fn field<'a>(
    fields: &Fields<'a>,
    name: &str,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<&'a Field> {
    let provider = fields.provider;
    let found = fields.list.iter().find(|f| f.name == name);
    if found.is_none() {
        let names: Vec<String> = fields.list.iter().map(|f| f.name.to_string()).collect();
        let help = match crate::spec::nearest(name, &names) {
            Some(near) => format!("did you mean `{near}`?"),
            None => wrap_list(&format!("the {provider} provider's launch fields:"), &names),
        };
        // Another provider's field is no typo: say whose it is.
        let message = if crate::providers::all_fields().any(|f| f.name == name) {
            format!("the {provider} provider has no `{name}` field")
        } else {
            format!("unknown key `{name}` in {}", at.parent().unwrap_or_default())
        };
        problems.push(Problem::at_key(at.clone(), message).help(help));
    }
    found
}

/// The values of an `include` or `exclude` entry, each checked by its field and expanded: an entry
/// whose value stands for several (a Packer manifest) is several entries, each with its ties.
pub(super) fn entry_values(
    entry: &spec::Fields,
    fields: &Fields,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Vec<Combo>> {
    let before = problems.len();
    let mut combos = vec![Combo::default()];
    for (name, raw) in &entry.0 {
        let at = at.key(name.clone());
        let Some(f) = field(fields, name, &at, problems) else {
            continue;
        };
        let Some(v) = one_value(fields, f, raw, &at, problems) else {
            continue;
        };
        let values = expanded(fields, name, &v, &at, problems);
        combos = combos.iter().flat_map(|c| values.iter().filter_map(|v| c.with(name, v, None))).collect();
    }
    (problems.len() == before).then_some(combos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_field_list_is_wrapped_under_the_help() {
        let names: Vec<String> = (0..40).map(|i| format!("field_number_{i}")).collect();
        let help = wrap_list("the ec2 provider's launch fields:", &names);
        assert!(help.lines().count() > 1 && help.lines().all(|l| l.len() <= 100), "{help}");
        assert!(help.lines().skip(1).all(|l| l.starts_with("          ")), "{help}");
        let flat: Vec<&str> = help.split_whitespace().skip(5).map(|n| n.trim_end_matches(',')).collect();
        assert_eq!(flat, names);
    }
}
