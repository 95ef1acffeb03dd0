//! moto's EC2 server for tests, inside a network namespace that has nothing but loopback.
//!
//! `Moto::start()` first moves the calling test thread into a new network namespace (threads and
//! processes it starts inherit it), so amiprobe, moto and the test's own loopback services can talk to
//! each other, and nothing can reach any other address: moto's fake instance addresses lead nowhere.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::repo_root;

/// An AMI moto knows (with AMI validation on): a Linux one (Ubuntu, root device /dev/sda1). Most of
/// moto's built-in AMIs are Windows images, which a run must declare (`os: windows`).
pub const AMI: &str = "ami-1e749f67";

/// More Linux AMIs moto knows, for larger matrices.
pub const AMIS: [&str; 10] = [
    "ami-1e749f67",
    "ami-35e92e4c",
    "ami-785db401",
    "ami-9b32e8e2",
    "ami-bb9a6bc2",
    "ami-dca37ea5",
    "ami-760aaa0f",
    "ami-999844e0",
    "ami-f8e54081",
    "ami-04681a1dbd79675a5",
];

/// A Windows AMI moto knows (Windows Server 2016 Nano, platform `windows`).
pub const WINDOWS_AMI: &str = "ami-03cf127a";

/// Moves this thread into a fresh network namespace with only `lo`, and brings `lo` up.
pub fn isolate_network() {
    // SAFETY: unshare(2) on the calling thread; no memory is shared with the kernel.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET) failed: {} (tests need root)", std::io::Error::last_os_error());
    let status = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("run ip (iproute2)");
    assert!(status.success(), "ip link set lo up failed");
    let links = Command::new("ip").args(["-o", "link"]).output().expect("ip -o link").stdout;
    let links = String::from_utf8_lossy(&links);
    assert_eq!(links.lines().count(), 1, "namespace must hold only loopback:\n{links}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_ports() -> (u16, u16) {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    (first.local_addr().unwrap().port(), second.local_addr().unwrap().port())
}

pub struct Moto {
    child: Child,
    pub port: u16,
    control_port: u16,
}

impl Moto {
    /// Starts moto in a loopback-only namespace (see `isolate_network`).
    pub fn start() -> Moto {
        isolate_network();
        let python = repo_root().join("build/moto-venv/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/install-deps moto (scripts/test does)", python.display());
        // Two ports at once, both held while chosen: one after the other, the kernel may hand out the
        // same port twice (the launcher then fails "address already in use").
        let (port, control_port) = free_ports();
        let child = Command::new(python)
            .arg(repo_root().join("tests/support/moto_launcher.py"))
            .args(["--port", &port.to_string(), "--control-port", &control_port.to_string()])
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start moto launcher");
        let moto = Moto { child, port, control_port };
        let started = Instant::now();
        while http(moto.control_port, "GET", "/ready", "").is_err() || http(moto.port, "GET", "/moto-api/", "").is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(60), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Environment for amiprobe: endpoint override, dummy credentials, no retries inside the SDK.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_MAX_ATTEMPTS", "1".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A call of moto's IAM (its query API on the same server) with `params`
    /// (`Action=CreateRole&RoleName=...`), asserted to succeed; the answer's body.
    pub fn iam(&self, params: &str) -> String {
        let body = format!("{params}&Version=2010-05-08");
        // moto's server picks the service from the signature's credential scope; it checks no signature.
        let auth =
            "AWS4-HMAC-SHA256 Credential=oracle/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let request = format!(
            "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send to IAM");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read IAM's answer");
        assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{params}: {answer}");
        answer
    }

    /// Posts `body` to the launcher's control API (see `moto_launcher.py` for the paths).
    pub fn control(&self, path: &str, body: Value) {
        self.control_answer(path, body);
    }

    /// [`Moto::control`], returning the launcher's JSON answer.
    pub fn control_answer(&self, path: &str, body: Value) -> Value {
        let answer =
            http(self.control_port, "POST", path, &body.to_string()).unwrap_or_else(|e| panic!("control {path}: {e}"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("control {path} answered no JSON ({e}): {answer}"))
    }

    /// Registers an AMI with these attributes (`architecture`, `boot_mode`, `ena_support`,
    /// `root_device_name`, `platform`, `state`; the rest as RegisterImage records them) and returns its id.
    pub fn image(&self, attributes: Value) -> String {
        let answer = self.control_answer("/image", attributes);
        answer["image_id"].as_str().unwrap_or_else(|| panic!("/image answered {answer}")).to_string()
    }

    /// The launcher's JSON answer to a GET of `path` (`/timeline`, `/calls`...).
    pub fn get(&self, path: &str) -> Value {
        let body = http(self.control_port, "GET", path, "").unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} answered no JSON ({e}): {body}"))
    }

    /// Every call of `action` since the last reset, in order, as its query parameters flattened
    /// (`"InstanceType": "t3.micro"`, `"SecurityGroupId.1": "sg-..."`).
    pub fn requests(&self, action: &str) -> Vec<serde_json::Map<String, Value>> {
        let body = http(self.control_port, "GET", &format!("/requests?action={action}"), "").expect("requests");
        serde_json::from_str(&body).expect("requests JSON")
    }

    /// amiprobe's own EC2 client on moto, as `Api::connect` would build it from [`Moto::env`]: the
    /// test credentials (not the oracle's), no retries inside the SDK, EC2's default rate limits.
    pub fn api(&self) -> amiprobe::providers::ec2::Api {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("eu-west-1"))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "tests"))
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .build();
        let client = aws_sdk_ec2::Client::from_conf(config);
        amiprobe::providers::ec2::Api::with_client(
            client,
            "eu-west-1",
            &amiprobe::providers::ec2::RateLimitsSpec::default(),
        )
    }

    /// EC2's latency: each call of an action sleeps its seconds before answering, `"*"` for the actions
    /// not named, `"jitter"` a share of spread (0.2: +-20%). `&[]` turns it off.
    pub fn latency(&self, seconds: &[(&str, f64)]) {
        let body: serde_json::Map<String, Value> = seconds.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.control("/latency", Value::Object(body));
    }

    /// EC2's eventual consistency: for that many seconds after its creation a key pair (an instance)
    /// named in a call is `InvalidKeyPair.NotFound` (`InvalidInstanceID.NotFound`), and describes
    /// without names leave it out. `client()` sees through it. 0.0 turns a window off.
    pub fn consistency(&self, key_pair_s: f64, instance_s: f64) {
        self.control("/consistency", json!({ "key_pair": key_pair_s, "instance": instance_s }));
    }

    /// Random `InternalError` (500) and `Unavailable` (503) answers on every action, with probability
    /// `rate` from an RNG seeded with `seed`. A share `after_rate` of them come after the action took
    /// effect (a lost response: retries need the same client token). 0.0 turns it off.
    pub fn chaos(&self, rate: f64, seed: u64, after_rate: f64) {
        self.control("/chaos", json!({ "rate": rate, "seed": seed, "after_rate": after_rate }));
    }

    /// Terminated instances stay `shutting-down` this many seconds before `terminated`, as on EC2.
    pub fn shutting_down(&self, seconds: f64) {
        self.control("/shutting_down", json!({ "seconds": seconds }));
    }

    /// How often each EC2 action was called, and how many errors the launcher injected per kind and
    /// action (`"fault:RunInstances"`, `"consistency:TerminateInstances"`, `"chaos:DescribeInstances"`)
    /// or throttled (`"throttled"`).
    pub fn calls(&self) -> HashMap<String, u64> {
        let body = http(self.control_port, "GET", "/calls", "").expect("calls");
        serde_json::from_str(&body).expect("calls JSON")
    }

    /// An SDK client for moto, as the tests' own window on what exists: signed with the access key
    /// `oracle`, which the launcher exempts from latency, consistency windows and chaos (not from
    /// faults or throttling). In eu-west-1, the region of [`Moto::env`].
    pub fn client(&self) -> aws_sdk_ec2::Client {
        self.client_in("eu-west-1")
    }

    /// [`Moto::client`] in another region (one moto server serves them all, by the signed region).
    pub fn client_in(&self, region: &str) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new("oracle", "testing", None, None, "tests"))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    /// What the run left: instances not terminated, and key pairs, both found by the run's tag.
    pub fn leftovers(&self, run_id: &str) -> (Vec<String>, Vec<String>) {
        self.leftovers_in(run_id, "eu-west-1")
    }

    /// [`Moto::leftovers`] in `region`.
    pub fn leftovers_in(&self, run_id: &str, region: &str) -> (Vec<String>, Vec<String>) {
        let instances = self
            .instances_in(run_id, region)
            .iter()
            // Shutting down is on its way out (EC2 stops billing there): only live states count.
            .filter(|i| {
                !matches!(i.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("terminated" | "shutting-down"))
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let client = self.client_in(region);
        let keys = runtime().block_on(async { client.describe_key_pairs().send().await.expect("describe key pairs") });
        let tagged = |k: &aws_sdk_ec2::types::KeyPairInfo| {
            k.tags().iter().any(|t| t.key() == Some("amiprobe:run-id") && t.value() == Some(run_id))
                || k.key_name().is_some_and(|n| n.contains(run_id))
        };
        let key_pairs =
            keys.key_pairs().iter().filter(|k| tagged(k)).filter_map(|k| k.key_name().map(str::to_string)).collect();
        (instances, key_pairs)
    }

    /// The security groups moto still has for the run, found by the run's tag or its id in the name.
    pub fn security_groups(&self, run_id: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        self.security_groups_in(run_id, "eu-west-1")
    }

    /// [`Moto::security_groups`] in `region`.
    pub fn security_groups_in(&self, run_id: &str, region: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        let client = self.client_in(region);
        runtime().block_on(async {
            let out = client.describe_security_groups().send().await.expect("describe security groups");
            out.security_groups()
                .iter()
                .filter(|g| {
                    g.tags().iter().any(|t| t.key() == Some("amiprobe:run-id") && t.value() == Some(run_id))
                        || g.group_name().is_some_and(|n| n.contains(run_id))
                })
                .cloned()
                .collect()
        })
    }

    /// Every instance moto has for the run, terminated or not.
    pub fn instances(&self, run_id: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        self.instances_in(run_id, "eu-west-1")
    }

    /// [`Moto::instances`] in `region`.
    pub fn instances_in(&self, run_id: &str, region: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        let client = self.client_in(region);
        runtime().block_on(async {
            let filter = aws_sdk_ec2::types::Filter::builder().name("tag:amiprobe:run-id").values(run_id).build();
            let out = client.describe_instances().filters(filter).send().await.expect("describe instances");
            out.reservations().iter().flat_map(|r| r.instances().to_vec()).collect()
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// A plain HTTP/1.0 exchange on loopback; returns the body of a 2xx answer.
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status.starts_with('2') {
        Ok(body.to_string())
    } else {
        Err(format!("status {status}: {body}"))
    }
}

/// A loopback HTTP service standing in for the image's web service: answers every request with JSON.
pub struct TestService {
    pub port: u16,
}

impl TestService {
    pub fn start() -> TestService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    let body = r#"{"status": "up", "service": "amiprobe-test"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        TestService { port }
    }
}

/// A port on loopback where nothing listens.
pub fn closed_port() -> u16 {
    free_port()
}

pub fn out_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    (dir, out)
}
