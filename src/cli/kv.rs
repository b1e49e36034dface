//! `shoal kv` (like etcdctl, in the user namespace) and `shoal store status`.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use hyper::{Method, StatusCode};

use crate::api::store::UserKv;
use crate::config::NodeConfig;
use crate::store::StoreStatus;

#[derive(Subcommand, Debug, Clone)]
pub enum KvAction {
    /// Write KEY = VALUE; exits 0 once committed.
    Put { key: String, value: String },
    /// Print the value of KEY alone (exit 1 if absent).
    Get {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete KEY; prints how many keys were deleted (0 or 1).
    Del { key: String },
    /// List the keys under PREFIX.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        json: bool,
    },
    /// Print every change under PREFIX as it happens, one line each:
    /// `REV PUT|DELETE KEY VALUE`. `--from REV` starts at REV (inclusive)
    /// with the history since then.
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        from: Option<u64>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum StoreAction {
    /// Leader, term, indexes and members of the store.
    Status {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Percent-encodes a key for the URL path (keys may hold `/`).
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

pub fn run(config: &Path, action: KvAction) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let client = super::http::client_for(&cfg)?;
    let t = Duration::from_millis(cfg.store.request_timeout_ms + 5_000);
    super::client_runtime()?.block_on(async {
        match action {
            KvAction::Put { key, value } => {
                let path = format!("/shoal/v1/kv/{}", encode_key(&key));
                let (status, body) = client
                    .request(Method::PUT, &path, Some(value.into_bytes()), t)
                    .await?;
                if !status.is_success() {
                    bail!("put {key}: {}", message(&body));
                }
                println!("OK");
            }
            KvAction::Get { key, json } => {
                let path = format!("/shoal/v1/kv/{}", encode_key(&key));
                let (status, body) = client.request(Method::GET, &path, None, t).await?;
                if status == StatusCode::NOT_FOUND {
                    bail!("{key}: not found");
                }
                if !status.is_success() {
                    bail!("get {key}: {}", message(&body));
                }
                let kv: UserKv = serde_json::from_slice(&body)?;
                if kv.stale {
                    eprintln!("warning: stale read: the store has no quorum; this may not be the latest value");
                }
                if json {
                    println!("{}", serde_json::to_string(&kv)?);
                } else {
                    println!("{}", kv.value);
                }
            }
            KvAction::Del { key } => {
                let path = format!("/shoal/v1/kv/{}", encode_key(&key));
                let (status, body) = client.request(Method::DELETE, &path, None, t).await?;
                if !status.is_success() {
                    bail!("del {key}: {}", message(&body));
                }
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                println!("{}", if v["deleted"] == true { 1 } else { 0 });
            }
            KvAction::Watch { prefix, from } => {
                let mut clients = vec![client.clone()];
                let token = crate::pki::read_token(&cfg.auth.admin_token_file)?;
                for p in &cfg.peers {
                    if let Some(api) = p.api {
                        clients.push(super::http::ApiClient::new(
                            api,
                            &cfg.tls.ca,
                            Some(token.clone()),
                        )?);
                    }
                }
                watch_resuming(&clients, &prefix, from.unwrap_or(0), t).await?;
            }
            KvAction::List { prefix, json } => {
                let path = format!(
                    "/shoal/v1/kv?prefix={}",
                    encode_key(&prefix).replace('/', "%2F")
                );
                let (status, body) = client.request(Method::GET, &path, None, t).await?;
                if !status.is_success() {
                    bail!("list {prefix}: {}", message(&body));
                }
                let kvs: Vec<UserKv> = serde_json::from_slice(&body)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&kvs)?);
                } else {
                    for kv in kvs {
                        println!("{}\t{}", kv.key, kv.value);
                    }
                }
            }
        }
        Ok(())
    })
}

pub fn status(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let client = super::http::client_for(&cfg)?;
    let s: StoreStatus = super::client_runtime()?
        .block_on(client.get_json("/shoal/v1/store/status"))
        .map_err(|e| anyhow!("store status: {e:#}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("node:          {} ({})", s.node, s.state);
        println!("leader:        {}", s.leader.as_deref().unwrap_or("(none)"));
        println!("term:          {}", s.term);
        println!("commit_index:  {}", s.commit_index);
        println!("applied_index: {}", s.applied_index);
        println!("voters:        {}", s.voters.join(","));
        println!("learners:      {}", s.learners.join(","));
    }
    Ok(())
}

/// `kv watch`: prints each event once, in order. A stream that ends for
/// any reason but `Expired` (its replica lost the leader, its node went
/// away) is resumed from the last revision seen + 1 on the next node, so
/// an election or a dead node never ends the command; `Expired` (the
/// revision was compacted) does, as etcd's watch does.
async fn watch_resuming(
    clients: &[super::http::ApiClient],
    prefix: &str,
    from: u64,
    t: Duration,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut next = from;
    let mut at = 0usize;
    let mut pause = Duration::from_millis(100);
    loop {
        let client = &clients[at % clients.len()];
        let path = format!(
            "/shoal/v1/kv?watch=true&from={next}&prefix={}",
            encode_key(prefix).replace('/', "%2F")
        );
        let mut ended: Option<String> = None;
        let mut seen = false;
        // What an earlier stream printed is below this revision.
        let floor = next;
        let streamed = client
            .stream_lines(&path, t, |l| {
                let Ok(w) = serde_json::from_str::<crate::api::store::WatchLine>(l) else {
                    return true;
                };
                let rev = w.rev.unwrap_or(0);
                match w.kind.as_str() {
                    "PUT" | "DELETE" => {
                        // A revision an earlier stream printed is never
                        // printed twice (a resumed stream starts after it).
                        if rev < floor {
                            return true;
                        }
                        let mut out = std::io::stdout().lock();
                        let key = w.key.unwrap_or_default();
                        let _ = if w.kind == "PUT" {
                            let value = w.value.unwrap_or_default();
                            writeln!(out, "{rev} PUT {key} {value}")
                        } else {
                            writeln!(out, "{rev} DELETE {key}")
                        };
                        let _ = out.flush();
                        next = rev + 1;
                        seen = true;
                        true
                    }
                    "PROGRESS" => {
                        // Nothing of the prefix up to `rev` is left unsent
                        // (rev 0: the replica has applied nothing yet).
                        if rev > 0 {
                            next = next.max(rev + 1);
                        }
                        seen = true;
                        true
                    }
                    "END" => {
                        ended = Some(w.reason.unwrap_or_default());
                        false
                    }
                    _ => true,
                }
            })
            .await;
        let why = match (&ended, streamed) {
            (Some(r), _) if r.starts_with("Expired") => bail!("watch {prefix} ended: {r}"),
            (Some(r), _) => r.clone(),
            (None, Err(e)) => e.to_string(),
            (None, Ok(())) => "the stream closed".into(),
        };
        if seen {
            pause = Duration::from_millis(100);
        }
        at += 1;
        let to = clients[at % clients.len()].addr;
        eprintln!("watch {prefix}: {why}; resuming from revision {next} on {to}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_path_safe() {
        assert_eq!(encode_key("a/b c?d"), "a/b%20c%3Fd");
        assert_eq!(encode_key("x%y"), "x%25y");
    }
}
