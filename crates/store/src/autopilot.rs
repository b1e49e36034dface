//! Autopilot: voters are replaced automatically when nodes die.
//!
//! A leader-follow singleton. Every second, on the leader: a voter that
//! SWIM has shown `down` for longer than `store.autopilot_down_after_ms`
//! (or that has `left`) is replaced by a healthy learner that has caught
//! up, preferring a zone that has no healthy voter, in one
//! `ReplaceAllVoters` change; below `store.voters` voters, caught-up
//! learners are promoted. It never proposes a change when fewer than a
//! majority of the current voters are alive, and never removes a dead
//! voter without a replacement.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::ChangeMembers;

use super::singleton::{Singleton, SingletonCtx};
use shoal_fabric::membership::{MemberInfo, MemberState, Membership};

/// A learner is caught up when it is at most this many entries behind.
const CAUGHT_UP: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub zone: String,
    /// Alive in SWIM and caught up with the leader's log.
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub name: String,
    pub zone: String,
    pub alive: bool,
    /// Down (for longer than the threshold) or left.
    pub dead: bool,
}

/// The voter set autopilot wants, or None to change nothing.
///
/// Desired size: `target`, or more if more voters are healthy already (it
/// never shrinks a configuration). Dead voters give way to ready learners,
/// one for one; a dead voter without a replacement stays. No change unless
/// a majority of the current voters is alive and a majority of the new set
/// is healthy.
pub fn plan(voters: &[Voter], learners: &[Candidate], target: usize) -> Option<BTreeSet<String>> {
    let majority = |n: usize| n / 2 + 1;
    if voters.iter().filter(|v| v.alive).count() < majority(voters.len()) {
        return None;
    }
    let keep: Vec<&Voter> = voters.iter().filter(|v| !v.dead).collect();
    let mut dead: Vec<&Voter> = voters.iter().filter(|v| v.dead).collect();
    dead.sort_by(|a, b| a.name.cmp(&b.name));
    let desired = target.max(keep.len());
    let mut zones: BTreeSet<&str> = keep
        .iter()
        .filter(|v| v.alive)
        .map(|v| v.zone.as_str())
        .collect();
    let mut ready: Vec<&Candidate> = learners.iter().filter(|c| c.ready).collect();
    ready.sort_by(|a, b| a.name.cmp(&b.name));
    let mut added: Vec<&Candidate> = Vec::new();
    while keep.len() + added.len() < desired && !ready.is_empty() {
        // A zone without a healthy voter first; re-ranked after each pick.
        let pos = ready
            .iter()
            .position(|c| !zones.contains(c.zone.as_str()))
            .unwrap_or(0);
        let c = ready.remove(pos);
        zones.insert(c.zone.as_str());
        added.push(c);
    }
    if added.is_empty() {
        return None;
    }
    let still_dead = dead.len().saturating_sub(added.len());
    let healthy = keep.iter().filter(|v| v.alive).count() + added.len();
    let size = keep.len() + added.len() + still_dead;
    if healthy < majority(size) {
        return None;
    }
    let mut out: BTreeSet<String> = keep.iter().map(|v| v.name.clone()).collect();
    out.extend(added.iter().map(|c| c.name.clone()));
    out.extend(dead.iter().take(still_dead).map(|v| v.name.clone()));
    let before: BTreeSet<String> = voters.iter().map(|v| v.name.clone()).collect();
    (out != before).then_some(out)
}

/// The autopilot singleton of one node.
pub struct Autopilot {
    pub membership: Membership,
    pub down_after: Duration,
    pub voters: usize,
}

impl Singleton for Autopilot {
    fn name(&self) -> &str {
        "autopilot"
    }

    fn run(&self, ctx: SingletonCtx) -> BoxFuture<'static, ()> {
        let membership = self.membership.clone();
        let (down_after, target) = (self.down_after, self.voters);
        Box::pin(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Ok(members) = membership.members().await else {
                    continue;
                };
                step(&ctx, &members, down_after, target).await;
            }
        })
    }
}

async fn step(ctx: &SingletonCtx, members: &[MemberInfo], down_after: Duration, target: usize) {
    let store = &ctx.store;
    let m = store.raft().metrics().borrow().clone();
    let cfg = m.membership_config.membership().clone();
    let by_name: BTreeMap<&str, &MemberInfo> =
        members.iter().map(|i| (i.name.as_str(), i)).collect();
    let last = m.last_log_index.unwrap_or(0);
    let matched: BTreeMap<u64, u64> = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.map_or(0, |l| l.index)))
                .collect()
        })
        .unwrap_or_default();
    let voter_ids: BTreeSet<u64> = cfg.voter_ids().collect();
    let mut ids: BTreeMap<String, u64> = BTreeMap::new();
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for (id, node) in cfg.nodes() {
        ids.insert(node.addr.clone(), *id);
        let info = by_name.get(node.addr.as_str());
        let state = info.map(|i| i.state);
        let zone = info.map(|i| i.zone.clone()).unwrap_or_default();
        let me = *id == store.raft_id();
        let alive = me || state == Some(MemberState::Alive);
        if voter_ids.contains(id) {
            let dead = !me
                && match info {
                    Some(i) if i.state == MemberState::Left => true,
                    Some(i) if i.state == MemberState::Down => {
                        Duration::from_millis(i.since_ms) >= down_after
                    }
                    _ => false,
                };
            voters.push(Voter {
                name: node.addr.clone(),
                zone,
                alive,
                dead,
            });
        } else {
            let caught_up = matched.get(id).is_some_and(|i| *i + CAUGHT_UP >= last);
            learners.push(Candidate {
                name: node.addr.clone(),
                zone,
                ready: alive && caught_up,
            });
        }
    }
    let Some(new) = plan(&voters, &learners, target) else {
        return;
    };
    let new_ids: BTreeSet<u64> = new.iter().filter_map(|n| ids.get(n).copied()).collect();
    tracing::info!(node = %store.node(), voters = ?new, "autopilot: changing the voters");
    match store
        .raft()
        .change_membership(ChangeMembers::ReplaceAllVoters(new_ids), false)
        .await
    {
        Ok(_) => tracing::info!(node = %store.node(), voters = ?new, "autopilot: voters changed"),
        Err(e) => tracing::warn!(node = %store.node(), "autopilot: change refused: {e}"),
    }
}

/// The singletons every store node runs while it leads.
pub fn singletons(
    membership: Membership,
    down_after: Duration,
    voters: usize,
) -> Vec<Arc<dyn Singleton>> {
    vec![Arc::new(Autopilot {
        membership,
        down_after,
        voters,
    })]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, zone: &str, alive: bool, dead: bool) -> Voter {
        Voter {
            name: name.into(),
            zone: zone.into(),
            alive,
            dead,
        }
    }
    fn c(name: &str, zone: &str, ready: bool) -> Candidate {
        Candidate {
            name: name.into(),
            zone: zone.into(),
            ready,
        }
    }
    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_dead_voter_is_replaced_preferring_an_empty_zone() {
        let voters = [
            v("n1", "a", true, false),
            v("n2", "b", true, false),
            v("n3", "c", false, true),
        ];
        let learners = [c("n4", "a", true), c("n5", "c", true)];
        assert_eq!(plan(&voters, &learners, 3), Some(set(&["n1", "n2", "n5"])));
    }

    #[test]
    fn no_change_without_a_healthy_quorum() {
        let voters = [
            v("n1", "a", true, false),
            v("n2", "b", false, true),
            v("n3", "c", false, true),
        ];
        let learners = [c("n4", "a", true), c("n5", "c", true)];
        assert_eq!(plan(&voters, &learners, 3), None);
    }

    #[test]
    fn a_dead_voter_stays_until_a_caught_up_replacement_exists() {
        let voters = [
            v("n1", "a", true, false),
            v("n2", "b", true, false),
            v("n3", "c", false, true),
        ];
        assert_eq!(plan(&voters, &[c("n4", "a", false)], 3), None);
        assert_eq!(plan(&voters, &[], 3), None);
    }

    #[test]
    fn down_but_not_yet_dead_is_left_alone() {
        let voters = [
            v("n1", "a", true, false),
            v("n2", "b", true, false),
            v("n3", "c", false, false),
        ];
        assert_eq!(plan(&voters, &[c("n4", "c", true)], 3), None);
    }

    #[test]
    fn voters_grow_to_the_target_across_zones() {
        let voters = [
            v("n1", "a", true, false),
            v("n2", "b", true, false),
            v("n3", "c", true, false),
        ];
        let learners = [c("n4", "a", true), c("n5", "d", true), c("n6", "e", true)];
        assert_eq!(
            plan(&voters, &learners, 5),
            Some(set(&["n1", "n2", "n3", "n5", "n6"]))
        );
        assert_eq!(plan(&voters, &learners, 3), None);
    }
}
