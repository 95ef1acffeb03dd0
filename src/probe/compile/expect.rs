//! A probe's `expect` block compiled: regexes and JSON paths parsed, header names checked, and keys
//! that belong to another kind of probe refused.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json_path::JsonPath;

use crate::probe::expect::text_regex;
use crate::probe::Expectations;
use crate::spec::{self, FieldPath, Problem, StatusMatcher};

/// The `expect` keys that only mean something for an SSH command, as given.
pub(super) fn ssh_only_keys(expect: &spec::ExpectSpec) -> Vec<&'static str> {
    [
        expect.exit_status.map(|_| "exit_status"),
        expect.stdout_contains.as_ref().map(|_| "stdout_contains"),
        expect.stdout_regex.as_ref().map(|_| "stdout_regex"),
        expect.stderr_contains.as_ref().map(|_| "stderr_contains"),
        expect.stderr_regex.as_ref().map(|_| "stderr_regex"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The `expect` keys that only mean something for an HTTP answer, as given.
pub(super) fn http_only_keys(expect: &spec::ExpectSpec) -> Vec<&'static str> {
    [
        expect.status.as_ref().map(|_| "status"),
        (!expect.headers.is_empty()).then_some("headers"),
        expect.body_contains.as_ref().map(|_| "body_contains"),
        expect.body_regex.as_ref().map(|_| "body_regex"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A problem for each key that belongs to another kind of probe.
pub(super) fn refuse_keys(keys: Option<Vec<&'static str>>, owner: &str, path: &FieldPath, problems: &mut Vec<Problem>) {
    for key in keys.unwrap_or_default() {
        problems.push(Problem::at_key(path.key(key), format!("`{key}` applies to {owner} probes")));
    }
}

/// A problem for each name that is not a valid HTTP header name; `path` is the headers' map.
pub(super) fn check_header_names<'a>(
    names: impl Iterator<Item = &'a String>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) {
    for name in names {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(Problem::at_key(path.key(name.clone()), format!("invalid header name `{name}`")));
        }
    }
}

/// A `*_regex` expectation, compiled to be matched line by line (see [`crate::probe::expect`]).
pub(super) fn compile_regex(text: Option<&String>, path: FieldPath, problems: &mut Vec<Problem>) -> Option<Regex> {
    text.and_then(|re| match text_regex(re) {
        Ok(re) => Some(re),
        Err(e) => {
            problems.push(Problem::at(path, format!("invalid regex: {}", crate::text::regex_problem(&e))));
            None
        }
    })
}

pub(super) fn compile_json(
    json: &BTreeMap<String, serde_json::Value>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Vec<(String, JsonPath, serde_json::Value)> {
    let mut compiled = Vec::new();
    for (query, value) in json {
        match JsonPath::parse(query) {
            Ok(p) => compiled.push((query.clone(), p, value.clone())),
            Err(e) => problems.push(
                Problem::at_key(path.key("json").key(query.clone()), format!("invalid JSON path `{query}`: {e}"))
                    .help("JSON paths follow RFC 9535 and start with `$`, like `$.status`"),
            ),
        }
    }
    compiled
}

/// An HTTP probe's expectations; without `expect`, a 2xx status.
pub(super) fn compile_expect(
    expect: Option<&spec::ExpectSpec>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Expectations {
    let default = spec::ExpectSpec::default();
    let expect = expect.unwrap_or(&default);
    let body_regex = compile_regex(expect.body_regex.as_ref(), path.key("body_regex"), problems);
    let json = compile_json(&expect.json, path, problems);
    check_header_names(expect.headers.keys(), &path.key("headers"), problems);
    Expectations {
        status: expect.status.clone().unwrap_or_else(StatusMatcher::success),
        headers: expect.headers.clone().into_iter().collect(),
        body_contains: expect.body_contains.clone(),
        body_regex,
        json,
    }
}
