//! HTTP probes: one request, then every expectation checked against the answer. What was sent and
//! what came back is kept for the report ([`HttpExchange`]), credentials in headers hidden.

use std::net::SocketAddr;
use std::time::Duration;

use super::expect::{check_json, text_matches, Unmet};
use super::{Endpoint, Expectations, HttpCheck};
use crate::spec::{HttpMethod, HttpScheme};

/// Bodies are read up to this size; reports keep an excerpt.
const MAX_BODY: usize = 1 << 20;
const EXCERPT: usize = 2048;

/// What was sent and what came back, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpExchange {
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body_excerpt: String,
    pub body_truncated: bool,
}

/// A failed attempt: why, what was sent and what came back (secrets not yet masked), and whether
/// the time ran out.
pub struct Failure {
    pub message: String,
    pub exchange: HttpExchange,
    pub timed_out: bool,
}

/// The HTTP client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("failed to build http client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// The client a probe's attempts share: no proxy, no redirects, no certificate checks, and only
/// ever the address the target policy allowed, whatever the host name says.
pub fn client(check: &HttpCheck, endpoint: &Endpoint, addr: SocketAddr) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .no_proxy()
        .resolve(&endpoint.host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .connect_timeout(check.timeout.min(Duration::from_secs(5)))
        .timeout(check.timeout)
        .build()
        .map_err(ClientError)
}

/// One request; `limit`, when given and shorter than the probe's timeout, bounds the whole exchange.
pub async fn attempt(
    check: &HttpCheck,
    client: &reqwest::Client,
    endpoint: &Endpoint,
    limit: Option<Duration>,
) -> Result<(String, HttpExchange), Failure> {
    let url = url(check, endpoint);
    let method = method_name(check.method);
    let mut exchange = HttpExchange {
        method: method.to_string(),
        url: url.clone(),
        status: None,
        headers: Vec::new(),
        body_excerpt: String::new(),
        body_truncated: false,
    };
    let mut response = match request(check, client, &url, limit).send().await {
        Ok(r) => r,
        Err(e) => return Err(Failure { message: describe(&e), exchange, timed_out: e.is_timeout() }),
    };
    let status = response.status().as_u16();
    exchange.status = Some(status);
    exchange.headers = answer_headers(&response);
    let body = match read_body(&mut response).await {
        Ok((body, truncated)) => {
            exchange.body_truncated = truncated;
            body
        }
        Err(e) => {
            let message = format!("failed to read body: {}", describe(&e));
            return Err(Failure { message, exchange, timed_out: e.is_timeout() });
        }
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    exchange.body_excerpt = text.chars().take(EXCERPT).collect();
    exchange.body_truncated |= text.chars().count() > EXCERPT;

    match check_expectations(&check.expect, status, &exchange.headers, &text) {
        Ok(()) => Ok((format!("status {status}, all expectations met"), exchange)),
        Err(why) => Err(Failure { message: why.to_string(), exchange, timed_out: false }),
    }
}

fn url(check: &HttpCheck, endpoint: &Endpoint) -> String {
    let scheme = match check.scheme {
        HttpScheme::Http => "http",
        HttpScheme::Https => "https",
    };
    let host = if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.clone() };
    format!("{scheme}://{host}:{}{}", endpoint.port, check.path)
}

/// The probe's request: its method, headers and body, within `limit` if that is the shorter.
fn request(check: &HttpCheck, client: &reqwest::Client, url: &str, limit: Option<Duration>) -> reqwest::RequestBuilder {
    let method = method_name(check.method);
    let mut request =
        client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET), url);
    for (k, v) in &check.headers {
        request = request.header(k, v);
    }
    if let Some(body) = &check.body {
        request = request.body(body.clone());
    }
    if let Some(limit) = limit.filter(|l| *l < check.timeout) {
        request = request.timeout(limit);
    }
    request
}

/// The answer's headers as the report keeps them, credentials hidden.
fn answer_headers(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .iter()
        .map(|(k, v)| {
            let value = if is_secret(k.as_str()) {
                "***".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_string(), value)
        })
        .collect()
}

/// The body up to [`MAX_BODY`], and whether it was longer.
async fn read_body(response: &mut reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_BODY {
            body.truncate(MAX_BODY);
            return Ok((body, true));
        }
    }
    Ok((body, false))
}

/// The spec's secrets masked in what the report keeps of an exchange.
pub fn mask_exchange(exchange: &mut HttpExchange, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let mask = |text: &str| crate::text::mask(text, secrets);
    exchange.url = mask(&exchange.url);
    exchange.body_excerpt = mask(&exchange.body_excerpt);
    for (_, value) in &mut exchange.headers {
        *value = mask(value);
    }
}

/// Headers whose values are credentials: reports show that they were there, not what they said.
fn is_secret(name: &str) -> bool {
    const SECRET: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-amz-security-token",
    ];
    SECRET.contains(&name.to_ascii_lowercase().as_str())
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Head => "HEAD",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Patch => "PATCH",
    }
}

/// reqwest's Display hides the cause ("error sending request"); the chain says what happened.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "connect failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = last {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

/// Checks every expectation; reports all that failed, not just the first.
pub fn check_expectations(
    expect: &Expectations,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<(), Unmet> {
    let mut failures = Vec::new();
    if !expect.status.matches(status) {
        failures.push(format!("status {status}, expected {}", expect.status));
    }
    for (name, wanted) in &expect.headers {
        match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            None => failures.push(format!("header `{name}` missing")),
            Some((_, value)) if !value.contains(wanted.as_str()) => {
                failures.push(format!("header `{name}` is `{value}`, expected it to contain `{wanted}`"))
            }
            Some(_) => {}
        }
    }
    if let Some(wanted) = &expect.body_contains {
        if !body.contains(wanted.as_str()) {
            failures.push(format!("body does not contain `{wanted}`"));
        }
    }
    if let Some(re) = &expect.body_regex {
        if !text_matches(re, body) {
            failures.push(format!("body does not match /{}/", re.as_str()));
        }
    }
    check_json(&expect.json, "body", body, &mut failures);
    Unmet::check(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FieldPath, ProbeSpec};

    fn expectations(yaml: &str) -> Expectations {
        let spec: ProbeSpec = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let ctx =
            super::super::CompileContext { base: std::path::Path::new("."), os: crate::spec::Os::Linux, run_key: true };
        let probe = super::super::Probe::compile(&spec, &ctx, &FieldPath::root(), &mut problems).unwrap();
        match probe.check {
            super::super::Check::Http(h) => h.expect,
            _ => unreachable!(),
        }
    }

    #[test]
    fn reports_every_failed_expectation() {
        let e = expectations(
            "name: h\nhttp: {port: 80}\nexpect: {status: 200-299, headers: {Content-Type: json}, body_contains: up, json: {'$.status': up}}",
        );
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        assert_eq!(check_expectations(&e, 200, &headers, r#"{"status":"up"}"#), Ok(()));
        let err = check_expectations(&e, 503, &[], r#"{"status":"down"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "status 503, expected 200-299; header `Content-Type` missing; body does not contain `up`; `$.status` is \"down\", expected \"up\""
        );
    }

    #[test]
    fn a_body_regex_matches_lines_ending_in_crlf() {
        let e = expectations(
            "name: h\nhttp: {port: 80}\nexpect: {body_regex: '^<h1>ok</h1>$', body_contains: \"</html>\\r\\n\"}",
        );
        assert_eq!(check_expectations(&e, 200, &[], "<html>\r\n<h1>ok</h1>\r\n</html>\r\n"), Ok(()));
        let err = check_expectations(&e, 200, &[], "<html>\r\n<h1>ok</h1> \r\n</html>").unwrap_err();
        assert_eq!(err.to_string(), "body does not contain `</html>\r\n`; body does not match /^<h1>ok</h1>$/");
    }
}
