//! Fault injection rules, applied per envelope and per gossip packet.
//!
//! A rule is one of: a two-way partition between node sets, a one-way cut,
//! a drop probability, or an added delay; each carries a TTL and expires on
//! its own. Every node holds the same rules (the CLI sends them to all), and
//! judges its own traffic:
//!
//! - on **send**, partitions, cuts, drops and delays all apply;
//! - on **receive**, only partitions and cuts apply (so a node that missed a
//!   rule still honours it, and a one-way cut stays one-way).
//!
//! The control path (chaos commands, `/shoal/v1/chaos`) is exempt, so `heal`
//! always gets through. The decision logic is a plain struct taking `now`
//! and a random draw; `Faults` is the shared handle the transport uses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Default rule lifetime when none is given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// What a rule does. `between` empty means "every pair".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// No traffic between any node of `a` and any node of `b`, either way.
    Partition { a: Vec<String>, b: Vec<String> },
    /// No traffic from `from` to `to`; the other direction is untouched.
    Oneway { from: String, to: String },
    /// Added latency on traffic between the nodes of `between`.
    Delay {
        ms: u64,
        #[serde(default)]
        between: Vec<String>,
    },
    /// Each envelope or packet between the nodes of `between` is dropped
    /// with probability `p`.
    Drop {
        p: f64,
        #[serde(default)]
        between: Vec<String>,
    },
}

/// Why a fault rule is refused (the messages are the CLI's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("partition needs two non-empty node sets")]
    EmptyPartition,
    #[error("partition sets must not overlap")]
    OverlappingPartition,
    #[error("oneway needs two different nodes")]
    OnewayToItself,
    #[error("delay above 60000 ms is refused")]
    DelayTooLong,
    #[error("--between needs at least two nodes")]
    BetweenOne,
    #[error("drop probability must be within 0..=1")]
    Probability,
    #[error("ttl must be above 0")]
    ZeroTtl,
}

impl FaultSpec {
    pub fn validate(&self) -> Result<(), FaultError> {
        match self {
            FaultSpec::Partition { a, b } => {
                if a.is_empty() || b.is_empty() {
                    return Err(FaultError::EmptyPartition);
                }
                if a.iter().any(|n| b.contains(n)) {
                    return Err(FaultError::OverlappingPartition);
                }
            }
            FaultSpec::Oneway { from, to } => {
                if from == to {
                    return Err(FaultError::OnewayToItself);
                }
            }
            FaultSpec::Delay { ms, between } => {
                if *ms > 60_000 {
                    return Err(FaultError::DelayTooLong);
                }
                if between.len() == 1 {
                    return Err(FaultError::BetweenOne);
                }
            }
            FaultSpec::Drop { p, between } => {
                if !(0.0..=1.0).contains(p) {
                    return Err(FaultError::Probability);
                }
                if between.len() == 1 {
                    return Err(FaultError::BetweenOne);
                }
            }
        }
        Ok(())
    }

    /// True if this rule cuts all traffic from `from` to `to`.
    fn cuts(&self, from: &str, to: &str) -> bool {
        match self {
            FaultSpec::Partition { a, b } => {
                let has = |set: &[String], n: &str| set.iter().any(|x| x == n);
                (has(a, from) && has(b, to)) || (has(b, from) && has(a, to))
            }
            FaultSpec::Oneway { from: f, to: t } => f == from && t == to,
            _ => false,
        }
    }

    fn applies_between(between: &[String], from: &str, to: &str) -> bool {
        between.is_empty() || (between.iter().any(|n| n == from) && between.iter().any(|n| n == to))
    }
}

/// A command of the chaos control path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChaosCommand {
    /// Adds a rule for `ttl_ms` milliseconds (default 600000).
    Add {
        rule: FaultSpec,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    /// Removes every rule.
    Heal,
}

/// A rule in force, as `GET /shoal/v1/chaos` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    pub id: u64,
    pub rule: FaultSpec,
    pub remaining_ms: u64,
}

/// The verdict for one envelope or packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Delay(Duration),
    Drop,
}

#[derive(Debug, Clone)]
struct Rule {
    id: u64,
    spec: FaultSpec,
    expires: Instant,
}

/// The rule set and its decisions; owns no clock and no randomness.
#[derive(Debug, Default)]
pub struct FaultTable {
    rules: Vec<Rule>,
    next_id: u64,
}

impl FaultTable {
    pub fn apply(&mut self, cmd: ChaosCommand, now: Instant) -> Result<Option<u64>, FaultError> {
        match cmd {
            ChaosCommand::Heal => {
                self.rules.clear();
                Ok(None)
            }
            ChaosCommand::Add { rule, ttl_ms } => {
                rule.validate()?;
                let ttl = ttl_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TTL);
                if ttl.is_zero() {
                    return Err(FaultError::ZeroTtl);
                }
                self.next_id += 1;
                self.rules.push(Rule {
                    id: self.next_id,
                    spec: rule,
                    expires: now + ttl,
                });
                Ok(Some(self.next_id))
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        self.rules.retain(|r| r.expires > now);
    }

    pub fn view(&mut self, now: Instant) -> Vec<RuleView> {
        self.expire(now);
        self.rules
            .iter()
            .map(|r| RuleView {
                id: r.id,
                rule: r.spec.clone(),
                remaining_ms: (r.expires - now).as_millis() as u64,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Verdict for traffic this node sends from `from` to `to`. `draw` is a
    /// uniform random number in [0, 1) consumed by drop rules.
    pub fn on_send(
        &mut self,
        from: &str,
        to: &str,
        now: Instant,
        mut draw: impl FnMut() -> f64,
    ) -> Verdict {
        self.expire(now);
        let mut delay = Duration::ZERO;
        for r in &self.rules {
            if r.spec.cuts(from, to) {
                return Verdict::Drop;
            }
            match &r.spec {
                FaultSpec::Drop { p, between }
                    if FaultSpec::applies_between(between, from, to) && draw() < *p =>
                {
                    return Verdict::Drop;
                }
                FaultSpec::Delay { ms, between }
                    if FaultSpec::applies_between(between, from, to) =>
                {
                    delay += Duration::from_millis(*ms);
                }
                _ => {}
            }
        }
        if delay.is_zero() {
            Verdict::Deliver
        } else {
            Verdict::Delay(delay)
        }
    }

    /// True if traffic received from `from` by `to` must be discarded.
    pub fn on_receive(&mut self, from: &str, to: &str, now: Instant) -> bool {
        self.expire(now);
        self.rules.iter().any(|r| r.spec.cuts(from, to))
    }
}

/// The shared, per-node handle over a `FaultTable`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    table: Arc<Mutex<FaultTable>>,
}

impl Faults {
    pub fn apply(&self, cmd: ChaosCommand) -> Result<Option<u64>, FaultError> {
        self.lock().apply(cmd, Instant::now())
    }

    pub fn view(&self) -> Vec<RuleView> {
        self.lock().view(Instant::now())
    }

    pub fn on_send(&self, from: &str, to: &str) -> Verdict {
        let mut t = self.lock();
        if t.is_empty() {
            return Verdict::Deliver;
        }
        t.on_send(from, to, Instant::now(), rand::random::<f64>)
    }

    pub fn on_receive(&self, from: &str, to: &str) -> bool {
        let mut t = self.lock();
        !t.is_empty() && t.on_receive(from, to, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultTable> {
        // A panic while holding this lock cannot leave the table inconsistent
        // (every method is a simple update), so poisoning is ignored.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn partition_cuts_both_ways_and_only_across() {
        let mut t = FaultTable::default();
        let now = Instant::now();
        let rule = FaultSpec::Partition {
            a: names(&["node-1", "node-2"]),
            b: names(&["node-3"]),
        };
        t.apply(ChaosCommand::Add { rule, ttl_ms: None }, now)
            .unwrap();
        assert_eq!(t.on_send("node-1", "node-3", now, || 1.0), Verdict::Drop);
        assert_eq!(t.on_send("node-3", "node-2", now, || 1.0), Verdict::Drop);
        assert_eq!(t.on_send("node-1", "node-2", now, || 1.0), Verdict::Deliver);
        assert!(t.on_receive("node-3", "node-1", now));
        assert!(!t.on_receive("node-2", "node-1", now));
    }

    #[test]
    fn oneway_is_one_way() {
        let mut t = FaultTable::default();
        let now = Instant::now();
        t.apply(
            ChaosCommand::Add {
                rule: FaultSpec::Oneway {
                    from: "node-1".into(),
                    to: "node-2".into(),
                },
                ttl_ms: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(t.on_send("node-1", "node-2", now, || 1.0), Verdict::Drop);
        assert_eq!(t.on_send("node-2", "node-1", now, || 1.0), Verdict::Deliver);
        assert!(t.on_receive("node-1", "node-2", now));
        assert!(!t.on_receive("node-2", "node-1", now));
    }

    #[test]
    fn rules_expire_after_their_ttl() {
        let mut t = FaultTable::default();
        let now = Instant::now();
        t.apply(
            ChaosCommand::Add {
                rule: FaultSpec::Oneway {
                    from: "node-1".into(),
                    to: "node-2".into(),
                },
                ttl_ms: Some(100),
            },
            now,
        )
        .unwrap();
        assert_eq!(t.view(now + Duration::from_millis(40))[0].remaining_ms, 60);
        assert_eq!(
            t.on_send("node-1", "node-2", now + Duration::from_millis(99), || 1.0),
            Verdict::Drop
        );
        assert_eq!(
            t.on_send("node-1", "node-2", now + Duration::from_millis(100), || 1.0),
            Verdict::Deliver
        );
        assert!(t.view(now + Duration::from_millis(100)).is_empty());
    }

    #[test]
    fn delay_adds_up_and_drop_uses_the_draw() {
        let mut t = FaultTable::default();
        let now = Instant::now();
        t.apply(
            ChaosCommand::Add {
                rule: FaultSpec::Delay {
                    ms: 50,
                    between: vec![],
                },
                ttl_ms: None,
            },
            now,
        )
        .unwrap();
        t.apply(
            ChaosCommand::Add {
                rule: FaultSpec::Delay {
                    ms: 20,
                    between: names(&["node-1", "node-2"]),
                },
                ttl_ms: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(
            t.on_send("node-1", "node-2", now, || 1.0),
            Verdict::Delay(Duration::from_millis(70))
        );
        assert_eq!(
            t.on_send("node-1", "node-3", now, || 1.0),
            Verdict::Delay(Duration::from_millis(50))
        );
        t.apply(
            ChaosCommand::Add {
                rule: FaultSpec::Drop {
                    p: 0.3,
                    between: vec![],
                },
                ttl_ms: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(t.on_send("node-1", "node-3", now, || 0.29), Verdict::Drop);
        assert_eq!(
            t.on_send("node-1", "node-3", now, || 0.31),
            Verdict::Delay(Duration::from_millis(50))
        );
        t.apply(ChaosCommand::Heal, now).unwrap();
        assert_eq!(t.on_send("node-1", "node-3", now, || 0.0), Verdict::Deliver);
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut t = FaultTable::default();
        let now = Instant::now();
        let bad = [
            FaultSpec::Partition {
                a: vec![],
                b: names(&["node-1"]),
            },
            FaultSpec::Partition {
                a: names(&["node-1"]),
                b: names(&["node-1"]),
            },
            FaultSpec::Oneway {
                from: "node-1".into(),
                to: "node-1".into(),
            },
            FaultSpec::Drop {
                p: 1.5,
                between: vec![],
            },
            FaultSpec::Delay {
                ms: 10,
                between: names(&["node-1"]),
            },
        ];
        for rule in bad {
            assert!(t
                .apply(ChaosCommand::Add { rule, ttl_ms: None }, now)
                .is_err());
        }
        assert!(t
            .apply(
                ChaosCommand::Add {
                    rule: FaultSpec::Drop {
                        p: 0.1,
                        between: vec![]
                    },
                    ttl_ms: Some(0)
                },
                now
            )
            .is_err());
    }

    #[test]
    fn json_shape_is_stable() {
        let cmd = ChaosCommand::Add {
            rule: FaultSpec::Partition {
                a: names(&["node-1"]),
                b: names(&["node-2"]),
            },
            ttl_ms: Some(1000),
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(
            json,
            r#"{"op":"add","rule":{"kind":"partition","a":["node-1"],"b":["node-2"]},"ttl_ms":1000}"#
        );
        assert_eq!(
            serde_json::to_string(&ChaosCommand::Heal).unwrap(),
            r#"{"op":"heal"}"#
        );
    }
}
