//! What can go wrong in a cell that is not the image's doing, with the message the timeline and the
//! results show.

use std::path::PathBuf;

use crate::provider::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("failed to create {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("launch failed: {0}")]
    Launch(ProviderError),
    #[error("machine did not start: {0}")]
    DidNotStart(ProviderError),
    #[error("reboot failed: {0}")]
    Reboot(ProviderError),
    #[error("could not keep the machine: {0}")]
    Keep(ProviderError),
    #[error("failed to read console log: {0}")]
    ReadConsole(ProviderError),
    #[error("failed to write console log: {0}")]
    WriteConsole(std::io::Error),
    #[error("screenshot failed: {0}")]
    Screenshot(ProviderError),
    /// The run's login key could not be read for SSH (its reason as the key module words it).
    #[error("{0}")]
    LoginKey(String),
    /// A screenshot could not be stored (its reason as `capture::store` words it).
    #[error("{0}")]
    StoreScreenshot(String),
}
