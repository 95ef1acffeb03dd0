//! The fluent builder every CLI test uses: run the real `amiprobe` binary on fixture files in a
//! fresh temporary directory, then assert on exit code, stdout and stderr.
#![allow(dead_code)]

pub mod browser;
pub mod ec2;
pub mod moto;
pub mod qemu;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Test {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    cwd: Option<PathBuf>,
    kill_after: Option<Duration>,
}

impl Test {
    pub fn new() -> Self {
        Test {
            args: Vec::new(),
            env: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            cwd: None,
            kill_after: None,
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn arg(self, arg: impl AsRef<str>) -> Self {
        self.args([arg])
    }

    /// Writes a file into the test's directory (for specs written inline in a test).
    pub fn file(self, name: &str, text: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    /// Writes a file of arbitrary bytes (not necessarily text) into the test's directory.
    pub fn file_bytes(self, name: &str, bytes: &[u8]) -> Self {
        std::fs::write(self.dir.path().join(name), bytes).expect("write file");
        self
    }

    /// Kills the binary if it runs longer than `limit`; [`Run::timed_out`] then says so. A hang
    /// detector, not a speed check: give a limit far above any honest run.
    pub fn kill_after(mut self, limit: Duration) -> Self {
        self.kill_after = Some(limit);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs in the repository root instead of the temporary directory.
    pub fn in_repo(mut self) -> Self {
        self.cwd = Some(repo_root());
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn run(self) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_amiprobe"));
        command
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()));
        let Some(limit) = self.kill_after else {
            let output = command.output().expect("run amiprobe");
            return Run { output, timed_out: false, _dir: self.dir };
        };
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run amiprobe");
        // Read both pipes while waiting: a child blocked on a full pipe would look like a hang.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let started = Instant::now();
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for amiprobe") {
                break status;
            }
            if started.elapsed() > limit {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait for amiprobe");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = Output {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        Run { output, timed_out, _dir: self.dir }
    }
}

pub struct Run {
    pub output: Output,
    /// Killed by [`Test::kill_after`].
    pub timed_out: bool,
    _dir: tempfile::TempDir,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    #[track_caller]
    pub fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.output.status.code(),
            Some(expected),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(self, text: &str) -> Self {
        assert!(self.stderr().contains(text), "stderr lacks {text:?}:\n{}", self.stderr());
        self
    }

    #[track_caller]
    pub fn stdout_has(self, text: &str) -> Self {
        assert!(self.stdout().contains(text), "stdout lacks {text:?}:\n{}", self.stdout());
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout()))
    }
}
