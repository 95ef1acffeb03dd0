//! The `amiprobe` binary: parse the command line, run, exit with the outcome's code.

fn main() {
    // glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what each one
    // freed: the runtime's worker and blocking threads would each hold megabytes a run never uses
    // again. Two arenas are enough for a process that mostly waits.
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let outcome = amiprobe::cli::main();
    std::process::exit(outcome.code());
}
