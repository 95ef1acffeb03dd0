//! The run's one key: generated here, whatever the provider; ed25519, or RSA-2048 for Windows
//! (EC2 encrypts a Windows administrator password to an RSA key only). ec2 imports its public half
//! into each region the run uses (`ec2/key_pair.rs`); qemu writes it into each cell's NoCloud seed.
//! The private key never leaves this machine, and is only written down when asked
//! (`launch.keep_private_key`). It also logs SSH probes in and decrypts Windows passwords.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::spec::Os;

/// The file the private key is kept in (`launch.keep_private_key`), under the results directory.
pub const PRIVATE_KEY_FILE: &str = "keys/id_ed25519";
/// The same for a Windows run's RSA key.
pub const PRIVATE_RSA_KEY_FILE: &str = "keys/id_rsa";

/// Why the run's key could not be made, loaded or written down, as a lowercase fragment.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to generate the run's key: {0}")]
    Generate(ssh_key::Error),
    #[error("failed to encode the run's public key: {0}")]
    EncodePublic(ssh_key::Error),
    #[error("failed to encode the run's key: {0}")]
    Encode(ssh_key::Error),
    #[error("failed to load the run's key for ssh: {0}")]
    LoadForSsh(russh::keys::Error),
    #[error("failed to encode the key: {0}")]
    EncodeToKeep(ssh_key::Error),
    #[error("failed to create {}: {source}", path.display())]
    Create { path: PathBuf, source: std::io::Error },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Why a Windows password could not be decrypted, as a lowercase fragment.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the run's key is not an RSA key: EC2 encrypts Windows passwords to RSA keys only")]
    NotRsa,
    #[error("the password data is not base64: {0}")]
    NotBase64(base64::DecodeError),
    #[error("the password data does not decrypt with the run's key: {0}")]
    Decrypt(rsa::Error),
    #[error("the decrypted password is not text")]
    NotText,
    #[error("the run's RSA key has a negative part")]
    NegativePart,
    #[error("failed to use the run's RSA key: {0}")]
    UseRsa(rsa::Error),
}

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
    pub fn generate(run_id: &str, os: Os) -> Result<RunKey, KeyError> {
        let name = format!("amiprobe-{run_id}");
        let failed = KeyError::Generate;
        let mut private = match os {
            Os::Linux => PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).map_err(failed)?,
            // 2048 bits: what EC2 imports for Windows, and quick to make.
            Os::Windows => {
                let pair = RsaKeypair::random(&mut rand_core::OsRng, 2048).map_err(failed)?;
                PrivateKey::try_from(KeypairData::Rsa(pair)).map_err(failed)?
            }
        };
        private.set_comment(&name);
        let public = private.public_key().to_openssh().map_err(KeyError::EncodePublic)?;
        Ok(RunKey { name, public, private })
    }

    /// The private key as the SSH client takes it (it has its own key types: they cross over as
    /// OpenSSH text, in memory only).
    pub fn ssh_client_key(&self) -> Result<russh::keys::PrivateKey, KeyError> {
        let text = self.private.to_openssh(LineEnding::LF).map_err(KeyError::Encode)?;
        russh::keys::decode_secret_key(&text, None).map_err(KeyError::LoadForSsh)
    }

    /// Decrypts what EC2's GetPasswordData returns (base64 of the password encrypted with RSA
    /// PKCS#1 v1.5 to this key) into the password.
    pub fn decrypt_password(&self, password_data: &str) -> Result<String, PasswordError> {
        use base64::Engine;
        let KeypairData::Rsa(pair) = self.private.key_data() else {
            return Err(PasswordError::NotRsa);
        };
        let key = rsa_private_key(pair)?;
        // EC2 wraps the base64 in CR LF.
        let compact: String = password_data.chars().filter(|c| !c.is_whitespace()).collect();
        let encrypted = base64::engine::general_purpose::STANDARD.decode(compact).map_err(PasswordError::NotBase64)?;
        let plain = key.decrypt(rsa::Pkcs1v15Encrypt, &encrypted).map_err(PasswordError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| PasswordError::NotText)
    }

    /// Writes the private key (OpenSSH format, mode 0600) to `results/keys/id_ed25519` (`id_rsa`).
    pub fn keep(&self, results_dir: &Path) -> Result<(), KeyError> {
        let name = match self.private.algorithm() {
            Algorithm::Rsa { .. } => PRIVATE_RSA_KEY_FILE,
            _ => PRIVATE_KEY_FILE,
        };
        let file = results_dir.join(name);
        let text = self.private.to_openssh(LineEnding::LF).map_err(KeyError::EncodeToKeep)?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Create { path: dir.to_path_buf(), source })?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|source| KeyError::Create { path: file.clone(), source })?;
        std::io::Write::write_all(&mut out, text.as_bytes()).map_err(|source| KeyError::Write { path: file, source })
    }
}

/// The RSA key as the `rsa` crate takes it. Made here from its parts: ssh-key 0.6's own conversion
/// passes `p` twice instead of `p` and `q`, and fails.
fn rsa_private_key(pair: &RsaKeypair) -> Result<rsa::RsaPrivateKey, PasswordError> {
    let int =
        |m: &ssh_key::Mpint| m.as_positive_bytes().map(rsa::BigUint::from_bytes_be).ok_or(PasswordError::NegativePart);
    let parts = [
        int(&pair.public.n)?,
        int(&pair.public.e)?,
        int(&pair.private.d)?,
        int(&pair.private.p)?,
        int(&pair.private.q)?,
    ];
    let [n, e, d, p, q] = parts;
    rsa::RsaPrivateKey::from_components(n, e, d, vec![p, q]).map_err(PasswordError::UseRsa)
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
    pub async fn get(&self, run_id: &str, keep: bool, cell_dir: &Path) -> Result<std::sync::Arc<RunKey>, KeyError> {
        let key = self
            .cell
            .get_or_try_init(|| async {
                let key = RunKey::generate(run_id, self.os)?;
                if keep {
                    let results = cell_dir.parent().and_then(Path::parent).unwrap_or(cell_dir);
                    key.keep(results)?;
                }
                Ok::<_, KeyError>(std::sync::Arc::new(key))
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
        assert!(linux.decrypt_password(&data).unwrap_err().to_string().contains("not an RSA key"));
        // The SSH client takes either.
        assert!(key.ssh_client_key().is_ok() && linux.ssh_client_key().is_ok());
    }
}
