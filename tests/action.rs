//! The action's shell steps (action.yml), run here as a runner runs them: against a release made
//! from this build's binary, served by a stand-in for `gh` that copies files from a directory. The
//! install step takes the archive only if SHA256SUMS vouches for it, and puts the binary on PATH; the
//! run step turns the inputs into `amiprobe run` flags and the results into outputs.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::repo_root;

const TAG: &str = "v0.1.0";

/// The `run:` script of the action's step `id`.
fn step(id: &str) -> String {
    let action: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("action.yml")).unwrap()).unwrap();
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    let script = steps.iter().find(|s| s["id"].as_str() == Some(id)).unwrap()["run"].as_str().unwrap();
    // Inputs reach the scripts through `env:` only: an expression in a script is an injection.
    assert!(!script.contains("${{"), "step {id} expands an expression in its script");
    script.to_string()
}

/// The runner's architecture as the action names the release's.
fn arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("ARM64", "aarch64")
    } else {
        ("X64", "x86_64")
    }
}

struct Runner {
    dir: tempfile::TempDir,
}

impl Runner {
    /// A release of this build's binary as the release workflow lays it out, and a `gh` that serves it
    /// (logging each call).
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let archive = format!("amiprobe-{TAG}-{}-linux", arch().1);
        let release = dir.path().join("releases").join(TAG);
        std::fs::create_dir_all(release.join(&archive)).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_amiprobe"), release.join(&archive).join("amiprobe")).unwrap();
        std::fs::copy(repo_root().join("README.md"), release.join(&archive).join("README.md")).unwrap();
        let pack = format!("tar -czf {archive}.tar.gz {archive} && sha256sum -- *.tar.gz > SHA256SUMS");
        assert!(Command::new("sh").args(["-c", &pack]).current_dir(&release).status().unwrap().success());
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let gh = r#"#!/bin/sh
echo "$*" >> "$FAKE_GH_LOG"
case "$1 $2" in
  "release view") echo v0.1.0 ;;
  "release download")
    tag="$3"; shift 3
    while [ $# -gt 0 ]; do
      if [ "$1" = --pattern ]; then cp "$FAKE_RELEASES/$tag/$2" . || exit 1; shift; fi
      shift
    done ;;
  *) exit 2 ;;
esac
"#;
        write_exec(&bin.join("gh"), gh);
        Runner { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a step's script with the runner's variables and `env`; its outputs from GITHUB_OUTPUT.
    fn run(&self, id: &str, env: &[(&str, &str)]) -> (Output, BTreeMap<String, String>) {
        let outputs = self.path("outputs");
        let _ = std::fs::remove_file(&outputs);
        let path = format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default());
        let output = Command::new("bash")
            .args(["-e", "-c", &step(id)])
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", arch().0)
            .env("RUNNER_TOOL_CACHE", self.path("tool-cache"))
            .env("GITHUB_OUTPUT", &outputs)
            .env("GITHUB_PATH", self.path("github-path"))
            .env("GITHUB_STEP_SUMMARY", self.path("summary.md"))
            .env("FAKE_GH_LOG", self.path("gh.log"))
            .env("FAKE_RELEASES", self.path("releases"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = std::fs::read_to_string(&outputs).unwrap_or_default();
        let map = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
        (output, map)
    }

    fn gh_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("gh.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn ok(output: &Output) -> bool {
    if !output.status.success() {
        eprintln!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    output.status.success()
}

#[test]
fn the_release_is_the_tag_the_action_is_used_at_or_else_the_latest() {
    let runner = Runner::new();
    let repo = ("REPOSITORY", "someone/amiprobe");
    let (out, outputs) = runner.run("release", &[repo, ("VERSION", ""), ("ACTION_REF", TAG)]);
    assert!(ok(&out));
    assert_eq!(outputs["tag"], TAG);
    assert_eq!(outputs["archive"], format!("amiprobe-{TAG}-{}-linux", arch().1));
    assert!(runner.gh_calls().is_empty(), "{:?}", runner.gh_calls());

    // Used at a branch: the latest release, asked of the repository.
    let (out, outputs) = runner.run("release", &[repo, ("VERSION", ""), ("ACTION_REF", "main")]);
    assert!(ok(&out));
    assert_eq!(outputs["tag"], TAG);
    assert_eq!(runner.gh_calls(), ["release view --repo someone/amiprobe --json tagName --jq .tagName"]);

    let (out, _) = runner.run("release", &[repo, ("VERSION", TAG), ("RUNNER_OS", "Windows")]);
    assert!(!out.status.success());
}

fn install_env(runner: &Runner) -> Vec<(&'static str, String)> {
    vec![
        ("TAG", TAG.to_string()),
        ("ARCHIVE", format!("amiprobe-{TAG}-{}-linux", arch().1)),
        ("DIR", runner.path("tool-cache/amiprobe").display().to_string()),
        ("REPOSITORY", "someone/amiprobe".to_string()),
    ]
}

#[test]
fn the_install_checks_the_archive_against_sha256sums_and_puts_amiprobe_on_path() {
    let runner = Runner::new();
    let env = install_env(&runner);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (out, _) = runner.run("install", &env);
    assert!(ok(&out));
    let on_path = std::fs::read_to_string(runner.path("github-path")).unwrap();
    let bin = Path::new(on_path.trim()).join("amiprobe");
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("amiprobe "), "{}", bin.display());
    assert_eq!(runner.gh_calls().len(), 1);

    // Restored from the cache: checked again, not downloaded again.
    let (out, _) = runner.run("install", &env);
    assert!(ok(&out));
    assert_eq!(runner.gh_calls().len(), 1);

    // An archive that is not the one SHA256SUMS names is refused, and nothing goes on PATH.
    let archive = runner.path(&format!("tool-cache/amiprobe/{}.tar.gz", env[1].1));
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.push(0);
    std::fs::write(&archive, bytes).unwrap();
    std::fs::remove_file(runner.path("github-path")).unwrap();
    let (out, _) = runner.run("install", &env);
    assert!(!out.status.success());
    assert!(!runner.path("github-path").exists());
}

#[test]
fn the_run_step_passes_the_inputs_as_flags_and_the_counts_as_outputs() {
    let runner = Runner::new();
    // A stand-in amiprobe: records its arguments, writes results.json's counts, fails like a run
    // with a failed cell.
    let stub = r#"#!/bin/sh
printf '%s\n' "$@" > "$STUB_ARGS"
mkdir -p "$OUT"
echo '{"counts": {"total": 4, "passed": 2, "failed": 1, "errored": 1, "not_run": 0}}' > "$OUT/results.json"
exit 1
"#;
    write_exec(&runner.path("bin/amiprobe"), stub);
    let args = runner.path("args").display().to_string();
    let env = [
        ("STUB_ARGS", args.as_str()),
        ("SPEC", "specs/web.yaml"),
        ("SHARD", "2/4"),
        ("VARS", "AMI=ami-1\n\n  NAME=a b  \n"),
        ("OUT", "results/shard-2"),
        ("SUMMARY", "true"),
        ("REPORT_URL", "https://example.invalid/report.html"),
    ];
    let (out, outputs) = runner.run("run", &env);
    assert_eq!(out.status.code(), Some(1), "the run's exit code is the step's");
    let summary = runner.path("summary.md").display().to_string();
    let expected = [
        "run",
        "specs/web.yaml",
        "--out",
        "results/shard-2",
        "--shard",
        "2/4",
        "--var",
        "AMI=ami-1",
        "--var",
        "NAME=a b",
        "--summary",
        &summary,
        "--report-url",
        "https://example.invalid/report.html",
    ];
    assert_eq!(std::fs::read_to_string(&args).unwrap().lines().collect::<Vec<_>>(), expected);
    let want = [
        ("results-dir", "results/shard-2"),
        ("exit-code", "1"),
        ("total", "4"),
        ("passed", "2"),
        ("failed", "1"),
        ("errored", "1"),
        ("not-run", "0"),
        ("flaky", "0"),
    ];
    assert_eq!(outputs, want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());

    // No summary: neither --summary nor --report-url (which needs it); no shard, no vars.
    let env = [("STUB_ARGS", args.as_str()), ("SPEC", "s.yaml"), ("OUT", "r"), ("SUMMARY", "false")];
    let env: Vec<_> = env.into_iter().chain([("SHARD", ""), ("VARS", ""), ("REPORT_URL", "x")]).collect();
    runner.run("run", &env);
    assert_eq!(std::fs::read_to_string(&args).unwrap().lines().collect::<Vec<_>>(), ["run", "s.yaml", "--out", "r"]);
}
