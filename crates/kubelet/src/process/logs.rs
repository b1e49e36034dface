//! Container log files: one per container instance
//! (`<pod>/<container>/<restart>.log`), each record in the CRI format
//! (`<RFC 3339 time> <stdout|stderr> <F|P> <text>`; a line longer than the
//! shim's 16 KiB is cut into partial `P` records and a final `F`), written
//! by the instance's shim and rotated once a file passes [`MAX_BYTES`] (the
//! older part kept as `<restart>.log.1`); read here for `kubectl logs`,
//! streamed in pieces, and followed for `kubectl logs -f` on inotify
//! events.

use std::path::Path;

use crate::RuntimeError;
use shoal_fabric::actor::Sink;
use shoal_kubelet_proto::{PodLogs, MAX_LOG_PIECE};

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
    Ok(tail(&render(&text, req), req.tail_lines))
}

/// CRI records (whole lines of a log file) as `kubectl logs` shows them:
/// without their prefix (or with only the time, for `--timestamps`), a
/// partial record joined to the next.
fn render(records: &str, req: &PodLogs) -> String {
    let mut out = String::with_capacity(records.len());
    for r in records.lines() {
        let (shown, partial) = shown(r, req);
        out.push_str(&shown);
        if !partial {
            out.push('\n');
        }
    }
    out
}

/// The last `n` lines of `text` (all of it without `n`).
fn tail(text: &str, n: Option<u64>) -> String {
    let Some(n) = n else {
        return text.to_string();
    };
    let body = text.strip_suffix('\n').unwrap_or(text);
    if n == 0 || body.is_empty() {
        return String::new();
    }
    let start = body
        .rmatch_indices('\n')
        .nth(n as usize - 1)
        .map_or(0, |(i, _)| i + 1);
    text[start..].to_string()
}

/// A CRI record as the request wants it shown, and whether it is partial
/// (`P`: its line goes on in the next record).
fn shown(record: &str, req: &PodLogs) -> (String, bool) {
    let partial = record.split(' ').nth(2) == Some("P");
    let text = if req.timestamps {
        with_time(record)
    } else {
        strip(record).to_string()
    };
    (text, partial)
}

/// Sends `text` in pieces of at most [`MAX_LOG_PIECE`] bytes (cut at
/// character boundaries); false once the subscriber is gone.
async fn send_pieces(sink: &Sink<String>, text: &str) -> bool {
    let mut rest = text;
    loop {
        let mut cut = rest.len().min(MAX_LOG_PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, after) = rest.split_at(cut);
        if sink.send(&piece.to_string()).await.is_err() {
            return false;
        }
        if after.is_empty() {
            return true;
        }
        rest = after;
    }
}

/// Reads what `path` holds past `*pos`, moving `*pos` on. A file that is
/// shorter than `*pos` was rotated: the rest of the old part
/// (`<path>.1`) first, then the new file from its start.
async fn read_on(path: &Path, pos: &mut u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut out = Vec::new();
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    // The file is opened first: its length is that of what was opened,
    // even if the shim renames it meanwhile.
    let mut tries = 0;
    let mut f = loop {
        match tokio::fs::File::open(path).await {
            Ok(f) => break f,
            // The shim is between renaming the file and creating the new
            // one (back to back): a moment, then nothing new yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Path::new(&old).exists() => {
                tries += 1;
                if tries > 20 {
                    return Ok(out);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let len = f.metadata().await?.len();
    if len < *pos {
        if let Ok(mut o) = tokio::fs::File::open(&old).await {
            o.seek(std::io::SeekFrom::Start(*pos)).await?;
            o.read_to_end(&mut out).await?;
        }
        *pos = 0;
    }
    f.seek(std::io::SeekFrom::Start(*pos)).await?;
    let n = f.read_to_end(&mut out).await?;
    *pos += n as u64;
    Ok(out)
}

/// `kubectl logs [-f]` of one container instance (`base`): its log so far
/// (the last `tail_lines` if asked), in pieces; then, with `follow`, each
/// line it writes, pushed on file events (inotify) until the instance ends
/// (its `.exit` file appears) or the subscriber goes away.
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
        let mut out = render(&text, req);
        let was_first = first;
        if first {
            out = tail(&out, req.tail_lines);
            first = false;
        }
        // The first piece goes even when empty: it tells the API the
        // stream is on.
        if (!out.is_empty() || was_first) && !send_pieces(&sink, &out).await {
            return;
        }
        if ended {
            return sink.end("the container exited").await;
        }
        if !req.follow {
            return sink.end("the logs end here").await;
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

    fn req(tail_lines: Option<u64>) -> PodLogs {
        PodLogs {
            namespace: "default".into(),
            pod: "p".into(),
            container: "c".into(),
            tail_lines,
            previous: false,
            timestamps: false,
            follow: false,
        }
    }

    #[test]
    fn partial_records_join_their_line_and_tail_counts_lines() {
        let records =
            "t stdout P aaa\nt stdout P bbb\nt stdout F ccc\nt stderr F two\nt stdout F \n";
        assert_eq!(render(records, &req(None)), "aaabbbccc\ntwo\n\n");
        let out = render(records, &req(None));
        assert_eq!(tail(&out, Some(1)), "\n");
        assert_eq!(tail(&out, Some(2)), "two\n\n");
        assert_eq!(tail(&out, Some(9)), out);
        assert_eq!(tail(&out, Some(0)), "");
        assert_eq!(tail("no newline", Some(1)), "no newline");
    }

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
