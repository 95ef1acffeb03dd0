//! Matrix expansion over named axes: axes -> product -> `exclude` -> `include`, with GitHub
//! Actions' semantics.
//!
//! An axis is any launch field of the provider (`image`, `instance_type`, `root_volume`...): the
//! provider says which names exist and checks each value ([`Field`]). A value may stand for several
//! (a Packer manifest for each of its images) and decide other fields (an image that exists in one
//! region): the provider expands it ([`Expanded`]), and a combination keeps a tied value only where
//! the other field agrees, or takes it where that field has none. `exclude` drops every
//! combination that matches all keys of an entry. `include` adds its keys to each combination it can
//! join without overwriting a value that came from the axes; an entry that joins none becomes a cell
//! of its own. A field fixed in `launch:` applies to every cell and can't also be an axis.

mod cells;
mod fields;

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::cell::Cell;
use crate::provider::field::Expanded;
use crate::provider::Field;
use crate::spec::{self, FieldPath, MatrixSpec, Problem};

/// A provider's expansion of one value ([`crate::provider::ProviderSettings::expand_value`]).
pub type Expand<'a> = &'a dyn Fn(&str, &Value, &FieldPath) -> Result<Vec<Expanded>, Vec<Problem>>;

/// A provider's launch fields as the matrix checks them: its name (for messages), the fields, its
/// check of a value against its own settings (a `size` its section names), its expansion of a value
/// into those it stands for, and how a cell's id names a value.
pub struct Fields<'a> {
    pub provider: &'a str,
    pub list: &'a [Field],
    pub check: &'a dyn Fn(&str, &Value, &FieldPath) -> Vec<Problem>,
    pub expand: Expand<'a>,
    pub label: &'a dyn Fn(&str, &Value) -> String,
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
    /// What the machine launches with where it is not the cell's value (a manifest's image id).
    launch: Map<String, Value>,
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

    /// This combination with `name` set to `v` and its ties, or `None` where a value it already has
    /// (or `fixed`, `launch:`'s) disagrees: an image of one region never pairs with another region.
    fn with(&self, name: &str, v: &Expanded, fixed: Option<&Map<String, Value>>) -> Option<Combo> {
        let mut next = self.clone();
        let ties = v.ties.iter().filter(|(k, t)| fixed.and_then(|f| f.get(k)).is_none_or(|f| f != t));
        for (k, value) in std::iter::once((&name.to_string(), &v.value)).chain(ties.map(|(k, t)| (k, t))) {
            if fixed.is_some_and(|f| f.contains_key(k)) || next.original.get(k).is_some_and(|o| o != value) {
                return None;
            }
            next.original.insert(k.clone(), value.clone());
        }
        if let Some(launch) = &v.launch {
            next.launch.insert(name.to_string(), launch.clone());
        }
        Some(next)
    }
}

/// The fields `launch:` fixes: checked once, given to every cell, and never also an axis.
struct Fixed<'s> {
    names: HashSet<&'s str>,
    values: Map<String, Value>,
}

/// An axis by name, with its values (as the provider expanded them) and where each was written.
type Axis<'s> = (&'s str, Vec<(FieldPath, Expanded)>);

fn matrix_path() -> FieldPath {
    FieldPath::root().key("matrix")
}

/// Expands the matrix of a spec for `provider` (its name and fields), with the fields `launch:`
/// fixes; `notes` says what the axes left out (an image of a region not on the `region` axis).
pub fn expand(
    matrix: &MatrixSpec,
    fixed: &spec::Fields,
    fields: &Fields,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) -> Vec<Cell> {
    let before = problems.len();
    let fixed = read_fixed(fixed, fields, problems);
    let axes = read_axes(matrix, fields, &fixed, problems);
    let lengths: Vec<(&str, usize)> = axes.iter().map(|(name, values)| (*name, values.len())).collect();
    if !check_size(matrix, &lengths, problems) {
        return Vec::new();
    }
    let combos = product(&axes, &fixed.values);
    notes.extend(left_out(&axes, &combos, fields));
    let mut combos = exclude(matrix, fields, combos, !axes.is_empty(), problems);
    include(matrix, fields, &mut combos, problems);
    if !check_count(&combos, problems.len() == before, problems) {
        return Vec::new();
    }
    cells::build(&combos, fields, &fixed, problems)
}

/// `launch:`'s fields, each one value: a value that stands for several can't be fixed.
fn read_fixed<'s>(fixed: &'s spec::Fields, fields: &Fields, problems: &mut Vec<Problem>) -> Fixed<'s> {
    let launch = FieldPath::root().key("launch");
    let mut names = HashSet::new();
    let mut values = Map::new();
    for (name, raw) in &fixed.0 {
        let at = launch.key(name.clone());
        let Some(f) = fields::field(fields, name, &at, problems) else {
            continue;
        };
        names.insert(name.as_str());
        let Some(value) = fields::one_value(fields, f, raw, &at, problems) else {
            continue;
        };
        match fields::expanded(fields, name, &value, &at, problems).as_slice() {
            [one] => {
                values.insert(name.clone(), one.launch.clone().unwrap_or_else(|| one.value.clone()));
                for (k, t) in &one.ties {
                    values.entry(k.clone()).or_insert_with(|| t.clone());
                }
            }
            [] => {}
            many => problems.push(
                Problem::at(at, format!("stands for {} values; `launch` fixes one", many.len()))
                    .help(format!("make `{name}` a matrix axis")),
            ),
        }
    }
    Fixed { names, values }
}

/// The axes with their values, in the spec's order; an unknown or fixed field is a problem, not an axis.
fn read_axes<'s>(matrix: &'s MatrixSpec, fields: &Fields, fixed: &Fixed, problems: &mut Vec<Problem>) -> Vec<Axis<'s>> {
    let mut axes = Vec::new();
    for (name, raw) in &matrix.axes.0 {
        let at = matrix_path().key(name.clone());
        let Some(f) = fields::field(fields, name, &at, problems) else {
            continue;
        };
        if fixed.names.contains(name.as_str()) {
            problems.push(
                Problem::at_key(at, format!("`{name}` is both a matrix axis and fixed in `launch`"))
                    .help("keep one: an axis varies it, `launch` fixes it for every cell"),
            );
            continue;
        }
        let values = fields::axis_values(fields, f, raw, &at, problems)
            .into_iter()
            .flat_map(|(place, v)| {
                let each = fields::expanded(fields, name, &v, &place, problems);
                each.into_iter().map(move |e| (place.clone(), e))
            })
            .collect();
        axes.push((name.as_str(), values));
    }
    axes
}
/// The number of cells the axes multiply to, checked before any is built.
fn check_size(matrix: &MatrixSpec, lengths: &[(&str, usize)], problems: &mut Vec<Problem>) -> bool {
    let path = matrix_path();
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

/// Every combination of the axes' values that agree with each other's ties and `launch:`; none if
/// there are no axes or one has no values.
fn product(axes: &[Axis], fixed: &Map<String, Value>) -> Vec<Combo> {
    let mut combos: Vec<Combo> = Vec::new();
    if !axes.is_empty() && axes.iter().all(|(_, values)| !values.is_empty()) {
        combos.push(Combo::default());
        for (name, values) in axes {
            combos =
                combos.iter().flat_map(|c| values.iter().filter_map(|(_, v)| c.with(name, v, Some(fixed)))).collect();
        }
    }
    combos
}

/// What the axes left out: each tied value no combination kept, said with the tie that lost it
/// ("image `web-x86` in ap-south-1 is left out: ap-south-1 is not on the `region` axis").
fn left_out(axes: &[Axis], combos: &[Combo], fields: &Fields) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, values) in axes {
        for (place, v) in values.iter().filter(|(_, v)| !v.ties.is_empty()) {
            if combos.iter().any(|c| c.original.get(*name) == Some(&v.value)) {
                continue;
            }
            let ties: Vec<String> =
                v.ties.iter().map(|(k, t)| format!("{k} {}", crate::provider::field::label(t))).collect();
            notes.push(format!(
                "{place}: {name} `{}` ({}) is left out: no cell of the other axes or `launch` has its {}",
                (fields.label)(name, &v.value),
                ties.join(", "),
                v.ties.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(" and "),
            ));
        }
    }
    notes
}

/// Drops the combinations each `exclude` entry matches; an entry that matches none is a mistake.
fn exclude(
    matrix: &MatrixSpec,
    fields: &Fields,
    mut combos: Vec<Combo>,
    has_axes: bool,
    problems: &mut Vec<Problem>,
) -> Vec<Combo> {
    let path = matrix_path();
    for (i, entry) in matrix.exclude.iter().enumerate() {
        let at = path.key("exclude").index(i);
        if entry.0.is_empty() {
            problems.push(Problem::at(at, "exclude entry has no keys: it would remove every cell"));
            continue;
        }
        let Some(wanted) = fields::entry_values(entry, fields, &at, problems) else {
            continue;
        };
        let count = combos.len();
        combos.retain(|c| !wanted.iter().any(|w| has_all(&c.original, &w.original)));
        if combos.len() == count {
            problems.push(
                Problem::at(at, "exclude entry matches no cell").help("check its values against the matrix axes"),
            );
        }
    }
    if has_axes && combos.is_empty() && !matrix.exclude.is_empty() {
        problems.push(Problem::at_key(path.key("exclude"), "exclude removes every cell of the matrix"));
    }
    combos
}

/// Adds each `include` entry to the combinations from the axes it fits, or as a cell of its own.
fn include(matrix: &MatrixSpec, fields: &Fields, combos: &mut Vec<Combo>, problems: &mut Vec<Problem>) {
    for (i, entry) in matrix.include.iter().enumerate() {
        let at = matrix_path().key("include").index(i);
        if entry.0.is_empty() {
            problems.push(Problem::at(at, "include entry has no keys"));
            continue;
        }
        let Some(entries) = fields::entry_values(entry, fields, &at, problems) else {
            continue;
        };
        // Several images from one entry (a manifest) joining the axes' cells would each overwrite
        // the last in every cell they fit: only as cells of their own.
        let joins =
            |wanted: &Combo| combos.iter().any(|c| c.from_include.is_none() && fits(&c.original, &wanted.original));
        if entries.len() > 1 && entries.iter().any(joins) {
            problems.push(
                Problem::at(
                    at,
                    format!("include entry stands for {} images, which can't join the axes' cells", entries.len()),
                )
                .help("give the images as the `image` axis instead"),
            );
            continue;
        }
        for wanted in entries {
            let mut joined = false;
            for combo in combos.iter_mut().filter(|c| c.from_include.is_none()) {
                if fits(&combo.original, &wanted.original) {
                    joined = true;
                    for (k, v) in &wanted.original {
                        combo.added.insert(k.clone(), v.clone());
                    }
                    for (k, v) in &wanted.launch {
                        combo.launch.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            if !joined {
                combos.push(Combo { from_include: Some(i), ..wanted });
            }
        }
    }
}

/// Whether `combo` has every value `entry` gives: `exclude` drops such cells.
fn has_all(combo: &Map<String, Value>, entry: &Map<String, Value>) -> bool {
    entry.iter().all(|(k, v)| combo.get(k) == Some(v))
}

/// Whether `entry` can join `combo` without overwriting one of its values: `include` joins those.
fn fits(combo: &Map<String, Value>, entry: &Map<String, Value>) -> bool {
    entry.iter().all(|(k, v)| combo.get(k).is_none_or(|o| o == v))
}

/// The number of combinations once `include` is applied: none (said only when nothing else is wrong,
/// which would explain it) or too many. False if there are too many to build.
fn check_count(combos: &[Combo], nothing_else_wrong: bool, problems: &mut Vec<Problem>) -> bool {
    let path = matrix_path();
    if combos.is_empty() && nothing_else_wrong {
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
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_yaml(matrix: &str, launch: &str) -> (Vec<Cell>, Vec<Problem>) {
        let matrix: MatrixSpec = serde_yaml::from_str(matrix).unwrap();
        let launch: crate::spec::LaunchSpec = serde_yaml::from_str(launch).unwrap();
        let mut problems = Vec::new();
        let fields = Fields {
            provider: "ec2",
            list: crate::providers::ec2::FIELDS,
            check: &|_, _, _| Vec::new(),
            expand: &|_, v, _| Ok(vec![Expanded::itself(v.clone())]),
            label: &|_, v| crate::provider::field::label(v),
        };
        let cells = expand(&matrix, &launch.fields, &fields, &mut problems, &mut Vec::new());
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
