//! `amiprobe report history DIR... [--out FILE]`: the history page of the nights' results
//! directories. Warns of each directory it skips; prints the page's path. Exits 0 once the page is
//! written, 2 when no directory could be read or the page could not be written.

use std::path::{Path, PathBuf};

use crate::exit::Outcome;
use crate::report::history;

pub fn history(dirs: &[PathBuf], out: &Path) -> Outcome {
    let loaded = history::load(dirs);
    for skipped in &loaded.skipped {
        eprintln!("warning: skipped {}: {}", skipped.dir, skipped.why);
    }
    if loaded.nights.is_empty() {
        eprintln!("error: no results directory could be read ({} given)", dirs.len());
        return Outcome::UsageError;
    }
    match history::write(&loaded, out) {
        Ok(path) => {
            println!("{}", path.display());
            Outcome::Passed
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::UsageError
        }
    }
}
