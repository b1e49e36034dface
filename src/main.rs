//! The `shoal` binary: parses the command line and hands over to `cli`.

/// mimalloc instead of glibc malloc: the store's write path allocates many
/// short-lived buffers, and glibc malloc showed up as about 10 % of the
/// agent's CPU samples under load (docs/DECISIONS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // No transparent huge pages for shoal itself: mimalloc's arenas are
    // eligible for them, and a few touched 2 MiB pages took an idle
    // worker agent from 20 to 37 MB RSS (docs/BENCHMARKS.md). Containers
    // get the machine's policy back before they exec
    // (`kubelet::process::machine_thp_policy`).
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    shoal::cli::main()
}
