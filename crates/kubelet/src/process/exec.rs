//! `kubectl exec` for the process runtime: the command runs beside the
//! container's process, in its namespaces (`nsenter` into its network, IPC
//! and mount namespaces, as root), with its environment and working
//! directory (read from `/proc/<pid>`); its output streams back as it
//! comes, then the exit code. With `-i` the client's stdin is written to
//! the command's (its end closes it); with `-t` the command runs on a new
//! pseudo-terminal as a session leader (its output is stdout alone, the
//! client's resizes reach it as `TIOCSWINSZ`), as runc runs `exec -t`.

use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use shoal_fabric::actor::Sink;
use shoal_kubelet_proto::{ExecEvent, Input};

/// How much output one event carries at most.
const CHUNK: usize = 16 * 1024;

/// Runs `command` beside the container process `pid`, into `sink`; `input`
/// is the client's stdin and resizes when it sends any, and `tty` puts the
/// command on a terminal.
pub async fn run(
    pid: u32,
    command: &[String],
    tty: bool,
    input: Option<mpsc::Receiver<Input>>,
    sink: Sink<ExecEvent>,
) {
    let Some((program, args)) = command.split_first() else {
        return sink.end("exec: no command").await;
    };
    let mut env: Vec<(String, String)> = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    // As the container runtimes do for a terminal: a TERM it can use.
    if tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let mut cmd = if super::sandbox::is_root() {
        let mut c = tokio::process::Command::new("nsenter");
        c.arg("-t").arg(pid.to_string()).args(["-n", "-i", "-m"]);
        if let Some(wd) = &cwd {
            c.arg(format!("--wd={}", wd.display()));
        }
        c.arg("--").arg(program).args(args);
        c
    } else {
        let mut c = tokio::process::Command::new(program);
        c.args(args);
        if let Some(wd) = &cwd {
            c.current_dir(wd);
        }
        c
    };
    cmd.env_clear().envs(env).kill_on_drop(true);
    // SAFETY: only a system call between fork and exec.
    unsafe {
        cmd.pre_exec(super::machine_thp_policy);
    }
    let code = if tty {
        on_terminal(cmd, program, input, &sink).await
    } else {
        on_pipes(cmd, program, input, &sink).await
    };
    let code = match code {
        Ok(Some(code)) => code,
        Ok(None) => return,
        Err(why) => return sink.end(&why).await,
    };
    // nsenter exits with the command's code; a command it could not run
    // is its own error (exit 126/127 and a line on stderr, as upstream).
    let _ = sink.send(&ExecEvent::Exit(code)).await;
    sink.end("exited").await;
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(128),
        Err(_) => 128,
    }
}

/// Without a terminal: stdout and stderr apart, stdin a pipe fed from
/// `input` (or nothing). The exit code; None when the client went away
/// (the command is killed); why the command could not start.
async fn on_pipes(
    mut cmd: tokio::process::Command,
    program: &str,
    input: Option<mpsc::Receiver<Input>>,
    sink: &Sink<ExecEvent>,
) -> Result<Option<i32>, String> {
    let stdin = match input {
        Some(_) => std::process::Stdio::piped(),
        None => std::process::Stdio::null(),
    };
    let child = cmd
        .stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = child.map_err(|e| format!("exec {program}: {e}"))?;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("exec: no pipes".into());
    };
    // The client's stdin, written as it comes; closing it (or its end)
    // closes the command's. Resizes mean nothing without a terminal.
    let feeder = match (child.stdin.take(), input) {
        (Some(mut pipe), Some(mut input)) => Some(tokio::spawn(async move {
            while let Some(i) = input.recv().await {
                match i {
                    Input::Stdin(b) => {
                        if pipe.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Input::CloseStdin => break,
                    Input::Resize { .. } => {}
                }
            }
        })),
        _ => None,
    };
    let _feeder = AbortOnDrop(feeder);
    let (mut ob, mut eb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let event = tokio::select! {
            n = out.read(&mut ob), if out_open => match n {
                Ok(n) if n > 0 => Some(ExecEvent::Stdout(serde_bytes::ByteBuf::from(ob[..n].to_vec()))),
                _ => { out_open = false; None }
            },
            n = err.read(&mut eb), if err_open => match n {
                Ok(n) if n > 0 => Some(ExecEvent::Stderr(serde_bytes::ByteBuf::from(eb[..n].to_vec()))),
                _ => { err_open = false; None }
            },
            // The client went away: the command is killed (kill_on_drop).
            _ = sink.closed() => return Ok(None),
        };
        if let Some(e) = event {
            if sink.send(&e).await.is_err() {
                return Ok(None);
            }
        }
    }
    Ok(Some(exit_code(child.wait().await)))
}

/// Aborts a task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// A new pseudo-terminal: (master, non-blocking; slave).
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the two ints; the
    // name, termios and winsize arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_flag(&master, libc::O_NONBLOCK | libc::O_CLOEXEC)?;
    Ok((master, slave))
}

fn set_flag(fd: &OwnedFd, flag: libc::c_int) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | flag) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the terminal's size.
fn resize(master: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

/// Reads what the terminal has: Some(n) bytes, Some(0) at its end (every
/// slave closed: EIO), None when nothing is there yet.
fn read_master(master: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: reads at most buf.len() bytes into buf.
    let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EIO) {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

async fn write_master(master: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        let written = guard.try_io(|fd| {
            // SAFETY: writes at most data.len() bytes from data.
            let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match written {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// On a terminal: the command is a session leader with the terminal as
/// its controlling one and its stdin, stdout and stderr.
async fn on_terminal(
    mut cmd: tokio::process::Command,
    program: &str,
    input: Option<mpsc::Receiver<Input>>,
    sink: &Sink<ExecEvent>,
) -> Result<Option<i32>, String> {
    let spawned = open_pty().and_then(|(master, slave)| {
        cmd.stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok((master, child))
    });
    // The parent's copies of the slave close with the command.
    drop(cmd);
    let (master, mut child) = spawned.map_err(|e| format!("exec {program}: {e}"))?;
    // SAFETY: the descriptor is owned by the AsyncFd and closed only when
    // it is dropped, after deregistering.
    let master =
        unsafe { AsyncFd::register(master) }.map_err(|e| format!("exec: the terminal: {e}"))?;
    let mut input = input;
    let mut buf = vec![0u8; CHUNK];
    let mut exited = None;
    loop {
        tokio::select! {
            ready = master.readable() => {
                let Ok(mut guard) = ready else { break };
                match guard.try_io(|fd| read_master(fd.get_ref(), &mut buf)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        let e = ExecEvent::Stdout(serde_bytes::ByteBuf::from(buf[..n].to_vec()));
                        if sink.send(&e).await.is_err() {
                            return Ok(None);
                        }
                    }
                    Err(_would_block) => {}
                }
            }
            i = recv(&mut input) => match i {
                Some(Input::Stdin(b)) => {
                    if write_master(&master, &b).await.is_err() {
                        break;
                    }
                }
                // The terminal's end-of-file character: what a user's ^D does.
                Some(Input::CloseStdin) => {
                    let _ = write_master(&master, &[4]).await;
                }
                Some(Input::Resize { width, height }) => resize(master.get_ref(), width, height),
                None => input = None,
            },
            status = child.wait(), if exited.is_none() => {
                exited = Some(exit_code(status));
                // What it wrote before it ended is still to be read; a
                // process it left behind may hold the terminal open, so
                // read only what is there now.
                while let Ok(n) = read_master(master.get_ref(), &mut buf) {
                    if n == 0 {
                        break;
                    }
                    let e = ExecEvent::Stdout(serde_bytes::ByteBuf::from(buf[..n].to_vec()));
                    if sink.send(&e).await.is_err() {
                        return Ok(None);
                    }
                }
                break;
            }
            _ = sink.closed() => return Ok(None),
        }
    }
    match exited {
        Some(code) => Ok(Some(code)),
        None => Ok(Some(exit_code(child.wait().await))),
    }
}

/// The next input, or never once there is none.
async fn recv(input: &mut Option<mpsc::Receiver<Input>>) -> Option<Input> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
