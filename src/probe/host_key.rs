//! The machine's SSH host keys as it announced them on its console, so an SSH probe can tell the
//! machine from whatever else answers at its address.
//!
//! cloud-init prints two blocks at the end of a first boot (and the images of every major
//! distribution on EC2 do it), each line behind a syslog or `ec2:` prefix:
//!
//! ```text
//! <14>Dec  5 06:31:02 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----
//! <14>Dec  5 06:31:02 cloud-init: 256 SHA256:Zy1sq0tQ8G2Sq6cGZ7u2bHn9Oq1n2mXoXQ0Wq9eQ1sE root@host (ED25519)
//! <14>Dec  5 06:31:02 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----
//! -----BEGIN SSH HOST KEY KEYS-----
//! ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... root@host
//! -----END SSH HOST KEY KEYS-----
//! ```
//!
//! Only the last complete block of each kind counts: a machine that made new keys on a later boot
//! printed them after the old ones. SHA256 fingerprints only: the MD5 ones of cloud-init before 2015
//! are not accepted (a key can't be checked against them here).

use std::collections::BTreeSet;

/// SHA256 fingerprints (`SHA256:` and 43 base64 characters) the console vouches for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleHostKeys {
    pub fingerprints: BTreeSet<String>,
}

const FINGERPRINTS: (&str, &str) =
    ("-----BEGIN SSH HOST KEY FINGERPRINTS-----", "-----END SSH HOST KEY FINGERPRINTS-----");
const KEYS: (&str, &str) = ("-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----");

impl ConsoleHostKeys {
    /// The keys announced in a (cleaned) console log; empty until a block is complete.
    pub fn parse(console: &str) -> ConsoleHostKeys {
        let mut fingerprints = BTreeSet::new();
        if let Some(block) = last_block(console, FINGERPRINTS) {
            fingerprints.extend(block.iter().filter_map(|line| sha256_in(line)));
        }
        if let Some(block) = last_block(console, KEYS) {
            fingerprints.extend(block.iter().filter_map(|line| key_fingerprint(line)));
        }
        ConsoleHostKeys { fingerprints }
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    pub fn vouches_for(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }
}

/// The lines strictly between the last complete BEGIN/END pair.
fn last_block<'a>(console: &'a str, (begin, end): (&str, &str)) -> Option<Vec<&'a str>> {
    let lines: Vec<&str> = console.lines().collect();
    let end_at = lines.iter().rposition(|l| l.contains(end))?;
    let begin_at = lines[..end_at].iter().rposition(|l| l.contains(begin))?;
    Some(lines[begin_at + 1..end_at].to_vec())
}

/// A `SHA256:...` fingerprint anywhere in the line.
fn sha256_in(line: &str) -> Option<String> {
    let at = line.find("SHA256:")?;
    let digits: String =
        line[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/').collect();
    (digits.len() == 43).then(|| format!("SHA256:{digits}"))
}

/// The fingerprint of an OpenSSH public key line (`ssh-ed25519 AAAA... comment`), after any prefix.
fn key_fingerprint(line: &str) -> Option<String> {
    let start = ["ssh-", "ecdsa-", "sk-"].iter().filter_map(|p| line.find(p)).min()?;
    let key = russh::keys::PublicKey::from_openssh(line[start..].trim()).ok()?;
    Some(key.fingerprint(russh::keys::HashAlg::Sha256).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "SHA256:Zy1sq0tQ8G2Sq6cGZ7u2bHn9Oq1n2mXoXQ0Wq9eQ1sE";
    const EC: &str = "SHA256:k3JQm6p2u9lM1x0v5gkq7XxZ0r8H1aW2b3c4d5e6f7g";

    fn block(fingerprints: &[&str]) -> String {
        let mut text = String::from("<14>Dec  5 06:31:02 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n");
        for f in fingerprints {
            text.push_str(&format!("<14>Dec  5 06:31:02 cloud-init: 256 {f} root@amiprobe-guest (ED25519)\n"));
        }
        text.push_str("<14>Dec  5 06:31:02 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n");
        text
    }

    #[test]
    fn reads_cloud_inits_fingerprint_block() {
        let console = format!("booting\n{}login: ", block(&[EC, ED]));
        let keys = ConsoleHostKeys::parse(&console);
        assert!(keys.vouches_for(ED) && keys.vouches_for(EC), "{keys:?}");
        assert_eq!(keys.fingerprints.len(), 2);
    }

    #[test]
    fn an_unfinished_block_vouches_for_nothing() {
        let console = block(&[ED]);
        let cut = console.rfind("-----END").unwrap();
        assert!(ConsoleHostKeys::parse(&console[..cut]).is_empty());
    }

    #[test]
    fn the_last_block_wins() {
        let console = format!("{}reboot\n{}", block(&[ED]), block(&[EC]));
        let keys = ConsoleHostKeys::parse(&console);
        assert!(keys.vouches_for(EC) && !keys.vouches_for(ED), "{keys:?}");
    }

    #[test]
    fn reads_the_public_keys_block() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@host";
        let expected =
            russh::keys::PublicKey::from_openssh(key).unwrap().fingerprint(russh::keys::HashAlg::Sha256).to_string();
        let console =
            format!("ec2: -----BEGIN SSH HOST KEY KEYS-----\nec2: {key}\nec2: -----END SSH HOST KEY KEYS-----\n");
        assert!(ConsoleHostKeys::parse(&console).vouches_for(&expected));
    }

    #[test]
    fn a_fingerprint_must_be_whole() {
        assert_eq!(sha256_in("256 SHA256:short root@h (ED25519)"), None);
        assert_eq!(sha256_in(&format!("256 {ED} root@h (ED25519)")).as_deref(), Some(ED));
    }
}
