//! A node without a store replica: a worker-only node (no `store` role),
//! or a store node the leader has not admitted yet, holds no data, so its
//! [`Store`] handle works through the replicas. Writes and read indexes go
//! to the leader, learned from the first replica asked (its `NotLeader`
//! names the leader); reads are asked of a replica as a whole
//! ([`ClientRead`], linearizable there); watches subscribe on a replica.
//! The candidates are the nodes that gossip the `store` role, which the
//! node keeps current through [`Store::set_replicas`]; an unreachable one
//! is skipped for the next.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ClientError, ReadRequest, ReadResult, Store};
use crate::network::ACTOR;
use shoal_fabric::actor::{ActorPath, AskError, Message, RemoteMessage};

/// A linearizable read served by the replica it is sent to (never
/// forwarded on: a node without a replica answers `NotLeader`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRead(pub ReadRequest);
impl Message for ClientRead {
    type Reply = Result<ReadResult, ClientError>;
}
impl RemoteMessage for ClientRead {
    const TAG: &'static str = "shoal.store.read/2";
}

/// The replicas a node without one of its own works through.
#[derive(Debug, Default)]
pub(super) struct Replicas {
    /// Nodes with the `store` role, in name order.
    names: Vec<String>,
    /// The leader, as the last replica asked named it.
    leader: Option<String>,
    /// Round-robin position among `names` when no leader is known.
    next: usize,
}

impl Replicas {
    /// The node to ask next: the known leader, else the next candidate.
    fn target(&mut self) -> Option<String> {
        if let Some(l) = &self.leader {
            return Some(l.clone());
        }
        if self.names.is_empty() {
            return None;
        }
        let name = self.names[self.next % self.names.len()].clone();
        Some(name)
    }

    /// `name` did not serve (unreachable, or no leader known there): the
    /// next candidate is asked after it.
    fn failed(&mut self, name: &str) {
        if self.leader.as_deref() == Some(name) {
            self.leader = None;
        }
        if let Some(i) = self.names.iter().position(|n| n == name) {
            self.next = i + 1;
        } else {
            self.next += 1;
        }
    }
}

impl Store {
    /// True while this node holds a replica (a voter or learner in the
    /// Raft membership); false on a worker-only node.
    pub fn is_replica(&self) -> bool {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&self.raft_id).is_some()
    }

    /// The nodes that may hold a replica (those gossiping the `store`
    /// role), which a node without one asks.
    pub fn set_replicas(&self, mut names: Vec<String>) {
        names.retain(|n| n != &self.node);
        names.sort();
        names.dedup();
        let mut r = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        if r.leader.as_ref().is_some_and(|l| !names.contains(l)) {
            r.leader = None;
        }
        r.names = names;
    }

    /// The replica to watch: this node when it holds one, else the leader
    /// or another replica.
    pub fn watch_replica(&self) -> String {
        if self.is_replica() {
            return self.node.clone();
        }
        self.remote_target().unwrap_or_else(|| self.node.clone())
    }

    /// A watch on `replica` ended without expiring (the replica lost its
    /// leader, or went away): on a node without a replica of its own, the
    /// next [`Store::watch_replica`] names another.
    pub fn watch_failed(&self, replica: &str) {
        if !self.is_replica() {
            self.remote_answer(replica, None);
        }
    }

    pub(super) fn remote_target(&self) -> Option<String> {
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .target()
    }

    /// What a replica's answer says about the leader: `Some(leader)` is
    /// asked next; `None` (it knows none, or was unreachable) moves on.
    pub(super) fn remote_answer(&self, asked: &str, leader: Option<String>) {
        let mut r = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        match leader {
            Some(l) if l != self.node && l != asked => r.leader = Some(l),
            _ => r.failed(asked),
        }
    }

    /// A linearizable read asked of a replica, for a node without one.
    pub(super) async fn read_remote(&self, req: ReadRequest) -> Result<ReadResult, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(self.timeout_error());
            }
            if let Some(name) = self.remote_target() {
                let to = ActorPath::new(ACTOR, &name);
                match self
                    .actors
                    .ask(
                        &to,
                        ClientRead(req.clone()),
                        left.min(super::FORWARD_ATTEMPT * 5),
                    )
                    .await
                {
                    Ok(Ok(r)) => return Ok(r),
                    Ok(Err(ClientError::NotLeader { .. })) | Err(AskError::Unreachable(..)) => {
                        self.remote_answer(&name, None)
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(AskError::Timeout) => {
                        self.remote_answer(&name, None);
                        return Err(ClientError::Timeout);
                    }
                    Err(e) => {
                        self.remote_answer(&name, None);
                        return Err(ClientError::Unavailable(e.to_string()));
                    }
                }
            }
            if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(ClientError::NotLeader { leader: None });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Serves a [`ClientRead`]: only a replica reads for others.
    pub async fn read_for_peer(&self, req: ReadRequest) -> Result<ReadResult, ClientError> {
        if !self.is_replica() {
            return Err(ClientError::NotLeader { leader: None });
        }
        self.read(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::Replicas;

    #[test]
    fn the_known_leader_first_then_candidates_in_turn() {
        let mut r = Replicas {
            names: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(r.target().as_deref(), Some("a"));
        r.failed("a");
        assert_eq!(r.target().as_deref(), Some("b"));
        r.leader = Some("c".into());
        assert_eq!(r.target().as_deref(), Some("c"));
        // The leader died: the candidate after it is asked.
        r.failed("c");
        assert_eq!(r.leader, None);
        assert_eq!(r.target().as_deref(), Some("a"));
        assert_eq!(Replicas::default().target(), None);
    }
}
