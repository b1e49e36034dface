//! Container log files: one per container instance
//! (`<pod>/<container>/<restart>.log`), each line in the CRI format
//! (`<RFC 3339 time> <stdout|stderr> F <text>`), written by the instance's
//! shim and rotated once a file passes [`MAX_BYTES`] (the older part kept
//! as `<restart>.log.1`); read here for `kubectl logs`, and followed for
//! `kubectl logs -f` on inotify events.

use std::path::Path;

use crate::RuntimeError;
use shoal_fabric::actor::Sink;
use shoal_kubelet_proto::PodLogs;

/// A log file is rotated past this size.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The text of one log file as `kubectl logs` shows it: the lines without
/// their CRI prefix, the last `tail_lines` if asked.
pub async fn read(path: &Path, req: &PodLogs) -> Result<String, RuntimeError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        let why = format!("no logs for container {:?}: {e}", req.container);
        if e.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::NotFound(why)
        } else {
            RuntimeError::Host(why)
        }
    })?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if req.timestamps {
                with_time(l)
            } else {
                strip(l).to_string()
            }
        })
        .collect();
    let from = match req.tail_lines {
        Some(n) => lines.len().saturating_sub(n as usize),
        None => 0,
    };
    let mut out = String::new();
    for l in &lines[from..] {
        out.push_str(l);
        out.push('\n');
    }
    Ok(out)
}

/// A log line as the request wants it shown.
fn shown(line: &str, req: &PodLogs) -> String {
    if req.timestamps {
        with_time(line)
    } else {
        strip(line).to_string()
    }
}

/// Reads what `path` holds past `*pos`, moving `*pos` on. A file that is
/// shorter than `*pos` was rotated: the rest of the old part
/// (`<path>.1`) first, then the new file from its start.
async fn read_on(path: &Path, pos: &mut u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut out = Vec::new();
    let len = tokio::fs::metadata(path).await?.len();
    if len < *pos {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        if let Ok(mut f) = tokio::fs::File::open(&old).await {
            f.seek(std::io::SeekFrom::Start(*pos)).await?;
            f.read_to_end(&mut out).await?;
        }
        *pos = 0;
    }
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(*pos)).await?;
    let n = f.read_to_end(&mut out).await?;
    *pos += n as u64;
    Ok(out)
}

/// `kubectl logs -f` of one container instance (`base`): its log so far
/// (the last `tail_lines` if asked), then each line it writes, pushed on
/// file events (inotify) until the instance ends (its `.exit` file
/// appears) or the subscriber goes away.
pub async fn follow(base: &Path, req: &PodLogs, sink: Sink<String>) {
    let (path, exit) = (super::shim::log_path(base), super::shim::exit_path(base));
    let Some(dir) = base.parent() else {
        return sink.end("no log directory").await;
    };
    // Watch first, read after: nothing written in between is missed.
    let (tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = tx.try_send(());
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => return sink.end(&format!("following the log: {e}")).await,
    };
    use notify::Watcher;
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        return sink.end(&format!("following the log: {e}")).await;
    }
    let (mut pos, mut partial, mut first) = (0u64, Vec::new(), true);
    loop {
        // Checked before reading: all the instance wrote is in the file
        // once its exit is recorded.
        let ended = tokio::fs::try_exists(&exit).await.unwrap_or(false);
        match read_on(&path, &mut pos).await {
            Ok(bytes) => partial.extend(bytes),
            Err(e) if first => {
                return sink
                    .end(&format!("no logs for container {:?}: {e}", req.container))
                    .await
            }
            Err(_) => return sink.end("the container is gone").await,
        }
        let complete = partial
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&partial[..complete]).into_owned();
        partial.drain(..complete);
        let mut lines: Vec<String> = text.lines().map(|l| shown(l, req)).collect();
        let pos_was_first = first;
        if first {
            if let Some(n) = req.tail_lines {
                lines.drain(..lines.len().saturating_sub(n as usize));
            }
            first = false;
        }
        // The first piece goes even when empty: it tells the API the
        // stream is on.
        if !lines.is_empty() || pos_was_first {
            let mut out = lines.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            if sink.send(&out).await.is_err() {
                return;
            }
        }
        if ended {
            return sink.end("the container exited").await;
        }
        tokio::select! {
            e = events.recv() => if e.is_none() { return },
            _ = sink.closed() => return,
        }
    }
}

/// `2026-… stdout F text` → `2026-… text` (kubectl's `--timestamps`).
pub fn with_time(line: &str) -> String {
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(ts), Some("stdout" | "stderr"), Some(_), text) => {
            format!("{ts} {}", text.unwrap_or(""))
        }
        _ => line.to_string(),
    }
}

/// `2026-… stdout F text` → `text` (a line not in that form is kept).
pub fn strip(line: &str) -> &str {
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some("stdout" | "stderr"), Some(_), Some(text)) => text,
        (Some(_), Some("stdout" | "stderr"), Some(_), None) => "",
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_prefixes_are_stripped() {
        assert_eq!(
            strip("2026-11-26T00:00:00Z stdout F hello world"),
            "hello world"
        );
        assert_eq!(strip("2026-11-26T00:00:00Z stderr F "), "");
        assert_eq!(strip("not a cri line"), "not a cri line");
        assert_eq!(
            with_time("2026-11-26T00:00:00.5Z stdout F hello world"),
            "2026-11-26T00:00:00.5Z hello world"
        );
    }
}
