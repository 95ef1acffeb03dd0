//! `${VAR}` and `${VAR:-default}` substitution, done on the spec's text before it is parsed.
//!
//! Substituting text (rather than parsed values) keeps it simple to explain, but it must not move the
//! YAML's structure: a value may not contain a line break, so every line keeps its number, and the
//! column shift on each changed line is recorded so that later errors still point at the source.
//! Comments are left alone; `$${` writes a literal `${`.

use std::collections::BTreeMap;

use super::limits::MAX_SPEC_BYTES;

/// Where a substitution changed a line: columns at or after `at` moved by `shift`.
#[derive(Debug, Clone)]
struct Edit {
    line: usize,
    /// 1-based column in the substituted text where the replacement starts.
    at: usize,
    replaced_len: usize,
    original_len: usize,
}

/// The substituted text and the way back to source columns.
#[derive(Debug)]
pub struct Substituted {
    pub text: String,
    edits: Vec<Edit>,
}

/// A `${...}` that could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Substituted {
    /// Maps a 1-based (line, column) in the substituted text back to the original text.
    pub fn original_position(&self, line: usize, column: usize) -> (usize, usize) {
        let mut col = column as i64;
        // Edits are in text order: find this line's with two binary searches, not a scan per lookup.
        let first = self.edits.partition_point(|e| e.line < line);
        let last = self.edits.partition_point(|e| e.line <= line);
        for edit in &self.edits[first..last] {
            let start = edit.at as i64;
            let end = start + edit.replaced_len as i64;
            if (column as i64) >= end {
                col += edit.original_len as i64 - edit.replaced_len as i64;
            } else if (column as i64) >= start {
                // Inside the replacement: point at the `${` that produced it.
                col -= column as i64 - start;
            }
        }
        (line, col.max(1) as usize)
    }
}

/// Looks a variable up: `--var` values first, then the environment.
pub struct Vars<'a> {
    pub overrides: &'a BTreeMap<String, String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.overrides.get(name).cloned().or_else(|| (self.env)(name))
    }
}

pub fn substitute(text: &str, vars: &Vars) -> Result<Substituted, Vec<VarError>> {
    let mut out = String::with_capacity(text.len());
    let mut edits = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let mut rest = line;
        let mut out_col = 1usize; // 1-based column of the next char in `out` on this line
        let mut src_col = 1usize;
        let mut quote: Option<char> = None;
        let mut prev: Option<char> = None;
        while let Some(c) = rest.chars().next() {
            // A `#` at the start of a line or after a blank, outside quotes, starts a comment.
            if quote.is_none() && c == '#' && prev.is_none_or(|p| p == ' ' || p == '\t') {
                out.push_str(rest);
                break;
            }
            if let Some(after) = rest.strip_prefix("$${") {
                out.push_str("${");
                edits.push(Edit { line: line_no, at: out_col, replaced_len: 2, original_len: 3 });
                rest = after;
                out_col += 2;
                src_col += 3;
                prev = Some('{');
                continue;
            }
            if let Some(after) = rest.strip_prefix("${") {
                let Some(end) = after.find('}') else {
                    errors.push(VarError {
                        line: line_no,
                        column: src_col,
                        message: "unterminated `${`: expected `${NAME}` or `${NAME:-default}`".into(),
                    });
                    out.push_str(rest);
                    break;
                };
                let body = &after[..end];
                let (name, default) = match body.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (body, None),
                };
                let original_len = end + 3;
                let valid_name = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                let value = if !valid_name {
                    errors.push(VarError {
                        line: line_no,
                        column: src_col,
                        message: format!("invalid variable name `{name}`: use letters, digits and `_`"),
                    });
                    String::new()
                } else {
                    match vars.get(name).or_else(|| default.map(str::to_string)) {
                        Some(v) if v.contains('\n') || v.contains('\r') => {
                            errors.push(VarError {
                                line: line_no,
                                column: src_col,
                                message: format!("variable `{name}` contains a line break, which a spec value can't"),
                            });
                            String::new()
                        }
                        Some(v) => v,
                        None => {
                            errors.push(VarError {
                                line: line_no,
                                column: src_col,
                                message: format!(
                                    "undefined variable `{name}`: set it in the environment, pass `--var {name}=VALUE`, or write `${{{name}:-default}}`"
                                ),
                            });
                            String::new()
                        }
                    }
                };
                if out.len() + value.len() > MAX_SPEC_BYTES {
                    // Variables are not a way around the size limit; nothing after this is worth reading.
                    errors.push(VarError {
                        line: line_no,
                        column: src_col,
                        message: format!(
                            "substituting variables makes the spec larger than {} MiB",
                            MAX_SPEC_BYTES / (1024 * 1024)
                        ),
                    });
                    return Err(errors);
                }
                let replaced_len = value.chars().count();
                out.push_str(&value);
                edits.push(Edit { line: line_no, at: out_col, replaced_len, original_len });
                out_col += replaced_len;
                src_col += original_len;
                rest = &after[end + 1..];
                prev = Some('}');
                continue;
            }
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            out_col += 1;
            src_col += 1;
            prev = Some(c);
        }
    }
    if errors.is_empty() {
        Ok(Substituted { text: out, edits })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, pairs: &[(&str, &str)]) -> Result<Substituted, Vec<VarError>> {
        let overrides: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = |_: &str| None;
        substitute(text, &Vars { overrides: &overrides, env: &env })
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let s = run("image: ${AMI}\ntype: ${TYPE:-t3.micro} # ${NOT_USED}\n", &[("AMI", "ami-1")]).unwrap();
        assert_eq!(s.text, "image: ami-1\ntype: t3.micro # ${NOT_USED}\n");
    }

    #[test]
    fn maps_columns_back_to_the_source() {
        let s = run("a: ${X} b\n", &[("X", "longer-value")]).unwrap();
        // `b` is at column 9 in the source and column 17 after substitution.
        assert_eq!(s.original_position(1, 17), (1, 9));
        assert_eq!(s.original_position(1, 6), (1, 4));
    }

    #[test]
    fn reports_every_undefined_variable_with_its_position() {
        let errors = run("a: ${ONE}\nb: x ${TWO}\n", &[]).unwrap_err();
        assert_eq!(errors.iter().map(|e| (e.line, e.column)).collect::<Vec<_>>(), [(1, 4), (2, 6)]);
        assert!(errors[0].message.contains("undefined variable `ONE`"));
    }

    #[test]
    fn refuses_to_grow_past_the_size_limit() {
        let long = "x".repeat(100_000);
        let text = "a: ${X}\n".repeat(20);
        let errors = run(&text, &[("X", &long)]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].column), (11, 4));
        assert!(errors[0].message.contains("larger than 1 MiB"), "{}", errors[0].message);
    }

    #[test]
    fn escapes_and_rejects_line_breaks() {
        assert_eq!(run("a: $${X}\n", &[]).unwrap().text, "a: ${X}\n");
        let errors = run("a: ${X}\n", &[("X", "two\nlines")]).unwrap_err();
        assert!(errors[0].message.contains("line break"));
    }
}
