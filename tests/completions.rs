//! Shell completions and the man page, generated from the CLI definition: the bash script completes
//! in a real `bash`, and the man page is roff that names every command `--help` lists.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::Test;

/// What bash offers for `words` (the last one being completed), with amiprobe's bash
/// completion script loaded as a user's shell loads it.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = Test::new().args(["completions", "bash"]).run().code(0).stdout();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("amiprobe.bash");
    std::fs::write(&file, script).unwrap();
    // The variables bash's programmable completion sets before it calls the function `complete -F`
    // registered, then the call itself with its three arguments (command, word, previous word).
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let driver = format!(
        r#"source "$1"
complete -p amiprobe >/dev/null || exit 3
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
_amiprobe amiprobe "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash").args(["--norc", "--noprofile", "-c", &driver, "bash"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    assert_eq!(bash_complete(&["amiprobe", "r"]), ["run", "report"]);
    assert_eq!(bash_complete(&["amiprobe", "run", "--sha"]), ["--shard"]);
    assert_eq!(bash_complete(&["amiprobe", "report", "m"]), ["merge"]);
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let run = Test::new().args(["completions", shell]).run().code(0);
        assert!(run.stdout().contains("amiprobe") && run.stdout().contains("report"), "{shell}:\n{}", run.stdout());
    }
    Test::new().args(["completions", "tcsh"]).run().code(2).stderr_has("invalid value 'tcsh'");
}

/// The commands `amiprobe --help` lists (its `Commands:` section), `help` aside.
fn commands_in_help() -> BTreeSet<String> {
    let help = Test::new().arg("--help").run().code(0).stdout();
    let section = help.split("Commands:").nth(1).expect("a Commands section").split("\n\n").next().unwrap();
    // A command's line starts at column 2; its wrapped description is indented further.
    let names: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    names
}

#[test]
fn the_man_page_is_roff_naming_every_command() {
    // As a user reads it: through a pipe that closes after a few lines.
    let bin = env!("CARGO_BIN_EXE_amiprobe");
    let out =
        Command::new("bash").args(["-c", "set -o pipefail; \"$1\" man | head -n 3", "bash", bin]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head = String::from_utf8(out.stdout).unwrap();
    assert!(head.lines().any(|l| l.starts_with(".TH amiprobe 1")), "not a roff page:\n{head}");

    let page = Test::new().arg("man").run().code(0).stdout();
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for command in commands_in_help() {
        assert!(page.contains(&format!("amiprobe\\-{command}(1)")), "the man page lacks {command}:\n{page}");
    }
}

#[test]
fn man_out_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    Test::new().args(["man", "--out"]).arg(pages.to_str().unwrap()).run().code(0);
    let written: BTreeSet<String> =
        std::fs::read_dir(&pages).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(written.contains("amiprobe.1") && written.contains("amiprobe-report-merge.1"), "{written:?}");
    for command in commands_in_help() {
        let name = format!("amiprobe-{command}.1");
        assert!(written.contains(&name), "{name} missing: {written:?}");
        let page = std::fs::read_to_string(pages.join(&name)).unwrap();
        assert!(page.contains(&format!(".TH amiprobe-{command} 1")), "{name}:\n{page}");
        assert!(page.contains(env!("CARGO_PKG_VERSION")), "{name} names no version:\n{page}");
    }
}
