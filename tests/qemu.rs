//! End to end on real VMs: the qemu provider boots the test image from scripts/build-test-image.
//!
//! These tests need `qemu-system-x86_64` and the built image (`scripts/test` provides both) and boot
//! at most four VMs at a time: they take a lock so that they never overlap.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::qemu::{assert_cleanup_ok, cell, qemu_processes_of, results, run_fixture};
use support::{fixtures, repo_root};

static VMS: Mutex<()> = Mutex::new(());

fn require_image() {
    let image = repo_root().join("build/test-image/vmlinuz");
    assert!(image.exists(), "{} is missing: run scripts/build-test-image (scripts/test does)", image.display());
}

fn amiprobe(out: &Path, vars: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiprobe"));
    cmd.arg("run").arg(fixtures().join("qemu/variants.yaml")).arg("--out").arg(out);
    for v in vars {
        cmd.args(["--var", v]);
    }
    cmd
}

/// The run id, mid-run: from the journal's header (results.json is written at the end).
fn journal_run_id(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("results.jsonl")).expect("results.jsonl written");
    let header: Value = serde_json::from_str(text.lines().next().expect("a header line")).expect("the header is JSON");
    header["results"]["run_id"].as_str().expect("a run id in the header").to_string()
}

/// A valid image of the VGA console; once the kernel has printed (after a few seconds), not blank.
fn assert_real_screenshot(out: &Path, shot: &Value) {
    let path = out.join(shot["path"].as_str().unwrap());
    let img = image::open(&path).unwrap_or_else(|e| panic!("{} is not a valid image: {e}", path.display())).to_luma8();
    assert!(img.width() >= 640 && img.height() >= 400, "{}x{}", img.width(), img.height());
    if shot["offset_s"].as_f64().unwrap() < 5.0 {
        return; // firmware and the first kernel lines: may be all black
    }
    // Not blank: a console with text has both dark background and bright glyphs.
    let bright = img.pixels().filter(|p| p.0[0] > 128).count();
    let share = bright as f64 / (img.width() * img.height()) as f64;
    assert!(share > 0.005 && share < 0.5, "{} looks blank ({share:.4} bright)", path.display());
}

#[test]
fn variants_pass_fail_and_time_out_as_they_should() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    require_image();
    let out = tempfile::tempdir().unwrap();
    let status = amiprobe(out.path(), &["WITHIN=50s"]).stderr(Stdio::inherit()).status().unwrap();
    assert_eq!(status.code(), Some(1), "one failing cell makes exit code 1");
    let r = results(out.path());
    assert_eq!(r["status"], "failed");
    assert_eq!(r["counts"]["passed"], 2);
    assert_eq!(r["counts"]["failed"], 2);

    let ok = cell(&r, "ok");
    assert_eq!(ok["status"], "passed", "{ok:#}");
    assert!(ok["screenshots"].as_array().unwrap().len() >= 5);
    for shot in ok["screenshots"].as_array().unwrap() {
        assert_real_screenshot(out.path(), shot);
    }
    let console = std::fs::read_to_string(out.path().join(ok["console_log"].as_str().unwrap())).unwrap();
    assert!(console.contains("amiprobe test image (variant: ok)"), "banner missing from console log");
    let health = ok["probes"].as_array().unwrap().iter().find(|p| p["name"] == "health").unwrap();
    assert_eq!(health["last_exchange"]["status"], 200);
    assert!(ok["timings"]["ready_s"].as_f64().unwrap() > ok["timings"]["running_s"].as_f64().unwrap());

    let fail = cell(&r, "fail");
    assert_eq!(fail["status"], "failed");
    let io = fail["console"].as_array().unwrap().iter().find(|f| f["rule"] == "I/O error").unwrap();
    assert_eq!(io["passed"], false);
    let hit = &io["hits"][0];
    assert!(hit["text"].as_str().unwrap().contains("blk_update_request: I/O error, dev vda"), "{hit}");
    let line_no = hit["line"].as_u64().unwrap() as usize;
    let fail_console = std::fs::read_to_string(out.path().join(fail["console_log"].as_str().unwrap())).unwrap();
    assert!(fail_console.lines().nth(line_no - 1).unwrap().contains("I/O error"), "hit line number is off");
    assert!(fail["reason"].as_str().unwrap().contains("I/O error"), "{}", fail["reason"]);

    let nohttp = cell(&r, "nohttp");
    assert_eq!(nohttp["status"], "failed");
    for probe in nohttp["probes"].as_array().unwrap() {
        assert_eq!(probe["passed"], false, "{probe:#}");
        assert!(probe["attempts_count"].as_u64().unwrap() > 3, "{probe:#}");
        assert!(probe["message"].as_str().unwrap().contains("deadline passed"), "{probe:#}");
    }
    // The guest's network is up and nothing listens: the TCP probe must not pass on connect alone.
    let tcp = nohttp["probes"].as_array().unwrap().iter().find(|p| p["kind"] == "tcp").unwrap();
    assert_eq!(tcp["passed"], false);
    assert!(nohttp["console"].as_array().unwrap().iter().all(|f| f["passed"] == true));

    let slow = cell(&r, "slow");
    assert_eq!(slow["status"], "passed", "{slow:#}");
    let running = slow["timings"]["running_s"].as_f64().unwrap();
    for probe in slow["probes"].as_array().unwrap() {
        let first = probe["first_passed_s"].as_f64().unwrap();
        assert!(first - running > 20.0, "slow service passed {first}s after running {running}s");
    }
    assert!(qemu_processes_of(r["run_id"].as_str().unwrap()).is_empty());
}

#[test]
fn sigint_leaves_no_qemu_and_results_say_interrupted() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    require_image();
    let out = tempfile::tempdir().unwrap();
    let mut child: Child = amiprobe(out.path(), &["VARIANTS=[ok, nohttp]", "WITHIN=120s"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Wait until both VMs run and have taken screenshots: the interrupt lands mid-run.
    let started = Instant::now();
    let shots_dir = |id: &str| out.path().join(format!("cells/{id}/screenshots"));
    while started.elapsed() < Duration::from_secs(60) {
        let count = |id: &str| std::fs::read_dir(shots_dir(id)).map(|d| d.count()).unwrap_or(0);
        if count("ok") >= 2 && count("nohttp") >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let run_id = journal_run_id(out.path());
    assert_eq!(qemu_processes_of(&run_id).len(), 2, "both VMs should be up before the interrupt");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));

    let r = results(out.path());
    assert_eq!(r["status"], "interrupted");
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "interrupted", "{cell:#}");
        assert!(!cell["screenshots"].as_array().unwrap().is_empty(), "screenshots kept");
        assert!(cell["console_log"].is_string(), "console log kept");
        assert!(cell["cleanup"].as_array().unwrap().iter().all(|s| s["ok"] == true), "{cell:#}");
    }
    assert_eq!(qemu_processes_of(&run_id), Vec::<String>::new());
}

#[test]
fn sigkill_after_a_cell_ended_leaves_what_report_renders() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    require_image();
    let out = tempfile::tempdir().unwrap();
    // poweroff ends by itself within seconds; nohttp would wait two minutes for its probes.
    let mut child: Child = amiprobe(out.path(), &["VARIANTS=[poweroff, nohttp]", "WITHIN=120s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = out.path().join("results.jsonl");
    let started = Instant::now();
    let ended =
        |text: &str| text.lines().any(|l| l.starts_with("{\"line\":\"cell\"") && l.contains("\"id\":\"poweroff\""));
    while !std::fs::read_to_string(&journal).is_ok_and(|t| ended(&t)) {
        assert!(started.elapsed() < Duration::from_secs(90), "poweroff did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    let run_id = journal_run_id(out.path());
    child.kill().unwrap();
    child.wait().unwrap();
    // QEMU dies with its parent, however the parent dies.
    let gone = Instant::now();
    while !qemu_processes_of(&run_id).is_empty() {
        assert!(gone.elapsed() < Duration::from_secs(10), "a QEMU outlived its killed run");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!out.path().join("results.json").exists());

    let report = Command::new(env!("CARGO_BIN_EXE_amiprobe")).arg("report").arg(out.path()).output().unwrap();
    assert_eq!(report.status.code(), Some(130), "{}", String::from_utf8_lossy(&report.stderr));
    let r = results(out.path());
    assert_eq!(r["status"], "interrupted");
    let poweroff = cell(&r, "poweroff");
    assert_eq!(poweroff["status"], "failed", "{poweroff:#}");
    assert!(poweroff["console_log"].is_string() && !poweroff["screenshots"].as_array().unwrap().is_empty());
    let nohttp = cell(&r, "nohttp");
    assert_eq!(nohttp["status"], "interrupted", "{nohttp:#}");
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("id=\"cell-poweroff\"") && html.contains("id=\"cell-nohttp\""));
}

#[test]
fn a_missing_image_fails_before_launching() {
    let out = tempfile::tempdir().unwrap();
    let spec = out.path().join("spec.yaml");
    std::fs::write(&spec, "name: t\nprovider: {qemu: {images: {x: {kernel: ./no-such-kernel}}}}\nmatrix: {image: x}\n")
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(out.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let r = results(&out.path().join("out"));
    let reason = r["cells"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("no-such-kernel does not exist"), "{reason}");
}

/// Runs the variants fixture on some variants with a long probe deadline: a cell that ends early
/// ended because something noticed, not because its probes gave up.
fn run_variants(out: &Path, vars: &[&str]) -> (Option<i32>, Value) {
    let status = amiprobe(out, vars).stdout(Stdio::null()).stderr(Stdio::inherit()).status().unwrap();
    let r = results(out);
    assert_eq!(qemu_processes_of(r["run_id"].as_str().unwrap()), Vec::<String>::new(), "a QEMU outlived its run");
    (status.code(), r)
}

fn ended_s(cell: &Value) -> f64 {
    cell["timings"]["ended_s"].as_f64().unwrap_or_else(|| panic!("no ended_s: {cell:#}"))
}

#[test]
fn a_guest_that_powers_off_ends_its_cell_at_once() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    require_image();
    let out = tempfile::tempdir().unwrap();
    let (code, r) = run_variants(out.path(), &["VARIANTS=[poweroff]", "WITHIN=120s"]);
    assert_eq!(code, Some(1));
    let cell = cell(&r, "poweroff");
    assert_eq!(cell["status"], "failed", "{cell:#}");
    // The guest powers off ~4 s after init (well under 20 s even under TCG); the probes would wait 120 s.
    assert!(ended_s(cell) < 40.0, "the cell did not notice the poweroff: ended at {}s", ended_s(cell));
    let reason = cell["reason"].as_str().unwrap();
    assert!(reason.contains("powered off") || reason.contains("stopped"), "{reason}");
    let noticed = cell["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.starts_with("machine stopped by itself")));
    let noticed = noticed.expect("a timeline event for the stop")["at_s"].as_f64().unwrap();
    assert!(ended_s(cell) - noticed < 5.0, "stop noticed at {noticed}s, cell ended at {}s", ended_s(cell));
    // QEMU exits by itself on a guest poweroff (-no-reboot): cleaning up after it is not a failure.
    assert_cleanup_ok(cell);
    let console = std::fs::read_to_string(out.path().join(cell["console_log"].as_str().unwrap())).unwrap();
    assert!(console.contains("reboot: Power down"), "the console log ends before the poweroff");
}

#[test]
fn a_kernel_panic_ends_the_cell_and_is_its_reason() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    require_image();
    let out = tempfile::tempdir().unwrap();
    let (code, r) = run_variants(
        out.path(),
        &[
            "VARIANTS=[panic]",
            "WITHIN=120s",
            r#"MUST_CONTAIN=["amiprobe test image", "a line this image never prints"]"#,
        ],
    );
    assert_eq!(code, Some(1));
    let cell = cell(&r, "panic");
    assert_eq!(cell["status"], "failed", "{cell:#}");
    assert!(ended_s(cell) < 40.0, "the cell did not notice the panic: ended at {}s", ended_s(cell));
    // The missing line is a consequence; the panic is what broke.
    let reason = cell["reason"].as_str().unwrap();
    assert!(reason.to_lowercase().contains("kernel panic"), "{reason}");
    let panic = cell["console"].as_array().unwrap().iter().find(|f| f["rule"] == "kernel panic").unwrap();
    assert_eq!(panic["passed"], false, "{panic:#}");
    assert!(panic["hits"][0]["text"].as_str().unwrap().contains("sysrq triggered crash"), "{panic:#}");
    // The timeline places the panic when its line appeared, and the last screenshot shows it.
    let seen = panic["hits"][0]["first_seen_s"].as_f64().expect("first seen while running");
    let last_shot = cell["screenshots"].as_array().unwrap().last().unwrap()["offset_s"].as_f64().unwrap();
    assert!(last_shot >= seen, "last screenshot at {last_shot}s, panic seen at {seen}s");
    println!("panic seen at {seen:.1}s, cell ended at {:.1}s ({:.1}s later)", ended_s(cell), ended_s(cell) - seen);
    assert!(ended_s(cell) - seen < 5.0, "the cell went on for {:.1}s after the panic", ended_s(cell) - seen);
    // A panicked guest is paused, not gone: QEMU is still there to be told to quit.
    assert_cleanup_ok(cell);
}

#[test]
fn coloured_console_output_matches_as_plain_text() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    require_image();
    let out = tempfile::tempdir().unwrap();
    let (code, r) =
        run_variants(out.path(), &["VARIANTS=[color]", "WITHIN=75s", r#"MUST_CONTAIN=["Started httpd.service"]"#]);
    let cell = cell(&r, "color");
    assert_eq!(cell["status"], "passed", "{cell:#}");
    assert_eq!(code, Some(0));
    let log = std::fs::read(out.path().join(cell["console_log"].as_str().unwrap())).unwrap();
    assert!(!log.contains(&0x1b), "console.log keeps escape sequences");
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("Started httpd.service - Web server."), "coloured line missing from console.log");
    assert_cleanup_ok(cell);
}

#[test]
fn a_disk_path_with_commas_reaches_qemu_quoted_with_its_format() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let disks = dir.path().join("x,y");
    std::fs::create_dir(&disks).unwrap();
    let disk = disks.join("a,b.qcow2");
    let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("16M").status().unwrap();
    assert!(made.success());
    let before = std::fs::read(&disk).unwrap();
    let spec = dir.path().join("spec.yaml");
    // A blank disk boots nothing, but QEMU must accept the drive and run: firmware waits for a disk.
    std::fs::write(
        &spec,
        format!(
            "name: t\nprovider: {{qemu: {{accel: tcg, images: {{blank: {{disk: '{}'}}}}}}}}\nmatrix: {{image: blank}}\n\
             capture: {{screenshots: [{{every: 1s, until: 3s}}]}}\ntimeouts: {{run: 60s}}\n",
            disk.display()
        ),
    )
    .unwrap();
    // The output directory has a comma too: the serial log is written under it.
    let out = dir.path().join("out,1");
    let status = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let r = results(&out);
    assert_eq!(qemu_processes_of(r["run_id"].as_str().unwrap()), Vec::<String>::new());
    let cell = &r["cells"][0];
    assert!(cell["timings"]["running_s"].is_number(), "qemu did not run: {cell:#}");
    let command_line = cell["machine"]["command_line"].as_str().unwrap();
    let quoted = disk.display().to_string().replace(',', ",,");
    assert!(
        command_line.contains(&format!(
            "-drive file={quoted},format=qcow2,if=none,id=disk0,snapshot=on -device virtio-blk-pci,drive=disk0,bootindex=0"
        )),
        "{command_line}"
    );
    assert!(out.join("cells/blank/serial.log").exists(), "serial log not at its literal path: {command_line}");
    assert_cleanup_ok(cell);
    assert_eq!(status.code(), Some(0), "{cell:#}");
    assert_eq!(std::fs::read(&disk).unwrap(), before, "snapshot=on: the image must not be written to");
}

#[test]
fn hardware_fields_reach_qemu_and_the_results() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let (status, r, out) = run_fixture("qemu/hardware.yaml");

    let nvme = cell(&r, "ok_nvme_small_64M+32M-scsi");
    assert_eq!(nvme["status"], "passed", "{nvme:#}");
    let m = &nvme["machine"];
    assert_eq!(m["size"], serde_json::json!({"name": "small", "memory": "384M", "cpus": 2}));
    assert_eq!(
        (m["disk_bus"].as_str(), m["nic"].as_str(), m["firmware"].as_str()),
        (Some("nvme"), Some("e1000"), Some("bios"))
    );
    assert_eq!(m["disks"], serde_json::json!([{"size": "64M", "bus": "nvme"}, {"size": "32M", "bus": "scsi"}]));
    let line = m["command_line"].as_str().unwrap();
    for part in [
        "-m 384 -smp 2",
        "-device e1000,netdev=n0",
        "disk-0.qcow2,format=qcow2,if=none,id=disk0,discard=unmap -device nvme,drive=disk0,serial=amiprobe0",
        "-device virtio-scsi-pci,id=scsi0",
        "disk-1.qcow2,format=qcow2,if=none,id=disk1,discard=unmap -device scsi-hd,drive=disk1,bus=scsi0.0",
        // The seed goes on the cell's bus.
        "nocloud-seed.img,format=raw,if=none,id=disk2 -device nvme,drive=disk2",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    assert!(!line.contains("pflash"), "{line}");

    let uefi = cell(&r, "ok_ide_t3.micro_uefi_virtio-net");
    assert_eq!(uefi["status"], "passed", "{uefi:#}");
    let m = &uefi["machine"];
    assert_eq!(
        m["size"],
        serde_json::json!({"name": "tiny", "instance_type": "t3.micro", "memory": "320M", "cpus": 1})
    );
    assert_eq!(
        (m["disk_bus"].as_str(), m["nic"].as_str(), m["firmware"].as_str()),
        (Some("ide"), Some("virtio-net"), Some("uefi"))
    );
    let line = m["command_line"].as_str().unwrap();
    let dir = out.path().join("cells/ok_ide_t3.micro_uefi_virtio-net");
    for part in [
        "-m 320 -smp 1".to_string(),
        "-device virtio-net-pci,netdev=n0".to_string(),
        "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE".to_string(),
        // Each cell writes its own copy of the variable store, never the template.
        format!("-drive if=pflash,format=raw,unit=1,file={}", dir.join("OVMF_VARS.fd").display()),
        "-device ide-hd,drive=disk0,bus=ide.0".to_string(),
    ] {
        assert!(line.contains(&part), "{part} not in {line}");
    }
    for c in [nvme, uefi] {
        assert_cleanup_ok(c);
    }
    // What the cells made is gone with them; their console and screenshots stay.
    for id in ["ok_nvme_small_64M+32M-scsi", "ok_ide_t3.micro_uefi_virtio-net"] {
        let left: Vec<String> = std::fs::read_dir(out.path().join("cells").join(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".qcow2") || n.ends_with(".img") || n.ends_with(".fd"))
            .collect();
        assert!(left.is_empty(), "{id} left {left:?}");
    }
    assert_eq!(status, Some(0));
}

/// An agent probe on an image without the QEMU guest agent (the busybox image has none): QEMU gets
/// the agent's channel and no port forward at all, and the probe fails naming what is missing.
#[test]
fn an_agent_probe_on_an_image_without_the_agent_names_what_is_missing() {
    require_image();
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let image = repo_root().join("build/test-image");
    let spec = out.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: agent\nprovider: {{qemu: {{accel: auto, images: {{ok: {{kernel: {k}, initrd: {i}, append: \"console=ttyS0 amiprobe.variant=ok\"}}}}}}}}\n\
             matrix: {{image: ok}}\nprobes:\n  - name: inside\n    agent: {{command: \"true\"}}\n    within: 20s\n",
            k = image.join("vmlinuz").display(),
            i = image.join("initrd.img").display(),
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(out.path().join("out"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let r = results(&out.path().join("out"));
    assert_eq!(qemu_processes_of(r["run_id"].as_str().unwrap()), Vec::<String>::new(), "a QEMU outlived its run");
    let cell = &r["cells"][0];
    let command_line = cell["machine"]["command_line"].as_str().unwrap_or_default();
    assert!(command_line.contains("name=org.qemu.guest_agent.0"), "{command_line}");
    assert!(!command_line.contains("hostfwd"), "an agent probe needs no forwarded port: {command_line}");
    let probe = &cell["probes"][0];
    assert_eq!(probe["target"], "QEMU guest agent", "{probe:#}");
    let message = probe["message"].as_str().unwrap();
    assert!(message.contains("the image needs qemu-guest-agent"), "{message}");
    assert_eq!(cell["status"], "failed", "{cell:#}");
}
