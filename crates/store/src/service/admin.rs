//! The store's own administration through the [`Store`] handle: its
//! status (`shoal store status`), admitting learners, and bootstrapping the
//! first Raft configuration.

use std::time::Duration;

use super::*;

impl Store {
    pub fn status(&self) -> StoreStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let name = |id: &u64| {
            membership
                .get_node(id)
                .map(|n| n.addr.clone())
                .unwrap_or_else(|| format!("raft-{id}"))
        };
        let mut voters: Vec<String> = membership.voter_ids().map(|id| name(&id)).collect();
        let mut learners: Vec<String> = membership.learner_ids().map(|id| name(&id)).collect();
        voters.sort();
        learners.sort();
        let applied = m.last_applied.map_or(0, |l| l.index);
        // The leader knows what a majority has; others report what they applied.
        let commit_index = match (&m.replication, m.state) {
            (Some(repl), ServerState::Leader) => {
                let mut matched: Vec<u64> = membership
                    .voter_ids()
                    .map(|id| {
                        if id == m.id {
                            m.last_log_index.unwrap_or(0)
                        } else {
                            repl.get(&id).copied().flatten().map_or(0, |l| l.index)
                        }
                    })
                    .collect();
                matched.sort_unstable_by(|a, b| b.cmp(a));
                matched
                    .get(matched.len() / 2)
                    .copied()
                    .unwrap_or(0)
                    .max(applied)
            }
            _ => applied,
        };
        StoreStatus {
            node: self.node.clone(),
            raft_id: self.raft_id,
            leader: m.current_leader.map(|id| name(&id)),
            term: m.current_term,
            commit_index,
            applied_index: applied,
            voters,
            learners,
            state: format!("{:?}", m.state).to_lowercase(),
        }
    }

    /// On the leader: adds every node of `candidates` that is not yet in
    /// the Raft membership as a learner (it catches up without voting).
    /// Promotion to voter is autopilot's job (store part 2).
    pub async fn admit_learners(&self, candidates: &[String]) {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let membership = m.membership_config.membership().clone();
        let known: Vec<String> = membership.nodes().map(|(_, n)| n.addr.clone()).collect();
        for name in candidates.iter().filter(|c| !known.contains(c)) {
            let (id, _) = match self
                .actors
                .ask(
                    &ActorPath::new(ACTOR, name),
                    GetRaftId,
                    Duration::from_secs(1),
                )
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(node = %self.node, learner = %name, "cannot reach it yet: {e}");
                    continue;
                }
            };
            match self
                .raft
                .add_learner(id, BasicNode { addr: name.clone() }, false)
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %self.node, learner = %name, "added as a store learner")
                }
                Err(e) => tracing::warn!(node = %self.node, learner = %name, "add_learner: {e}"),
            }
        }
    }

    /// Initializes the cluster with `voters` once all of them answer and
    /// none is initialized yet. Run by the first initial voter only.
    pub async fn bootstrap(&self, voters: Vec<String>) {
        loop {
            match self.raft.is_initialized().await {
                Ok(true) | Err(_) => return,
                Ok(false) => {}
            }
            let mut members = BTreeMap::new();
            let mut ready = true;
            for v in &voters {
                match self
                    .actors
                    .ask(&ActorPath::new(ACTOR, v), GetRaftId, Duration::from_secs(1))
                    .await
                {
                    Ok((_, true)) => return, // someone else already initialized
                    Ok((id, false)) => {
                        members.insert(id, BasicNode { addr: v.clone() });
                    }
                    Err(_) => {
                        ready = false;
                        break;
                    }
                }
            }
            if ready {
                match self.raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(node = %self.node, ?voters, "store initialized");
                        return;
                    }
                    Err(e) => {
                        tracing::info!(node = %self.node, "store initialize: {e}");
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
