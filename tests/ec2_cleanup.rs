//! "Nothing leaks, ever", against a moto that behaves like EC2 on a bad day: RunInstances taking a
//! second, key pairs and instances "not found" for a moment after they are made, random server
//! errors (some after the call took effect), removals that fail, and signals at any moment.
//!
//! Like every ec2 test, each runs in its own loopback-only network namespace and ends by listing
//! what is left on moto for its run.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{closed_port, out_dir, Moto, TestService, AMI};

/// The seed of the randomised tests: `AMIPROBE_SEED` to replay a failure.
fn seed() -> u64 {
    std::env::var("AMIPROBE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261125)
}

/// Two cells whose probe never passes: a run lasts until it is interrupted.
fn endless_spec(dir: &Path, extra_provider: &str) -> std::path::PathBuf {
    let file =
        spec(dir, &[(AMI, "t3.micro"), (AMI, "t3.small")], &http_probe("never", closed_port(), "100s"), extra_provider);
    let text =
        std::fs::read_to_string(&file).unwrap().replace("timeouts: { run: 2m }", "timeouts: { run: 3m, cleanup: 2m }");
    std::fs::write(&file, text).unwrap();
    file
}

fn wait_for_file(path: &Path, limit: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < limit, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child with a limit; a run that hangs is killed and fails the test.
fn wait_with_limit(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("amiprobe did not exit within {limit:?} of its signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// One interrupted run: what was sent, and what came of it.
struct Interrupted {
    delay_ms: u64,
    signal: &'static str,
    second: bool,
    code: Option<i32>,
    results: Value,
    seconds_to_exit: f64,
}

#[test]
fn signals_at_random_moments_across_launch_leave_nothing() {
    let runs: usize = std::env::var("AMIPROBE_SIGNAL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed = seed();
    let moto = Moto::start();
    moto.latency(&[("RunInstances", 1.0), ("ImportKeyPair", 0.2), ("*", 0.05), ("jitter", 0.3)]);
    moto.consistency(1.0, 1.0);
    moto.chaos(0.03, seed, 0.5);
    let mut rng = fastrand::Rng::with_seed(seed);
    let signals = [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")];
    // Moments from the instant the journal exists (the handlers are in place): a quarter at once
    // (before the first EC2 call), the rest spread over the key pairs' and RunInstances' seconds.
    let plans: Vec<(u64, usize, bool)> = (0..runs)
        .map(|_| {
            let delay = if rng.u8(0..4) == 0 { rng.u64(0..30) } else { rng.u64(0..3000) };
            (delay, rng.usize(0..signals.len()), rng.u8(0..5) == 0)
        })
        .collect();

    let mut done = Vec::new();
    // Five runs at a time, as CI jobs sharing an account would.
    for batch in plans.chunks(5) {
        let handles: Vec<_> = batch
            .iter()
            .map(|&(delay_ms, which, second)| {
                let env = moto.env();
                let (sig, name) = signals[which];
                std::thread::spawn(move || {
                    let (dir, out) = out_dir();
                    let spec = endless_spec(dir.path(), "");
                    let child = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"))
                        .args(["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
                        .args(["--probe-host", "127.0.0.1", "--allow-targets", "127.0.0.0/8"])
                        .envs(env)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    wait_for_file(&out.join("results.jsonl"), Duration::from_secs(30));
                    std::thread::sleep(Duration::from_millis(delay_ms));
                    signal(&child, sig);
                    let sent = Instant::now();
                    if second {
                        std::thread::sleep(Duration::from_millis(300));
                        signal(&child, libc::SIGINT);
                    }
                    let status = wait_with_limit(child, Duration::from_secs(180));
                    Interrupted {
                        delay_ms,
                        signal: name,
                        second,
                        code: status.code(),
                        results: results(&out),
                        seconds_to_exit: sent.elapsed().as_secs_f64(),
                    }
                })
            })
            .collect();
        done.extend(handles.into_iter().map(|h| h.join().expect("run thread")));
    }

    let mut launch_interrupted = 0;
    let mut in_flight = 0;
    for run in &done {
        let what = format!("{} after {} ms{}", run.signal, run.delay_ms, if run.second { " (+SIGINT)" } else { "" });
        assert_eq!(run.code, Some(130), "{what}: exit code");
        assert_eq!(run.results["status"], "interrupted", "{what}");
        assert!(run.results.get("not_removed").is_none(), "{what}: {}", run.results["not_removed"]);
        for cell in run.results["cells"].as_array().unwrap() {
            assert!(
                ["interrupted", "not_run"].contains(&cell["status"].as_str().unwrap()),
                "{what}: {}",
                cell["status"]
            );
            launch_interrupted += usize::from(cell["reason"] == "interrupted during launch");
            // The signal came while a create call was in flight: the call was let finish.
            let events = cell["events"].as_array().unwrap();
            in_flight += usize::from(events.iter().any(|e| e["kind"] == "interrupted"));
        }
        // The proof: nothing of the run exists on moto any more.
        assert_nothing_left(&moto, &run.results);
    }
    // The moments are spread over the launches: a good share must have hit one in flight.
    assert!(in_flight >= 5, "only {in_flight} cells were interrupted in the middle of a launch");
    let calls = moto.calls();
    let injected = |prefix: &str| calls.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum::<u64>();
    let slowest = done.iter().map(|r| r.seconds_to_exit).fold(0.0, f64::max);
    println!(
        "seed {seed}: {runs} interrupted runs ({} with a second signal), {in_flight} cells interrupted with a create in flight, {launch_interrupted} stopped before RunInstances, \
         {} server errors and {} not-found answers injected, 0 leaks, slowest exit {slowest:.1}s after the signal",
        done.iter().filter(|r| r.second).count(),
        injected("chaos:"),
        injected("consistency:"),
    );
}

#[test]
fn key_pairs_and_instances_not_found_right_after_creation_are_waited_out() {
    let moto = Moto::start();
    let service = TestService::start();
    moto.latency(&[("RunInstances", 0.5), ("*", 0.02)]);
    moto.consistency(2.0, 2.0);
    let (dir, out) = out_dir();
    let spec =
        spec(dir.path(), &[(AMI, "t3.micro"), (AMI, "t3.small")], &http_probe("health", service.port, "30s"), "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(r["counts"]["passed"], 2);
    let calls = moto.calls();
    assert!(calls.get("consistency:RunInstances").copied().unwrap_or(0) >= 1, "no window was hit: {calls:?}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn random_server_errors_are_ridden_out() {
    let moto = Moto::start();
    let service = TestService::start();
    // One call in ten fails, half of those after taking effect (a lost answer).
    moto.chaos(0.1, seed(), 0.5);
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (AMI, "t3.medium")];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "30s"), "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let calls = moto.calls();
    assert!(calls.keys().any(|k| k.starts_with("chaos:")), "no server error was injected: {calls:?}");
    // A lost RunInstances answer retried with the same client token is one instance, not two.
    assert_eq!(moto.instances(r["run_id"].as_str().unwrap()).len(), 3);
    assert_nothing_left(&moto, &r);
}

/// One cell on a moto whose TerminateInstances fails until told otherwise, with a short cleanup deadline.
fn terminate_keeps_failing(
    cleanup: &str,
) -> (Moto, TestService, tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let moto = Moto::start();
    let service = TestService::start();
    moto.control(
        "/fault",
        json!({"action": "TerminateInstances", "code": "InternalError", "status": 500, "count": 100000}),
    );
    let (dir, out) = out_dir();
    let spec_file = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", service.port, "10s"), "");
    let text = std::fs::read_to_string(&spec_file).unwrap().replace("run: 2m", &format!("run: 2m, cleanup: {cleanup}"));
    std::fs::write(&spec_file, text).unwrap();
    (moto, service, dir, out, spec_file)
}

#[test]
fn a_removal_that_never_succeeds_is_named_and_fails_the_run() {
    let (moto, _service, _dir, out, spec_file) = terminate_keeps_failing("3s");
    let (output, r) = run(&moto, &spec_file, &out);
    assert_eq!(output.status.code(), Some(1), "a leak never exits 0: {}", stderr(&output));
    assert_eq!(r["status"], "failed");
    let instance = moto.instances(r["run_id"].as_str().unwrap()).remove(0);
    let id = instance.instance_id().unwrap();
    let not_removed = r["not_removed"].as_array().expect("not_removed");
    assert_eq!(not_removed.len(), 1, "{not_removed:?}");
    assert!(not_removed[0]["resource"].as_str().unwrap().starts_with(&format!("instance {id}")), "{not_removed:?}");
    assert!(not_removed[0]["error"].as_str().unwrap().contains("TerminateInstances failed: InternalError"));
    // Named wherever a person or CI looks.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("NOT REMOVED instance {id}")), "{stdout}");
    assert!(stdout.contains(&format!("amiprobe sweep --run-id {}", r["run_id"].as_str().unwrap())), "{stdout}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Not removed") && html.contains(id), "the report names the instance");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("resources not removed") && junit.contains(id), "{junit}");
    // The removal was retried with backoff, not given up after one try.
    assert!(moto.calls()["fault:TerminateInstances"] >= 3, "{:?}", moto.calls());
    // The key pair was removed all the same.
    let (_, key_pairs) = moto.leftovers(r["run_id"].as_str().unwrap());
    assert!(key_pairs.is_empty(), "{key_pairs:?}");
}

#[test]
fn a_console_that_turns_fatal_stops_the_cell_within_seconds() {
    let moto = Moto::start();
    moto.control("/console", json!({ "text": "booting...\nsystemd[1]: Starting services...\n" }));
    let (dir, out) = out_dir();
    // The probe would wait 100 s; the console is read every second; `login:` never comes.
    let spec = endless_spec(dir.path(), ", console_poll_interval: 1s");
    let child = spawn_run(&moto, &spec, &out, Stdio::piped());
    wait_for_screenshots(&out, 4);
    let panic = "booting...\nsystemd[1]: Starting services...\n[    4.2] Kernel panic - not syncing: VFS: Unable to mount root fs\n";
    moto.control("/console", json!({ "text": panic }));
    let turned_fatal = Instant::now();
    let output = child.wait_with_output().unwrap();
    let took = turned_fatal.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let r = results(&out);
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "failed");
        let reason = cell["reason"].as_str().unwrap();
        assert!(reason.starts_with("console matched `kernel panic` at line 3"), "the panic, not `login:`: {reason}");
        let matched = cell["events"].as_array().unwrap().iter().find(|e| e["kind"] == "console_match").expect("event");
        let (seen, ended) = (matched["at_s"].as_f64().unwrap(), cell["timings"]["ended_s"].as_f64().unwrap());
        assert!(ended - seen < 10.0, "ended {ended}s, panic seen at {seen}s");
        let panic_hit = cell["console"].as_array().unwrap().iter().find(|f| f["rule"] == "kernel panic").unwrap();
        assert_eq!(panic_hit["hits"][0]["first_seen_s"].as_f64(), Some(seen), "the hit keeps when it was seen");
        // The missing line is still listed, below the panic.
        assert!(cell["console"].as_array().unwrap().iter().any(|f| f["rule"] == "login:" && f["passed"] == false));
    }
    println!("panic on the console -> run ended in {:.1}s (console read every 1s)", took.as_secs_f64());
    // Read every second: the cells stop within seconds, not at their 100 s probe deadline.
    assert!(took < Duration::from_secs(15), "the run went on for {took:?} after the panic");
    assert_nothing_left(&moto, &r);
}

#[test]
fn coloured_console_text_is_matched_clean_and_kept_raw() {
    let moto = Moto::start();
    let service = TestService::start();
    let coloured = "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mlighttpd.service\x1b[0m - Lighttpd Daemon.\r\n\x1b]0;pwned\x07ami-test login: \n";
    moto.control("/console", json!({ "text": coloured }));
    let (dir, out) = out_dir();
    let spec_file = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", service.port, "10s"), "");
    let text = std::fs::read_to_string(&spec_file)
        .unwrap()
        .replace("must_contain: [\"login:\"]", "must_contain: [\"Started lighttpd.service\", \"login:\"]");
    std::fs::write(&spec_file, text).unwrap();
    let (output, r) = run(&moto, &spec_file, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cell_dir = out.join("cells").join(r["cells"][0]["id"].as_str().unwrap());
    let clean = std::fs::read_to_string(cell_dir.join("console.log")).unwrap();
    assert!(clean.contains("[  OK  ] Started lighttpd.service - Lighttpd Daemon.\n"), "{clean:?}");
    assert!(!clean.contains('\x1b') && !clean.contains('\x07'), "{clean:?}");
    let raw = std::fs::read_to_string(cell_dir.join("console.raw.log")).unwrap();
    assert_eq!(raw, coloured, "the raw log is kept as the guest wrote it");
    for text in [&output.stdout, &output.stderr] {
        assert!(!text.contains(&0x1b), "guest bytes reached the terminal");
    }
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_run_started_with_sigint_ignored_still_stops_cleanly_on_sigint() {
    use std::os::unix::process::CommandExt;
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = endless_spec(dir.path(), "");
    // What a shell does to a background job (`amiprobe run ... &` in a CI script).
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"));
    command
        .args(["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--probe-host", "127.0.0.1", "--allow-targets", "127.0.0.0/8"])
        .envs(moto.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: signal(2) between fork and exec is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    wait_for_screenshots(&out, 2);
    signal(&child, libc::SIGINT);
    let status = wait_with_limit(child, Duration::from_secs(120));
    assert_eq!(status.code(), Some(130));
    let r = results(&out);
    assert_eq!(r["status"], "interrupted");
    assert_nothing_left(&moto, &r);
}

#[test]
fn what_a_cell_could_not_remove_the_end_of_the_run_removes() {
    let (moto, _service, _dir, out, spec_file) = terminate_keeps_failing("4s");
    let mut child = spawn_run(&moto, &spec_file, &out, Stdio::piped());
    // Once the cell has given up on its instance, EC2 recovers; the run's last removals find it.
    let mut stderr = child.stderr.take().unwrap();
    let (gave_up, given_up) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut stderr, &mut buf) {
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("failed: TerminateInstances failed") {
                let _ = gave_up.send(());
            }
        }
        text
    });
    given_up.recv_timeout(Duration::from_secs(60)).expect("the cell's cleanup gave up");
    moto.control("/fault", json!({ "clear": true }));
    let status = wait_with_limit(child, Duration::from_secs(120));
    let log = reader.join().unwrap();
    let r = results(&out);
    assert_eq!(status.code(), Some(1), "the cell's own cleanup failed, so the cell fails: {log}");
    assert!(
        r["cells"][0]["reason"].as_str().unwrap().starts_with("cleanup failed: terminate i-"),
        "{}",
        r["cells"][0]["reason"]
    );
    let id = moto.instances(r["run_id"].as_str().unwrap()).remove(0).instance_id().unwrap().to_string();
    let removed_at_end = r["leftover_cleanup"].as_array().unwrap();
    assert!(
        removed_at_end.iter().any(|s| s["ok"] == true && s["action"] == format!("terminate {id}")),
        "{removed_at_end:?}"
    );
    assert!(r.get("not_removed").is_none(), "removed at the end, so not reported: {}", r["not_removed"]);
    assert!(!log.contains("NOT REMOVED"), "{log}");
    assert_nothing_left(&moto, &r);
}
