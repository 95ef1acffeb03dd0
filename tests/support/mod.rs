//! The fluent builder every CLI test uses: run the real `amiprobe` binary on fixture files in a
//! fresh temporary directory, then assert on exit code, stdout and stderr.
#![allow(dead_code)]

pub mod ec2;
pub mod moto;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
}

impl Test {
    pub fn new() -> Self {
        Test { args: Vec::new(), env: Vec::new(), dir: tempfile::tempdir().expect("temp dir"), cwd: None }
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
        let output = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()))
            .output()
            .expect("run amiprobe");
        Run { output, _dir: self.dir }
    }
}

pub struct Run {
    pub output: Output,
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
