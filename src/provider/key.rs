//! The run's one key: generated here, whatever the provider; ed25519, or RSA-2048 for Windows
//! (EC2 encrypts a Windows administrator password to an RSA key only). ec2 imports its public half
//! into each region the run uses (`ec2/key_pair.rs`); qemu writes it into each cell's NoCloud seed.
//! The private key never leaves this machine, and is only written down when asked
//! (`launch.keep_private_key`). It also logs SSH probes in and decrypts Windows passwords.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::spec::Os;

/// The file the private key is kept in (`launch.keep_private_key`), under the results directory.
pub const PRIVATE_KEY_FILE: &str = "keys/id_ed25519";
/// The same for a Windows run's RSA key.
pub const PRIVATE_RSA_KEY_FILE: &str = "keys/id_rsa";

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
    pub fn generate(run_id: &str, os: Os) -> Result<RunKey, String> {
        let name = format!("amiprobe-{run_id}");
        let failed = |e: ssh_key::Error| format!("failed to generate the run's key: {e}");
        let mut private = match os {
            Os::Linux => PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).map_err(failed)?,
            // 2048 bits: what EC2 imports for Windows, and quick to make.
            Os::Windows => {
                let pair = RsaKeypair::random(&mut rand_core::OsRng, 2048).map_err(failed)?;
                PrivateKey::try_from(KeypairData::Rsa(pair)).map_err(failed)?
            }
        };
        private.set_comment(&name);
        let public =
            private.public_key().to_openssh().map_err(|e| format!("failed to encode the run's public key: {e}"))?;
        Ok(RunKey { name, public, private })
    }

    /// The private key as the SSH client takes it (it has its own key types: they cross over as
    /// OpenSSH text, in memory only).
    pub fn ssh_client_key(&self) -> Result<russh::keys::PrivateKey, String> {
        let text =
            self.private.to_openssh(LineEnding::LF).map_err(|e| format!("failed to encode the run's key: {e}"))?;
        russh::keys::decode_secret_key(&text, None).map_err(|e| format!("failed to load the run's key for ssh: {e}"))
    }

    /// Decrypts what EC2's GetPasswordData returns (base64 of the password encrypted with RSA
    /// PKCS#1 v1.5 to this key) into the password.
    pub fn decrypt_password(&self, password_data: &str) -> Result<String, String> {
        use base64::Engine;
        let KeypairData::Rsa(pair) = self.private.key_data() else {
            return Err("the run's key is not an RSA key: EC2 encrypts Windows passwords to RSA keys only".into());
        };
        let key = rsa_private_key(pair)?;
        // EC2 wraps the base64 in CR LF.
        let compact: String = password_data.chars().filter(|c| !c.is_whitespace()).collect();
        let encrypted = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("the password data is not base64: {e}"))?;
        let plain = key
            .decrypt(rsa::Pkcs1v15Encrypt, &encrypted)
            .map_err(|e| format!("the password data does not decrypt with the run's key: {e}"))?;
        String::from_utf8(plain).map_err(|_| "the decrypted password is not text".to_string())
    }

    /// Writes the private key (OpenSSH format, mode 0600) to `results/keys/id_ed25519` (`id_rsa`).
    pub fn keep(&self, results_dir: &Path) -> Result<(), String> {
        let name = match self.private.algorithm() {
            Algorithm::Rsa { .. } => PRIVATE_RSA_KEY_FILE,
            _ => PRIVATE_KEY_FILE,
        };
        let file = results_dir.join(name);
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

/// The RSA key as the `rsa` crate takes it. Made here from its parts: ssh-key 0.6's own conversion
/// passes `p` twice instead of `p` and `q`, and fails.
fn rsa_private_key(pair: &RsaKeypair) -> Result<rsa::RsaPrivateKey, String> {
    let int = |m: &ssh_key::Mpint| {
        m.as_positive_bytes().map(rsa::BigUint::from_bytes_be).ok_or("the run's RSA key has a negative part")
    };
    let parts = [
        int(&pair.public.n)?,
        int(&pair.public.e)?,
        int(&pair.private.d)?,
        int(&pair.private.p)?,
        int(&pair.private.q)?,
    ];
    let [n, e, d, p, q] = parts;
    rsa::RsaPrivateKey::from_components(n, e, d, vec![p, q])
        .map_err(|e| format!("failed to use the run's RSA key: {e}"))
}

/// The run's key, made by whichever cell needs it first and the same for every later one; written
/// to the results directory at that moment when `launch.keep_private_key` says so.
pub struct OnceKey {
    cell: tokio::sync::OnceCell<std::sync::Arc<RunKey>>,
    os: Os,
}

impl OnceKey {
    /// The key of a run whose images run `os`.
    pub fn new(os: Os) -> OnceKey {
        OnceKey { cell: tokio::sync::OnceCell::new(), os }
    }

    /// The key; `cell_dir` is the asking cell's directory (`RESULTS/cells/ID`).
    pub async fn get(&self, run_id: &str, keep: bool, cell_dir: &Path) -> Result<std::sync::Arc<RunKey>, String> {
        let key = self
            .cell
            .get_or_try_init(|| async {
                let key = RunKey::generate(run_id, self.os)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What EC2 does to a Windows password, undone with the run's key.
    #[test]
    fn a_password_encrypted_to_the_public_key_decrypts() {
        use base64::Engine;
        let key = RunKey::generate("test", Os::Windows).unwrap();
        assert!(key.public.starts_with("ssh-rsa "), "{}", key.public);
        let KeypairData::Rsa(pair) = key.private.key_data() else { panic!("not rsa") };
        let public = rsa::RsaPublicKey::from(&rsa_private_key(pair).unwrap());
        let sealed = public.encrypt(&mut rand_core::OsRng, rsa::Pkcs1v15Encrypt, b"Pa55w0rd!x").unwrap();
        let data = format!("\r\n{}\r\n", base64::engine::general_purpose::STANDARD.encode(sealed));
        assert_eq!(key.decrypt_password(&data).unwrap(), "Pa55w0rd!x");
        let linux = RunKey::generate("test", Os::Linux).unwrap();
        assert!(linux.decrypt_password(&data).unwrap_err().contains("not an RSA key"));
        // The SSH client takes either.
        assert!(key.ssh_client_key().is_ok() && linux.ssh_client_key().is_ok());
    }
}
