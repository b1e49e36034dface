//! `shoal members` and `shoal leave`: talk to one node's API.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use hyper::Method;

use crate::config::NodeConfig;
use crate::membership::MemberInfo;

pub fn run(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let client = super::http::client_for(&cfg)?;
    let members: Vec<MemberInfo> =
        super::client_runtime()?.block_on(client.get_json("/shoal/v1/members"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&members)?);
    } else {
        print!("{}", table(&members));
    }
    Ok(())
}

/// The human table of `shoal members`.
pub fn table(members: &[MemberInfo]) -> String {
    let mut out = format!(
        "{:<10} {:<22} {:<8} {:>10} {:<8} {:<18} {:<8} {:>10}\n",
        "NAME", "ADDR", "STATE", "GENERATION", "ZONE", "ROLES", "RAFT", "SINCE"
    );
    for m in members {
        out.push_str(&format!(
            "{:<10} {:<22} {:<8} {:>10} {:<8} {:<18} {:<8} {:>9.1}s\n",
            m.name,
            m.addr,
            m.state.as_str(),
            m.generation,
            m.zone,
            m.roles.join(","),
            m.raft_role.as_deref().unwrap_or("-"),
            m.since_ms as f64 / 1000.0
        ));
    }
    out
}

pub fn leave(config: &Path) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let client = super::http::client_for(&cfg)?;
    super::client_runtime()?.block_on(async {
        let (status, body) = client
            .request(
                Method::POST,
                "/shoal/v1/leave",
                None,
                Duration::from_secs(15),
            )
            .await
            .context("asking the node to leave")?;
        if !status.is_success() {
            return Err(anyhow!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        // The agent exits once it has left; wait for its API to go away.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::time::Instant::now() < deadline {
            let up = client
                .request(Method::GET, "/healthz", None, Duration::from_millis(500))
                .await
                .is_ok();
            if !up {
                println!("{} left the cluster", cfg.name);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(anyhow!(
            "{} announced leaving but its agent is still up after 15s",
            cfg.name
        ))
    })
}
