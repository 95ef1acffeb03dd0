//! What the qemu provider writes into the run's ledger: each cell's QEMU process, recorded before it
//! is started (pid 0 until it is known).

use std::fmt;

use crate::provider::{Created, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuProcess {
    pub pid: u32,
    pub cell: String,
}

impl QemuProcess {
    /// As the ledger holds it.
    pub fn recorded(self) -> Resource {
        Resource::new(self)
    }
}

/// The QEMU process a ledger entry is, if it is one.
pub fn of(resource: &Resource) -> Option<&QemuProcess> {
    resource.get::<QemuProcess>()
}

impl Created for QemuProcess {
    fn key(&self) -> String {
        self.pid.to_string()
    }

    fn cell(&self) -> &str {
        &self.cell
    }
}

impl fmt::Display for QemuProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "qemu process {} (cell {})", self.pid, self.cell)
    }
}
