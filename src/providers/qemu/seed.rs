//! The NoCloud seed: what EC2's metadata service gives an instance, given to a local VM the way
//! cloud-init's NoCloud data source reads it: a small FAT volume labelled `cidata` carrying
//! `user-data` (the spec's `launch.user_data`) and `meta-data` (instance id, host name, the run's
//! public key).
//!
//! The volume is made here (the `fatfs` crate formats and fills a file), so no `genisoimage`,
//! `cloud-localds` or `mtools` is needed. Every cell gets one: cloud-init finds it by its label
//! whatever bus it is on, and an image without cloud-init just sees a small extra disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// cloud-init looks for a file system with this label (FAT labels are 11 bytes, space padded).
pub const LABEL: &str = "cidata";
/// User data for a spec without any: valid, and asks cloud-init for nothing.
pub const DEFAULT_USER_DATA: &[u8] = b"#cloud-config\n{}\n";

/// Why a seed could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("failed to write meta-data: {0}")]
    MetaData(serde_yaml::Error),
    #[error("failed to write the nocloud seed {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// What a cell's seed says.
#[derive(Debug, Clone)]
pub struct Seed<'a> {
    /// Unique per cell and run: cloud-init runs its once-per-instance steps again for a new id.
    pub instance_id: String,
    pub hostname: String,
    /// `launch.user_data`; `None`: [`DEFAULT_USER_DATA`].
    pub user_data: Option<&'a [u8]>,
    /// The run's OpenSSH public key (`launch.key_pair: ephemeral`).
    pub public_key: Option<&'a str>,
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
    #[serde(rename = "public-keys", skip_serializing_if = "Vec::is_empty")]
    public_keys: Vec<&'a str>,
}

impl Seed<'_> {
    /// `meta-data` as YAML (serialized, so any id or key is quoted as it must be).
    pub fn meta_data(&self) -> Result<String, SeedError> {
        let meta = MetaData {
            instance_id: &self.instance_id,
            local_hostname: &self.hostname,
            public_keys: self.public_key.into_iter().collect(),
        };
        serde_yaml::to_string(&meta).map_err(SeedError::MetaData)
    }

    pub fn user_data(&self) -> &[u8] {
        self.user_data.unwrap_or(DEFAULT_USER_DATA)
    }

    /// Writes the seed volume to `path` (a raw disk image).
    pub fn write(&self, path: &Path) -> Result<(), SeedError> {
        let meta = self.meta_data()?;
        let user = self.user_data();
        let fail = |source: std::io::Error| SeedError::Write { path: path.to_path_buf(), source };
        // Room for both files and FAT's own tables; the file is sparse, so the slack costs nothing.
        let size = (1u64 << 20) + 2 * (meta.len() + user.len()) as u64;
        let size = size.div_ceil(64 * 1024) * 64 * 1024;
        // Read too: fatfs reads back the tables it writes.
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(fail)?;
        file.set_len(size).map_err(fail)?;
        let mut label = [b' '; 11];
        label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
        // A volume id of the instance's own (FNV-1a of its id): two cells' seeds never look the same.
        let id = self.instance_id.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        let options = fatfs::FormatVolumeOptions::new().volume_label(label).volume_id(id);
        fatfs::format_volume(&mut file, options).map_err(fail)?;
        let fs = fatfs::FileSystem::new(&mut file, fatfs::FsOptions::new()).map_err(fail)?;
        {
            let root = fs.root_dir();
            for (name, bytes) in [("user-data", user), ("meta-data", meta.as_bytes())] {
                let mut f = root.create_file(name).map_err(fail)?;
                f.truncate().map_err(fail)?;
                f.write_all(bytes).map_err(fail)?;
                f.flush().map_err(fail)?;
            }
        }
        fs.unmount().map_err(fail)?;
        file.sync_all().map_err(fail)
    }
}

/// A host name from a cell id: lowercase letters, digits and `-`, at most 63 characters (RFC 1123).
pub fn hostname(cell: &str) -> String {
    let mut name: String =
        cell.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name.truncate(63);
    let name = name.trim_matches('-');
    if name.is_empty() {
        "amiprobe".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_back(path: &Path) -> (String, Vec<(String, Vec<u8>)>) {
        let file = std::fs::File::open(path).unwrap();
        let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
        let label = fs.volume_label();
        let mut files = Vec::new();
        for entry in fs.root_dir().iter() {
            let entry = entry.unwrap();
            let mut bytes = Vec::new();
            entry.to_file().read_to_end(&mut bytes).unwrap();
            files.push((entry.file_name(), bytes));
        }
        (label, files)
    }

    #[test]
    fn the_seed_is_a_fat_volume_labelled_cidata_with_the_cells_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.img");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample amiprobe-run1";
        let seed = Seed {
            instance_id: "amiprobe-run1-ok_small".into(),
            hostname: hostname("ok_small"),
            user_data: Some(b"#cloud-config\nruncmd: [[touch, /tmp/x]]\n"),
            public_key: Some(key),
        };
        seed.write(&path).unwrap();
        let (label, files) = read_back(&path);
        assert_eq!(label.trim_end(), "cidata");
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["user-data", "meta-data"]);
        assert_eq!(files[0].1, b"#cloud-config\nruncmd: [[touch, /tmp/x]]\n");
        let meta: serde_yaml::Value = serde_yaml::from_slice(&files[1].1).unwrap();
        assert_eq!(meta["instance-id"].as_str(), Some("amiprobe-run1-ok_small"));
        assert_eq!(meta["local-hostname"].as_str(), Some("ok-small"));
        assert_eq!(meta["public-keys"][0].as_str(), Some(key));
        // blkid reads the label from the boot sector: offset 43 on FAT12/16.
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[43..54], b"cidata     ");
    }

    #[test]
    fn without_user_data_or_key_the_seed_is_minimal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.img");
        let seed = Seed { instance_id: "i-1".into(), hostname: "h".into(), user_data: None, public_key: None };
        seed.write(&path).unwrap();
        let (_, files) = read_back(&path);
        assert_eq!(files[0].1, DEFAULT_USER_DATA);
        let meta = String::from_utf8(files[1].1.clone()).unwrap();
        assert_eq!(meta, "instance-id: i-1\nlocal-hostname: h\n");
        // Larger user data grows the volume.
        let big = vec![b'#'; 3 << 20];
        let seed = Seed { user_data: Some(&big), ..seed };
        seed.write(&path).unwrap();
        assert_eq!(read_back(&path).1[0].1.len(), 3 << 20);
    }

    #[test]
    fn host_names_are_valid() {
        assert_eq!(hostname("ami-0aaa_t3.micro_subnet-1"), "ami-0aaa-t3-micro-subnet-1");
        assert_eq!(hostname("__"), "amiprobe");
        assert_eq!(hostname(&"x".repeat(100)).len(), 63);
    }
}
