//! Matrix expansion: axes -> product -> `exclude` -> `include`, with GitHub Actions' semantics.
//!
//! `exclude` drops every combination that matches all keys of an entry. `include` adds its keys to
//! each combination it can join without overwriting a value that came from the axes; an entry that
//! joins none becomes a cell of its own.
//!
//! The size is checked before anything is built: the product of the axes is computed first, so a
//! 1000 x 1000 matrix is refused at once rather than expanded, and every step after it is linear in
//! the cells (or cells times `include`/`exclude` entries, both capped).

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use super::ProviderPlan;
use crate::spec::{FieldPath, MatrixEntry, MatrixSpec, Problem};

/// Most cells a plan may have: far more than any real matrix (a few hundred), and still planned in
/// a fraction of a second.
pub const MAX_CELLS: usize = 10_000;

/// Most `include` or `exclude` entries: each is matched against every cell.
pub const MAX_ENTRIES: usize = 1_000;

/// A stable, readable cell id built from the cell's values, e.g. `ami-0aaa_t3.micro_subnet-1_sg-web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CellId(pub String);

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One machine to launch and check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub id: CellId,
    /// Position in the whole plan; kept when the plan is sharded.
    #[serde(skip)]
    pub index: usize,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

/// A combination as it is being built: the values from the axes, and those added by `include`.
#[derive(Debug, Clone, Default)]
struct Combo {
    original: MatrixEntry,
    added: MatrixEntry,
    /// Which `include` entry created it, for error messages.
    from_include: Option<usize>,
}

impl Combo {
    fn value(&self) -> MatrixEntry {
        MatrixEntry {
            image: self.original.image.clone().or(self.added.image.clone()),
            instance_type: self.original.instance_type.clone().or(self.added.instance_type.clone()),
            subnet: self.original.subnet.clone().or(self.added.subnet.clone()),
            security_groups: self.original.security_groups.clone().or(self.added.security_groups.clone()),
        }
    }
}

/// The keys an entry sets, as (axis name, value) for comparison.
fn keys(entry: &MatrixEntry) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(v) = &entry.image {
        out.push(("image", v.clone()));
    }
    if let Some(v) = &entry.instance_type {
        out.push(("instance_type", v.clone()));
    }
    if let Some(v) = &entry.subnet {
        out.push(("subnet", v.clone()));
    }
    if let Some(v) = &entry.security_groups {
        out.push(("security_groups", v.join("+")));
    }
    out
}

/// Whether `combo` has every value `entry` gives: `exclude` drops such cells.
fn has_all(combo: &MatrixEntry, entry: &MatrixEntry) -> bool {
    fn same<T: PartialEq>(combo: &Option<T>, wanted: &Option<T>) -> bool {
        wanted.is_none() || combo == wanted
    }
    same(&combo.image, &entry.image)
        && same(&combo.instance_type, &entry.instance_type)
        && same(&combo.subnet, &entry.subnet)
        && same(&combo.security_groups, &entry.security_groups)
}

/// Whether `entry` can join `combo` without overwriting one of its values: `include` joins those.
fn fits(combo: &MatrixEntry, entry: &MatrixEntry) -> bool {
    fn free<T: PartialEq>(combo: &Option<T>, wanted: &Option<T>) -> bool {
        wanted.is_none() || combo.is_none() || combo == wanted
    }
    free(&combo.image, &entry.image)
        && free(&combo.instance_type, &entry.instance_type)
        && free(&combo.subnet, &entry.subnet)
        && free(&combo.security_groups, &entry.security_groups)
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

pub fn expand(matrix: &MatrixSpec, provider: &ProviderPlan, problems: &mut Vec<Problem>) -> Vec<Cell> {
    let path = FieldPath::root().key("matrix");
    let before = problems.len();

    let axis = |values: &Option<crate::spec::OneOrMany<String>>,
                name: &str,
                problems: &mut Vec<Problem>|
     -> Vec<Option<String>> {
        match values {
            None => vec![None],
            Some(v) if v.0.is_empty() => {
                problems.push(Problem::at(path.key(name), format!("axis `{name}` has no values")));
                vec![None]
            }
            Some(v) => v.0.iter().cloned().map(Some).collect(),
        }
    };
    let images = axis(&matrix.image, "image", problems);
    let types = axis(&matrix.instance_type, "instance_type", problems);
    let subnets = axis(&matrix.subnet, "subnet", problems);
    let groups: Vec<Option<Vec<String>>> = match &matrix.security_groups {
        None => vec![None],
        Some(g) if g.0.is_empty() || g.0.iter().any(Vec::is_empty) => {
            problems.push(Problem::at(path.key("security_groups"), "empty security group list"));
            vec![None]
        }
        Some(g) => g.0.iter().cloned().map(Some).collect(),
    };
    if let ProviderPlan::Qemu(_) = provider {
        for (name, set) in [
            ("instance_type", matrix.instance_type.is_some()),
            ("subnet", matrix.subnet.is_some()),
            ("security_groups", matrix.security_groups.is_some()),
        ] {
            if set {
                problems.push(
                    Problem::at_key(path.key(name), format!("the qemu provider has no `{name}` axis"))
                        .help("qemu cells vary by `image` only"),
                );
            }
        }
    }

    let lengths: Vec<(&str, usize)> = [
        ("image", matrix.image.as_ref().map(|v| v.0.len())),
        ("instance_type", matrix.instance_type.as_ref().map(|v| v.0.len())),
        ("subnet", matrix.subnet.as_ref().map(|v| v.0.len())),
        ("security_groups", matrix.security_groups.as_ref().map(|g| g.0.len())),
    ]
    .into_iter()
    .filter_map(|(name, n)| n.map(|n| (name, n)))
    .collect();
    if !check_size(matrix, &lengths, problems) {
        return Vec::new();
    }

    let has_axes = matrix.image.is_some()
        || matrix.instance_type.is_some()
        || matrix.subnet.is_some()
        || matrix.security_groups.is_some();
    let mut combos: Vec<Combo> = Vec::new();
    if has_axes {
        for image in &images {
            for instance_type in &types {
                for subnet in &subnets {
                    for security_groups in &groups {
                        combos.push(Combo {
                            original: MatrixEntry {
                                image: image.clone(),
                                instance_type: instance_type.clone(),
                                subnet: subnet.clone(),
                                security_groups: security_groups.clone(),
                            },
                            ..Combo::default()
                        });
                    }
                }
            }
        }
    }

    for (i, entry) in matrix.exclude.iter().enumerate() {
        let at = path.key("exclude").index(i);
        if keys(entry).is_empty() {
            problems.push(Problem::at(at, "exclude entry has no keys: it would remove every cell"));
            continue;
        }
        let count = combos.len();
        combos.retain(|c| !has_all(&c.original, entry));
        if combos.len() == count {
            problems.push(
                Problem::at(at, "exclude entry matches no cell").help("check its values against the matrix axes"),
            );
        }
    }
    if has_axes && combos.is_empty() && !matrix.exclude.is_empty() {
        problems.push(Problem::at_key(path.key("exclude"), "exclude removes every cell of the matrix"));
    }

    for (i, entry) in matrix.include.iter().enumerate() {
        if keys(entry).is_empty() {
            problems.push(Problem::at(path.key("include").index(i), "include entry has no keys"));
            continue;
        }
        let mut joined = false;
        for combo in combos.iter_mut().filter(|c| c.from_include.is_none()) {
            if fits(&combo.original, entry) {
                joined = true;
                let add = &mut combo.added;
                add.image = entry.image.clone().or(add.image.take());
                add.instance_type = entry.instance_type.clone().or(add.instance_type.take());
                add.subnet = entry.subnet.clone().or(add.subnet.take());
                add.security_groups = entry.security_groups.clone().or(add.security_groups.take());
            }
        }
        if !joined {
            combos.push(Combo { original: entry.clone(), added: MatrixEntry::default(), from_include: Some(i) });
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
        let value = combo.value();
        let Some(image) = value.image.clone() else {
            problems.push(Problem::at(at, "cell has no `image`"));
            continue;
        };
        if let ProviderPlan::Ec2(_) = provider {
            if value.instance_type.is_none() {
                problems.push(
                    Problem::at(at.clone(), format!("cell `{}` has no `instance_type`", cell_id(&value)))
                        .help("EC2 needs an instance type for every cell"),
                );
                continue;
            }
        }
        let id = CellId(cell_id(&value));
        if !ids.insert(id.clone()) {
            problems.push(Problem::at(at, format!("cell `{id}` is listed twice")));
            continue;
        }
        cells.push(Cell {
            index: cells.len(),
            id,
            image,
            instance_type: value.instance_type,
            subnet: value.subnet,
            security_groups: value.security_groups.unwrap_or_default(),
        });
    }
    cells
}

/// Joins a cell's values into an id that is safe as a file name.
fn cell_id(value: &MatrixEntry) -> String {
    let parts: Vec<String> = keys(value).into_iter().map(|(_, v)| sanitize(&v)).collect();
    parts.join("_")
}

fn sanitize(value: &str) -> String {
    let value = value.trim_start_matches("./");
    value.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+') { c } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Ec2Spec, OneOrMany, SecurityGroups};

    fn ec2() -> ProviderPlan {
        ProviderPlan::Ec2(serde_yaml::from_str::<Ec2Spec>("{}").unwrap())
    }

    fn entry(image: Option<&str>, instance_type: Option<&str>) -> MatrixEntry {
        MatrixEntry {
            image: image.map(Into::into),
            instance_type: instance_type.map(Into::into),
            ..MatrixEntry::default()
        }
    }

    fn many(values: &[&str]) -> Option<OneOrMany<String>> {
        Some(OneOrMany(values.iter().map(|v| v.to_string()).collect()))
    }

    #[test]
    fn product_minus_exclude_plus_include() {
        let matrix = MatrixSpec {
            image: many(&["ami-0aaa", "ami-0bbb"]),
            instance_type: many(&["t3.micro", "m5.large"]),
            subnet: many(&["subnet-1"]),
            security_groups: Some(SecurityGroups(vec![vec!["sg-web".into()]])),
            exclude: vec![entry(Some("ami-0bbb"), Some("m5.large"))],
            include: vec![MatrixEntry {
                image: Some("ami-0ccc".into()),
                instance_type: Some("t3.small".into()),
                subnet: Some("subnet-1".into()),
                security_groups: Some(vec!["sg-web".into()]),
            }],
        };
        let mut problems = Vec::new();
        let cells = expand(&matrix, &ec2(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let ids: Vec<&str> = cells.iter().map(|c| c.id.0.as_str()).collect();
        assert_eq!(
            ids,
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
        let matrix = MatrixSpec {
            image: many(&["ami-1", "ami-2"]),
            instance_type: None,
            subnet: None,
            security_groups: None,
            exclude: vec![],
            // Joins ami-1 only (it would overwrite ami-2's image), adding an instance type.
            include: vec![entry(Some("ami-1"), Some("t3.nano")), entry(None, Some("t3.micro"))],
        };
        let mut problems = Vec::new();
        let cells = expand(&matrix, &ec2(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // The second include joins both (instance_type is not an axis), overwriting the added t3.nano.
        let ids: Vec<&str> = cells.iter().map(|c| c.id.0.as_str()).collect();
        assert_eq!(ids, ["ami-1_t3.micro", "ami-2_t3.micro"]);
    }
}
