//! The key a cell is matched by across nights.
//!
//! A cell's `id` names its image, and tonight's build of the same image has another id. The key is
//! formed from the cell's `params` instead, `name=value` in the spec's order joined by `, `, with
//! every value that changes nightly replaced by `image`: an AMI id (`ami-...`, in any axis) and a
//! path-like `image` value (a disk file: no `scheme:`, and a `/` or an ending in `.qcow2`, `.img`, `.raw`, `.vmdk`,
//! `.vhd`). Names resolved at run time (a Packer build's name, `ssm:/...`, a lookup) are already
//! stable and kept as they are. A cell without params is keyed by its id. Two cells of one run with
//! the same key (two AMIs on one axis) are told apart by their order: the second gets `#2`.
//!
//! The spec's `baseline.key` names the axes the key is formed from instead of all of them (results
//! keep them in `baseline.key`): an axis whose values change between nights by design is left out.
//! A cell that has none of the axes named is keyed by its id.

use crate::results::CellResult;

/// The key of one cell, before telling apart cells of one run that share it.
pub fn cell_key(cell: &CellResult) -> String {
    key_by(cell, None)
}

/// The key of one cell from the `axes` named (all of them when `None`); its id when it has none
/// of them.
fn key_by(cell: &CellResult, axes: Option<&[String]>) -> String {
    let parts: Vec<String> = cell
        .params
        .0
        .iter()
        .filter(|(name, _)| axes.is_none_or(|axes| axes.contains(name)))
        .map(|(name, value)| {
            let label = crate::provider::field::label(value);
            let nightly = label.starts_with("ami-") || (name == "image" && path_like(&label));
            format!("{name}={}", if nightly { "image" } else { label.as_str() })
        })
        .collect();
    if parts.is_empty() {
        return cell.id.clone();
    }
    parts.join(", ")
}

fn path_like(value: &str) -> bool {
    // `ssm:/path` and other `scheme:` names are stable names, not files.
    !value.contains(':')
        && (value.contains('/') || [".qcow2", ".img", ".raw", ".vmdk", ".vhd"].iter().any(|ext| value.ends_with(ext)))
}

/// Each cell with its key formed from `axes` (all when `None`), in the run's order; a key met again
/// gets `#2`, `#3`...
pub fn keyed<'a>(cells: &'a [CellResult], axes: Option<&[String]>) -> Vec<(String, &'a CellResult)> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    cells
        .iter()
        .map(|cell| {
            let base = key_by(cell, axes);
            let count = seen.entry(base.clone()).or_default();
            *count += 1;
            let key = if *count == 1 { base } else { format!("{base} #{count}") };
            (key, cell)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CellParams, CellStatus};

    fn cell(id: &str, params: serde_json::Value) -> CellResult {
        let serde_json::Value::Object(map) = params else { panic!("params must be an object") };
        let mut c: CellResult = serde_json::from_value(serde_json::json!({
            "id": id, "params": {}, "status": "passed"
        }))
        .expect("a minimal cell");
        c.params = CellParams(map);
        c.status = CellStatus::Passed;
        c
    }

    #[test]
    fn an_ami_id_is_replaced_so_tonights_build_matches() {
        let last = cell("ami-0aaa_t3.micro", serde_json::json!({"image": "ami-0aaa1111", "instance_type": "t3.micro"}));
        let tonight =
            cell("ami-0bbb_t3.micro", serde_json::json!({"image": "ami-0bbb2222", "instance_type": "t3.micro"}));
        assert_eq!(cell_key(&last), cell_key(&tonight));
        assert_eq!(cell_key(&tonight), "image=image, instance_type=t3.micro");
    }

    #[test]
    fn stable_names_and_other_axes_are_kept() {
        let a = cell("x", serde_json::json!({"image": "ssm:/golden/al2023", "instance_type": "t3.micro"}));
        let b = cell("y", serde_json::json!({"image": "ssm:/golden/al2023", "instance_type": "m7g.large"}));
        assert_ne!(cell_key(&a), cell_key(&b));
        let named = cell("ok", serde_json::json!({"image": "ok"}));
        assert_eq!(cell_key(&named), "image=ok");
    }

    #[test]
    fn a_disk_path_changes_nightly() {
        let a = cell("a", serde_json::json!({"image": "build/1234/disk.qcow2"}));
        let b = cell("b", serde_json::json!({"image": "build/1235/disk.qcow2"}));
        assert_eq!(cell_key(&a), cell_key(&b));
    }

    #[test]
    fn no_params_falls_back_to_the_id_and_twins_are_numbered() {
        assert_eq!(cell_key(&cell("lonely", serde_json::json!({}))), "lonely");
        let cells = vec![
            cell("ami-1", serde_json::json!({"image": "ami-1"})),
            cell("ami-2", serde_json::json!({"image": "ami-2"})),
        ];
        let keys: Vec<String> = keyed(&cells, None).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["image=image", "image=image #2"]);
    }

    #[test]
    fn the_spec_names_the_axes_of_the_key() {
        let last = cell("a", serde_json::json!({"image": "ami-1", "build": "1041", "instance_type": "t3.micro"}));
        let tonight = cell("b", serde_json::json!({"image": "ami-2", "build": "1042", "instance_type": "t3.micro"}));
        let axes = ["image".to_string(), "instance_type".to_string()];
        let key = |c: &CellResult| keyed(std::slice::from_ref(c), Some(&axes)).remove(0).0;
        assert_eq!(key(&last), key(&tonight));
        assert_eq!(key(&tonight), "image=image, instance_type=t3.micro");
        assert_ne!(cell_key(&last), cell_key(&tonight), "by every axis the build differs");
        let other = ["zone".to_string()];
        assert_eq!(keyed(std::slice::from_ref(&last), Some(&other))[0].0, "a", "none of the axes: its id");
    }
}
