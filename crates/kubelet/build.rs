//! Builds the docker runtime's pause program (`src/docker/pause.c`) as a
//! static executable in OUT_DIR, which `docker::pause` embeds and imports as
//! the sandbox image at first use. The C compiler is the one `cc` finds
//! (the same that builds ring); `-static` needs the C library's archive
//! (Debian: libc6-dev, which gcc pulls in).

use std::path::PathBuf;

fn main() {
    let src = "src/docker/pause.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("pause");
    let compiler = cc::Build::new()
        .opt_level_str("s")
        .cargo_metadata(false)
        .get_compiler();
    let status = compiler
        .to_command()
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler for {src}: {e}"));
    assert!(
        status.success(),
        "building {src} as a static executable failed ({status}); it needs a C compiler and the C library's static archive (Debian: gcc, libc6-dev)"
    );
}
