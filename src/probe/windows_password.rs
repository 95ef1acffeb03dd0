//! The `windows_password` probe: the administrator password the platform holds, encrypted to the
//! run's key, fetched and decrypted. The password itself goes nowhere: only its length is told.

use super::rdp;
use super::ProbeEnv;
use crate::provider::{ErrorKind, ProviderError};

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("this provider keeps no administrator password")]
    NotKept,
    #[error("{0}")]
    Fetch(ProviderError),
    #[error("no administrator password yet")]
    NotYet,
    #[error("{0}")]
    Decrypt(String),
    #[error("GetPasswordData did not answer in time")]
    NoAnswer,
}

impl PasswordError {
    /// Trying again can't help: nothing will change the answer.
    pub fn settled(&self) -> bool {
        // The same data decrypts the same way next time; a refused caller is refused again.
        matches!(self, PasswordError::NotKept | PasswordError::Decrypt(_)) || self.platform()
    }

    /// The platform refused the caller: the cell is in error, the image is not to blame.
    pub fn platform(&self) -> bool {
        matches!(self, PasswordError::Fetch(e) if e.kind == ErrorKind::Refused)
    }
}

/// Fetches the encrypted administrator password and decrypts it, within RDP's attempt time.
pub async fn attempt(env: &ProbeEnv) -> Result<String, PasswordError> {
    match tokio::time::timeout(rdp::TIMEOUT, fetch(env)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(PasswordError::NoAnswer),
    }
}

async fn fetch(env: &ProbeEnv) -> Result<String, PasswordError> {
    let (source, key) = env.password.as_ref().ok_or(PasswordError::NotKept)?;
    let data = source.encrypted().await.map_err(PasswordError::Fetch)?.ok_or(PasswordError::NotYet)?;
    let password = key.decrypt_password(&data).map_err(|e| PasswordError::Decrypt(e.to_string()))?;
    Ok(format!(
        "administrator password generated ({} characters), decrypted with the run's key",
        password.chars().count()
    ))
}
