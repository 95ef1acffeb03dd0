//! Time to ready under the qemu provider against raw QEMU on the same image: what amiprobe costs,
//! from `amiprobe run` starting to its probe seeing the service, over what the guest itself takes.
//!
//!     cargo bench --bench qemu_ready                      # build/debian-image/bookworm.qcow2, 5 rounds
//!     cargo bench --bench qemu_ready -- busybox           # the test image (kernel + initrd), 5 rounds
//!     cargo bench --bench qemu_ready -- IMAGE 3           # another disk image, 3 rounds
//!
//! Each round boots the image twice, in alternating order. Once as `amiprobe run` of a one-cell spec
//! that leaves everything at its defaults (`accel: auto` with its KVM answer, remembered or proved;
//! memory; capture schedule) except the probe's `interval`: 50 ms, the cadence of the raw loop. Its
//! figure: from spawning `amiprobe run` to the probe's first pass (the cell's `started_at` plus its
//! `ready_s`), so the process start, the spec, the KVM answer and the launch all count. Once as a
//! bare `qemu-system-x86_64` with the hardware that cell reported (accelerator, memory, CPUs, NIC,
//! disk bus) and a NoCloud seed made the same way, polled like `curl --max-time 0.5` every 50 ms.
//! Its figure: from spawning QEMU to the first 200 on /. Prints each round, the medians, and the
//! median of the rounds' differences (the figure to read: paired boots share the machine's mood);
//! asserts nothing about time. Needs `scripts/install-deps` and `scripts/build-debian-image` (or
//! `scripts/build-test-image` for `busybox`). Everything it contacts is a QEMU forward on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The probe's interval and the raw loop's cadence.
const POLL: Duration = Duration::from_millis(50);
/// The raw loop's limit on one request (`curl --max-time 0.5`).
const MAX_TIME: Duration = Duration::from_millis(500);
const GIVE_UP: Duration = Duration::from_secs(300);
/// The bare machine's login key, a public key of no use to anyone (amiprobe's seed carries its run's).
const BENCH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHSjv98ugl2QBF/AHOBwBq5OJVhCELOmug11t/f5gl6p qemu-ready-bench";

/// What is booted: a disk image, or the test image's kernel and initrd.
enum Image {
    Disk(PathBuf),
    Kernel { kernel: PathBuf, initrd: PathBuf, append: &'static str },
}

impl Image {
    fn from_arg(arg: Option<&String>, root: &Path) -> Image {
        let canonical =
            |p: PathBuf| p.canonicalize().unwrap_or_else(|e| panic!("{}: {e} (build it first)", p.display()));
        match arg.map(String::as_str) {
            Some("busybox") => Image::Kernel {
                kernel: canonical(root.join("build/test-image/vmlinuz")),
                initrd: canonical(root.join("build/test-image/initrd.img")),
                append: "console=tty0 console=ttyS0 amiprobe.variant=ok",
            },
            Some(path) => Image::Disk(canonical(PathBuf::from(path))),
            None => Image::Disk(canonical(root.join("build/debian-image/bookworm.qcow2"))),
        }
    }

    fn describe(&self) -> String {
        match self {
            Image::Disk(path) => path.display().to_string(),
            Image::Kernel { kernel, .. } => format!("busybox test image ({})", kernel.display()),
        }
    }

    /// The spec's `images:` entry.
    fn spec_entry(&self) -> String {
        match self {
            Image::Disk(path) => format!("{{ disk: {} }}", path.display()),
            Image::Kernel { kernel, initrd, append } => {
                format!("{{ kernel: {}, initrd: {}, append: \"{append}\" }}", kernel.display(), initrd.display())
            }
        }
    }
}

/// The hardware amiprobe's cell had, from its `machine` facts.
struct Hardware {
    accel: String,
    memory: String,
    cpus: u64,
    nic: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let image = Image::from_arg(args.first(), &root);
    let rounds: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");

    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    let mut hardware: Option<Hardware> = None;
    for round in 0..rounds {
        // Alternate which goes first, so that neither always runs on a cooler machine. The bare
        // QEMU copies the hardware of the latest amiprobe cell, so the first round starts with one.
        let (a, b, hw) = match hardware.take() {
            Some(hw) if round % 2 == 1 => {
                let b = bare_ready(&image, &hw, dir.path(), round);
                let (a, hw) = amiprobe_ready(&image, dir.path(), round);
                (a, b, hw)
            }
            _ => {
                let (a, hw) = amiprobe_ready(&image, dir.path(), round);
                (a, bare_ready(&image, &hw, dir.path(), round), hw)
            }
        };
        println!(
            "qemu_ready round {}: amiprobe {a:.2}s, bare qemu {b:.2}s ({:+.2}s), accel {}",
            round + 1,
            a - b,
            hw.accel
        );
        ours.push(a);
        bare.push(b);
        hardware = Some(hw);
    }
    // Each round's two boots ran back to back on the same machine, so the median of the rounds'
    // differences is the figure: a slow round (a busy host, an unlucky boot) moves both of its boots.
    let mut differences: Vec<f64> = ours.iter().zip(&bare).map(|(a, b)| a - b).collect();
    let difference = median(&mut differences);
    let (a, b) = (median(&mut ours), median(&mut bare));
    println!(
        "qemu_ready: {} ({} rounds): median amiprobe {a:.2}s, bare qemu {b:.2}s; median difference {difference:+.2}s",
        image.describe(),
        rounds,
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One cell under amiprobe: seconds from spawning `amiprobe run` to its probe's first pass, and
/// the hardware the cell had.
fn amiprobe_ready(image: &Image, dir: &Path, round: usize) -> (f64, Hardware) {
    let spec = dir.join(format!("ready-{round}.yaml"));
    let out = dir.join(format!("out-{round}"));
    std::fs::write(
        &spec,
        format!(
            "name: qemu-ready\n\
             provider:\n  qemu: {{ images: {{ under-test: {} }} }}\n\
             matrix: {{ image: under-test }}\n\
             probes:\n  - {{ name: page, http: {{ port: 80, path: / }}, expect: {{ status: 200 }}, interval: 50ms }}\n",
            image.spec_entry()
        ),
    )
    .expect("write spec");
    let spawned = SystemTime::now();
    let status = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--report", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run amiprobe");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results.json")).expect("json");
    let cell = &results["cells"][0];
    assert_eq!(status.code(), Some(0), "the cell did not pass: {cell:#}");
    let started: SystemTime =
        humantime::parse_rfc3339(cell["started_at"].as_str().expect("started_at")).expect("an RFC 3339 time");
    let ready = cell["timings"]["ready_s"].as_f64().expect("ready_s");
    let before_cell = started.duration_since(spawned).unwrap_or_default().as_secs_f64();
    println!("  amiprobe: {before_cell:.2}s from spawning it to its cell's start, ready {ready:.2}s after that");
    (before_cell + ready, hardware(&cell["machine"]))
}

fn hardware(machine: &Value) -> Hardware {
    let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("not text: {v} in {machine:#}")).to_string();
    assert_eq!(machine["disk_bus"], "virtio-blk", "the raw QEMU here only knows virtio-blk disks");
    assert_eq!(machine["firmware"], "bios", "the raw QEMU here only boots BIOS");
    Hardware {
        accel: text(&machine["accel"]),
        memory: text(&machine["size"]["memory"]),
        cpus: machine["size"]["cpus"].as_u64().expect("cpus"),
        nic: text(&machine["nic"]),
    }
}

/// The same machine as bare QEMU; seconds from spawning it to the first 200 on /.
fn bare_ready(image: &Image, hw: &Hardware, dir: &Path, round: usize) -> f64 {
    let seed = dir.join(format!("seed-{round}.img"));
    make_seed(&seed, round);
    let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "q35", "-accel", &hw.accel, "-m", hw.memory.trim_end_matches('M')])
        .args(["-smp", &hw.cpus.to_string()])
        .args(["-display", "none", "-vga", "std", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", dir.join(format!("bare-{round}.log")).display()))
        .args(["-netdev", &format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80")])
        .args(["-device", &format!("{},netdev=n0", nic_device(&hw.nic))]);
    match image {
        Image::Disk(path) => {
            cmd.arg("-drive")
                .arg(format!("file={},format=qcow2,if=none,id=disk0,snapshot=on", path.display()))
                .args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]);
        }
        Image::Kernel { kernel, initrd, append } => {
            cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).args(["-append", append]);
        }
    }
    cmd.arg("-drive")
        .arg(format!("file={},format=raw,if=none,id=disk1", seed.display()))
        .args(["-device", "virtio-blk-pci,drive=disk1"]);
    let started = Instant::now();
    let mut qemu = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start qemu-system-x86_64");
    let ready = loop {
        let attempt = Instant::now();
        if answers_200(port) {
            break started.elapsed().as_secs_f64();
        }
        assert!(started.elapsed() < GIVE_UP, "bare qemu never served / on {port}");
        std::thread::sleep(POLL.saturating_sub(attempt.elapsed()));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    ready
}

/// QEMU's device for the NIC amiprobe names.
fn nic_device(nic: &str) -> &str {
    match nic {
        "virtio-net" => "virtio-net-pci",
        other => other,
    }
}

/// One GET of /, answered 200, all within [`MAX_TIME`].
fn answers_200(port: u16) -> bool {
    let deadline = Instant::now() + MAX_TIME;
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), MAX_TIME) else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let _ = stream.set_read_timeout(Some(left));
    if stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    // "HTTP/1.0 200" (busybox) or "HTTP/1.1 200".
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head.ends_with(b" 200")
}

/// A NoCloud seed like the one amiprobe attaches: a FAT volume labelled `cidata` with the same
/// cloud-config and meta-data (an instance id, a host name and a login key: cloud-init's `ssh`
/// module installs it, which a boot without one would skip).
fn make_seed(path: &Path, round: usize) {
    let files = path.with_extension("d");
    std::fs::create_dir_all(&files).expect("seed dir");
    std::fs::write(files.join("user-data"), "#cloud-config\n{}\n").expect("user-data");
    let meta = format!("instance-id: bare-{round}\nlocal-hostname: bare\npublic-keys:\n- {BENCH_KEY}\n");
    std::fs::write(files.join("meta-data"), meta).expect("meta-data");
    let _ = std::fs::remove_file(path);
    run(Command::new("mkfs.vfat").args(["-n", "cidata", "-C"]).arg(path).arg("1024"));
    for name in ["user-data", "meta-data"] {
        run(Command::new("mcopy").arg("-i").arg(path).arg(files.join(name)).arg("::"));
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.stdout(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}
