//! String helpers every layer may use: masking the spec's secrets, and making text from outside
//! amiprobe (a guest's console, a command's output, an API error) safe to match, store and print.
//!
//! Nothing here knows about probes, consoles or providers: it imports nothing from the crate.

/// What secrets become wherever they are recorded.
pub const MASK: &str = "********";

/// What is wrong with a regular expression, in one lowercase line: the regex crate's message ends
/// with the line that says it (`unclosed group`), after a picture of the pattern.
pub fn regex_problem(e: &regex::Error) -> String {
    e.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_lowercase()
}

/// Every secret in `text` replaced by [`MASK`].
pub fn mask(text: &str, secrets: &[String]) -> String {
    // Longest first: a secret that contains another is masked whole.
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    sorted.into_iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), MASK))
}

/// Text as a person reads it on a terminal: ANSI escape sequences (colours, cursor moves, titles)
/// and control characters removed, `\n` and `\t` kept. Guests print these freely (systemd colours
/// its status lines); console matching, reports and the terminal all use this text.
pub fn clean(raw: &[u8]) -> String {
    struct Text(String);
    impl vte::Perform for Text {
        fn print(&mut self, c: char) {
            // C1 controls and other non-printing characters that the parser passes through.
            if !c.is_control() {
                self.0.push(c);
            }
        }
        fn execute(&mut self, byte: u8) {
            if byte == b'\t' {
                self.0.push('\t');
            }
        }
    }
    let mut text = Text(String::with_capacity(raw.len()));
    // A line at a time, with a fresh parser: a stray or hostile string sequence (OSC, DCS, APC run
    // until their terminator) must not swallow the lines after it, a panic among them.
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            text.0.push('\n');
        }
        vte::Parser::new().advance(&mut text, line);
    }
    text.0
}

/// Text from outside amiprobe (a guest, an API error) made safe for a terminal: one line, no
/// escape sequences or control characters.
pub fn printable(text: &str) -> String {
    clean(text.as_bytes()).replace(['\n', '\t'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_everywhere_they_occur() {
        let secrets = vec!["hunter2".to_string(), String::new()];
        assert_eq!(mask("pw=hunter2; again hunter2", &secrets), "pw=********; again ********");
    }

    #[test]
    fn the_longest_secret_is_masked_whole() {
        let secrets = vec!["pass".to_string(), "password1".to_string()];
        assert_eq!(mask("password1 pass", &secrets), "******** ********");
    }

    #[test]
    fn escape_sequences_go_and_lines_stay() {
        assert_eq!(clean(b"\x1b[0;32mOK\x1b[0m\tdone\r\nnext\n"), "OK\tdone\nnext\n");
        assert_eq!(printable("a\nb\tc\x07"), "a b c");
    }
}
