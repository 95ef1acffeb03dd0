//! The run's one key: an ed25519 key generated here, whatever the provider. ec2 imports its public
//! half into each region the run uses (`ec2/key_pair.rs`); qemu writes it into each cell's NoCloud
//! seed. The private key never leaves this machine, and is only written down when asked
//! (`launch.keep_private_key`).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// The file the private key is kept in (`launch.keep_private_key`), under the results directory.
pub const PRIVATE_KEY_FILE: &str = "keys/id_ed25519";

/// A key generated for one run.
pub struct RunKey {
    /// `amiprobe-<run id>`, the same in every region.
    pub name: String,
    /// OpenSSH public key (`ssh-ed25519 AAAA... amiprobe-<run id>`): what ImportKeyPair gets, and
    /// what a NoCloud seed's `public-keys` lists.
    pub public: String,
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
}

/// The run's key, made by whichever cell needs it first and the same for every later one; written
/// to the results directory at that moment when `launch.keep_private_key` says so.
#[derive(Default)]
pub struct OnceKey(tokio::sync::OnceCell<std::sync::Arc<RunKey>>);

impl OnceKey {
    /// The key; `cell_dir` is the asking cell's directory (`RESULTS/cells/ID`).
    pub async fn get(&self, run_id: &str, keep: bool, cell_dir: &Path) -> Result<std::sync::Arc<RunKey>, String> {
        let key = self
            .0
            .get_or_try_init(|| async {
                let key = RunKey::generate(run_id)?;
                if keep {
                    let results = cell_dir.parent().and_then(Path::parent).unwrap_or(cell_dir);
                    key.keep(results)?;
                }
                Ok::<_, String>(std::sync::Arc::new(key))
            })
            .await?;
        Ok(key.clone())
    }
}
