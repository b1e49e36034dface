//! `kubectl exec` for the process runtime: the command runs beside the
//! container's process, in its namespaces (`nsenter` into its network, IPC
//! and mount namespaces, as root), with its environment and working
//! directory (read from `/proc/<pid>`); stdout and stderr stream back as
//! they come, then the exit code.

use tokio::io::AsyncReadExt;

use crate::actor::Sink;
use crate::api::logs::ExecEvent;

/// Runs `command` beside the container process `pid`, into `sink`.
pub async fn run(pid: u32, command: &[String], sink: Sink<ExecEvent>) {
    let Some((program, args)) = command.split_first() else {
        return sink.end("exec: no command").await;
    };
    let env: Vec<(String, String)> = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
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
    let child = cmd
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return sink.end(&format!("exec {program}: {e}")).await,
    };
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return sink.end("exec: no pipes").await;
    };
    let (mut ob, mut eb) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
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
            _ = sink.closed() => return,
        };
        if let Some(e) = event {
            if sink.send(&e).await.is_err() {
                return;
            }
        }
    }
    let code = match child.wait().await {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(128)
        }
        Err(_) => 128,
    };
    // nsenter exits with the command's code; a command it could not run
    // is its own error (exit 126/127 and a line on stderr, as upstream).
    let _ = sink.send(&ExecEvent::Exit(code)).await;
    sink.end("exited").await;
}
