//! One cleanup action and how it went: what a provider reports for every removal it makes, and what
//! the engine reads to tell what was not removed and whether the run's final sweep worked.

use super::Resource;

/// One cleanup action and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupStep {
    pub action: String,
    pub ok: bool,
    pub message: String,
    /// How many attempts it took, when more than one (EC2 may be slow to find what was just made).
    pub attempts: Option<u32>,
    /// The key of the ledger resource this step removed or tried to remove, if it was one.
    pub resource: Option<String>,
    /// Whether this step is the run's final sweep by tag: the safety net behind the ledger.
    pub sweep: bool,
}

impl CleanupStep {
    pub fn ok(action: impl Into<String>) -> Self {
        CleanupStep {
            action: action.into(),
            ok: true,
            message: String::new(),
            attempts: None,
            resource: None,
            sweep: false,
        }
    }

    pub fn failed(action: impl Into<String>, message: impl Into<String>) -> Self {
        CleanupStep { ok: false, message: message.into(), ..CleanupStep::ok(action) }
    }

    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = (attempts > 1).then_some(attempts);
        self
    }

    /// The step concerns this ledger resource.
    pub fn of(mut self, resource: &Resource) -> Self {
        self.resource = Some(resource.key());
        self
    }

    /// The step concerns the resource with this key.
    pub fn of_key(mut self, key: impl Into<String>) -> Self {
        self.resource = Some(key.into());
        self
    }

    /// The step is (part of) the run's final sweep.
    pub fn sweeping(mut self) -> Self {
        self.sweep = true;
        self
    }
}
