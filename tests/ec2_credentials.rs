//! The credentials check before anything else: without usable AWS credentials, `run`, `plan --check`
//! and `sweep` stop at once with one line naming what was tried and what to do (exit 2), launch
//! nothing and write no results; with them, the account the run acted in reaches results.json.
//!
//! Every test runs in a loopback-only network namespace (nothing can reach AWS). Those without
//! credentials run amiprobe in an environment of their own: no AWS_* variable but those they set, a
//! HOME of their own (its ~/.aws as the test writes it), and the instance metadata service off (the
//! SDK would wait on it otherwise).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::ec2::{assert_nothing_left, http_probe, run, spec};
use support::moto::{isolate_network, out_dir, runtime, Moto, TestService, AMI};

const SPEC: &str =
    "name: t\nprovider:\n  ec2: { region: eu-west-1 }\nmatrix:\n  image: ami-1\n  instance_type: t3.micro\n";

/// A machine with no AWS credentials: a temporary directory with the spec and an empty HOME.
struct Bare {
    dir: tempfile::TempDir,
}

impl Bare {
    fn new() -> Bare {
        isolate_network();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spec.yaml"), SPEC).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Bare { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Writes a file under HOME.
    fn file(&self, path: &str, text: &str) {
        let path = self.home().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// amiprobe with `args` (`{spec}` and `{out}` replaced) and nothing of the test's environment but
    /// PATH, and `env`; how long it took.
    fn amiprobe(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
        let spec = self.dir.path().join("spec.yaml");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{spec}", spec.to_str().unwrap()).replace("{out}", self.out().to_str().unwrap()))
            .collect();
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        (output, started.elapsed())
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
}

/// The one line amiprobe wrote to stderr, after checking it exited 2 and wrote only that.
#[track_caller]
fn refusal(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "exit code; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not:\n{stderr}");
    // The SDK's `Debug` form (`DispatchFailure(DispatchFailure { source: ConnectorError { ...`) never.
    assert!(!stderr.contains("{ ") && !stderr.contains("Error("), "{stderr}");
    lines[0].to_string()
}

/// What a directory holds, for a message.
fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn a_run_without_credentials_stops_at_once_with_one_line_and_writes_nothing() {
    let bare = Bare::new();
    let (output, took) = bare.amiprobe(&["run", "{spec}", "--out", "{out}"], &[]);
    let line = refusal(&output);
    assert!(line.starts_with("error: no AWS credentials for eu-west-1: "), "{line}");
    for tried in [
        "none in the environment (AWS_ACCESS_KEY_ID)",
        "no profile `default` in ~/.aws/config or ~/.aws/credentials",
        "no instance role",
    ] {
        assert!(line.contains(tried), "{line} lacks {tried:?}");
    }
    assert!(line.ends_with("; set AWS_PROFILE or run `aws sso login --profile P`"), "{line}");
    // Not retried as if the SDK might find credentials a moment later.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // No run happened: no results, no report, not even the directory.
    assert!(!bare.out().exists(), "wrote {:?}", listing(&bare.out()));
}

#[test]
fn plan_check_and_sweep_without_credentials_stop_with_the_same_line() {
    let bare = Bare::new();
    let (run, _) = bare.amiprobe(&["run", "{spec}", "--out", "{out}"], &[]);
    let (check, _) = bare.amiprobe(&["plan", "--check", "{spec}"], &[]);
    let (sweep, took) = bare.amiprobe(&["sweep", "--region", "eu-west-1", "--region", "us-east-1"], &[]);
    assert_eq!(refusal(&check), refusal(&run));
    // The first region's line: nothing was looked at in either.
    assert_eq!(refusal(&sweep), refusal(&run));
    assert!(String::from_utf8_lossy(&sweep.stdout).is_empty(), "{}", String::from_utf8_lossy(&sweep.stdout));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn an_unknown_profile_is_named_with_the_profiles_there_are() {
    let bare = Bare::new();
    let (output, _) = bare.amiprobe(&["run", "{spec}", "--out", "{out}"], &[("AWS_PROFILE", "nope")]);
    let line = refusal(&output);
    assert!(
        line.contains("profile `nope` is not in ~/.aws/config or ~/.aws/credentials (no profiles there)"),
        "{line}"
    );
    assert!(line.contains("`aws configure sso --profile nope`"), "{line}");
    assert!(!bare.out().exists());

    bare.file(".aws/config", "[profile dev]\nregion = eu-west-1\n\n[profile prod]\nregion = eu-west-1\n");
    let (output, _) = bare.amiprobe(&["sweep", "--profile", "nope", "--region", "eu-west-1"], &[]);
    let line = refusal(&output);
    assert!(
        line.contains("profile `nope` is not in ~/.aws/config or ~/.aws/credentials (profiles there: dev, prod)"),
        "{line}"
    );
}

/// The cache file of SSO session `corp`: the SDK names it by the session name's SHA-1.
const CORP_TOKEN: &str = ".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json";

#[test]
fn an_expired_sso_session_says_to_log_in_with_its_profile() {
    let bare = Bare::new();
    bare.file(
        ".aws/config",
        "[profile work]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = Admin\n\n\
         [sso-session corp]\nsso_start_url = https://example.awsapps.com/start\nsso_region = eu-west-1\n",
    );
    // Expired, and without what a refresh needs: the SDK gives up without calling anyone.
    bare.file(
        CORP_TOKEN,
        r#"{"accessToken": "old", "expiresAt": "2020-01-01T00:00:00Z", "region": "eu-west-1", "startUrl": "https://example.awsapps.com/start"}"#,
    );
    let (output, took) = bare.amiprobe(&["run", "{spec}", "--out", "{out}"], &[("AWS_PROFILE", "work")]);
    let line = refusal(&output);
    assert!(line.starts_with("error: no AWS credentials for eu-west-1: the SSO session of profile `work`"), "{line}");
    assert!(line.contains("has expired"), "{line}");
    assert!(line.ends_with("run `aws sso login --profile work`"), "{line}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(!bare.out().exists());
}

/// What STS says of the credentials moto's tests use, asked apart from amiprobe.
fn caller(moto: &Moto) -> (String, String) {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("eu-west-1"))
        .endpoint_url(format!("http://127.0.0.1:{}", moto.port))
        .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "tests"))
        .build();
    let out = runtime().block_on(aws_sdk_sts::Client::from_conf(config).get_caller_identity().send()).unwrap();
    (out.account().unwrap().to_string(), out.arn().unwrap().to_string())
}

#[test]
fn the_account_the_credentials_belong_to_reaches_the_results() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", service.port, "20s"), "");
    let (output, results) = run(&moto, &spec, &out);
    let said = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{said}");
    let (account, arn) = caller(&moto);
    assert_eq!(results["account"]["id"], account.as_str());
    assert_eq!(results["account"]["principal"], arn.as_str());
    assert!(said.contains(&format!("cells in account {account}, results in")), "{said}");
    // The report's header names it too, the principal on hover.
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    let row = format!("<dt>account</dt><dd title=\"{arn}\">{account}</dd>");
    assert!(html.contains(&row), "no {row} in the report's header");
    assert_nothing_left(&moto, &results);

    let check = support::ec2::amiprobe(&moto, &["plan", "--check", spec.to_str().unwrap()]).output().unwrap();
    let told = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{told}");
    assert!(told.contains(&format!("check: account {account} ({arn})")), "{told}");
}
