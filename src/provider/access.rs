//! Whether the provider can be used as set up, asked before anything else (`run`, `plan --check`,
//! `sweep`): who its credentials belong to ([`Identity`]), or why they can't be used
//! ([`AccessError`]). A run that fails here launches nothing and writes no results.

/// Who a provider's credentials belong to, where the provider has accounts (EC2's STS
/// GetCallerIdentity answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account the run's machines are created in (EC2: the 12-digit AWS account id).
    pub account: String,
    /// Who acts in it (EC2: the caller's ARN: a user, or a role's session).
    pub principal: Option<String>,
}

/// Why the provider can't be used as set up, each a provider's own error saying, on one line, what
/// was tried and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The setup is wrong: no credentials, an expired session, an unknown profile, credentials
    /// refused, no region. The person running amiprobe must act; nothing was run (exit 2).
    #[error(transparent)]
    Unusable(Box<dyn std::error::Error + Send + Sync>),
    /// The provider could not be asked (no answer, its server failing): nothing was run, and
    /// the same command may work later (exit 1).
    #[error(transparent)]
    Unanswered(Box<dyn std::error::Error + Send + Sync>),
}
