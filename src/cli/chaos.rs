//! `shoal chaos`: sends one fault rule (or `heal`) to every node directly,
//! over each node's HTTPS API (the control path, which faults never touch).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use hyper::Method;

use crate::config::NodeConfig;
use crate::membership::MemberInfo;
use crate::transport::faults::{ChaosCommand, FaultSpec, RuleView};

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Cut all traffic between two node sets, both ways.
    Partition {
        #[arg(long, value_delimiter = ',', required = true)]
        a: Vec<String>,
        #[arg(long, value_delimiter = ',', required = true)]
        b: Vec<String>,
    },
    /// Cut traffic from one node to another; the reverse keeps flowing.
    Oneway {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Add latency (between the listed nodes, or everywhere).
    Delay {
        #[arg(long)]
        ms: u64,
        #[arg(long, value_delimiter = ',')]
        between: Vec<String>,
    },
    /// Drop each envelope and gossip packet with probability P.
    Drop {
        #[arg(long)]
        p: f64,
        #[arg(long, value_delimiter = ',')]
        between: Vec<String>,
    },
    /// Remove every rule on every node.
    Heal,
    /// Show the rules in force on every node.
    List,
}

/// A duration the chaos commands cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadDuration(String);

/// Parses `60s`, `500ms`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| BadDuration(format!("invalid duration {s:?}")))?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => {
            return Err(BadDuration(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            )))
        }
    };
    let d = d.ok_or_else(|| BadDuration(format!("duration {s:?} is too long")))?;
    if d.is_zero() {
        return Err(BadDuration("duration must be above zero".into()));
    }
    Ok(d)
}

pub fn command(action: &Action, ttl: Option<Duration>) -> anyhow::Result<Option<ChaosCommand>> {
    let ttl_ms = ttl.map(|d| d.as_millis() as u64);
    let rule = match action.clone() {
        Action::Partition { a, b } => FaultSpec::Partition { a, b },
        Action::Oneway { from, to } => FaultSpec::Oneway { from, to },
        Action::Delay { ms, between } => FaultSpec::Delay { ms, between },
        Action::Drop { p, between } => FaultSpec::Drop { p, between },
        Action::Heal => return Ok(Some(ChaosCommand::Heal)),
        Action::List => return Ok(None),
    };
    rule.validate().map_err(|e| anyhow!(e))?;
    Ok(Some(ChaosCommand::Add { rule, ttl_ms }))
}

pub fn run(config: &Path, ttl: Option<Duration>, action: Action) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let cmd = command(&action, ttl)?;
    let token = crate::pki::read_token(&cfg.auth.admin_token_file)?;
    let rt = super::client_runtime()?;
    rt.block_on(async {
        // Every node of the cluster: the config's view, then the live one.
        let mut targets: BTreeMap<String, SocketAddr> = BTreeMap::new();
        targets.insert(cfg.name.clone(), cfg.listen.api);
        for p in &cfg.peers {
            if let Some(api) = p.api {
                targets.insert(p.name.clone(), api);
            }
        }
        let me = super::http::ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token.clone()))?;
        if let Ok(members) = me.get_json::<Vec<MemberInfo>>("/shoal/v1/members").await {
            for m in members {
                if let Some(api) = m.api.and_then(|a| a.parse().ok()) {
                    targets.insert(m.name, api);
                }
            }
        }
        let body = cmd.as_ref().map(serde_json::to_vec).transpose()?;
        let mut failed = 0;
        for (name, addr) in &targets {
            let client = super::http::ApiClient::new(*addr, &cfg.tls.ca, Some(token.clone()))?;
            let method = if body.is_some() {
                Method::POST
            } else {
                Method::GET
            };
            match client
                .request(
                    method,
                    "/shoal/v1/chaos",
                    body.clone(),
                    Duration::from_secs(5),
                )
                .await
            {
                Ok((status, resp)) if status.is_success() => {
                    let rules: Vec<RuleView> = serde_json::from_slice(&resp).unwrap_or_default();
                    println!("{name}: ok, {} rule(s) in force", rules.len());
                    if cmd.is_none() {
                        for r in rules {
                            println!(
                                "  #{} {} ({} ms left)",
                                r.id,
                                serde_json::to_string(&r.rule)?,
                                r.remaining_ms
                            );
                        }
                    }
                }
                Ok((status, resp)) => {
                    failed += 1;
                    eprintln!("{name}: {status}: {}", String::from_utf8_lossy(&resp));
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{name}: unreachable: {e:#}");
                }
            }
        }
        if failed > 0 {
            bail!(
                "{failed} of {} node(s) did not accept the command",
                targets.len()
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("x").is_err());
        assert!(
            parse_duration("18446744073709551615h").is_err(),
            "no overflow"
        );
    }

    #[test]
    fn commands_validate() {
        let a = Action::Partition {
            a: vec!["node-1".into()],
            b: vec!["node-1".into()],
        };
        assert!(command(&a, None).is_err());
        let a = Action::Oneway {
            from: "node-1".into(),
            to: "node-2".into(),
        };
        assert_eq!(
            command(&a, Some(Duration::from_secs(2))).unwrap(),
            Some(ChaosCommand::Add {
                rule: FaultSpec::Oneway {
                    from: "node-1".into(),
                    to: "node-2".into()
                },
                ttl_ms: Some(2000)
            })
        );
        assert_eq!(
            command(&Action::Heal, None).unwrap(),
            Some(ChaosCommand::Heal)
        );
    }
}
