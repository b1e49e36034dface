//! Container log files: one per container instance
//! (`<pod>/<container>/<restart>.log`), each line in the CRI format
//! (`<RFC 3339 time> <stdout|stderr> F <text>`), rotated once a file
//! passes [`MAX_BYTES`] (the older half kept as `<restart>.log.1`).

use std::path::Path;

use tokio::io::AsyncWriteExt;

use crate::api::logs::PodLogs;

/// A log file is rotated past this size.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Writes the lines `rx` brings to `f` until every sender is gone.
pub async fn write(
    mut f: tokio::fs::File,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(&'static str, String)>,
) {
    let mut written = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    while let Some((stream, line)) = rx.recv().await {
        if super::write_line(&mut f, stream, &line).await.is_err() {
            // A full disk: lines are dropped, the container goes on.
            continue;
        }
        written += line.len() as u64 + 40;
        if written > MAX_BYTES {
            if let Some(rotated) = rotate(&mut f).await {
                f = rotated;
                written = 0;
            }
        }
    }
    let _ = f.flush().await;
}

/// Renames the file to `.1` (replacing an older one) and opens a fresh
/// one at the same path. The path is found through /proc (the writer
/// holds only the handle).
async fn rotate(f: &mut tokio::fs::File) -> Option<tokio::fs::File> {
    use std::os::fd::AsRawFd;
    let _ = f.flush().await;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
    let mut old = path.clone().into_os_string();
    old.push(".1");
    tokio::fs::rename(&path, &old).await.ok()?;
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .ok()
}

/// The text of one log file as `kubectl logs` shows it: the lines without
/// their CRI prefix, the last `tail_lines` if asked.
pub async fn read(path: &Path, req: &PodLogs) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("no logs for container {:?}: {e}", req.container))?;
    let lines: Vec<&str> = text.lines().map(strip).collect();
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
    }
}
