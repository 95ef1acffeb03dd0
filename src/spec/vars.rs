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
    let mut writer = Writer { out: String::with_capacity(text.len()), edits: Vec::new(), errors: Vec::new(), vars };
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if writer.line(index + 1, line).is_err() {
            // Variables are not a way around the size limit; nothing after this is worth reading.
            return Err(writer.errors);
        }
    }
    if writer.errors.is_empty() {
        Ok(Substituted { text: writer.out, edits: writer.edits })
    } else {
        Err(writer.errors)
    }
}

/// The substituted text as it is written, line by line, with its edits and the errors found so far.
struct Writer<'v, 'a> {
    out: String,
    edits: Vec<Edit>,
    errors: Vec<VarError>,
    vars: &'v Vars<'a>,
}

/// Substituting made the text larger than a spec may be (already recorded as an error).
struct TooLarge;

/// Where the writer is on the current line.
struct Cursor<'t> {
    line_no: usize,
    rest: &'t str,
    /// 1-based column of the next char in the output on this line.
    out_col: usize,
    /// 1-based column of the next char in the source on this line.
    src_col: usize,
    quote: Option<char>,
    prev: Option<char>,
}

impl Cursor<'_> {
    /// Records that `src_len` source characters became `out_len` output characters.
    fn advance(&mut self, out_len: usize, src_len: usize, last: char) {
        self.out_col += out_len;
        self.src_col += src_len;
        self.prev = Some(last);
    }
}

impl Writer<'_, '_> {
    fn line(&mut self, line_no: usize, line: &str) -> Result<(), TooLarge> {
        let mut cur = Cursor { line_no, rest: line, out_col: 1, src_col: 1, quote: None, prev: None };
        while let Some(c) = cur.rest.chars().next() {
            // A `#` at the start of a line or after a blank, outside quotes, starts a comment.
            if cur.quote.is_none() && c == '#' && cur.prev.is_none_or(|p| p == ' ' || p == '\t') {
                self.out.push_str(cur.rest);
                return Ok(());
            }
            if let Some(after) = cur.rest.strip_prefix("$${") {
                self.out.push_str("${");
                self.edits.push(Edit { line: line_no, at: cur.out_col, replaced_len: 2, original_len: 3 });
                cur.rest = after;
                cur.advance(2, 3, '{');
            } else if let Some(after) = cur.rest.strip_prefix("${") {
                if !self.variable(&mut cur, after)? {
                    return Ok(());
                }
            } else {
                self.plain(&mut cur, c);
            }
        }
        Ok(())
    }

    /// Copies one character, following quotes (a `#` inside them is text).
    fn plain(&mut self, cur: &mut Cursor, c: char) {
        match (cur.quote, c) {
            (None, '"' | '\'') => cur.quote = Some(c),
            (Some(q), c) if c == q => cur.quote = None,
            _ => {}
        }
        self.out.push(c);
        cur.rest = &cur.rest[c.len_utf8()..];
        cur.advance(1, 1, c);
    }

    /// Replaces the `${...}` whose text after `${` is `after`; false if it is unterminated (the rest
    /// of the line is copied as it is).
    fn variable<'t>(&mut self, cur: &mut Cursor<'t>, after: &'t str) -> Result<bool, TooLarge> {
        let Some(end) = after.find('}') else {
            self.error(cur, "unterminated `${`: expected `${NAME}` or `${NAME:-default}`".into());
            self.out.push_str(cur.rest);
            return Ok(false);
        };
        let value = self.value(cur, &after[..end]);
        if self.out.len() + value.len() > MAX_SPEC_BYTES {
            let limit = MAX_SPEC_BYTES / (1024 * 1024);
            self.error(cur, format!("substituting variables makes the spec larger than {limit} MiB"));
            return Err(TooLarge);
        }
        let original_len = end + 3;
        let replaced_len = value.chars().count();
        self.out.push_str(&value);
        self.edits.push(Edit { line: cur.line_no, at: cur.out_col, replaced_len, original_len });
        cur.rest = &after[end + 1..];
        cur.advance(replaced_len, original_len, '}');
        Ok(true)
    }

    /// The value of `${body}`: the variable, else its default; empty (and an error recorded) if neither.
    fn value(&mut self, cur: &Cursor, body: &str) -> String {
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            self.error(cur, format!("invalid variable name `{name}`: use letters, digits and `_`"));
            return String::new();
        }
        match self.vars.get(name).or_else(|| default.map(str::to_string)) {
            Some(v) if v.contains('\n') || v.contains('\r') => {
                self.error(cur, format!("variable `{name}` contains a line break, which a spec value can't"));
                String::new()
            }
            Some(v) => v,
            None => {
                self.error(
                    cur,
                    format!(
                        "undefined variable `{name}`: set it in the environment, pass `--var {name}=VALUE`, or write `${{{name}:-default}}`"
                    ),
                );
                String::new()
            }
        }
    }

    fn error(&mut self, cur: &Cursor, message: String) {
        self.errors.push(VarError { line: cur.line_no, column: cur.src_col, message });
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
