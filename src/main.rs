//! The `shoal` binary: parses the command line and hands over to `cli`.

/// mimalloc instead of glibc malloc: the store's write path allocates many
/// short-lived buffers, and glibc malloc showed up as about 10 % of the
/// agent's CPU samples under load (docs/DECISIONS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shoal::cli::main()
}
