//! Links from the history page to each night's files: relative to the page's directory, so that the
//! page and the nights can be moved (or published) together and still open from `file://`.

use std::path::{Component, Path};

/// The path from the directory `from` to `to` (both absolute and canonical), as a relative URL:
/// `/`-separated, each segment percent-encoded. Empty when they are the same directory.
pub fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let up = std::iter::repeat_n("..".to_string(), from.len() - common);
    let down = to[common..].iter().map(|c| encode(&c.as_os_str().to_string_lossy()));
    up.chain(down).collect::<Vec<String>>().join("/")
}

/// `dir` (relative, as [`relative`] gives it) joined with a file name.
pub fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

/// A path segment as a URL's: anything but letters, digits and `-._~` percent-encoded (a `#` or
/// `?` in a directory's name must not end the path).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_up_then_down_from_the_pages_directory() {
        let page = Path::new("/ci/pages");
        assert_eq!(relative(page, Path::new("/ci/nights/2026-12-01")), "../nights/2026-12-01");
        assert_eq!(relative(page, Path::new("/ci/pages/tonight")), "tonight");
        assert_eq!(relative(page, Path::new("/ci/pages")), "");
        assert_eq!(relative(page, Path::new("/other")), "../../other");
        assert_eq!(join(&relative(page, page), "report.html"), "report.html");
        assert_eq!(join("../n", "report.html"), "../n/report.html");
    }

    #[test]
    fn odd_names_are_percent_encoded() {
        assert_eq!(encode("night #3 (ok?)"), "night%20%233%20%28ok%3F%29");
        assert_eq!(encode("été"), "%C3%A9t%C3%A9");
        assert_eq!(relative(Path::new("/a"), Path::new("/a/b c")), "b%20c");
    }
}
