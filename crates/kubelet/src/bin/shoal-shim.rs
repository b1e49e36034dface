//! `shoal-shim shim …`: the container shim on its own, the same code as
//! `shoal shim` (`process::shim`). The agent runs the `shoal` binary's
//! subcommand; this binary lets the kubelet crate's own tests run real
//! containers under `cargo test -p shoal-kubelet`, without the root package.

use clap::Parser;
use shoal_kubelet::process::shim::{self, ShimArgs};

#[derive(Parser)]
#[command(name = "shoal-shim")]
enum Cli {
    /// Run one container instance (as `shoal shim`).
    Shim(ShimArgs),
}

fn main() -> std::process::ExitCode {
    // As the `shoal` binary does for itself: no transparent huge pages for
    // the shim (containers get the machine's policy back).
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let Cli::Shim(args) = Cli::parse();
    shim::main(&args)
}
