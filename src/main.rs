//! The `amiprobe` binary: parse the command line, run, exit with the outcome's code.

fn main() {
    let outcome = amiprobe::cli::main();
    std::process::exit(outcome.code());
}
