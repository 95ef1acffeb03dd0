//! A probe compiled from the spec: one kind of check, its expectations and its timing, every
//! problem in it reported with its place in the spec, and hints of what will likely not work as meant.

mod expect;
mod ssh;

use std::path::Path;
use std::time::Duration;

use super::expect::ends_in_line_break;
use super::{Check, HttpCheck, Probe, TcpCheck};
use crate::spec::{self, FieldPath, Os, ProbeSpec, Problem};
use expect::{check_header_names, compile_expect, refuse_keys, ssh_only_keys};

/// What compiling a probe needs besides the probe itself.
pub struct CompileContext<'a> {
    /// The spec's directory: script and key files are relative to it.
    pub base: &'a Path,
    pub os: Os,
    /// Whether the run has a key of its own to log in with (`launch.key_pair: ephemeral`).
    pub run_key: bool,
}

/// The default deadline: Windows takes minutes to be ready (sysprep, EC2Launch).
fn default_within(os: Os) -> Duration {
    match os {
        Os::Linux => Duration::from_secs(300),
        Os::Windows => Duration::from_secs(20 * 60),
    }
}

impl Probe {
    /// The probe `spec` describes, or `None` with the reasons in `problems`.
    pub fn compile(
        spec: &ProbeSpec,
        ctx: &CompileContext,
        path: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> Option<Probe> {
        let before = problems.len();
        if spec.name.trim().is_empty() {
            problems.push(Problem::at(path.key("name"), "probe name is empty"));
        }
        let within = spec.within.unwrap_or_else(|| default_within(ctx.os));
        if within.is_zero() {
            problems.push(Problem::at(path.key("within"), "deadline must be above 0s"));
        }
        if spec.interval.is_zero() {
            problems.push(Problem::at(path.key("interval"), "interval must be above 0s"));
        }
        one_kind(spec, path, problems)?;
        let check = compile_check(spec, ctx, path, problems)?;
        (problems.len() == before).then(|| Probe {
            name: spec.name.clone(),
            check,
            within,
            interval: spec.interval,
            host: spec.host.clone(),
        })
    }

    /// What in the probe's expectations will likely not work as meant, for `plan` to warn of: a
    /// regex every match of which ends in a line break, which can't match the answer's last line.
    pub fn hints(&self) -> Vec<String> {
        let patterns = match &self.check {
            Check::Http(http) => vec![("body_regex", &http.expect.body_regex)],
            Check::Ssh(ssh) => {
                vec![("stdout_regex", &ssh.expect.stdout_regex), ("stderr_regex", &ssh.expect.stderr_regex)]
            }
            Check::Agent(agent) => {
                vec![("stdout_regex", &agent.expect.stdout_regex), ("stderr_regex", &agent.expect.stderr_regex)]
            }
            Check::Tcp(_) | Check::Rdp { .. } | Check::WindowsPassword => Vec::new(),
        };
        patterns
            .into_iter()
            .filter_map(|(key, re)| Some((key, re.as_ref()?.as_str())))
            .filter(|(_, pattern)| ends_in_line_break(pattern))
            .map(|(key, pattern)| {
                // A line break typed into the YAML (`"active\n"`) is shown as it was typed.
                let shown = pattern.replace('\n', "\\n").replace('\r', "\\r");
                format!(
                    "probe `{}`: {key} /{shown}/ can't match an answer's last line: every match ends in a line \
                     break, and the answer's final line break is dropped before matching; end the pattern \
                     with `$`, which matches at the end of every line",
                    self.name
                )
            })
            .collect()
    }
}

/// `None` (with a problem) when the probe has two kinds of check.
fn one_kind(spec: &ProbeSpec, path: &FieldPath, problems: &mut Vec<Problem>) -> Option<()> {
    let kinds: Vec<&str> = [
        spec.tcp.as_ref().map(|_| "tcp"),
        spec.http.as_ref().map(|_| "http"),
        spec.ssh.as_ref().map(|_| "ssh"),
        spec.agent.as_ref().map(|_| "agent"),
        spec.rdp.as_ref().map(|_| "rdp"),
        spec.windows_password.as_ref().map(|_| "windows_password"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if kinds.len() > 1 {
        problems.push(
            Problem::at_key(path.key(kinds[1]), format!("probe has both `{}` and `{}`", kinds[0], kinds[1]))
                .help("split it into two probes"),
        );
        return None;
    }
    Some(())
}

/// The probe's one check, of whichever kind it has.
fn compile_check(
    spec: &ProbeSpec,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<Check> {
    if spec.windows_password.is_some() {
        check_windows_password(spec, ctx, path, problems);
        return Some(Check::WindowsPassword);
    }
    if let Some(tcp) = &spec.tcp {
        if spec.expect.is_some() {
            problems.push(
                Problem::at_key(path.key("expect"), "`expect` applies to http, ssh and agent probes")
                    .help("a tcp probe checks its answer with `tcp.contains`"),
            );
        }
        check_port(tcp.port, &path.key("tcp").key("port"), problems);
        return Some(Check::Tcp(TcpCheck { port: tcp.port, send: tcp.send.clone(), contains: tcp.contains.clone() }));
    }
    if let Some(ssh) = &spec.ssh {
        let expect = ssh::compile_ssh_expect(spec.expect.as_ref(), &path.key("expect"), problems);
        return Some(Check::Ssh(Box::new(ssh::compile_ssh(ssh, expect, ctx, &path.key("ssh"), problems)?)));
    }
    if let Some(agent) = &spec.agent {
        let expect = ssh::compile_ssh_expect(spec.expect.as_ref(), &path.key("expect"), problems);
        return Some(Check::Agent(Box::new(ssh::compile_agent(agent, expect, ctx, &path.key("agent"), problems)?)));
    }
    if let Some(rdp) = &spec.rdp {
        if spec.expect.is_some() {
            problems.push(Problem::at_key(path.key("expect"), "`expect` applies to http, ssh and agent probes"));
        }
        check_port(rdp.port, &path.key("rdp").key("port"), problems);
        return Some(Check::Rdp { port: rdp.port });
    }
    if let Some(http) = &spec.http {
        return Some(Check::Http(compile_http(http, spec.expect.as_ref(), path, problems)));
    }
    problems.push(
        Problem::at_key(path.clone(), "probe has no kind")
            .help("add `tcp: { port: N }`, `http: { port: N, path: / }`, `ssh: { command: ... }`, `agent: { command: ... }`, `rdp: {}` or `windows_password: {}`"),
    );
    None
}

/// A `windows_password` probe needs a Windows image and the run's own key, and has no `expect`.
fn check_windows_password(spec: &ProbeSpec, ctx: &CompileContext, path: &FieldPath, problems: &mut Vec<Problem>) {
    if ctx.os != Os::Windows {
        problems.push(
            Problem::at_key(path.key("windows_password"), "`windows_password` needs `os: windows`")
                .help("Windows images get an RSA run key, the only kind EC2 encrypts their password to"),
        );
    }
    if !ctx.run_key {
        problems.push(Problem::at_key(
            path.key("windows_password"),
            "`windows_password` needs the run's own key (`launch.key_pair: ephemeral`) to decrypt it",
        ));
    }
    if spec.expect.is_some() {
        problems.push(Problem::at_key(path.key("expect"), "`expect` applies to http, ssh and agent probes"));
    }
}

fn compile_http(
    http: &spec::HttpProbe,
    expect: Option<&spec::ExpectSpec>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> HttpCheck {
    let at = path.key("http");
    check_port(http.port, &at.key("port"), problems);
    if !http.path.starts_with('/') {
        problems.push(Problem::at(at.key("path"), format!("path `{}` must start with `/`", http.path)));
    }
    check_header_names(http.headers.keys(), &at.key("headers"), problems);
    let compiled = compile_expect(expect, &path.key("expect"), problems);
    refuse_keys(expect.map(ssh_only_keys), "ssh", &path.key("expect"), problems);
    HttpCheck {
        port: http.port,
        path: http.path.clone(),
        method: http.method,
        scheme: http.scheme,
        headers: http.headers.clone().into_iter().collect(),
        body: http.body.clone(),
        timeout: http.timeout,
        expect: compiled,
    }
}

fn check_port(port: u16, path: &FieldPath, problems: &mut Vec<Problem>) {
    if port == 0 {
        problems.push(Problem::at(path.clone(), "port 0 is not a port to probe"));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn compile(yaml: &str) -> Result<Probe, Vec<Problem>> {
        let spec: ProbeSpec = serde_yaml::from_str(yaml).unwrap();
        let ctx = CompileContext { base: Path::new("."), os: Os::Linux, run_key: true };
        let mut problems = Vec::new();
        Probe::compile(&spec, &ctx, &FieldPath::root(), &mut problems).ok_or(problems)
    }

    pub(crate) fn probe(yaml: &str) -> Probe {
        compile(yaml).unwrap()
    }

    #[test]
    fn expectations_of_another_kind_are_refused() {
        let problems =
            compile("name: s\nssh: {command: 'true'}\nexpect: {status: 200, stdout_contains: x}").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("`status` applies to http probes"), "{problems:?}");
        let problems = compile("name: h\nhttp: {port: 80}\nexpect: {exit_status: 1}").unwrap_err();
        assert!(problems[0].message.contains("`exit_status` applies to ssh probes"), "{problems:?}");
    }

    #[test]
    fn windows_waits_longer_by_default() {
        let spec: ProbeSpec = serde_yaml::from_str("name: r\nrdp: {}").unwrap();
        let ctx = CompileContext { base: Path::new("."), os: Os::Windows, run_key: true };
        let p = Probe::compile(&spec, &ctx, &FieldPath::root(), &mut Vec::new()).unwrap();
        assert_eq!((p.within, p.port(), p.kind()), (Duration::from_secs(1200), Some(3389), "rdp"));
        assert_eq!(probe("name: r\nrdp: {port: 3390}\nwithin: 1m").within, Duration::from_secs(60));
    }

    #[test]
    fn a_regex_that_ends_in_a_line_break_is_hinted_at() {
        let hints =
            probe("name: s\nssh: {command: 'true'}\nexpect: {stdout_regex: '^active$', stderr_regex: \"oops\\n\"}")
                .hints();
        assert_eq!(hints.len(), 1, "{hints:?}");
        assert!(
            hints[0].starts_with("probe `s`: stderr_regex /oops\\n/ can't match an answer's last line"),
            "{hints:?}"
        );
        let hints = probe("name: h\nhttp: {port: 80}\nexpect: {body_regex: 'up\\r\\n$'}").hints();
        assert!(hints[0].starts_with("probe `h`: body_regex /up\\r\\n$/"), "{hints:?}");
        assert_eq!(probe("name: h\nhttp: {port: 80}\nexpect: {body_regex: '^up$'}").hints(), Vec::<String>::new());
    }
}
