//! `shoal shim`: the small process between the agent and one container
//! instance (what conmon is to CRI-O), so containers outlive their agent.
//!
//! ```text
//! agent ─spawn─► shim (own session) ─spawn─► container (own process group)
//!                  │ stdout line 1: the container's pid (or `error <why>`)
//!                  ├─ container stdout/stderr ─► <instance>.log (CRI lines, rotated)
//!                  └─ on exit ─► <instance>.exit ("<code>" or "128 <why>")
//! ```
//!
//! The agent reads the pid from the shim's stdout, waits for the shim to
//! exit (as its child, or through a pidfd after an agent restart), then
//! reads the exit file. Nothing here depends on the agent being alive: a
//! killed agent leaves the container running and its logs flowing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::logs::MAX_BYTES;

/// Set for the shim by the agent (mimalloc commits its arenas lazily),
/// removed from the container's environment.
pub const LAZY_MALLOC: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

/// Where an instance's files are: `<base>.log` and `<base>.exit`.
pub fn log_path(base: &Path) -> PathBuf {
    base.with_extension("log")
}

pub fn exit_path(base: &Path) -> PathBuf {
    base.with_extension("exit")
}

/// Writes `text` to `path` atomically (a temporary file, then rename).
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// One log file, shared by the stdout and stderr copiers.
struct Log {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
}

impl Log {
    fn open(path: &Path) -> Log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Log {
            path: path.to_owned(),
            file,
            written,
        }
    }

    fn line(&mut self, stream: &str, text: &str) {
        let line = format!("{} {stream} F {text}\n", jiff::Timestamp::now());
        if let Some(f) = self.file.as_mut() {
            // A full disk loses lines, never the container.
            if f.write_all(line.as_bytes()).is_ok() {
                self.written += line.len() as u64;
            }
        }
        if self.written > MAX_BYTES {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            if std::fs::rename(&self.path, &old).is_ok() {
                *self = Log::open(&self.path);
            }
        }
    }
}

fn copy(out: impl Read, stream: &'static str, log: Arc<Mutex<Log>>) {
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .line(stream, text);
            }
        }
    }
}

/// Runs the shim: `base` names the instance's files, `argv` the
/// container's command. Returns the shim's exit code.
pub fn run(base: &Path, workdir: Option<&Path>, argv: &[String]) -> i32 {
    // Its own session: the agent's death, or a Ctrl-C at the agent's
    // terminal, does not reach it.
    // SAFETY: setsid(2) takes no pointers.
    unsafe { libc::setsid() };
    // SAFETY: ignoring SIGPIPE and SIGHUP, plain signal dispositions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut stdout = std::io::stdout();
    let Some((program, args)) = argv.split_first() else {
        let _ = writeln!(stdout, "error no command");
        write_atomic(&exit_path(base), "128 no command");
        return 1;
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove(LAZY_MALLOC.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so the agent can signal all of it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Some(wd) = workdir {
        cmd.current_dir(wd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("{program}: {e}");
            write_atomic(&exit_path(base), &format!("128 {why}"));
            let _ = writeln!(stdout, "error {why}");
            return 1;
        }
    };
    let _ = writeln!(stdout, "{}", child.id());
    let _ = stdout.flush();
    // Nothing more goes to the agent: stdout becomes /dev/null, so the
    // agent's end closing later cannot hurt.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto fd 1 with a valid open descriptor.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    let log = Arc::new(Mutex::new(Log::open(&log_path(base))));
    let copiers: Vec<_> = [
        child.stdout.take().map(|o| {
            let log = log.clone();
            std::thread::spawn(move || copy(o, "stdout", log))
        }),
        child.stderr.take().map(|e| {
            let log = log.clone();
            std::thread::spawn(move || copy(e, "stderr", log))
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    let status = child.wait();
    for c in copiers {
        let _ = c.join();
    }
    let code = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(128)
        }
        Err(_) => 128,
    };
    write_atomic(&exit_path(base), &code.to_string());
    0
}

/// An instance's recorded end: (exit code, why it could not start).
pub fn read_exit(base: &Path) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(exit_path(base)).ok()?;
    let (code, why) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    Some((code.trim().parse().ok()?, why.to_string()))
}
