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
    // Descriptors: an agent needs more than a service manager's usual
    // 1,024 (the API sizes its connection caps from what it gets).
    if let Err(e) = shoal::fdlimit::raise() {
        eprintln!("shoal: cannot raise the open-file limit: {e}");
    }
    shoal::cli::main()
}
