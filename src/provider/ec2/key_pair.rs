//! The run's one key pair: an ed25519 key generated here and imported into each region the run
//! uses (ImportKeyPair), so that the private key never leaves this machine and a run costs two
//! key pair calls per region, not two per cell.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_sdk_ec2::types::TagSpecification;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use super::api::{Api, ApiError};
use crate::provider::{Ledger, Resource};

/// The file the private key is kept in (`launch.keep_private_key`), under the results directory.
pub const PRIVATE_KEY_FILE: &str = "keys/id_ed25519";

/// A key generated for one run.
pub struct RunKey {
    /// `amiprobe-<run id>`, the same in every region.
    pub name: String,
    /// OpenSSH public key (`ssh-ed25519 AAAA... amiprobe-<run id>`), what ImportKeyPair gets.
    public: String,
    private: PrivateKey,
}

impl RunKey {
    pub fn generate(run_id: &str) -> Result<RunKey, String> {
        let name = format!("amiprobe-{run_id}");
        let mut private = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| format!("failed to generate the run's key: {e}"))?;
        private.set_comment(&name);
        let public =
            private.public_key().to_openssh().map_err(|e| format!("failed to encode the run's public key: {e}"))?;
        Ok(RunKey { name, public, private })
    }

    /// Writes the private key (OpenSSH format, mode 0600) to `results/keys/id_ed25519`.
    pub fn keep(&self, results_dir: &Path) -> Result<(), String> {
        let file = results_dir.join(PRIVATE_KEY_FILE);
        let text = self.private.to_openssh(LineEnding::LF).map_err(|e| format!("failed to encode the key: {e}"))?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| format!("failed to create {}: {e}", file.display()))?;
        std::io::Write::write_all(&mut out, text.as_bytes())
            .map_err(|e| format!("failed to write {}: {e}", file.display()))
    }

    /// Imports the key into the region `api` talks to, recorded in the ledger before the call. A
    /// retry that finds the key already there (the first attempt's answer was lost) is the same key.
    pub async fn import(&self, api: &Api, tags: TagSpecification, ledger: &Ledger) -> Result<Resource, ApiError> {
        let resource = Resource::KeyPair { name: self.name.clone(), cell: String::new(), region: api.region.clone() };
        ledger.record(resource.clone());
        let imported = api
            .call(&api.buckets.mutating, "ImportKeyPair", || {
                api.client
                    .import_key_pair()
                    .key_name(&self.name)
                    .public_key_material(aws_sdk_ec2::primitives::Blob::new(self.public.as_bytes()))
                    .tag_specifications(tags.clone())
                    .send()
            })
            .await;
        match imported {
            Ok(_) => Ok(resource),
            Err(e) if e.is("InvalidKeyPair.Duplicate") && e.attempts > 1 => Ok(resource),
            // A server error may have imported it after all: it stays in the ledger, and the run's
            // end deletes it (deleting a key that does not exist is no error).
            Err(e) if e.transient => Err(e),
            Err(e) => {
                ledger.removed(&resource);
                Err(e)
            }
        }
    }
}
