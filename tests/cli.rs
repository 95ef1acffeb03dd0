//! The command line: plan, shards, schema and the example specs.

mod support;

use std::collections::BTreeSet;

use support::{repo_root, Test};

#[test]
fn plan_expands_the_readme_spec_to_its_four_cells() {
    let run = Test::new().in_repo().args(["plan", "specs/web-appliance.yaml", "--format", "json"]).run().code(0);
    let doc = run.json();
    let ids: Vec<&str> = doc["cells"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "ami-0aaa_t3.micro_subnet-1_sg-web",
            "ami-0aaa_m5.large_subnet-1_sg-web",
            "ami-0bbb_t3.micro_subnet-1_sg-web",
            "ami-0ccc_t3.small_subnet-1_sg-web"
        ]
    );
    assert_eq!(doc["cells"][3]["security_groups"], serde_json::json!(["sg-web"]));
}

#[test]
fn shards_are_disjoint_and_their_union_is_the_plan() {
    let spec = "name: t\nprovider: {ec2: {}}\nmatrix:\n  image: [a1, a2, a3, a4, a5, a6, a7]\n  instance_type: [t3.micro, t3.small, m5.large]\n";
    let ids = |args: &[&str]| -> Vec<String> {
        let run = Test::new()
            .file("spec.yaml", spec)
            .args(["plan", "spec.yaml", "--format", "json"])
            .args(args)
            .run()
            .code(0);
        run.json()["cells"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
    };
    let all: BTreeSet<String> = ids(&[]).into_iter().collect();
    assert_eq!(all.len(), 21);
    let mut union = BTreeSet::new();
    for k in 1..=4 {
        let shard = ids(&["--shard", &format!("{k}/4")]);
        assert_eq!(shard, ids(&["--shard", &format!("{k}/4")]), "shard {k} is not deterministic");
        for id in shard {
            assert!(union.insert(id.clone()), "{id} is in two shards");
        }
    }
    assert_eq!(union, all);
}

#[test]
fn bad_usage_exits_2() {
    Test::new().args(["plan", "x.yaml", "--shard", "5/4"]).run().code(2).stderr_has("invalid shard `5/4`");
    Test::new().args(["frobnicate"]).run().code(2);
    Test::new().args(["validate", "missing.yaml"]).run().code(2).stderr_has("failed to read spec");
    Test::new().args(["--help"]).run().code(0).stdout_has("Usage: amiprobe");
}

#[test]
fn checked_in_schema_is_current() {
    let run = Test::new().args(["schema"]).run().code(0);
    let checked_in = std::fs::read_to_string(repo_root().join("schemas/amiprobe.schema.json")).unwrap();
    assert_eq!(
        run.stdout().trim_end(),
        checked_in.trim_end(),
        "schemas/amiprobe.schema.json is stale: run `cargo run -- schema > schemas/amiprobe.schema.json`"
    );
}

#[test]
fn example_specs_carry_the_modeline_and_validate() {
    let mut count = 0;
    for entry in std::fs::read_dir(repo_root().join("specs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/amiprobe.schema.json"),
            "{} lacks the schema modeline",
            path.display()
        );
        Test::new().in_repo().args(["validate", path.to_str().unwrap()]).run().code(0).stdout_has(": ok (");
        count += 1;
    }
    assert!(count >= 2, "only {count} example specs");
}

#[test]
fn plan_warns_about_cells_ec2_takes_no_screenshots_of() {
    let spec =
        "name: t\nprovider: {ec2: {}}\nmatrix:\n  image: ami-1\n  instance_type: [t3.micro, m6g.large, c5.metal]\n";
    let run = Test::new().file("spec.yaml", spec).args(["plan", "spec.yaml"]).run().code(0);
    let stderr = run.stderr();
    assert!(stderr.contains("cell ami-1_m6g.large: EC2 takes no screenshots of Graviton instances"), "{stderr}");
    assert!(stderr.contains("cell ami-1_c5.metal: EC2 takes no screenshots of bare metal instances"), "{stderr}");
    assert!(!stderr.contains("t3.micro"), "{stderr}");
}

#[test]
fn plan_warns_of_a_regex_that_cannot_match_an_answer_s_last_line() {
    let spec = "name: t\nprovider:\n  qemu: {images: {a: {kernel: ./k}}}\nmatrix: {image: a}\nprobes:\n  - name: nginx\n    ssh: {command: systemctl is-active nginx}\n    expect: {stdout_regex: 'active\\n$'}\n";
    let run = Test::new().file("spec.yaml", spec).args(["plan", "spec.yaml"]).run().code(0);
    let stderr = run.stderr();
    assert!(
        stderr.contains("warning: probe `nginx`: stdout_regex /active\\n$/ can't match an answer's last line"),
        "{stderr}"
    );
    // `validate` gives the same hint, and still calls the spec ok: it is a hint, not an error.
    let run = Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(0);
    assert!(run.stdout().contains("spec.yaml: ok (1 cells)"), "{}", run.stdout());
    assert!(run.stderr().contains("warning: spec.yaml: probe `nginx`: stdout_regex /active\\n$/"), "{}", run.stderr());
}

/// A run whose provider check fails still goes through every reporter: the summary on stdout, then
/// the reports asked for, in that order, all saying the same of every cell.
#[test]
fn every_report_of_a_run_comes_from_the_same_results() {
    let spec = "name: t\nprovider:\n  qemu: {binary: ./no-such-qemu, images: {a: {kernel: ./k}, b: {kernel: ./k}}}\nmatrix: {image: [a, b]}\n";
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("all");
    let run = Test::new().file("spec.yaml", spec).args(["run", "spec.yaml", "--out"]).arg(dir.to_str().unwrap()).run();
    let run = run.code(1);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines[0].starts_with("t: 0 passed, 0 failed, 2 errors, 0 not run in "), "{stdout}");
    for (line, id) in lines[1..3].iter().zip(["a", "b"]) {
        assert!(
            line.starts_with(&format!("  ERROR {id}: provider check failed: failed to run ./no-such-qemu")),
            "{line}"
        );
    }
    let listed: Vec<String> =
        ["report.html", "junit.xml", "results.json"].iter().map(|f| dir.join(f).display().to_string()).collect();
    assert_eq!(lines[3..], listed);
    assert!(run.stderr().contains("warning: provider check failed"), "{}", run.stderr());

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(results["status"], "failed");
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert_eq!(junit.matches("<testcase ").count(), 2, "{junit}");
    assert_eq!(junit.matches("<error ").count(), 2, "{junit}");
    for cell in cells {
        let id = cell["id"].as_str().unwrap();
        assert_eq!(cell["status"], "error", "{cell:#}");
        assert!(junit.contains(&format!("<testcase name=\"{id}\"")), "{junit}");
        assert!(html.contains(&format!("<article class=\"cell error\" id=\"cell-{id}\"")), "{id} in report.html");
    }

    // Only the reports asked for are written and listed; results.json is kept all the same.
    let dir = out.path().join("junit-only");
    let run = Test::new()
        .file("spec.yaml", spec)
        .args(["run", "spec.yaml", "--report", "junit", "--out"])
        .arg(dir.to_str().unwrap())
        .run()
        .code(1);
    assert_eq!(run.stdout().lines().last(), Some(dir.join("junit.xml").display().to_string().as_str()));
    assert!(!run.stdout().contains("results.json"));
    assert!(dir.join("results.json").is_file() && !dir.join("report.html").exists());
}
