//! Process exit codes: the contract with CI.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed.
    Passed = 0,
    /// Some check failed (or a cell could not be run).
    Failed = 1,
    /// The spec, the command line or the provider's setup (its credentials) is wrong; nothing was run.
    UsageError = 2,
    /// Interrupted by a signal; partial results were written (none when it came before the run began).
    Interrupted = 130,
}

impl Outcome {
    pub fn code(self) -> i32 {
        self as i32
    }
}
