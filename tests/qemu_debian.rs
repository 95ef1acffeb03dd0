//! End to end on a real Debian: the qemu provider boots the disk images that
//! scripts/build-debian-image makes from Debian's packages (systemd, cloud-init, nginx, sshd; GRUB for
//! BIOS and UEFI) on the hardware that breaks images in the cloud, and the verdict names what broke.
//!
//! Needs `qemu-system-x86_64`, OVMF and the built images (`scripts/test` provides all three). The runs
//! take a lock so that at most two VMs boot at a time on the two cores CI has.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;
use support::qemu::{assert_cleanup_ok, qemu_processes_of, results, run_fixture_with};
use support::{fixtures, repo_root};

static VMS: Mutex<()> = Mutex::new(());

/// Runs tests/fixtures/qemu/debian.yaml on the given cells (`include` entries, as YAML flow), with
/// nothing of the run left behind; returns the exit code and the results.
fn run_debian(cells: &str, vars: &[&str]) -> (Option<i32>, Value, tempfile::TempDir) {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    for image in ["bookworm.qcow2", "bookworm-uefi-only.qcow2", "bookworm-devnames.qcow2"] {
        let path = repo_root().join("build/debian-image").join(image);
        assert!(path.exists(), "{} is missing: run scripts/build-debian-image (scripts/test does)", path.display());
    }
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiprobe"));
    cmd.arg("run").arg(fixtures().join("qemu/debian.yaml")).arg("--out").arg(out.path());
    cmd.args(["--var", &format!("CELLS={cells}")]);
    for v in vars {
        cmd.args(["--var", v]);
    }
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).status().unwrap();
    let r = results(out.path());
    assert_eq!(qemu_processes_of(r["run_id"].as_str().unwrap()), Vec::<String>::new(), "a QEMU outlived its run");
    for c in r["cells"].as_array().unwrap() {
        assert_cleanup_ok(c);
        let dir = out.path().join("cells").join(c["id"].as_str().unwrap());
        assert!(dir.join("console.log").exists(), "{} has no console.log", dir.display());
    }
    (status.code(), r, out)
}

/// Runs tests/fixtures/qemu/debian-agent.yaml (agent probes only) with `TOKEN` and `vars`, one VM at
/// a time as `run_debian` does.
fn run_debian_agent(token: &str, vars: &[&str]) -> (Option<i32>, Value, tempfile::TempDir) {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let token = format!("TOKEN={token}");
    let vars: Vec<&str> = std::iter::once(token.as_str()).chain(vars.iter().copied()).collect();
    run_fixture_with("qemu/debian-agent.yaml", &vars)
}

/// The one cell whose `params` has `key: value`.
fn cell_with<'a>(r: &'a Value, key: &str, value: &str) -> &'a Value {
    let found: Vec<&Value> = r["cells"].as_array().unwrap().iter().filter(|c| c["params"][key] == value).collect();
    assert_eq!(found.len(), 1, "cells with {key}: {value}: {:#?}", r["cells"]);
    found[0]
}

fn reason(cell: &Value) -> &str {
    cell["reason"].as_str().unwrap_or_else(|| panic!("no reason: {cell:#}"))
}

fn console(out: &Path, cell: &Value) -> String {
    std::fs::read_to_string(out.join(cell["console_log"].as_str().expect("a console log"))).unwrap()
}

fn probe_passed(cell: &Value, name: &str) -> bool {
    cell["probes"].as_array().unwrap().iter().any(|p| p["name"] == name && p["passed"] == true)
}

#[test]
fn an_fstab_naming_dev_vda_boots_on_virtio_and_stops_in_emergency_mode_on_nvme() {
    let (code, r, out) =
        run_debian("[{image: devnames, disk_bus: virtio-blk}, {image: devnames, disk_bus: nvme}]", &[]);
    let virtio = cell_with(&r, "disk_bus", "virtio-blk");
    assert_eq!(virtio["status"], "passed", "{virtio:#}");
    let nvme = cell_with(&r, "disk_bus", "nvme");
    assert_eq!(nvme["status"], "failed", "{nvme:#}");
    // The cause, not the probes that failed after it.
    assert!(reason(nvme).starts_with("console matched `emergency or rescue shell`"), "{}", reason(nvme));
    let log = console(out.path(), nvme);
    assert!(log.contains("dev-vda2.device"), "the console shows the device systemd waited for:\n{log}");
    assert_eq!(code, Some(1));
}

#[test]
fn a_uefi_only_image_boots_under_uefi_and_the_reason_under_bios_is_the_firmware_s_last_words() {
    // Under BIOS the machine hangs in silence: the probes' deadline is what ends it.
    let cells = "[{image: uefi-only, firmware: uefi}, {image: uefi-only, firmware: bios}]";
    let (code, r, out) = run_debian(cells, &["WITHIN=150s"]);
    let uefi = cell_with(&r, "firmware", "uefi");
    assert_eq!(uefi["status"], "passed", "{uefi:#}");
    let bios = cell_with(&r, "firmware", "bios");
    assert_eq!(bios["status"], "failed", "{bios:#}");
    assert!(
        reason(bios).starts_with(
            "the console stayed empty after the firmware's `Booting from Hard Disk...` (firmware.log); probe `page` failed"
        ),
        "{}",
        reason(bios)
    );
    let dir = out.path().join("cells").join(bios["id"].as_str().unwrap());
    let firmware = std::fs::read_to_string(dir.join("firmware.log")).expect("firmware.log kept");
    assert!(firmware.contains("SeaBIOS"), "{firmware}");
    assert_eq!(code, Some(1));
}

#[test]
fn user_data_reaches_cloud_init_and_too_small_a_size_runs_out_of_memory() {
    let mark = format!("mark-{}", std::process::id());
    let (code, r, out) = run_debian(
        "[{image: debian, disk_bus: nvme, nic: virtio-net}, {image: debian, size: tiny}]",
        &[&format!("MARK={mark}")],
    );
    let nvme = cell_with(&r, "disk_bus", "nvme");
    assert_eq!(nvme["status"], "passed", "{nvme:#}");
    // The file cloud-init wrote from this run's user data, served by the image's web server.
    assert!(probe_passed(nvme, "user-data"), "{nvme:#}");
    let body = nvme["probes"].as_array().unwrap().iter().find(|p| p["name"] == "user-data").unwrap()["last_exchange"]
        ["body_excerpt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(body.contains(&mark), "{body}");
    let log = console(out.path(), nvme);
    assert!(log.contains("BEGIN SSH HOST KEY FINGERPRINTS"), "cloud-init printed the host keys:\n{log}");
    // Inside the machine over SSH as `debian`, the host key one of those cloud-init announced.
    let inside = nvme["probes"].as_array().unwrap().iter().find(|p| p["name"] == "inside").unwrap();
    assert_eq!(inside["passed"], true, "{inside:#}");
    let host_key = inside["last_ssh"]["host_key"].as_str().unwrap();
    let fingerprint = host_key.split_whitespace().next().unwrap();
    assert!(log.contains(fingerprint), "{host_key} is not among cloud-init's fingerprints:\n{log}");
    assert!(inside["last_ssh"]["target"].as_str().unwrap().starts_with("debian@"), "{inside:#}");
    // `systemctl is-active ssh` answers `active\n`, which `^active$` matches.
    assert!(probe_passed(nvme, "service"), "{nvme:#}");
    // The same machine from inside without a port or a login: the QEMU guest agent ran it as root.
    let agent = nvme["probes"].as_array().unwrap().iter().find(|p| p["name"] == "agent").unwrap();
    assert_eq!(agent["passed"], true, "{agent:#}");
    assert_eq!(agent["last_ssh"]["target"], "QEMU guest agent", "{agent:#}");
    assert!(agent["last_ssh"]["stdout"].as_str().unwrap().contains(&mark), "{agent:#}");

    let tiny = cell_with(&r, "size", "tiny");
    assert_eq!(tiny["status"], "failed", "{tiny:#}");
    assert_eq!(tiny["machine"]["size"]["memory"], "128M");
    // The kernel's own words: it ran out of memory unpacking its initramfs, and said so as it died.
    assert!(reason(tiny).ends_with("Kernel panic - not syncing: System is deadlocked on memory"), "{}", reason(tiny));
    let oom =
        tiny["console"].as_array().unwrap().iter().find(|f| f["rule"] == "out of memory").expect("an oom finding");
    assert_eq!(oom["passed"], false, "{oom:#}");
    assert_eq!(code, Some(1));
}

#[test]
fn a_service_s_one_line_state_matches_only_the_pattern_of_that_state() {
    // The probe fails only at its deadline: long enough for SSH to be up under TCG.
    let (code, r, _out) = run_debian("[image: debian]", &["STATE=inactive", "WITHIN=150s"]);
    let cell = cell_with(&r, "image", "debian");
    assert_eq!(cell["status"], "failed", "{cell:#}");
    assert!(probe_passed(cell, "inside"), "{cell:#}");
    let service = cell["probes"].as_array().unwrap().iter().find(|p| p["name"] == "service").unwrap();
    assert_eq!(service["passed"], false, "{service:#}");
    assert_eq!(service["last_ssh"]["stdout"], "active\n", "{service:#}");
    assert!(reason(cell).contains("stdout does not match /^inactive$/"), "{}", reason(cell));
    assert_eq!(code, Some(1));
}

/// Checks with no port and no login: QEMU forwards nothing, and the guest agent runs a real tool's
/// JSON output, a command with a secret (masked in the command and the output) and a script.
#[test]
fn a_cell_with_only_agent_probes_passes_with_no_port_forwarded() {
    let token = format!("tok-{}", std::process::id());
    let (code, r, _out) = run_debian_agent(&token, &[]);
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "passed", "{cell:#}");
    assert_eq!(code, Some(0));
    let command_line = cell["machine"]["command_line"].as_str().unwrap_or_default();
    assert!(!command_line.contains("hostfwd"), "nothing forwarded: {command_line}");
    let probe = |name: &str| cell["probes"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    let json = probe("json");
    assert_eq!(json["last_ssh"]["exit_status"], 0, "{json:#}");
    assert!(json["last_ssh"]["stdout"].as_str().unwrap().contains("\"ifname\":\"lo\""), "{json:#}");
    let health = probe("health");
    let (command, stdout) =
        (health["last_ssh"]["command"].as_str().unwrap(), health["last_ssh"]["stdout"].as_str().unwrap());
    assert!(!command.contains(&token) && !stdout.contains(&token), "the secret is masked: {health:#}");
    assert!(stdout.contains("token=********"), "{stdout}");
    assert!(probe("script")["passed"] == true, "{cell:#}");
    // The boot in phases, from the kernel's own stamps and the run's events, each a positive length.
    // The agent answers before the boot reaches its target: the cell may end before userspace does.
    let phases = cell["boot_phases"]["phases"].as_array().unwrap_or_else(|| panic!("no boot phases: {cell:#}"));
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    for wanted in ["firmware", "kernel", "initramfs"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    assert!(phases.iter().all(|p| p["length_s"].as_f64().is_some_and(|l| l > 0.0)), "{phases:#?}");
}

/// The same checks made to fail through the guest agent: a JSON path whose value differs, a unit that
/// does not exist (`systemctl is-active` exits 3 or 4), the secret still masked in what failed.
#[test]
fn agent_commands_fail_on_their_json_and_their_exit_status() {
    let token = format!("tok-{}", std::process::id());
    let (code, r, _out) = run_debian_agent(&token, &["IFNAME=eth9", "UNIT=no-such-unit", "WITHIN=150s"]);
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "failed", "{cell:#}");
    assert_eq!(code, Some(1));
    let probe = |name: &str| cell["probes"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    let json = probe("json");
    assert_eq!(json["passed"], false, "{json:#}");
    assert_eq!(json["last_ssh"]["exit_status"], 0, "the command ran: {json:#}");
    assert!(json["message"].as_str().unwrap().contains("$[0].ifname"), "fails on its JSON: {json:#}");
    let health = probe("health");
    assert_eq!(health["passed"], false, "{health:#}");
    let status = health["last_ssh"]["exit_status"].as_u64().unwrap_or_default();
    assert!(status == 3 || status == 4, "systemctl's exit status for a unit it lacks: {health:#}");
    assert!(health["message"].as_str().unwrap().contains(&format!("exit status {status}, expected 0")), "{health:#}");
    let said = format!("{}{}", health["last_ssh"]["command"], health["last_ssh"]["stdout"]);
    assert!(!said.contains(&token), "the secret is masked: {health:#}");
    assert_eq!(probe("script")["passed"], true, "{cell:#}");
}
