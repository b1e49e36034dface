//! Container log files: one per container instance
//! (`<pod>/<container>/<restart>.log`), each line in the CRI format
//! (`<RFC 3339 time> <stdout|stderr> F <text>`), written by the instance's
//! shim and rotated once a file passes [`MAX_BYTES`] (the older part kept
//! as `<restart>.log.1`); read here for `kubectl logs`.

use std::path::Path;

use crate::api::logs::PodLogs;

/// A log file is rotated past this size.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The text of one log file as `kubectl logs` shows it: the lines without
/// their CRI prefix, the last `tail_lines` if asked.
pub async fn read(path: &Path, req: &PodLogs) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("no logs for container {:?}: {e}", req.container))?;
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
