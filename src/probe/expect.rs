//! What HTTP and SSH expectations share when an answer is checked: regexes matched the way grep and
//! Python's `re` match them, JSON path expectations, and the failures of every expectation an answer
//! did not meet, reported together.
//!
//! A command's output and an HTTP body usually end in a line break that nobody means as part of the
//! answer: `systemctl is-active ssh` prints `active\n`, and `^active$` should match it. So a pattern
//! is compiled multi-line (`^` and `$` at every line; `(?-m)` turns it off) with `\r\n` a line break
//! like `\n` (`(?-R)` turns that off), and matched against the text with one final `\n` or `\r\n`
//! dropped: `$` then also matches before the final line break, even under `(?-m)`, as in Python.

use regex::{Regex, RegexBuilder};
use regex_syntax::hir::{Class, Hir, HirKind};
use serde_json_path::JsonPath;

/// `pattern` compiled for matching an answer with [`text_matches`]; `as_str` is still the pattern
/// as written, for messages.
pub(crate) fn text_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).multi_line(true).crlf(true).build()
}

/// Whether `re` (from [`text_regex`]) matches `text`, its final line break dropped.
pub(crate) fn text_matches(re: &Regex, text: &str) -> bool {
    re.is_match(without_final_line_break(text))
}

fn without_final_line_break(text: &str) -> &str {
    text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text)
}

/// Whether every match of `pattern` (flags as in [`text_regex`]) ends in a line break (`\n` or
/// `\r`), perhaps followed by assertions such as `$` or `\z`: such a pattern can never match at the
/// end of an answer, whose final line break is dropped, so never a one-line answer. `false` for a
/// pattern that does not parse (compiling it says why).
pub(crate) fn ends_in_line_break(pattern: &str) -> bool {
    let parsed = regex_syntax::ParserBuilder::new().multi_line(true).crlf(true).build().parse(pattern);
    parsed.is_ok_and(|hir| must_end_in_line_break(&hir))
}

/// True only when every string `hir` matches ends in `\n` or `\r`: when unsure, no.
fn must_end_in_line_break(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Literal(literal) => literal.0.last().is_some_and(|&b| is_line_break(b.into())),
        HirKind::Class(Class::Unicode(class)) => {
            only_line_breaks(class.ranges().iter().map(|r| (r.start().into(), r.end().into())))
        }
        HirKind::Class(Class::Bytes(class)) => {
            only_line_breaks(class.ranges().iter().map(|r| (r.start().into(), r.end().into())))
        }
        HirKind::Repetition(rep) => rep.min > 0 && must_end_in_line_break(&rep.sub),
        HirKind::Capture(capture) => must_end_in_line_break(&capture.sub),
        // Assertions after the last character (`\n$`, `\n\z`) take no text: what ends the match is
        // the last thing that does.
        HirKind::Concat(parts) => parts
            .iter()
            .rev()
            .find(|part| !matches!(part.kind(), HirKind::Look(_) | HirKind::Empty))
            .is_some_and(must_end_in_line_break),
        HirKind::Alternation(alternatives) => alternatives.iter().all(must_end_in_line_break),
        HirKind::Empty | HirKind::Look(_) => false,
    }
}

fn is_line_break(c: u32) -> bool {
    c == u32::from(b'\n') || c == u32::from(b'\r')
}

/// Whether a class (its ranges, as code points) holds line breaks and nothing else. The ranges are
/// merged, so `[\n\r]` is two ranges of one character each.
fn only_line_breaks(ranges: impl Iterator<Item = (u32, u32)>) -> bool {
    let mut ranges = ranges.peekable();
    ranges.peek().is_some() && ranges.all(|(start, end)| start == end && is_line_break(start))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        text_matches(&text_regex(pattern).unwrap(), text)
    }

    #[test]
    fn dollar_matches_before_the_final_line_break() {
        assert!(matches("^active$", "active\n"));
        assert!(!matches("^inactive$", "active\n"));
        assert!(matches("^active$", "active"));
        assert!(matches("^active$", "active\r\n"));
        assert!(matches(r"^active\nactive$", "active\nactive\n"));
        // Only one line break is dropped: the empty last line is still there.
        assert!(matches(r"active\n\z", "active\n\n"));
        assert!(!matches(r"active\n\z", "active\n"));
    }

    #[test]
    fn caret_and_dollar_work_per_line_unless_the_pattern_says_otherwise() {
        assert!(matches("^sshd$", "nginx\nsshd\ncron\n"));
        assert!(!matches("(?-m)^sshd$", "nginx\nsshd\ncron\n"));
        // Without multi-line, `$` still matches before the final line break, as in Python.
        assert!(matches("(?-m)^active$", "active\n"));
        assert!(!matches("(?-m)^active$", "active\nactive\n"));
        assert!(matches(r"(?-m)^active\nactive$", "active\nactive\n"));
    }

    #[test]
    fn crlf_is_a_line_break() {
        let body = "<html>\r\n<h1>ok</h1>\r\n</html>\r\n";
        assert!(matches("^<h1>ok</h1>$", body));
        assert!(matches("^</html>$", body));
        assert!(!matches("^<h1>down</h1>$", body));
        // `(?-R)`: only `\n` ends a line, so the `\r` is part of the line's text.
        assert!(!matches("(?-R)^<h1>ok</h1>$", body));
        assert!(matches(r"(?-R)^<h1>ok</h1>\r$", body));
    }

    #[test]
    fn the_pattern_is_kept_as_written_for_messages() {
        assert_eq!(text_regex("^active$").unwrap().as_str(), "^active$");
    }

    #[test]
    fn a_pattern_whose_every_match_ends_in_a_line_break_is_told() {
        for pattern in [
            r"active\n",
            r"active\n$",
            r"active\n\z",
            r"^active\r\n",
            "^active$\n", // a YAML block scalar (`|`) keeps its final line break
            r"active[\n]",
            r"(active\n)",
            r"active\n+",
            r"(?i)ACTIVE\n",
            r"inactive\n|active\n",
            r"\x0a",
        ] {
            assert!(ends_in_line_break(pattern), "{pattern:?}");
        }
        for pattern in [
            "^active$",
            r"^active\nactive$",
            r"active\n?",
            r"active\n*",
            r"inactive\n|active",
            r"active\s",
            r"active[\n\t]",
            "(?x) ^active$ \n",
            "",
            "(",
        ] {
            assert!(!ends_in_line_break(pattern), "{pattern:?}");
        }
    }
}

/// README's table of patterns, answers and whether they match, run; and every regex in README's
/// examples is in the table, so that neither can drift from what amiprobe does.
#[cfg(test)]
mod readme {
    use super::*;

    const README: &str = include_str!("../../README.md");

    /// `(pattern, answer, matches)` for each row, the answer's `\n` and `\r` made line breaks.
    fn table() -> Vec<(String, String, bool)> {
        let mut lines = README.lines().map(str::trim).skip_while(|l| *l != "| pattern | answer | matches |").skip(2);
        let mut rows = Vec::new();
        while let Some(row) = lines.next().filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`')).collect();
            let [pattern, answer, matches] = cells[..] else { panic!("README's row {row:?} has not 3 cells") };
            let answer = answer.replace(r"\n", "\n").replace(r"\r", "\r");
            rows.push((pattern.to_string(), answer, matches == "yes"));
        }
        rows
    }

    #[test]
    fn readme_says_what_matches() {
        let rows = table();
        assert!(rows.len() >= 5, "README's table of patterns is gone: {rows:?}");
        for (pattern, answer, expected) in rows {
            assert_eq!(text_matches(&text_regex(&pattern).unwrap(), &answer), expected, "/{pattern}/ on {answer:?}");
        }
    }

    #[test]
    fn every_regex_in_readme_is_in_its_table() {
        let patterns: Vec<String> = table().into_iter().map(|(pattern, _, _)| pattern).collect();
        // A YAML single-quoted scalar, where `''` is a quote.
        let example = Regex::new(r"_regex: '((?:[^']|'')*)'").unwrap();
        let examples: Vec<String> = example.captures_iter(README).map(|c| c[1].replace("''", "'")).collect();
        assert!(examples.len() >= 2, "README's examples have no regex: {examples:?}");
        for pattern in examples {
            assert!(patterns.contains(&pattern), "README's example /{pattern}/ is not in its table of patterns");
        }
    }
}
