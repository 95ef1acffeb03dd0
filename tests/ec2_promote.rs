//! Promotion on a verdict (`provider.ec2.on_pass`), against moto's EC2 and SSM through the real SDKs:
//! an image all of whose cells passed is tagged (read back with DescribeImages) and its id written to
//! its SSM parameter (read back with GetParameter); an image one of whose cells did not pass is left
//! alone, and so is every image of a failed run, an interrupted run (SIGINT, exit 130) and a shard,
//! until `report merge --promote` joins complete shards.
//!
//! Each test runs in its own loopback-only namespace (`Moto::start`), probes loopback with
//! `--probe-host 127.0.0.1 --allow-targets 127.0.0.0/8`, and ends with nothing of its run left (the
//! promotion's tags and parameters are meant to stay: they are no leftover).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{closed_port, out_dir, runtime, Moto, TestService, AMI};

/// Tags with each placeholder that changes per run, and a parameter per image.
const ON_PASS: &str = ", on_pass: { tags: { tested-by: amiprobe, tested-at: \"{time}\", tested-run: \"{run_id}\" }, \
                       ssm_parameter: \"/images/{spec}/{image}\" }";

/// The tags of `image` as moto keeps them (the tests' own client).
fn tags_of(moto: &Moto, image: &str) -> Vec<(String, String)> {
    let out = runtime().block_on(moto.client().describe_images().image_ids(image).send()).expect("DescribeImages");
    let image = out.images().first().unwrap_or_else(|| panic!("no image {image}"));
    image.tags().iter().map(|t| (t.key().unwrap_or("").to_string(), t.value().unwrap_or("").to_string())).collect()
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// An SSM client for moto in eu-west-1, signed as the tests' own (`oracle`).
fn ssm(moto: &Moto) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new("eu-west-1"))
        .endpoint_url(format!("http://127.0.0.1:{}", moto.port))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("oracle", "testing", None, None, "tests"))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// The value of the parameter `name`, `None` when there is none.
fn parameter(moto: &Moto, name: &str) -> Option<String> {
    let got = runtime().block_on(ssm(moto).get_parameter().name(name).send());
    match got {
        Ok(out) => out.parameter().and_then(|p| p.value()).map(str::to_string),
        Err(e) => {
            let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(&e).map(str::to_string);
            assert_eq!(code.as_deref(), Some("ParameterNotFound"), "GetParameter {name}: {e:?}");
            None
        }
    }
}

/// Asserts that nothing was promoted on `image`: none of the promotion's tags, no parameter.
#[track_caller]
fn assert_untouched(moto: &Moto, image: &str) {
    let tags = tags_of(moto, image);
    assert_eq!(tag(&tags, "tested-by"), None, "{image} tagged: {tags:?}");
    assert_eq!(parameter(moto, &format!("/images/moto-test/{image}")), None, "{image} written");
}

/// The promotion of `image` in results.json.
fn promotion_of<'a>(r: &'a Value, image: &str) -> &'a Value {
    let images = r["promotions"]["images"].as_array().unwrap_or_else(|| panic!("no promotions: {r}"));
    images.iter().find(|p| p["image"] == image).unwrap_or_else(|| panic!("no promotion of {image}: {r}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn spec_with(dir: &Path, cells: &[(&str, &str)], probe_port: u16, within: &str) -> PathBuf {
    spec(dir, cells, &http_probe("health", probe_port, within), &format!(", console_poll_interval: 1s{ON_PASS}"))
}

#[test]
fn only_the_image_all_of_whose_cells_passed_is_tagged_and_written() {
    let moto = Moto::start();
    let service = TestService::start();
    let other = moto.image(json!({ "ena_support": true }));
    // One cell of the other image can't launch (an error, not a pass); its other cell passes.
    let fault = json!({ "action": "RunInstances", "code": "Unsupported", "status": 400, "count": 5,
                        "message": "not here", "when": { "ImageId": other, "InstanceType": "t3.small" } });
    moto.control("/fault", fault);
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (other.as_str(), "t3.micro"), (other.as_str(), "t3.small")];
    let spec = spec_with(dir.path(), &cells, service.port, "30s");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "a cell did not pass: {}", stderr(&output));
    assert_eq!(r["counts"]["passed"], 3, "{r}");

    let tags = tags_of(&moto, AMI);
    assert_eq!(tag(&tags, "tested-by"), Some("amiprobe"), "{tags:?}");
    assert_eq!(tag(&tags, "tested-run"), r["run_id"].as_str(), "{tags:?}");
    let at = tag(&tags, "tested-at").unwrap_or_default();
    let at = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("tested-at `{at}`: {e}"));
    assert!(at.elapsed().is_ok_and(|d| d.as_secs() < 600), "tested-at is this run's time");
    assert_eq!(parameter(&moto, &format!("/images/moto-test/{AMI}")).as_deref(), Some(AMI));
    assert_untouched(&moto, &other);

    assert!(r["promotions"].get("withheld").is_none(), "{r}");
    let promoted = promotion_of(&r, AMI);
    assert_eq!(promoted["status"], "promoted", "{promoted}");
    assert_eq!(promoted["region"], "eu-west-1");
    assert_eq!(promoted["cells"].as_array().unwrap().len(), 2);
    let kinds: Vec<&Value> = promoted["actions"].as_array().unwrap().iter().map(|a| &a["kind"]).collect();
    assert_eq!(kinds, [&json!("ssm_parameter"), &json!("tags")], "{promoted}");
    let left = promotion_of(&r, &other);
    assert_eq!(left["status"], "not_passed", "{left}");
    assert!(left["reason"].as_str().unwrap().contains(&format!("{other}_t3.small")), "{left}");
    assert!(left.get("actions").is_none(), "nothing written for {other}: {left}");
    // Said on the terminal, after the summary line.
    let said = stdout(&output);
    let line = format!("promoted {AMI} in eu-west-1: SSM parameter /images/moto-test/{AMI}; tags tested-at=");
    assert!(said.contains(&line) && said.contains(", tested-by=amiprobe, tested-run="), "{said}");
    assert!(said.contains(&format!("not promoted {other} in eu-west-1: 1 of its 2 cells did not pass")), "{said}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Promotion") && html.contains(&format!("/images/moto-test/{AMI}")), "report.html");
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_failed_run_promotes_nothing() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = spec_with(dir.path(), &[(AMI, "t3.micro")], closed_port(), "3s");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_untouched(&moto, AMI);
    assert_eq!(promotion_of(&r, AMI)["status"], "not_passed");
    assert_nothing_left(&moto, &r);
}

#[test]
fn an_interrupted_run_promotes_nothing_even_what_passed() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    // One cell passes at once; the other waits on a port that never opens until the signal.
    let probes = format!(
        "{}  - {{ name: slow, tcp: {{ port: {} }}, within: 100s }}\n",
        http_probe("health", service.port, "30s"),
        closed_port()
    );
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &probes, &format!(", console_poll_interval: 1s{ON_PASS}"));
    let child = spawn_run(&moto, &spec, &out, Stdio::piped());
    wait_for_screenshots(&out, 2);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let r = results(&out);
    assert_eq!(r["promotions"]["withheld"], "interrupted", "{r}");
    assert_untouched(&moto, AMI);
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_shard_promotes_nothing_and_merged_complete_shards_do() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, _) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (AMI, "t3.medium"), (AMI, "m5.large")];
    let spec = spec_with(dir.path(), &cells, service.port, "30s");
    let mut shards = Vec::new();
    for k in 1..=2 {
        let out = dir.path().join(format!("shard-{k}"));
        let (output, r) = run_with(&moto, &spec, &out, &["--shard", &format!("{k}/2")]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert_eq!(r["promotions"]["withheld"], "shard", "{r}");
        if !r["cells"].as_array().unwrap().is_empty() {
            assert_eq!(promotion_of(&r, AMI)["status"], "withheld");
        }
        assert_untouched(&moto, AMI);
        assert_nothing_left(&moto, &r);
        shards.push(out);
    }
    let merge = |dirs: &[PathBuf], out: &Path, promote: bool| {
        let mut cmd = amiprobe(&moto, &["report", "merge"]);
        cmd.args(dirs).arg("--out").arg(out);
        if promote {
            cmd.arg("--promote").arg(&spec);
        }
        let output = cmd.output().unwrap();
        (output, results(out))
    };
    // Without --promote, or with one shard missing: nothing.
    let (output, r) = merge(&shards, &dir.path().join("merged-plain"), false);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(r["promotions"]["withheld"], "not_asked", "{r}");
    // Asked to promote and withheld: the merge did not do what was asked, exit 1.
    let (output, r) = merge(&shards[..1], &dir.path().join("merged-half"), true);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(r["promotions"]["withheld"], "incomplete", "{r}");
    assert_untouched(&moto, AMI);
    // Both shards, with --promote: the whole run passed, so its image is promoted.
    let merged = dir.path().join("merged");
    let (output, r) = merge(&shards, &merged, true);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(r["promotions"].get("withheld").is_none(), "{r}");
    let promoted = promotion_of(&r, AMI);
    assert_eq!(promoted["status"], "promoted", "{promoted}");
    assert_eq!(promoted["cells"].as_array().unwrap().len(), 4, "{promoted}");
    assert_eq!(tag(&tags_of(&moto, AMI), "tested-run"), r["run_id"].as_str());
    assert_eq!(parameter(&moto, &format!("/images/moto-test/{AMI}")).as_deref(), Some(AMI));
    assert!(stdout(&output).contains(&format!("promoted {AMI} in eu-west-1")), "{}", stdout(&output));
}

#[test]
fn two_images_writing_one_parameter_refuse_the_run_before_launch() {
    let moto = Moto::start();
    let other = moto.image(json!({ "ena_support": true }));
    let (dir, out) = out_dir();
    let extra = ", on_pass: { ssm_parameter: /images/web/latest }";
    let spec = spec(
        dir.path(),
        &[(AMI, "t3.micro"), (other.as_str(), "t3.micro")],
        &http_probe("h", closed_port(), "3s"),
        extra,
    );
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.contains("would all write `/images/web/latest`") && said.contains("put {image} in its name"),
        "{said}"
    );
    assert!(moto.requests("RunInstances").is_empty(), "nothing launched");
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_refused_write_is_an_error_of_the_run_even_when_every_cell_passed() {
    let moto = Moto::start();
    let service = TestService::start();
    moto.control("/deny", json!({ "actions": ["ssm:PutParameter"] }));
    let (dir, out) = out_dir();
    let spec = spec_with(dir.path(), &[(AMI, "t3.micro")], service.port, "30s");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(r["counts"]["passed"], 1, "the cell's verdict stands: {r}");
    assert_eq!(r["status"], "failed");
    let refused = promotion_of(&r, AMI);
    assert_eq!(refused["status"], "refused", "{refused}");
    let error = refused["actions"][0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("PutParameter failed: AccessDeniedException"), "{refused}");
    let warning =
        r["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).find(|w| w.starts_with("promotion refused"));
    assert!(warning.is_some_and(|w| w.contains(AMI) && w.contains("PutParameter")), "{r}");
    // The parameter goes first: refused, it was never written, and no tag says the image passed.
    assert_eq!(refused["actions"].as_array().map(Vec::len), Some(1), "{refused}");
    assert_eq!(tag(&tags_of(&moto, AMI), "tested-by"), None);
    assert_eq!(parameter(&moto, &format!("/images/moto-test/{AMI}")), None);
    assert_nothing_left(&moto, &r);
}

/// `amiprobe policy SPEC`, as JSON.
fn policy_of(moto: &Moto, spec: &Path) -> Value {
    let output = amiprobe(moto, &["policy", spec.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_run_holding_exactly_its_policy_promotes_and_without_image_tags_it_is_refused_before_launch() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let spec = spec_with(dir.path(), &[(AMI, "t3.micro")], service.port, "30s");
    let policy = policy_of(&moto, &spec);
    let statements = policy["Statement"].as_array().unwrap();
    let sids: Vec<&str> = statements.iter().filter_map(|s| s["Sid"].as_str()).collect();
    assert!(sids.contains(&"PromoteImage") && sids.contains(&"PromoteToParameter"), "{policy:#}");
    // The launcher's /policy evaluates every call, SSM's PutParameter too, as IAM would.
    moto.control("/policy", json!({ "document": policy }));
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}\n{r:#}", stderr(&output));
    assert_eq!(promotion_of(&r, AMI)["status"], "promoted", "{r:#}");
    assert_eq!(parameter(&moto, &format!("/images/moto-test/{AMI}")).as_deref(), Some(AMI));
    let calls = moto.calls();
    assert_eq!(calls.keys().filter(|k| k.starts_with("denied:")).count(), 0, "{calls:?}");
    assert_nothing_left(&moto, &r);

    // Without the statement that lets it tag images, the preflight's DryRun names the action.
    let mut narrowed = policy.clone();
    narrowed["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != "PromoteImage");
    moto.control("/policy", json!({ "document": narrowed }));
    let launched = moto.requests("RunInstances").len();
    let (output, r) = run(&moto, &spec, &dir.path().join("refused"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let said = stderr(&output);
    let line = "ec2:CreateTags refused in eu-west-1 (needed to tag the images all of whose cells passed";
    assert!(said.contains(line), "{said}");
    assert_eq!(moto.requests("RunInstances").len(), launched, "nothing launched");
    assert_nothing_left(&moto, &r);
}
