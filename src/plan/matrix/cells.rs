//! The cells of an expanded matrix: each combination with the fields `launch:` fixes, named by an id
//! made of its values as the provider names them (safe as a file name), checked for required fields and duplicates.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{matrix_path, Combo, Fields, Fixed};
use crate::cell::{Cell, CellId};
use crate::spec::Problem;

/// The cells of `combos`, in order; a combination missing a required field, or with the id of an
/// earlier one, is a problem instead.
pub(super) fn build(combos: &[Combo], fields: &Fields, fixed: &Fixed, problems: &mut Vec<Problem>) -> Vec<Cell> {
    let path = matrix_path();
    let mut cells: Vec<Cell> = Vec::new();
    let mut ids = HashSet::new();
    for combo in combos {
        let at = match combo.from_include {
            Some(i) => path.key("include").index(i),
            None => path.clone(),
        };
        let values = combo.value();
        let id = CellId(cell_id(fields, &values));
        if let Some(name) = missing_field(fields, fixed, &values) {
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
        launch.extend(combo.launch.iter().map(|(k, v)| (k.clone(), v.clone())));
        launch.extend(fixed.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        cells.push(Cell { index: cells.len(), id, values, launch });
    }
    cells
}

/// The first field the provider requires that neither the cell's values nor `launch:` give.
fn missing_field<'a>(fields: &Fields<'a>, fixed: &Fixed, values: &Map<String, Value>) -> Option<&'a str> {
    fields
        .list
        .iter()
        .find(|f| f.required && !values.contains_key(f.name) && !fixed.names.contains(f.name))
        .map(|f| f.name)
}

/// Joins a cell's values, as the provider names them, into an id that is safe as a file name.
fn cell_id(fields: &Fields, values: &Map<String, Value>) -> String {
    values.iter().map(|(k, v)| sanitize(&(fields.label)(k, v))).collect::<Vec<_>>().join("_")
}

fn sanitize(value: &str) -> String {
    let value = value.trim_start_matches("./");
    value.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+') { c } else { '-' }).collect()
}
