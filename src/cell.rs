//! A cell: one machine of the matrix to launch and check, with every launch field it was given.
//!
//! Cells are made by `plan` (matrix expansion) and consumed by the engine and the providers; this
//! module is what they share, so that providers never depend on the plan itself.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub id: CellId,
    /// Position in the whole plan; kept when the plan is sharded.
    #[serde(skip)]
    pub index: usize,
    /// The cell's value of each axis (and of each field an `include` entry added), in spec order:
    /// what sets it apart from the other cells.
    #[serde(flatten)]
    pub values: Map<String, Value>,
    /// Everything it launches with: its values, then the fields `launch:` fixes for every cell.
    #[serde(skip)]
    pub launch: Map<String, Value>,
}

impl Cell {
    /// A launch field of this cell, as text (`image`, `instance_type`...).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.launch.get(name).and_then(Value::as_str)
    }

    /// A launch field of this cell that is a list of text (`security_groups`); empty when unset.
    pub fn texts(&self, name: &str) -> Vec<String> {
        let items = self.launch.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        items.iter().filter_map(Value::as_str).map(str::to_string).collect()
    }

    /// The image the cell boots, which every provider requires.
    pub fn image(&self) -> &str {
        self.text("image").unwrap_or_default()
    }
}

impl CellId {
    /// A hash of the id that never changes across platforms and releases (shards, client tokens).
    pub fn stable_hash(&self) -> u64 {
        fnv1a(self.0.as_bytes())
    }
}

/// FNV-1a, 64-bit: stable across platforms and releases, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
