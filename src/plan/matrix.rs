//! Matrix expansion over named axes: axes -> product -> `exclude` -> `include`, with GitHub
//! Actions' semantics.
//!
//! An axis is any launch field of the provider (`image`, `instance_type`, `root_volume`...): the
//! provider says which names exist and checks each value ([`Field`]). `exclude` drops every
//! combination that matches all keys of an entry. `include` adds its keys to each combination it can
//! join without overwriting a value that came from the axes; an entry that joins none becomes a cell
//! of its own. A field fixed in `launch:` applies to every cell and can't also be an axis.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::cell::{Cell, CellId};

use crate::provider::field::label;
use crate::provider::Field;
use crate::spec::{self, FieldPath, MatrixSpec, Problem};

/// A provider's launch fields as the matrix checks them: its name (for messages), the fields, and
/// its check of a value against its own settings (a `size` its section names).
pub struct Fields<'a> {
    pub provider: &'a str,
    pub list: &'a [Field],
    pub check: &'a dyn Fn(&str, &Value, &FieldPath) -> Vec<Problem>,
}

/// At most this many cells: more is a mistake, not a test plan (and each is a machine).
pub const MAX_CELLS: usize = 10_000;
/// At most this many `include` (and `exclude`) entries, which keeps matching them linear enough.
pub const MAX_ENTRIES: usize = 1_000;

/// A combination as it is being built: the values from the axes, and those added by `include`.
#[derive(Debug, Clone, Default)]
struct Combo {
    original: Map<String, Value>,
    added: Map<String, Value>,
    /// Which `include` entry created it, for error messages.
    from_include: Option<usize>,
}

impl Combo {
    fn value(&self) -> Map<String, Value> {
        let mut all = self.original.clone();
        for (k, v) in &self.added {
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        all
    }
}

/// One value of an axis, as the provider's field reads it; `None` if the field or the provider's
/// settings refused it.
fn one_value(
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

/// The values of one axis: a list is several values, anything else one. For a list-valued field a
/// list of lists is several values, a plain list one.
fn axis_values(
    fields: &Fields,
    field: &Field,
    raw: &serde_yaml::Value,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Vec<Value> {
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
        return one_value(fields, field, raw, at, problems).into_iter().collect();
    }
    let items = raw.as_sequence().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        let name = at.last_key().unwrap_or_default();
        problems.push(Problem::at(at.clone(), format!("axis `{name}` has no values")));
    }
    let values: Vec<Value> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| one_value(fields, field, item, &at.index(i), problems))
        .collect();
    let mut seen = HashSet::new();
    for (i, v) in values.iter().enumerate() {
        if !seen.insert(v.to_string()) {
            problems.push(Problem::at(at.index(i), format!("`{}` is listed twice", label(v))));
        }
    }
    values
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
fn field<'a>(fields: &Fields<'a>, name: &str, at: &FieldPath, problems: &mut Vec<Problem>) -> Option<&'a Field> {
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

/// The values of an `include` or `exclude` entry, each checked by its field.
fn entry_values(
    entry: &spec::Fields,
    fields: &Fields,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Map<String, Value>> {
    let before = problems.len();
    let mut values = Map::new();
    for (name, raw) in &entry.0 {
        let at = at.key(name.clone());
        if let Some(f) = field(fields, name, &at, problems) {
            if let Some(v) = one_value(fields, f, raw, &at, problems) {
                values.insert(name.clone(), v);
            }
        }
    }
    (problems.len() == before).then_some(values)
}

/// Whether `combo` has every value `entry` gives: `exclude` drops such cells.
fn has_all(combo: &Map<String, Value>, entry: &Map<String, Value>) -> bool {
    entry.iter().all(|(k, v)| combo.get(k) == Some(v))
}

/// Whether `entry` can join `combo` without overwriting one of its values: `include` joins those.
fn fits(combo: &Map<String, Value>, entry: &Map<String, Value>) -> bool {
    entry.iter().all(|(k, v)| combo.get(k).is_none_or(|o| o == v))
}

/// The number of cells the axes multiply to, checked before any is built.
fn check_size(matrix: &MatrixSpec, lengths: &[(&str, usize)], problems: &mut Vec<Problem>) -> bool {
    let path = FieldPath::root().key("matrix");
    let mut ok = true;
    let product = lengths.iter().try_fold(1usize, |acc, (_, n)| acc.checked_mul(*n));
    if product.is_none_or(|n| n > MAX_CELLS) {
        let count = product.map_or("more than 18446744073709551615".to_string(), |n| n.to_string());
        let factors: Vec<String> = lengths.iter().map(|(name, n)| format!("{n} {name}")).collect();
        problems.push(
            Problem::at_key(path.clone(), format!("expands to {count} cells; at most {MAX_CELLS} are allowed"))
                .help(format!("the axes multiply: {}; split the spec or use `include`", factors.join(" x "))),
        );
        ok = false;
    }
    for (name, entries) in [("include", &matrix.include), ("exclude", &matrix.exclude)] {
        if entries.len() > MAX_ENTRIES {
            problems.push(Problem::at_key(
                path.key(name),
                format!("{} `{name}` entries; at most {MAX_ENTRIES} are allowed", entries.len()),
            ));
            ok = false;
        }
    }
    ok
}

/// Expands the matrix of a spec for `provider` (its name and fields), with the fields `launch:` fixes.
pub fn expand(matrix: &MatrixSpec, fixed: &spec::Fields, fields: &Fields, problems: &mut Vec<Problem>) -> Vec<Cell> {
    let path = FieldPath::root().key("matrix");
    let before = problems.len();

    // The fields `launch:` fixes: checked once, and never also an axis.
    let launch = FieldPath::root().key("launch");
    let mut fixed_names = HashSet::new();
    let mut fixed_values = Map::new();
    for (name, raw) in &fixed.0 {
        let at = launch.key(name.clone());
        if let Some(f) = field(fields, name, &at, problems) {
            fixed_values.extend(one_value(fields, f, raw, &at, problems).map(|v| (name.clone(), v)));
            fixed_names.insert(name.as_str());
        }
    }

    let mut axes: Vec<(&str, Vec<Value>)> = Vec::new();
    for (name, raw) in &matrix.axes.0 {
        let at = path.key(name.clone());
        let Some(f) = field(fields, name, &at, problems) else {
            continue;
        };
        if fixed_names.contains(name.as_str()) {
            problems.push(
                Problem::at_key(at, format!("`{name}` is both a matrix axis and fixed in `launch`"))
                    .help("keep one: an axis varies it, `launch` fixes it for every cell"),
            );
            continue;
        }
        axes.push((name.as_str(), axis_values(fields, f, raw, &at, problems)));
    }
    let lengths: Vec<(&str, usize)> = axes.iter().map(|(name, values)| (*name, values.len())).collect();
    if !check_size(matrix, &lengths, problems) {
        return Vec::new();
    }

    let mut combos: Vec<Combo> = Vec::new();
    if !axes.is_empty() && axes.iter().all(|(_, values)| !values.is_empty()) {
        combos.push(Combo::default());
        for (name, values) in &axes {
            combos = combos
                .iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut next = c.clone();
                        next.original.insert(name.to_string(), v.clone());
                        next
                    })
                })
                .collect();
        }
    }

    for (i, entry) in matrix.exclude.iter().enumerate() {
        let at = path.key("exclude").index(i);
        if entry.0.is_empty() {
            problems.push(Problem::at(at, "exclude entry has no keys: it would remove every cell"));
            continue;
        }
        let Some(wanted) = entry_values(entry, fields, &at, problems) else {
            continue;
        };
        let count = combos.len();
        combos.retain(|c| !has_all(&c.original, &wanted));
        if combos.len() == count {
            problems.push(
                Problem::at(at, "exclude entry matches no cell").help("check its values against the matrix axes"),
            );
        }
    }
    if !axes.is_empty() && combos.is_empty() && !matrix.exclude.is_empty() {
        problems.push(Problem::at_key(path.key("exclude"), "exclude removes every cell of the matrix"));
    }

    for (i, entry) in matrix.include.iter().enumerate() {
        let at = path.key("include").index(i);
        if entry.0.is_empty() {
            problems.push(Problem::at(at, "include entry has no keys"));
            continue;
        }
        let Some(wanted) = entry_values(entry, fields, &at, problems) else {
            continue;
        };
        let mut joined = false;
        for combo in combos.iter_mut().filter(|c| c.from_include.is_none()) {
            if fits(&combo.original, &wanted) {
                joined = true;
                for (k, v) in &wanted {
                    combo.added.insert(k.clone(), v.clone());
                }
            }
        }
        if !joined {
            combos.push(Combo { original: wanted, added: Map::new(), from_include: Some(i) });
        }
    }

    if combos.is_empty() && problems.len() == before {
        problems.push(
            Problem::at_key(path.clone(), "matrix is empty")
                .help("give at least an `image` axis or an `include` entry"),
        );
    }
    if combos.len() > MAX_CELLS {
        problems.push(Problem::at_key(
            path.key("include"),
            format!("expands to {} cells with `include`; at most {MAX_CELLS} are allowed", combos.len()),
        ));
        return Vec::new();
    }

    let mut cells: Vec<Cell> = Vec::new();
    let mut ids = HashSet::new();
    for combo in &combos {
        let at = match combo.from_include {
            Some(i) => path.key("include").index(i),
            None => path.clone(),
        };
        let values = combo.value();
        let id = CellId(cell_id(&values));
        let missing: Vec<&str> = fields
            .list
            .iter()
            .filter(|f| f.required && !values.contains_key(f.name) && !fixed_names.contains(f.name))
            .map(|f| f.name)
            .collect();
        if let Some(name) = missing.first() {
            problems.push(Problem::at(at, format!("cell `{id}` has no `{name}`")).help(format!(
                "the {} provider needs `{name}` for every cell: an axis, an `include` key or `launch.{name}`",
                fields.provider
            )));
            continue;
        }
        if !ids.insert(id.clone()) {
            problems.push(Problem::at(at, format!("cell `{id}` is listed twice")));
            continue;
        }
        let mut launch = values.clone();
        launch.extend(fixed_values.iter().map(|(k, v)| (k.clone(), v.clone())));
        cells.push(Cell { index: cells.len(), id, values, launch });
    }
    cells
}

/// Joins a cell's values into an id that is safe as a file name.
fn cell_id(values: &Map<String, Value>) -> String {
    values.values().map(|v| sanitize(&label(v))).collect::<Vec<_>>().join("_")
}

fn sanitize(value: &str) -> String {
    let value = value.trim_start_matches("./");
    value.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+') { c } else { '-' }).collect()
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

    fn expand_yaml(matrix: &str, launch: &str) -> (Vec<Cell>, Vec<Problem>) {
        let matrix: MatrixSpec = serde_yaml::from_str(matrix).unwrap();
        let launch: crate::spec::LaunchSpec = serde_yaml::from_str(launch).unwrap();
        let mut problems = Vec::new();
        let fields = Fields { provider: "ec2", list: crate::providers::ec2::FIELDS, check: &|_, _, _| Vec::new() };
        let cells = expand(&matrix, &launch.fields, &fields, &mut problems);
        (cells, problems)
    }

    fn ids(cells: &[Cell]) -> Vec<&str> {
        cells.iter().map(|c| c.id.0.as_str()).collect()
    }

    #[test]
    fn product_minus_exclude_plus_include() {
        let (cells, problems) = expand_yaml(
            "image: [ami-0aaa, ami-0bbb]
instance_type: [t3.micro, m5.large]
subnet: [subnet-1]
security_groups: [[sg-web]]
exclude: [{ image: ami-0bbb, instance_type: m5.large }]
include: [{ image: ami-0ccc, instance_type: t3.small, subnet: subnet-1, security_groups: [sg-web] }]",
            "{}",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            ids(&cells),
            [
                "ami-0aaa_t3.micro_subnet-1_sg-web",
                "ami-0aaa_m5.large_subnet-1_sg-web",
                "ami-0bbb_t3.micro_subnet-1_sg-web",
                "ami-0ccc_t3.small_subnet-1_sg-web",
            ]
        );
    }

    #[test]
    fn include_adds_keys_to_the_cells_it_joins() {
        // Joins ami-1 only (it would overwrite ami-2's image), adding an instance type; the second
        // joins both (instance_type is not an axis), overwriting the added t3.nano.
        let (cells, problems) = expand_yaml(
            "image: [ami-1, ami-2]\ninclude: [{ image: ami-1, instance_type: t3.nano }, { instance_type: t3.micro }]",
            "{}",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ids(&cells), ["ami-1_t3.micro", "ami-2_t3.micro"]);
    }

    #[test]
    fn a_field_fixed_in_launch_is_not_an_axis_and_counts_as_given() {
        let (cells, problems) = expand_yaml("image: [ami-1, ami-2]", "instance_type: t3.micro");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ids(&cells), ["ami-1", "ami-2"], "fixed values are not part of the id");
        let (_, problems) = expand_yaml("image: ami-1\ninstance_type: [t3.micro]", "instance_type: t3.micro");
        assert_eq!(problems[0].message, "`instance_type` is both a matrix axis and fixed in `launch`");
    }

    #[test]
    fn unknown_axes_and_missing_fields_are_named() {
        let (_, problems) = expand_yaml("image: ami-1\ninstance_typ: t3.micro", "{}");
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages[0], "unknown key `instance_typ` in matrix");
        assert_eq!(problems[0].help.as_deref(), Some("did you mean `instance_type`?"));
        assert!(messages[1].starts_with("cell `ami-1` has no `instance_type`"), "{messages:?}");
    }
}
