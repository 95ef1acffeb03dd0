//! An SSH command's expectations: its exit status, and what its stdout and stderr contain, match
//! or hold as JSON.

use super::exec::Output;
use super::SshExpectations;
use crate::probe::expect::{check_json, text_matches, Unmet};

/// Checks every expectation; reports all that failed, not just the first.
pub(super) fn check_expectations(
    expect: &SshExpectations,
    output: &Output,
    stdout: &str,
    stderr: &str,
) -> Result<String, Unmet> {
    let mut failures = Vec::new();
    match (output.exit_status, &output.exit_signal) {
        (Some(status), _) if status == expect.exit_status => {}
        (Some(status), _) => failures.push(format!("exit status {status}, expected {}", expect.exit_status)),
        (None, Some(signal)) => {
            failures.push(format!("killed by signal {signal}, expected exit status {}", expect.exit_status))
        }
        (None, None) => failures.push("the command ended without an exit status".to_string()),
    }
    for (stream, text, contains, regex) in [
        ("stdout", stdout, &expect.stdout_contains, &expect.stdout_regex),
        ("stderr", stderr, &expect.stderr_contains, &expect.stderr_regex),
    ] {
        if let Some(wanted) = contains.as_ref().filter(|w| !text.contains(w.as_str())) {
            failures.push(format!("{stream} does not contain `{wanted}`"));
        }
        if let Some(re) = regex.as_ref().filter(|re| !text_matches(re, text)) {
            failures.push(format!("{stream} does not match /{}/", re.as_str()));
        }
    }
    check_json(&expect.json, "stdout", stdout, &mut failures);
    Unmet::check(failures).map(|()| format!("exit status {}, all expectations met", expect.exit_status))
}

#[cfg(test)]
mod tests {
    use serde_json_path::JsonPath;

    use super::*;
    use crate::probe::expect::text_regex;

    fn output(status: Option<u32>) -> Output {
        Output { stdout: Vec::new(), stderr: Vec::new(), exit_status: status, exit_signal: None, truncated: false }
    }

    #[test]
    fn every_failed_expectation_is_reported() {
        let expect = SshExpectations {
            exit_status: 0,
            stdout_contains: Some("active".into()),
            stderr_regex: Some(text_regex("^$").unwrap()),
            json: vec![("$.ok".into(), JsonPath::parse("$.ok").unwrap(), serde_json::json!(true))],
            ..Default::default()
        };
        let why = check_expectations(&expect, &output(Some(3)), "inactive?", "oops").unwrap_err();
        assert_eq!(
            why.to_string(),
            "exit status 3, expected 0; stderr does not match /^$/; stdout is not JSON: expected value at line 1 column 1"
        );
        let ok = check_expectations(&expect, &output(Some(0)), "{\"ok\": true, \"state\": \"active\"}", "");
        assert_eq!(ok.as_deref(), Ok("exit status 0, all expectations met"));
    }

    #[test]
    fn a_line_of_output_matches_without_its_line_break() {
        let expect = |pattern: &str| SshExpectations {
            stdout_contains: Some("active\n".into()),
            stdout_regex: Some(text_regex(pattern).unwrap()),
            ..Default::default()
        };
        let ok = check_expectations(&expect("^active$"), &output(Some(0)), "active\n", "");
        assert_eq!(ok.as_deref(), Ok("exit status 0, all expectations met"));
        let why = check_expectations(&expect("^inactive$"), &output(Some(0)), "active\n", "").unwrap_err();
        assert_eq!(why.to_string(), "stdout does not match /^inactive$/");
    }
}
