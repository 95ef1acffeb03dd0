//! `amiprobe completions SHELL`: the shell's completion script, generated from the clap definition in
//! `cli.rs`, so it always knows the commands and flags this binary has.

use clap::CommandFactory;

use super::Cli;
use crate::exit::Outcome;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "amiprobe", &mut script);
    super::man::print(&script)
}
