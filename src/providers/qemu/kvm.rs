//! Whether KVM works here, proved by running guest code on it, in well under a millisecond.
//!
//! `/dev/kvm` existing is not enough: on some hosts (nested virtualization gone wrong) a VM is
//! created but its vCPU dies at once with "KVM internal error". So `accel: auto` makes a VM with one
//! page of memory at the top of the address space, where a vCPU starts (the reset vector,
//! 0xFFFFFFF0), puts a `hlt` there, and runs it: only a vCPU that really executed the instruction
//! exits with `KVM_EXIT_HLT`. `accel.rs` follows it with a real boot; `kvm_cache.rs` remembers the
//! answer for the host's boot.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

// ioctl numbers from <linux/kvm.h>: _IO(KVMIO, n) and _IOW(KVMIO, 0x46, kvm_userspace_memory_region).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
const KVM_RUN: libc::c_ulong = 0xAE80;
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
/// The only API version there has ever been.
const KVM_API_VERSION: i32 = 12;
const KVM_EXIT_HLT: u32 = 5;
/// `struct kvm_run`: `exit_reason` follows two bytes of requests and six of padding.
const EXIT_REASON_OFFSET: usize = 8;

const PAGE: usize = 4096;
/// The last page below 4 GiB: a vCPU's first instruction is at 0xFFFFFFF0.
const RESET_PAGE: u64 = 0xFFFF_F000;
const HLT: u8 = 0xF4;

/// The device QEMU's `-accel kvm` opens.
pub const DEVICE: &str = "/dev/kvm";

#[repr(C)]
struct MemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// How the proof went: whether KVM ran guest code, why not, and how long it took to tell.
#[derive(Debug)]
pub struct Proof {
    pub works: Result<(), KvmError>,
    pub took: Duration,
}

/// Why KVM did not run the `hlt`.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error("failed to start a thread: {0}")]
    Thread(std::io::Error),
    #[error("a kvm vcpu did not stop within {}s", .0.as_secs_f64())]
    Hung(Duration),
    #[error("failed to open /dev/kvm: {0}")]
    Open(std::io::Error),
    /// An ioctl, named as in <linux/kvm.h>, failed.
    #[error("{call} failed: {source}")]
    Ioctl { call: &'static str, source: std::io::Error },
    #[error("unexpected kvm api version {0}")]
    ApiVersion(i32),
    #[error("failed to map {what}: {source}")]
    Map { what: &'static str, source: std::io::Error },
    #[error("kvm_run is only {0} bytes")]
    RunTooSmall(usize),
    #[error("a kvm vcpu stopped with exit reason {0}, not hlt")]
    NotHlt(u32),
}

/// Runs one `hlt` on a KVM vCPU. A hang is not expected (the instruction stops the vCPU), but the
/// proof runs on a thread of its own and gives up after `limit` all the same.
pub fn prove(limit: Duration) -> Proof {
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("kvm-proof".into()).spawn(move || {
        let _ = tx.send(run_hlt());
    });
    let works = match spawned {
        Err(e) => Err(KvmError::Thread(e)),
        Ok(_) => match rx.recv_timeout(limit) {
            Ok(result) => result,
            Err(_) => Err(KvmError::Hung(limit)),
        },
    };
    Proof { works, took: started.elapsed() }
}

/// `call` names the request in errors.
fn ioctl(fd: &OwnedFd, call: &'static str, request: libc::c_ulong, arg: libc::c_ulong) -> Result<i32, KvmError> {
    // SAFETY: a KVM ioctl on a descriptor we own; every request passed here takes an integer or a
    // pointer to a live value of the type the request names.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if rc < 0 {
        Err(KvmError::Ioctl { call, source: std::io::Error::last_os_error() })
    } else {
        Ok(rc)
    }
}

/// An anonymous or file mapping, unmapped when dropped.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<&OwnedFd>) -> std::io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel; nothing else refers to it.
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

fn owned(rc: i32) -> OwnedFd {
    // SAFETY: `rc` is a new descriptor a KVM ioctl just returned; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(rc) }
}

fn run_hlt() -> Result<(), KvmError> {
    let kvm = OpenOptions::new().read(true).write(true).open(DEVICE).map_err(KvmError::Open)?;
    let kvm = OwnedFd::from(kvm);
    let version = ioctl(&kvm, "KVM_GET_API_VERSION", KVM_GET_API_VERSION, 0)?;
    if version != KVM_API_VERSION {
        return Err(KvmError::ApiVersion(version));
    }
    let vm = owned(ioctl(&kvm, "KVM_CREATE_VM", KVM_CREATE_VM, 0)?);

    let memory = Mapping::new(PAGE, None).map_err(|source| KvmError::Map { what: "guest memory", source })?;
    // SAFETY: the page is ours and PAGE bytes long; 0xFF0 is inside it.
    unsafe { *(memory.addr as *mut u8).add(0xFF0) = HLT };
    let region = MemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: RESET_PAGE,
        memory_size: PAGE as u64,
        userspace_addr: memory.addr as u64,
    };
    let region_ptr = &region as *const MemoryRegion as libc::c_ulong;
    ioctl(&vm, "KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, region_ptr)?;
    let vcpu = owned(ioctl(&vm, "KVM_CREATE_VCPU", KVM_CREATE_VCPU, 0)?);
    let run_size = ioctl(&kvm, "KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE, 0)? as usize;
    if run_size < EXIT_REASON_OFFSET + 4 {
        return Err(KvmError::RunTooSmall(run_size));
    }
    let run = Mapping::new(run_size, Some(&vcpu)).map_err(|source| KvmError::Map { what: "kvm_run", source })?;
    ioctl(&vcpu, "KVM_RUN", KVM_RUN, 0)?;
    // SAFETY: `run` maps at least EXIT_REASON_OFFSET + 4 bytes (checked above), u32-aligned there.
    let exit = unsafe { std::ptr::read_volatile((run.addr as *const u8).add(EXIT_REASON_OFFSET) as *const u32) };
    if exit == KVM_EXIT_HLT {
        Ok(())
    } else {
        Err(KvmError::NotHlt(exit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where /dev/kvm is usable the proof passes; either way it answers fast (figures printed, not
    /// asserted: a loaded machine must not fail the suite).
    #[test]
    fn the_proof_answers_and_says_why_not() {
        let proof = prove(Duration::from_secs(5));
        println!("kvm proof: {:?} in {:.3} ms", proof.works, proof.took.as_secs_f64() * 1000.0);
        let usable = OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        if !usable {
            assert!(proof.works.unwrap_err().to_string().contains("/dev/kvm"));
        }
    }
}
