//! Pacing against moto: launches queue behind the RunInstances rate limit, the time queued is shown
//! apart from the time pending, and the screenshot schedule counts from `running`, so that a cell
//! launched late still gets the dense early phase of its boot.
//!
//! Runs in a loopback-only network namespace (`Moto::start`); probes go to a loopback service.

mod support;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{out_dir, Moto, TestService, AMI};

#[test]
fn screenshots_count_from_running_and_queued_time_is_shown_apart() {
    let moto = Moto::start();
    let service = TestService::start();
    // Every instance stays pending for a few describes: the schedule must not tick meanwhile.
    moto.control("/pending", json!({ "describes": 4 }));
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (AMI, "t3.medium")];
    // One launch every 2 s, none in reserve: the second cell queues about 2 s, the third about 4 s.
    let rates = ", rate_limits: { share: 1.0, run_instances: { burst: 1, per_second: 0.5 } }";
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "20s"), rates);
    let text = std::fs::read_to_string(&spec).unwrap().replace("capture:\n", "capture:\n  after_ready: 3s\n");
    std::fs::write(&spec, text).unwrap();
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let cells = r["cells"].as_array().unwrap();
    let mut queued: Vec<f64> = cells.iter().map(|c| c["timings"]["queued_s"].as_f64().unwrap_or(0.0)).collect();
    queued.sort_by(f64::total_cmp);
    assert!(queued[1] >= 1.0 && queued[2] >= 3.0, "queued {queued:?}");
    for cell in cells {
        let t = &cell["timings"];
        let (launched, running) = (t["launched_s"].as_f64().unwrap(), t["running_s"].as_f64().unwrap());
        // Queued time is part of the launch, and shown as such; pending is the rest until running.
        if let Some(q) = t["queued_s"].as_f64() {
            assert!(q <= launched, "queued {q}s but launched at {launched}s");
            let said = events(cell, "launched");
            assert!(said.iter().any(|m| m.contains(&format!("{q:.1}s queued"))), "{said:?}");
        }
        assert!(events(cell, "running").iter().any(|m| m.contains("after it was created")), "{cell:#}");
        // No screenshot before running; the first one at running, then every second (the spec's
        // phase), however long the cell queued and pended.
        let offsets: Vec<f64> =
            cell["screenshots"].as_array().unwrap().iter().map(|s| s["offset_s"].as_f64().unwrap()).collect();
        assert!(offsets.len() >= 3, "{offsets:?}");
        assert!(
            offsets[0] >= running - 0.01 && offsets[0] < running + 1.0,
            "first at {}, running {running}",
            offsets[0]
        );
        for (n, pair) in offsets.windows(2).enumerate() {
            let slot = running + (n + 1) as f64;
            assert!(pair[1] >= slot - 0.05, "screenshot {} at {} before its slot {slot}", n + 1, pair[1]);
        }
    }
    assert_nothing_left(&moto, &r);
}

fn events(cell: &Value, kind: &str) -> Vec<String> {
    let timeline = cell["events"].as_array().unwrap();
    timeline.iter().filter(|e| e["kind"] == kind).map(|e| e["message"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_share_outside_0_to_1_is_refused_with_its_place() {
    let moto = Moto::start();
    let (dir, _) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], "", ", rate_limits: { share: 1.5 }");
    let output = amiprobe(&moto, &["validate", spec.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("provider.ec2.rate_limits.share") && err.contains("share must be above 0 and at most 1"),
        "{err}"
    );
    assert!(err.contains("spec.yaml:3:"), "{err}");
}
