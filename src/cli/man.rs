//! `amiprobe man`: the manual page (roff), generated from the clap definition in `cli.rs`. With
//! `--out DIR` it writes one page per command (`amiprobe.1`, `amiprobe-run.1`, ...), as packages
//! install them.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::Cli;
use crate::exit::Outcome;

/// Prints amiprobe(1) on stdout, or writes every command's page into `out`.
pub fn man(out: Option<&Path>) -> Outcome {
    let command = Cli::command();
    match out {
        Some(dir) => match write_pages(command, dir) {
            Ok(()) => Outcome::Passed,
            Err(e) => {
                eprintln!("error: failed to write the man pages into {}: {e}", dir.display());
                Outcome::Failed
            }
        },
        None => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(command).source(source()).render(&mut page) {
                Ok(()) => print(&page),
                Err(e) => {
                    eprintln!("error: failed to render the man page: {e}");
                    Outcome::Failed
                }
            }
        }
    }
}

/// clap_mangen's own `generate_to`, but every page says which amiprobe it documents: a command's
/// page otherwise carries no version (only the top-level command has one).
fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    fn write(command: clap::Command, dir: &Path, source: &str) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir, source)?;
        }
        clap_mangen::Man::new(command).source(source).generate_to(dir).map(drop)
    }
    std::fs::create_dir_all(dir)?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    write(command, dir, &source())
}

/// The page footer's "source": the program and its version.
fn source() -> String {
    format!("amiprobe {}", env!("CARGO_PKG_VERSION"))
}

/// Writes generated text to stdout. A reader that stops early (`amiprobe man | head`) is no
/// failure: the page was asked for and what was wanted of it was read.
pub(super) fn print(bytes: &[u8]) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Outcome::Passed,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Passed,
        Err(e) => {
            eprintln!("error: failed to write to stdout: {e}");
            Outcome::Failed
        }
    }
}
