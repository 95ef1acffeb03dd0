//! Time to ready under the qemu provider against raw QEMU on the same image: what amiprobe itself
//! costs between a VM starting and its service being seen.
//!
//!     cargo bench --bench qemu_ready                      # build/debian-image/bookworm.qcow2, 5 rounds
//!     cargo bench --bench qemu_ready -- IMAGE 3           # another disk image, 3 rounds
//!
//! Each round boots the image twice, in alternating order: once as `amiprobe run` (one cell, an HTTP
//! probe on / every 200 ms), once as a bare `qemu-system-x86_64` with the same hardware (q35, TCG,
//! 512M, virtio-blk, e1000, a NoCloud seed made the same way), polled with the same HTTP request every
//! 200 ms. amiprobe's figure is the cell's `ready_s`: from the start of its launch (seed, QEMU start)
//! to the probe's first pass. The bare figure: from spawning QEMU to the first 200 answer. Prints each
//! round and the medians; asserts nothing about time. Both under TCG, whatever the host has: the
//! point is what amiprobe adds, not which accelerator it picks (`accel: auto` proves KVM before the
//! first cell, outside `ready_s`). Needs `scripts/install-deps` and
//! `scripts/build-debian-image`. Everything it contacts is a QEMU forward on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(200);
const GIVE_UP: Duration = Duration::from_secs(300);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let image = args.first().map(PathBuf::from).unwrap_or_else(|| root.join("build/debian-image/bookworm.qcow2"));
    let rounds: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    let image =
        image.canonicalize().unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-debian-image)", image.display()));
    let dir = tempfile::tempdir().expect("temp dir");

    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so that neither always runs on a cooler machine.
        let (a, b) = if round % 2 == 0 {
            let a = amiprobe_ready(&image, dir.path(), round);
            (a, bare_ready(&image, dir.path(), round))
        } else {
            let b = bare_ready(&image, dir.path(), round);
            (amiprobe_ready(&image, dir.path(), round), b)
        };
        println!("qemu_ready round {}: amiprobe {a:.2}s, bare qemu {b:.2}s ({:+.2}s)", round + 1, a - b);
        ours.push(a);
        bare.push(b);
    }
    let (a, b) = (median(&mut ours), median(&mut bare));
    println!(
        "qemu_ready: {} ({} rounds): median amiprobe {a:.2}s, bare qemu {b:.2}s, difference {:+.2}s",
        image.display(),
        rounds,
        a - b
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One cell under amiprobe; its `ready_s`.
fn amiprobe_ready(image: &Path, dir: &Path, round: usize) -> f64 {
    let spec = dir.join(format!("ready-{round}.yaml"));
    let out = dir.join(format!("out-{round}"));
    std::fs::write(
        &spec,
        format!(
            "name: qemu-ready\n\
             provider:\n  qemu: {{ accel: tcg, memory: 512M, images: {{ disk: {{ disk: {} }} }} }}\n\
             matrix: {{ image: disk }}\n\
             capture: {{ screenshots: [{{ every: 5s, until: 300s }}] }}\n\
             probes:\n  - {{ name: page, http: {{ port: 80, path: / }}, expect: {{ status: 200 }}, within: 300s, interval: 200ms }}\n",
            image.display()
        ),
    )
    .expect("write spec");
    let status = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--report", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run amiprobe");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results.json")).expect("json");
    let cell = &results["cells"][0];
    assert_eq!(status.code(), Some(0), "the cell did not pass: {cell:#}");
    cell["timings"]["ready_s"].as_f64().expect("ready_s")
}

/// The same machine as bare QEMU; seconds from spawning it to the first 200 on /.
fn bare_ready(image: &Path, dir: &Path, round: usize) -> f64 {
    let seed = dir.join(format!("seed-{round}.img"));
    make_seed(&seed, round);
    let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-display", "none", "-vga", "std", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", dir.join(format!("bare-{round}.log")).display()))
        .args(["-netdev", &format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80")])
        .args(["-device", "e1000,netdev=n0"])
        .arg("-drive")
        .arg(format!("file={},format=qcow2,if=none,id=disk0,snapshot=on", image.display()))
        .args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=none,id=disk1", seed.display()))
        .args(["-device", "virtio-blk-pci,drive=disk1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64");
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

/// One HTTP/1.1 GET of /, answered 200.
fn answers_200(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// A NoCloud seed like the one amiprobe attaches: a FAT volume labelled `cidata` with an empty
/// cloud-config and an instance id.
fn make_seed(path: &Path, round: usize) {
    let files = path.with_extension("d");
    std::fs::create_dir_all(&files).expect("seed dir");
    std::fs::write(files.join("user-data"), "#cloud-config\n").expect("user-data");
    std::fs::write(files.join("meta-data"), format!("instance-id: bare-{round}\nlocal-hostname: bare\n"))
        .expect("meta-data");
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
