//! `retries`: a cell that does not pass runs again, from a fresh launch; one that passes on a retry is
//! flaky in every report, never a plain pass. Against moto's EC2 server through the real aws-sdk-ec2,
//! in a loopback-only namespace, with nothing of the run left afterwards.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::ec2::*;
use support::moto::{closed_port, out_dir, runtime, Moto, AMI};

/// A service that answers 503 until `healthy` is set, then 200 with the health JSON.
fn flipping_service() -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let (status, body) = if flag.load(Ordering::SeqCst) {
                ("200 OK", r#"{"status": "up"}"#)
            } else {
                ("503 Service Unavailable", r#"{"status": "starting"}"#)
            };
            let _ = write!(stream, "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    (port, healthy)
}

fn junit(out: &std::path::Path) -> String {
    std::fs::read_to_string(out.join("junit.xml")).unwrap()
}

#[test]
fn a_cell_that_passes_on_its_retry_is_flaky_everywhere() {
    let moto = Moto::start();
    let (port, healthy) = flipping_service();
    let (dir, out) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", port, "3s"), "");
    let summary = dir.path().join("summary.md");
    // The service comes up once the second launch is made: the first try can only fail.
    let (output, r, second_launch) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                if moto.calls().get("RunInstances").copied().unwrap_or(0) >= 2 {
                    healthy.store(true, Ordering::SeqCst);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        });
        let (output, r) = run_with(&moto, &spec, &out, &["--retries", "2", "--summary", summary.to_str().unwrap()]);
        (output, r, watcher.join().unwrap())
    });
    assert!(second_launch, "no second launch");
    let cell = &r["cells"][0];
    assert_eq!(output.status.code(), Some(0), "a flaky pass passes the run: {}", stderr(&output));
    assert_eq!(cell["status"], "passed");
    assert_eq!(cell["flaky"], true, "{cell:#}");
    assert_eq!(r["counts"]["flaky"], 1);
    let earlier = cell["earlier_tries"].as_array().unwrap();
    assert_eq!(earlier.len(), 1, "{cell:#}");
    assert_eq!(earlier[0]["status"], "failed");
    assert!(earlier[0]["reason"].as_str().unwrap().starts_with("probe `health` failed: status 503"), "{earlier:?}");
    // The failed try's files are kept beside the passing one's.
    let try_dir = out.join(earlier[0]["dir"].as_str().unwrap());
    assert!(try_dir.join("console.log").exists(), "{}", try_dir.display());
    assert!(out.join("cells").join(cell["id"].as_str().unwrap()).join("console.log").exists());
    assert_eq!(moto.calls()["RunInstances"], 2);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 passed (1 flaky)"), "{stdout}");
    assert!(stdout.contains("FLAKY"), "{stdout}");
    let junit = junit(&out);
    assert!(junit.contains("<flakyFailure") && !junit.contains("<failure"), "{junit}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("badge flaky"), "the report shows it flaky");
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("| flaky | passed on try 2 after: probe `health` failed: status 503"), "{summary}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_cell_that_never_passes_fails_after_its_tries_with_each_one_recorded() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", closed_port(), "2s"), "");
    // In the spec this time: `retries: 1`.
    let text = std::fs::read_to_string(&spec).unwrap() + "retries: 1\n";
    std::fs::write(&spec, text).unwrap();
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "failed");
    assert_eq!(cell["flaky"], Value::Null, "not flaky: it never passed");
    assert_eq!(cell["earlier_tries"].as_array().unwrap().len(), 1);
    assert_eq!(moto.calls()["RunInstances"], 2);
    let junit = junit(&out);
    assert!(junit.contains("<failure") && junit.contains("<rerunFailure"), "{junit}");
    assert_nothing_left(&moto, &r);
}

/// `--keep-failed`: the failed cell's instance stays, tagged to expire; the run's end leaves it,
/// `sweep` leaves it until it has expired and removes it after.
#[test]
fn a_kept_failed_instance_stays_until_its_expiry_and_sweep_removes_it_then() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", closed_port(), "2s"), "");
    let (output, r) = run_with(&moto, &spec, &out, &["--keep-failed", "1h"]);
    assert_eq!(output.status.code(), Some(1), "a failed cell fails the run: {}", stderr(&output));
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "failed");
    let run_id = r["run_id"].as_str().unwrap().to_string();

    // The report says how to reach it, with the run's key, kept for it.
    let how = cell["cleanup"][0]["action"].as_str().unwrap().to_string();
    assert!(
        how.starts_with("kept i-")
            && how.contains("for debugging until")
            && how.contains("ssh -i RESULTS/keys/id_ed25519"),
        "{how}"
    );
    assert!(out.join("keys/id_ed25519").is_file(), "the private key is kept");
    assert!(r["not_removed"].as_array().is_none_or(|n| n.is_empty()), "kept is not leaked: {r:#}");

    let instances = moto.instances(&run_id);
    assert_eq!(instances.len(), 1);
    let instance = &instances[0];
    assert_eq!(instance.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
    let tag =
        |key: &str| instance.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string);
    let expires = humantime::parse_rfc3339_weak(&tag("amiprobe:expires").expect("an expiry")).unwrap();
    let left = expires.duration_since(std::time::SystemTime::now()).unwrap().as_secs();
    assert!((55 * 60..=60 * 60).contains(&left), "expires in {left}s, not about an hour");
    assert!(tag("amiprobe:kept").is_some());
    let id = instance.instance_id().unwrap().to_string();

    // Not yet expired: the default sweep (expired) and --older-than leave it.
    for args in [&["sweep"][..], &["sweep", "--older-than", "0s"][..]] {
        let swept = amiprobe(&moto, args).output().unwrap();
        assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
        assert_eq!(moto.leftovers(&run_id).0, vec![id.clone()], "{args:?} removed a kept instance before its expiry");
    }

    // Its time is up: the next sweep removes it.
    let past = "2000-01-01T00:00:00Z";
    let client = moto.client();
    runtime().block_on(async {
        let tag = aws_sdk_ec2::types::Tag::builder().key("amiprobe:expires").value(past).build();
        client.create_tags().resources(&id).tags(tag).send().await.unwrap();
    });
    let swept = amiprobe(&moto, &["sweep"]).output().unwrap();
    assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
    assert_nothing_left(&moto, &r);
}
