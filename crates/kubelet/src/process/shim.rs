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
use super::sandbox::Enter;

/// Set for the shim by the agent (mimalloc commits its arenas lazily),
/// removed from the container's environment.
pub const LAZY_MALLOC: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

/// The shim's command line, after `shim`: `shoal shim` (the agent's own
/// binary) and `shoal-shim shim` (this crate's, for its tests) take the
/// same arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ShimArgs {
    /// `<base>.log` and `<base>.exit` are the instance's files.
    #[arg(long)]
    pub base: PathBuf,
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// The pod sandbox to enter (JSON of `kubelet::process::sandbox::Enter`).
    #[arg(long)]
    pub sandbox: Option<String>,
    /// The container's command and arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// Runs the shim for `args`; the exit code is the container's.
pub fn main(args: &ShimArgs) -> std::process::ExitCode {
    let code = run(
        &args.base,
        args.workdir.as_deref(),
        args.sandbox.as_deref(),
        &args.argv,
    );
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

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

    /// Writes one CRI record; `partial`: the line goes on in the next.
    fn line(&mut self, stream: &str, partial: bool, text: &str) {
        let tag = if partial { "P" } else { "F" };
        let line = format!("{} {stream} {tag} {text}\n", jiff::Timestamp::now());
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

/// The longest line written as one record: a longer one is cut into
/// partial records (`P`) and a final one (`F`), as upstream's 16 KiB, so a
/// container printing without newlines holds the shim at this much memory.
pub const MAX_LINE: usize = 16 * 1024;

/// Copies a container's stream into the log, a record a line (or a
/// [`MAX_LINE`] piece of one).
fn copy(out: impl Read, stream: &'static str, log: Arc<Mutex<Log>>) {
    let mut reader = BufReader::with_capacity(64 * 1024, out);
    let mut line: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let write = |line: &[u8], partial: bool| {
        let text = String::from_utf8_lossy(line);
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .line(stream, partial, &text);
    };
    loop {
        let (used, ended) = {
            let chunk = match reader.fill_buf() {
                Ok([]) => break,
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let take = chunk.len().min(MAX_LINE - line.len());
            match chunk[..take].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&chunk[..i]);
                    (i + 1, true)
                }
                None => {
                    line.extend_from_slice(&chunk[..take]);
                    (take, false)
                }
            }
        };
        reader.consume(used);
        if ended || line.len() == MAX_LINE {
            write(&line, !ended);
            line.clear();
        }
    }
    // What the container wrote after its last newline.
    if !line.is_empty() {
        write(&line, false);
    }
}

/// What the container's process does between fork and exec to enter its
/// pod's sandbox: descriptors opened and paths made before the fork, so
/// the child only makes system calls.
struct Entry {
    netns: Option<std::fs::File>,
    ipc: Option<std::fs::File>,
    cgroups: Vec<std::fs::File>,
    /// (source, target, read-only) as C strings.
    mounts: Vec<(std::ffi::CString, std::ffi::CString, bool)>,
    security: super::security::Security,
    /// `security.groups` as the kernel takes them.
    groups: Vec<libc::gid_t>,
}

impl Entry {
    fn open(enter: &Enter) -> Result<Entry, String> {
        let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
        let cstr = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("{}: a NUL in the path", p.display()))
        };
        let mut mounts = Vec::new();
        for m in &enter.mounts {
            // The mount point, on the host's filesystem (there is no image
            // root): a directory, or an empty file for a file source.
            if m.source.is_dir() {
                std::fs::create_dir_all(&m.target)
            } else {
                if let Some(parent) = m.target.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&m.target)
                    .map(|_| ())
            }
            .map_err(|e| format!("mount point {}: {e}", m.target.display()))?;
            mounts.push((cstr(&m.source)?, cstr(&m.target)?, m.read_only));
        }
        Ok(Entry {
            netns: enter.netns.as_deref().map(open).transpose()?,
            ipc: enter.ipc.as_deref().map(open).transpose()?,
            cgroups: enter
                .cgroups
                .iter()
                .map(|p| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(p)
                        .map_err(|e| format!("{}: {e}", p.display()))
                })
                .collect::<Result<_, _>>()?,
            mounts,
            groups: enter.security.groups.clone(),
            security: enter.security.clone(),
        })
    }

    /// In the forked child: joins the cgroups and namespaces, then makes
    /// its own mount namespace with the volumes bound in.
    fn enter(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: only system calls on descriptors and C strings prepared
        // before the fork (async-signal-safe, as pre_exec requires).
        unsafe {
            for f in &self.cgroups {
                let r = libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1);
                check(r as libc::c_int)?;
            }
            if let Some(f) = &self.netns {
                check(libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET))?;
            }
            if let Some(f) = &self.ipc {
                check(libc::setns(f.as_raw_fd(), libc::CLONE_NEWIPC))?;
            }
            let sec = &self.security;
            if !self.mounts.is_empty() || sec.read_only_root {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let root = c"/";
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                if sec.read_only_root {
                    // The root mount read-only; volumes, bound after,
                    // stay writable (unless read-only themselves).
                    check(libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
                for (source, target, ro) in &self.mounts {
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    if *ro {
                        check(libc::mount(
                            std::ptr::null(),
                            target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        ))?;
                    }
                }
            }
            // Capabilities out of the bounding set (a root process keeps
            // only what is left of it across exec); one the kernel does
            // not know is already absent.
            for cap in &sec.drop_caps {
                let r = libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0);
                if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if sec.uid.is_some() || sec.gid.is_some() || !self.groups.is_empty() {
                check(libc::setgroups(self.groups.len(), self.groups.as_ptr()))?;
            }
            if let Some(gid) = sec.gid {
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = sec.uid {
                check(libc::setuid(uid))?;
            }
            if sec.no_new_privs {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
        }
        Ok(())
    }
}

/// Runs the shim: `base` names the instance's files, `sandbox` (JSON of
/// [`Enter`]) the pod sandbox to enter, `argv` the container's command.
/// Returns the shim's exit code.
pub fn run(base: &Path, workdir: Option<&Path>, sandbox: Option<&str>, argv: &[String]) -> i32 {
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
    let fail = |why: String| {
        let mut stdout = std::io::stdout();
        write_atomic(&exit_path(base), &format!("128 {why}"));
        let _ = writeln!(stdout, "error {why}");
        1
    };
    let enter: Enter = match sandbox.map(serde_json::from_str).transpose() {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => return fail(format!("the sandbox: {e}")),
    };
    let entry = match Entry::open(&enter) {
        Ok(e) => e,
        Err(why) => return fail(format!("entering the pod sandbox: {why}")),
    };
    let mut cmd = Command::new(program);
    // SAFETY: `Entry::enter` and `machine_thp_policy` only make
    // async-signal-safe system calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, super::machine_thp_policy);
        if enter != Enter::default() {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || entry.enter());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40 KiB line without a newline, then a short one: two partial
    /// records of 16 KiB, the rest final; then the short line whole.
    #[test]
    fn long_lines_become_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = Arc::new(Mutex::new(Log::open(&path)));
        let mut input = vec![b'a'; 40 * 1024];
        input.extend_from_slice(b"\nshort\nno newline at the end");
        copy(&input[..], "stdout", log);
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<(&str, usize)> = text
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let (_, _, tag, body) = (parts.next(), parts.next(), parts.next(), parts.next());
                (tag.unwrap(), body.unwrap_or("").len())
            })
            .collect();
        assert_eq!(
            records,
            vec![
                ("P", MAX_LINE),
                ("P", MAX_LINE),
                ("F", 40 * 1024 - 2 * MAX_LINE),
                ("F", 5),
                ("F", "no newline at the end".len())
            ]
        );
    }
}
