//! What HTTP and SSH expectations share when an answer is checked: JSON path expectations, and the
//! failures of every expectation an answer did not meet, reported together.

use serde_json_path::JsonPath;

/// Every expectation an answer did not meet, as one fragment: `status 503, expected 200; body does
/// not contain `up``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Unmet(pub Vec<String>);

impl Unmet {
    /// `Ok` when nothing failed.
    pub fn check(failures: Vec<String>) -> Result<(), Unmet> {
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Unmet(failures))
        }
    }
}

/// Checks each JSON path expectation against `text` (named `what` in messages).
pub(crate) fn check_json(
    json: &[(String, JsonPath, serde_json::Value)],
    what: &str,
    text: &str,
    failures: &mut Vec<String>,
) {
    if json.is_empty() {
        return;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => failures.push(format!("{what} is not JSON: {e}")),
        Ok(doc) => {
            for (query, path, wanted) in json {
                let found = path.query(&doc).all();
                match found.first() {
                    None => failures.push(format!("`{query}` found nothing, expected {wanted}")),
                    Some(v) if *v != wanted => failures.push(format!("`{query}` is {v}, expected {wanted}")),
                    Some(_) => {}
                }
            }
        }
    }
}
