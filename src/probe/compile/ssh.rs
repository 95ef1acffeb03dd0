//! An SSH probe compiled: what to run (a command, or a script read from the spec's directory), the
//! key to log in with, the jump host, and the expectations of the command. An agent probe is the
//! same command and expectations without the login.

use std::path::PathBuf;
use std::sync::Arc;

use russh::keys::PrivateKey;

use super::expect::{compile_json, compile_regex, http_only_keys, refuse_keys};
use super::{check_port, CompileContext};
use crate::probe::ssh::{Jump, Run, SshCheck, SshExpectations};
use crate::probe::AgentCheck;
use crate::spec::{self, FieldPath, Problem};

/// Why a key file gave no key.
#[derive(Debug, thiserror::Error)]
enum KeyFileError {
    #[error("{0}")]
    Read(#[source] std::io::Error),
    #[error("not a usable private key: {0}")]
    Decode(#[source] russh::keys::Error),
}

/// An SSH command's expectations; without `expect`, exit status 0.
pub(super) fn compile_ssh_expect(
    expect: Option<&spec::ExpectSpec>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> SshExpectations {
    let default = spec::ExpectSpec::default();
    let expect = expect.unwrap_or(&default);
    refuse_keys(Some(http_only_keys(expect)), "http", path, problems);
    SshExpectations {
        exit_status: expect.exit_status.unwrap_or(0),
        stdout_contains: expect.stdout_contains.clone(),
        stdout_regex: compile_regex(expect.stdout_regex.as_ref(), path.key("stdout_regex"), problems),
        stderr_contains: expect.stderr_contains.clone(),
        stderr_regex: compile_regex(expect.stderr_regex.as_ref(), path.key("stderr_regex"), problems),
        json: compile_json(&expect.json, path, problems),
    }
}

pub(super) fn compile_ssh(
    spec: &spec::SshProbe,
    expect: SshExpectations,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<SshCheck> {
    check_port(spec.port, &path.key("port"), problems);
    if spec.user.trim().is_empty() {
        problems.push(Problem::at(path.key("user"), "user is empty"));
    }
    if spec.timeout.is_zero() {
        problems.push(Problem::at(path.key("timeout"), "timeout must be above 0s"));
    }
    let run = compile_run("ssh", spec.command.as_ref(), spec.script.as_ref(), ctx, path, problems)?;
    let key = compile_key(spec, ctx, path, problems)?;
    let jump = compile_jump(spec, ctx, path, problems)?;
    Some(SshCheck {
        run,
        user: spec.user.clone(),
        port: spec.port,
        key,
        host_key: spec.host_key,
        jump,
        timeout: spec.timeout,
        expect,
    })
}

pub(super) fn compile_agent(
    spec: &spec::AgentProbe,
    expect: SshExpectations,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<AgentCheck> {
    if spec.timeout.is_zero() {
        problems.push(Problem::at(path.key("timeout"), "timeout must be above 0s"));
    }
    let run = compile_run("agent", spec.command.as_ref(), spec.script.as_ref(), ctx, path, problems)?;
    Some(AgentCheck { run, timeout: spec.timeout, expect })
}

/// The command, or the script's text: exactly one of them.
fn compile_run(
    kind: &str,
    command: Option<&String>,
    script: Option<&String>,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Run> {
    match (command, script) {
        (Some(command), None) if command.trim().is_empty() => {
            problems.push(Problem::at(path.key("command"), "command is empty"));
            None
        }
        (Some(command), None) => Some(Run::Command(command.clone())),
        (None, Some(script)) => match std::fs::read_to_string(ctx.base.join(script)) {
            Ok(text) => Some(Run::Script { name: script.clone(), text }),
            Err(e) => {
                problems.push(Problem::at(path.key("script"), format!("failed to read script `{script}`: {e}")));
                None
            }
        },
        (None, None) => {
            problems.push(Problem::at_key(path.clone(), format!("{kind} probe has no `command` or `script`")));
            None
        }
        (Some(_), Some(_)) => {
            problems.push(
                Problem::at_key(path.key("script"), format!("{kind} probe has both `command` and `script`"))
                    .help("split it into two probes"),
            );
            None
        }
    }
}

/// The key to log in with: `Some(None)` for the run's own, `None` when there is none to be had.
fn compile_key(
    spec: &spec::SshProbe,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Option<Arc<PrivateKey>>> {
    match &spec.key_file {
        None if !ctx.run_key => {
            problems.push(
                Problem::at_key(path.clone(), "ssh probe has no key: the run uses an existing key pair")
                    .help("give `key_file`, the private half of `launch.key_pair`"),
            );
            None
        }
        None => Some(None),
        Some(file) => match read_key(&ctx.base.join(file)) {
            Ok(key) => Some(Some(Arc::new(key))),
            Err(e) => {
                problems.push(Problem::at(path.key("key_file"), format!("failed to read key file `{file}`: {e}")));
                None
            }
        },
    }
}

fn read_key(file: &std::path::Path) -> Result<PrivateKey, KeyFileError> {
    let text = std::fs::read_to_string(file).map_err(KeyFileError::Read)?;
    russh::keys::decode_secret_key(&text, None).map_err(KeyFileError::Decode)
}

/// The jump host, if any: `Some(None)` without one, `None` when it does not parse.
fn compile_jump(
    spec: &spec::SshProbe,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Option<Jump>> {
    let known_hosts = match &spec.jump_known_hosts {
        Some(file) => ctx.base.join(file),
        None => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".ssh/known_hosts"),
    };
    match spec.jump.as_deref().map(|text| Jump::parse(text, known_hosts)) {
        None => Some(None),
        Some(Ok(jump)) => Some(Some(jump)),
        Some(Err(e)) => {
            problems.push(Problem::at(path.key("jump"), e.to_string()));
            None
        }
    }
}
