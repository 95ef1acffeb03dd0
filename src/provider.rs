//! The provider contract: what the engine, the plan and the probes know of where a cell's machine
//! runs. It names no provider: each one (`crate::providers`) implements [`Provider`] and [`Machine`]
//! for a run, and [`ProviderKind`] for the registry that reads the spec's `provider:` section.
//!
//! Whatever a provider creates is written into the run's [`Ledger`] before the call that creates it,
//! so that the engine can remove it even when the task that created it panicked or was abandoned.

pub mod access;
pub mod agent;
pub mod cache;
pub mod cleanup;
pub mod endpoint;
pub mod error;
pub mod field;
pub mod key;
pub mod kind;
pub mod ledger;
pub mod lifecycle;
pub mod machine;
pub mod promotion;
pub mod section;

pub use access::{AccessError, Identity};
pub use agent::{Agent, AgentCommand, AgentError, AgentOutput};
pub use cleanup::CleanupStep;
pub use endpoint::{ConnectMeaning, Endpoint, Unreachable};
pub use error::{ErrorKind, Health, ProviderError};
pub use field::Field;
pub use key::RunKey;
pub use kind::{
    FlagsRefused, LaunchPlan, PolicyNeeds, ProviderKind, ProviderSettings, RunFlags, RunSettings, Selection,
    SweepReport, SweepRequest,
};
pub use ledger::{Created, Ledger, Resource};
pub use machine::{AdminPassword, Checked, LaunchContext, Machine, Provider};
pub use promotion::{ImagePromotion, PromotionRequest};

/// Locks a mutex whatever a panicking holder left: every value kept behind one here stays valid
/// between statements (a list, a map, a counter), so a panic elsewhere is no reason to stop.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
