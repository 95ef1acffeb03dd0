//! What a provider reports when a step did not work, and what the engine does about it.

/// Something a provider did not manage, as a lowercase fragment ("failed to start qemu: ...").
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub message: String,
    pub kind: ErrorKind,
}

/// What the engine does about a [`ProviderError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The step failed.
    Failed,
    /// The request was refused as unsupported (e.g. screenshots on a metal instance): not a failure.
    Unsupported,
    /// The run was interrupted before the step began; what earlier steps created is removed.
    Interrupted,
    /// The platform refused the caller (its permissions or credentials): no retry helps, and the
    /// image is not to blame.
    Refused,
}

impl ProviderError {
    pub fn new(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Failed }
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Unsupported }
    }

    pub fn interrupted(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Interrupted }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Refused }
    }
}

/// A running machine found unwell by its provider, with the reason as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The image's fault (an impaired instance reachability check): the cell fails.
    ImageFailure(String),
    /// The platform's fault, not the image's (an impaired system status check, a machine the platform
    /// ended): the cell is an error.
    InfrastructureError(String),
}
