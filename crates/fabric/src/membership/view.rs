//! This node's view of the membership: one row per node name.
//!
//! A plain struct fed with foca notifications, metadata broadcasts and
//! suspicion polls, with `now` passed in. It decides the visible state:
//!
//! ```text
//!   alive ⇄ suspect → down        (crash, partition)
//!   alive → left                   (a `leaving` notice for this generation)
//!   down/left → alive              (same name, higher generation)
//! ```
//!
//! Notifications about an older generation than the row's are ignored, so a
//! late "down" for a node's previous life never hides its current one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::identity::NodeId;
use super::meta::NodeMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }
}

/// One member as `shoal members --json` and `/shoal/v1/members` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    /// Gossip (SWIM) address.
    pub addr: String,
    pub state: MemberState,
    pub generation: u64,
    pub roles: Vec<String>,
    pub zone: String,
    pub region: String,
    /// Milliseconds since this node saw the state change.
    pub since_ms: u64,
    /// QUIC actor transport address, once known.
    pub quic: Option<String>,
    /// HTTPS API address, for nodes with the api role.
    pub api: Option<String>,
    pub version: Option<String>,
    /// Store role as this node sees it: `leader`, `voter`, `learner`, `none`.
    pub raft_role: Option<String>,
}

/// A change worth telling subscribers about.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberEvent {
    pub name: String,
    pub state: MemberState,
    pub generation: u64,
    pub meta: Option<NodeMeta>,
}

#[derive(Debug, Clone)]
struct Row {
    addr: SocketAddr,
    generation: u64,
    state: MemberState,
    since: Instant,
}

#[derive(Debug)]
pub struct MemberTable {
    me: String,
    rows: BTreeMap<String, Row>,
    metas: HashMap<String, NodeMeta>,
}

impl MemberTable {
    pub fn new(me: &NodeId, meta: NodeMeta, now: Instant) -> Self {
        let mut rows = BTreeMap::new();
        rows.insert(
            me.name.clone(),
            Row {
                addr: me.addr,
                generation: me.generation,
                state: MemberState::Alive,
                since: now,
            },
        );
        let mut metas = HashMap::new();
        metas.insert(me.name.clone(), meta);
        MemberTable {
            me: me.name.clone(),
            rows,
            metas,
        }
    }

    fn event(&self, name: &str) -> Option<MemberEvent> {
        let row = self.rows.get(name)?;
        Some(MemberEvent {
            name: name.to_string(),
            state: row.state,
            generation: row.generation,
            meta: self.metas.get(name).cloned(),
        })
    }

    fn set(&mut self, name: &str, state: MemberState, now: Instant) -> Option<MemberEvent> {
        let row = self.rows.get_mut(name)?;
        if row.state == state {
            return None;
        }
        tracing::info!(member = %name, from = row.state.as_str(), to = state.as_str(), generation = row.generation, "membership change");
        row.state = state;
        row.since = now;
        self.event(name)
    }

    fn leaving(&self, name: &str, generation: u64) -> bool {
        self.metas
            .get(name)
            .is_some_and(|m| m.leaving && m.generation == generation)
    }

    /// foca says `id` is up (or was renamed to `id`).
    pub fn up(&mut self, id: &NodeId, now: Instant) -> Option<MemberEvent> {
        if id.name == self.me {
            return None;
        }
        let leaving = self.leaving(&id.name, id.generation);
        let fresh = Row {
            addr: id.addr,
            generation: id.generation,
            state: MemberState::Alive,
            since: now,
        };
        match self.rows.get(&id.name).map(|r| (r.generation, r.state)) {
            Some((g, _)) if g > id.generation => None,
            Some((g, state)) if g == id.generation => {
                if state == MemberState::Left {
                    return None;
                }
                self.set(
                    &id.name,
                    if leaving {
                        MemberState::Left
                    } else {
                        MemberState::Alive
                    },
                    now,
                )
            }
            _ => {
                self.rows.insert(id.name.clone(), fresh);
                self.event(&id.name)
            }
        }
    }

    /// foca says `id` is down.
    pub fn down(&mut self, id: &NodeId, now: Instant) -> Option<MemberEvent> {
        let row = self.rows.get(&id.name)?;
        if id.name == self.me || row.generation != id.generation || row.state == MemberState::Left {
            return None;
        }
        let state = if self.leaving(&id.name, id.generation) {
            MemberState::Left
        } else {
            MemberState::Down
        };
        self.set(&id.name, state, now)
    }

    /// A metadata broadcast arrived (the handler already dropped stale ones).
    pub fn meta(&mut self, meta: NodeMeta, now: Instant) -> Option<MemberEvent> {
        let name = meta.name.clone();
        if name == self.me {
            return None;
        }
        if self
            .metas
            .get(&name)
            .is_some_and(|m| m.version_key() >= meta.version_key())
        {
            return None;
        }
        let leaving = meta.leaving;
        let generation = meta.generation;
        self.metas.insert(name.clone(), meta);
        match self.rows.get(&name) {
            Some(row) if leaving && row.generation == generation => {
                self.set(&name, MemberState::Left, now)
            }
            Some(_) => self.event(&name),
            None => None,
        }
    }

    /// Applies the set of members foca currently suspects.
    pub fn suspects(&mut self, suspects: &HashSet<String>, now: Instant) -> Vec<MemberEvent> {
        let names: Vec<String> = self.rows.keys().cloned().collect();
        let mut events = Vec::new();
        for name in names {
            let state = self.rows[&name].state;
            let ev = match state {
                MemberState::Alive if suspects.contains(&name) => {
                    self.set(&name, MemberState::Suspect, now)
                }
                MemberState::Suspect if !suspects.contains(&name) => {
                    self.set(&name, MemberState::Alive, now)
                }
                _ => None,
            };
            events.extend(ev);
        }
        events
    }

    /// This node announced its departure.
    pub fn leave_self(&mut self, now: Instant) {
        let me = self.me.clone();
        self.set(&me, MemberState::Left, now);
    }

    /// This node's own generation changed (renewal after being declared down).
    pub fn renew_self(&mut self, generation: u64, meta: NodeMeta) {
        let me = self.me.clone();
        if let Some(row) = self.rows.get_mut(&me) {
            row.generation = generation;
        }
        self.metas.insert(me, meta);
    }

    pub fn state_of(&self, name: &str) -> Option<MemberState> {
        self.rows.get(name).map(|r| r.state)
    }

    pub fn meta_of(&self, name: &str) -> Option<&NodeMeta> {
        self.metas.get(name)
    }

    /// Rows believed down (for re-announcing after a partition).
    pub fn down_ids(&self) -> Vec<NodeId> {
        self.rows
            .iter()
            .filter(|(_, r)| r.state == MemberState::Down)
            .map(|(n, r)| NodeId {
                name: n.clone(),
                addr: r.addr,
                generation: r.generation,
            })
            .collect()
    }

    pub fn count(&self, state: MemberState) -> usize {
        self.rows.values().filter(|r| r.state == state).count()
    }

    /// Current rows, for subscribers that join late.
    pub fn events(&self) -> Vec<MemberEvent> {
        self.rows.keys().filter_map(|n| self.event(n)).collect()
    }

    pub fn snapshot(&self, now: Instant) -> Vec<MemberInfo> {
        self.rows
            .iter()
            .map(|(name, r)| {
                let m = self.metas.get(name);
                MemberInfo {
                    name: name.clone(),
                    addr: r.addr.to_string(),
                    state: r.state,
                    generation: r.generation,
                    roles: m.map(|m| m.roles.clone()).unwrap_or_default(),
                    zone: m.map(|m| m.zone.clone()).unwrap_or_default(),
                    region: m.map(|m| m.region.clone()).unwrap_or_default(),
                    since_ms: now.saturating_duration_since(r.since).as_millis() as u64,
                    quic: m.map(|m| m.quic.to_string()),
                    api: m.and_then(|m| m.api.map(|a| a.to_string())),
                    version: m.map(|m| m.version.clone()),
                    raft_role: None,
                }
            })
            .collect()
    }

    pub fn since(&self, name: &str, now: Instant) -> Option<Duration> {
        self.rows
            .get(name)
            .map(|r| now.saturating_duration_since(r.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::meta::Capacity;

    fn id(n: u32, generation: u64) -> NodeId {
        NodeId {
            name: format!("node-{n}"),
            addr: format!("127.0.0.1:{}", 7000 + n).parse().unwrap(),
            generation,
        }
    }

    fn meta(n: u32, generation: u64, seq: u64, leaving: bool) -> NodeMeta {
        NodeMeta {
            name: format!("node-{n}"),
            generation,
            seq,
            leaving,
            roles: vec!["api".into()],
            region: "r".into(),
            zone: "z".into(),
            api: None,
            quic: "127.0.0.1:1".parse().unwrap(),
            version: "v".into(),
            capacity: Capacity {
                cpu_millis: 1,
                memory_bytes: 1,
                pods: 1,
            },
        }
    }

    fn table(now: Instant) -> MemberTable {
        MemberTable::new(&id(1, 1), meta(1, 1, 1, false), now)
    }

    #[test]
    fn crash_is_down_and_restart_is_alive_again() {
        let t0 = Instant::now();
        let mut t = table(t0);
        assert_eq!(t.up(&id(2, 1), t0).unwrap().state, MemberState::Alive);
        let ev = t.down(&id(2, 1), t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(ev.state, MemberState::Down);
        assert_eq!(
            t.since("node-2", t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(2))
        );
        // A stale down for an older generation is ignored after restart.
        assert_eq!(t.up(&id(2, 2), t0).unwrap().state, MemberState::Alive);
        assert!(t.down(&id(2, 1), t0).is_none());
        assert_eq!(t.state_of("node-2"), Some(MemberState::Alive));
        // And an up for an older generation does not roll back.
        assert!(t.up(&id(2, 1), t0).is_none());
    }

    #[test]
    fn leaving_then_down_is_left_in_either_order() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.up(&id(2, 1), t0);
        t.up(&id(3, 1), t0);
        assert_eq!(
            t.meta(meta(2, 1, 2, true), t0).unwrap().state,
            MemberState::Left
        );
        assert!(t.down(&id(2, 1), t0).is_none());
        assert_eq!(t.state_of("node-2"), Some(MemberState::Left));
        // Down first, then the leaving notice.
        assert_eq!(t.down(&id(3, 1), t0).unwrap().state, MemberState::Down);
        assert_eq!(
            t.meta(meta(3, 1, 2, true), t0).unwrap().state,
            MemberState::Left
        );
        // A left node that comes back with a new generation is alive.
        assert_eq!(t.up(&id(2, 2), t0).unwrap().state, MemberState::Alive);
    }

    #[test]
    fn suspicion_comes_and_goes() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.up(&id(2, 1), t0);
        let s: HashSet<String> = ["node-2".to_string()].into();
        assert_eq!(t.suspects(&s, t0)[0].state, MemberState::Suspect);
        assert!(t.suspects(&s, t0).is_empty());
        assert_eq!(t.suspects(&HashSet::new(), t0)[0].state, MemberState::Alive);
    }

    #[test]
    fn snapshot_has_the_contract_fields() {
        let t0 = Instant::now();
        let mut t = table(t0);
        t.up(&id(2, 7), t0);
        t.meta(meta(2, 7, 1, false), t0);
        let snap = t.snapshot(t0 + Duration::from_millis(5));
        let v = serde_json::to_value(&snap).unwrap();
        let row = &v[1];
        for f in [
            "name",
            "addr",
            "state",
            "generation",
            "roles",
            "zone",
            "since_ms",
        ] {
            assert!(row.get(f).is_some(), "missing {f}");
        }
        assert_eq!(row["state"], "alive");
        assert_eq!(row["generation"], 7);
        assert_eq!(row["roles"][0], "api");
        assert_eq!(row["since_ms"], 5);
    }
}
