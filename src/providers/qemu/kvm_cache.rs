//! `accel: auto`'s answer to "does KVM work here", remembered per host boot: proving it can cost 3 s
//! (a host whose KVM runs a `hlt` but hangs a kernel), so only the first run after a reboot, or after
//! a kernel or QEMU change, pays for it.
//!
//! The answer is `kvm.json` in amiprobe's cache directory (`crate::provider::cache`), kept with its
//! key: the boot id (`/proc/sys/kernel/random/boot_id`), the kernel release, and QEMU's binary and
//! `--version` banner. A file that is missing, unreadable, corrupt or of another key means proving
//! again, never an error. It is replaced whole (a temporary file renamed over it), so runs at once
//! never read half a file. A directory that cannot be written means the answer holds for this run
//! only, and the warning says why. Only a proof that says something about KVM is remembered: one that
//! failed for another reason (QEMU did not start, no temporary directory) is tried again next run.
//!
//! No usable device (`/dev/kvm` absent, or not readable and writable) means TCG without any proof;
//! that takes microseconds to tell, so it is never remembered.

use std::ffi::CString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::accel::KvmUnusable;
use crate::provider::cache::NoCacheDir;

/// The file's name in the cache directory.
pub const FILE: &str = "kvm.json";
/// The file's layout; a file of another one is proved again rather than misread.
const FORMAT: u32 = 1;
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const KERNEL_RELEASE: &str = "/proc/sys/kernel/osrelease";

/// What a remembered answer holds for: if any part differs, KVM is proved again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKey {
    /// New at every boot of the host: KVM's behaviour may change with a reboot (modules, firmware).
    pub boot_id: String,
    pub kernel: String,
    /// The binary as the spec names it, and the first line of its `--version`.
    pub qemu_binary: String,
    pub qemu_version: String,
}

impl HostKey {
    /// This host's key, for QEMU `binary` whose `--version` said `banner`.
    pub fn here(binary: &str, banner: &str) -> Result<HostKey, NotRemembered> {
        Ok(HostKey {
            boot_id: read_proc(BOOT_ID)?,
            kernel: read_proc(KERNEL_RELEASE)?,
            qemu_binary: binary.to_string(),
            qemu_version: banner.trim().to_string(),
        })
    }
}

fn read_proc(path: &'static str) -> Result<String, NotRemembered> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|source| NotRemembered::HostUnknown { path, source })
}

/// Where an answer is remembered: the cache directory, and the key it holds for.
#[derive(Debug)]
pub struct Memo {
    pub dir: PathBuf,
    pub key: HostKey,
}

/// Why an answer was not remembered (it is still used for the run).
#[derive(Debug, thiserror::Error)]
pub enum NotRemembered {
    #[error(transparent)]
    NoCacheDir(#[from] NoCacheDir),
    #[error("failed to read {path}: {source}")]
    HostUnknown { path: &'static str, source: io::Error },
    #[error("qemu's --version printed nothing")]
    NoBanner,
    #[error("the proof failed for a reason that says nothing about kvm")]
    Inconclusive,
    #[error("failed to create {}: {source}", .path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("failed to write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Where an answer came from.
#[derive(Debug)]
pub enum Source {
    /// Proved by this run, in `took`; remembered in the file named, or why not.
    ProvedNow { took: Duration, remembered: Result<PathBuf, NotRemembered> },
    /// Read from the file at `path`, proved at `at` during this host's boot.
    Remembered { at: SystemTime, path: PathBuf },
    /// There is no usable device, so nothing to prove.
    NotNeeded,
}

/// `accel: auto`'s answer: KVM, or why not; and where the answer came from.
#[derive(Debug)]
pub struct Decision {
    pub kvm: Result<(), KvmUnusable>,
    pub source: Source,
}

/// `kvm.json`.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    key: HostKey,
    /// `None` when KVM works, else why it does not.
    why_not_kvm: Option<String>,
    /// RFC 3339, UTC, to the second.
    proved_at: String,
}

/// Whether KVM works here: TCG at once without a usable `device`, else the answer `memo` remembers,
/// else `prove`'s, remembered in `memo` for the next run (`memo` is why not, when it cannot be).
pub async fn decide<F, Fut>(device: &Path, memo: Result<Memo, NotRemembered>, prove: F) -> Decision
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), KvmUnusable>>,
{
    if let Err(why) = device_usable(device) {
        return Decision { kvm: Err(why), source: Source::NotNeeded };
    }
    if let Some(recalled) = memo.as_ref().ok().and_then(recall) {
        return recalled;
    }
    let started = Instant::now();
    let kvm = prove().await;
    let took = started.elapsed();
    let remembered = memo.and_then(|memo| remember(&memo, &kvm));
    Decision { kvm, source: Source::ProvedNow { took, remembered } }
}

/// The device exists and this process may read and write it, as QEMU will need to: told from its
/// metadata and access(2), without opening it.
fn device_usable(device: &Path) -> Result<(), KvmUnusable> {
    let no_access = |source| KvmUnusable::NoAccess { device: device.to_path_buf(), source };
    match std::fs::metadata(device) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KvmUnusable::Absent(device.to_path_buf())),
        Err(e) => return Err(no_access(e)),
        Ok(_) => {}
    }
    let path = CString::new(device.as_os_str().as_bytes())
        .map_err(|e| no_access(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: access(2) only reads the NUL-terminated path, which lives until the call returns.
    if unsafe { libc::access(path.as_ptr(), libc::R_OK | libc::W_OK) } != 0 {
        return Err(no_access(io::Error::last_os_error()));
    }
    Ok(())
}

/// The answer remembered for `memo.key`, if a readable file of the current format holds one.
fn recall(memo: &Memo) -> Option<Decision> {
    let path = memo.dir.join(FILE);
    let stored: Stored = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    if stored.format != FORMAT || stored.key != memo.key {
        tracing::debug!("{}: for another host boot, kernel or qemu; proving again", path.display());
        return None;
    }
    let at = humantime::parse_rfc3339(&stored.proved_at).ok()?;
    let kvm = stored.why_not_kvm.map_or(Ok(()), |why| Err(KvmUnusable::Remembered(why)));
    Some(Decision { kvm, source: Source::Remembered { at, path } })
}

/// Writes `kvm` into `memo.dir`, creating the directory; the file's path.
fn remember(memo: &Memo, kvm: &Result<(), KvmUnusable>) -> Result<PathBuf, NotRemembered> {
    let why_not_kvm = match kvm {
        Ok(()) => None,
        Err(why) if why.conclusive() => Some(why.to_string()),
        Err(_) => return Err(NotRemembered::Inconclusive),
    };
    let stored = Stored {
        format: FORMAT,
        key: memo.key.clone(),
        why_not_kvm,
        proved_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    std::fs::create_dir_all(&memo.dir).map_err(|source| NotRemembered::CreateDir { path: memo.dir.clone(), source })?;
    let path = memo.dir.join(FILE);
    let failed = |source| NotRemembered::Write { path: path.clone(), source };
    // Written beside the file and renamed over it: a run reading at the same moment finds the old
    // answer or the new one, and of two runs writing at once the last rename wins whole.
    let mut temp = tempfile::Builder::new().prefix(".kvm.json.").tempfile_in(&memo.dir).map_err(failed)?;
    serde_json::to_writer_pretty(&mut temp, &stored).map_err(|e| failed(e.into()))?;
    temp.persist(&path).map_err(|e| failed(e.error))?;
    Ok(path)
}

/// `kvm (proved just now in 0.42s; remembered ...)`, `tcg, /dev/kvm is absent (no proof needed)`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kvm, &self.source) {
            (Ok(()), _) => write!(f, "kvm")?,
            (Err(why), Source::NotNeeded) => write!(f, "tcg, {why}")?,
            (Err(why), _) => write!(f, "tcg, kvm does not work here ({why})")?,
        }
        write!(f, " ({})", self.source)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ProvedNow { took, remembered } => {
                write!(f, "proved just now in {:.2}s; ", took.as_secs_f64())?;
                match remembered {
                    Ok(path) => write!(f, "remembered for this host's boot in {}", path.display()),
                    Err(why) => write!(f, "not remembered: {why}"),
                }
            }
            Source::Remembered { at, path } => write!(
                f,
                "remembered from {} for this host's boot, {}; delete it to prove again",
                humantime::format_rfc3339_seconds(*at),
                path.display()
            ),
            Source::NotNeeded => write!(f, "no proof needed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn key() -> HostKey {
        HostKey {
            boot_id: "b2073f2c-eb0c-4d49-8d39-5b4368593470".into(),
            kernel: "6.18.44".into(),
            qemu_binary: "qemu-system-x86_64".into(),
            qemu_version: "QEMU emulator version 10.0.2".into(),
        }
    }

    /// A device that passes the check: a file of the test's own.
    fn device(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("kvm-device");
        std::fs::write(&path, "").unwrap();
        path
    }

    /// `decide` with a fake prover answering `answer`, counting its calls in `calls`.
    async fn decide_with(
        device: &Path,
        dir: &Path,
        key: HostKey,
        answer: fn() -> Result<(), KvmUnusable>,
        calls: &Cell<u32>,
    ) -> Decision {
        let memo = Ok(Memo { dir: dir.to_path_buf(), key });
        decide(device, memo, || {
            calls.set(calls.get() + 1);
            async move { answer() }
        })
        .await
    }

    fn works() -> Result<(), KvmUnusable> {
        Ok(())
    }

    fn silent() -> Result<(), KvmUnusable> {
        Err(KvmUnusable::Silent)
    }

    #[tokio::test]
    async fn the_same_key_reuses_the_answer_without_proving() {
        let (dev, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let calls = Cell::new(0);
        let first = decide_with(&device(&dev), cache.path(), key(), works, &calls).await;
        let file = cache.path().join(FILE);
        assert!(matches!(&first.source, Source::ProvedNow { remembered: Ok(path), .. } if *path == file), "{first}");
        let again = decide_with(&device(&dev), cache.path(), key(), silent, &calls).await;
        assert_eq!(calls.get(), 1);
        assert!(again.kvm.is_ok());
        assert!(matches!(&again.source, Source::Remembered { path, .. } if *path == file), "{again}");
        assert!(again.to_string().starts_with("kvm (remembered from "), "{again}");
    }

    #[tokio::test]
    async fn a_remembered_tcg_keeps_its_reason() {
        let (dev, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let calls = Cell::new(0);
        decide_with(&device(&dev), cache.path(), key(), silent, &calls).await;
        let again = decide_with(&device(&dev), cache.path(), key(), works, &calls).await;
        assert_eq!(calls.get(), 1);
        let line = again.to_string();
        assert!(
            line.starts_with("tcg, kvm does not work here (a guest under kvm said nothing in 3s) (remembered from "),
            "{line}"
        );
        assert!(line.ends_with("; delete it to prove again)"), "{line}");
    }

    #[tokio::test]
    async fn another_boot_kernel_or_qemu_proves_again() {
        let changes: [fn(&mut HostKey); 4] = [
            |k| k.boot_id = "another-boot".into(),
            |k| k.kernel = "6.19.0".into(),
            |k| k.qemu_version = "QEMU emulator version 10.1.0".into(),
            |k| k.qemu_binary = "/opt/qemu/bin/qemu-system-x86_64".into(),
        ];
        for change in changes {
            let (dev, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let calls = Cell::new(0);
            decide_with(&device(&dev), cache.path(), key(), silent, &calls).await;
            let mut other = key();
            change(&mut other);
            let again = decide_with(&device(&dev), cache.path(), other, works, &calls).await;
            assert_eq!(calls.get(), 2, "{again}");
            assert!(again.kvm.is_ok() && matches!(again.source, Source::ProvedNow { .. }), "{again}");
        }
    }

    #[tokio::test]
    async fn a_corrupt_or_empty_file_proves_again_and_is_replaced() {
        for corrupt in ["{\"format\": 1, \"key\": ", "", "{\"format\": 1}"] {
            let (dev, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            std::fs::write(cache.path().join(FILE), corrupt).unwrap();
            let calls = Cell::new(0);
            let first = decide_with(&device(&dev), cache.path(), key(), works, &calls).await;
            assert!(matches!(first.source, Source::ProvedNow { remembered: Ok(_), .. }), "{first}");
            let again = decide_with(&device(&dev), cache.path(), key(), works, &calls).await;
            assert_eq!(calls.get(), 1, "after {corrupt:?}");
            assert!(matches!(again.source, Source::Remembered { .. }), "{again}");
        }
    }

    #[tokio::test]
    async fn an_unwritable_cache_dir_still_answers_and_says_so() {
        let (dev, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Under a regular file: no directory can be made there, not even by root.
        let blocker = cache.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let calls = Cell::new(0);
        let decision = decide_with(&device(&dev), &blocker.join("amiprobe"), key(), works, &calls).await;
        assert!(decision.kvm.is_ok());
        let line = decision.to_string();
        assert!(line.starts_with("kvm (proved just now in "), "{line}");
        assert!(line.contains("; not remembered: failed to create ") && line.contains("/file/amiprobe: "), "{line}");
        decide_with(&device(&dev), &blocker.join("amiprobe"), key(), works, &calls).await;
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test]
    async fn an_inconclusive_proof_is_not_remembered() {
        let (dev, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let calls = Cell::new(0);
        let no_tempdir = || Err(KvmUnusable::TempDir(io::Error::other("disk full")));
        let decision = decide_with(&device(&dev), cache.path(), key(), no_tempdir, &calls).await;
        assert!(matches!(decision.source, Source::ProvedNow { remembered: Err(NotRemembered::Inconclusive), .. }));
        assert!(!cache.path().join(FILE).exists());
        decide_with(&device(&dev), cache.path(), key(), works, &calls).await;
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test]
    async fn an_absent_device_is_tcg_without_a_proof() {
        let cache = tempfile::tempdir().unwrap();
        let absent = cache.path().join("no-such-kvm");
        let calls = Cell::new(0);
        let decision = decide_with(&absent, cache.path(), key(), works, &calls).await;
        assert_eq!(calls.get(), 0);
        assert!(matches!(decision.kvm, Err(KvmUnusable::Absent(_))));
        assert_eq!(decision.to_string(), format!("tcg, {} is absent (no proof needed)", absent.display()));
        assert!(!cache.path().join(FILE).exists());
    }

    #[test]
    fn the_warning_says_the_answer_the_reason_and_the_source() {
        let file = PathBuf::from("/root/.cache/amiprobe/kvm.json");
        let proved = Decision {
            kvm: Ok(()),
            source: Source::ProvedNow { took: Duration::from_millis(420), remembered: Ok(file.clone()) },
        };
        assert_eq!(
            proved.to_string(),
            "kvm (proved just now in 0.42s; remembered for this host's boot in /root/.cache/amiprobe/kvm.json)"
        );
        let at = humantime::parse_rfc3339("2026-12-06T15:50:02Z").unwrap();
        let remembered = Decision {
            kvm: Err(KvmUnusable::Remembered("a guest under kvm said nothing in 3s".into())),
            source: Source::Remembered { at, path: file },
        };
        assert_eq!(
            remembered.to_string(),
            "tcg, kvm does not work here (a guest under kvm said nothing in 3s) (remembered from \
             2026-12-06T15:50:02Z for this host's boot, /root/.cache/amiprobe/kvm.json; delete it to prove again)"
        );
    }

    /// Writers racing on one directory never leave a file a reader cannot use.
    #[test]
    fn runs_writing_at_once_leave_a_whole_file() {
        let cache = tempfile::tempdir().unwrap();
        let memo = Memo { dir: cache.path().to_path_buf(), key: key() };
        std::thread::scope(|scope| {
            for i in 0..4 {
                let memo = &memo;
                scope.spawn(move || {
                    for _ in 0..25 {
                        let kvm = if i % 2 == 0 { Ok(()) } else { Err(KvmUnusable::Silent) };
                        remember(memo, &kvm).unwrap();
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..100 {
                    if memo.dir.join(FILE).exists() {
                        assert!(recall(&memo).is_some(), "a reader found a broken file");
                    }
                }
            });
        });
        assert!(recall(&memo).is_some());
        let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [FILE], "temporary files were left behind");
    }

    #[test]
    fn this_host_has_a_key() {
        let here = HostKey::here("qemu-system-x86_64", "QEMU emulator version 10.0.2\n").unwrap();
        assert_eq!(here.boot_id.len(), 36, "{here:?}");
        assert!(!here.kernel.is_empty());
        assert_eq!(here.qemu_version, "QEMU emulator version 10.0.2");
    }
}
