//! Raft RPCs over the actor transport: `store@node-K` receives them.
//!
//! Each RPC is a `RemoteMessage` carrying openraft's own request type
//! (postcard), so Raft traffic goes through QUIC, mutual TLS and the fault
//! rules like every other envelope. Transport failures map to openraft's
//! error kinds: unreachable (back off), timeout, network (retry).
//!
//! An AppendEntries whose entries would not fit one transport frame is not
//! sent: openraft is told `PayloadTooLarge` with how many entries fit, and
//! retries with fewer (one entry always fits: transactions are limited to
//! [`super::command::MAX_TXN_BYTES`]).
//!
//! openraft gives every AppendEntries the heartbeat interval (100 ms) and
//! sends the same entries again when it runs out. An append that carries
//! entries therefore runs in a task of its own with a longer deadline
//! ([`APPEND_DEADLINE`]); a retry of the same entries joins it instead of
//! sending them again, so a follower behind large entries on a slow or
//! loaded machine still catches up, one slow round trip at a time. A retry
//! that finds the task older than [`RESEND_AFTER`] also sends the entries
//! afresh beside it, and whichever answers first counts: an append lost on
//! the way (a partition that has since healed) then holds the follower
//! back for that long, not for the whole deadline.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use shoal_fabric::actor::{ActorPath, ActorSystem, AskError, Message, RemoteMessage};

/// The actor name of the store on every node.
pub const ACTOR: &str = "store";

#[derive(Debug, Serialize, Deserialize)]
pub struct RaftAppend(pub AppendEntriesRequest<TypeConfig>);
impl Message for RaftAppend {
    type Reply = Result<AppendEntriesResponse<u64>, RaftError<u64>>;
}
impl RemoteMessage for RaftAppend {
    const TAG: &'static str = "shoal.raft.append/1";
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RaftVote(pub VoteRequest<u64>);
impl Message for RaftVote {
    type Reply = Result<VoteResponse<u64>, RaftError<u64>>;
}
impl RemoteMessage for RaftVote {
    const TAG: &'static str = "shoal.raft.vote/1";
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RaftSnapshot(pub InstallSnapshotRequest<TypeConfig>);
impl Message for RaftSnapshot {
    type Reply = Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>;
}
impl RemoteMessage for RaftSnapshot {
    const TAG: &'static str = "shoal.raft.snapshot/1";
}

/// The most entry bytes one AppendEntries carries (one entry always goes,
/// however large). Smaller appends keep each round trip short: 4 MiB
/// batches of 1.4 MiB entries to a lagging follower on a slow machine
/// took longer than openraft's timeout every time, and were sent again
/// from scratch before appends ran in their own task.
pub const MAX_APPEND_BYTES: usize = 1 << 20;

/// How long an AppendEntries with entries may take in its own task before
/// it counts as failed (openraft itself waits one heartbeat interval, then
/// retries and joins the same task).
pub const APPEND_DEADLINE: Duration = Duration::from_secs(5);

/// How old an append in flight may be before a retry of the same entries
/// also sends them afresh (at most [`MAX_INFLIGHT`] copies at once).
pub const RESEND_AFTER: Duration = Duration::from_secs(1);

/// Copies of one append in flight to one follower.
const MAX_INFLIGHT: usize = 2;

/// Creates one client per Raft peer.
#[derive(Clone)]
pub struct Network {
    pub actors: ActorSystem,
    pub me: u64,
    /// Most entry bytes one AppendEntries may carry.
    pub max_append_bytes: usize,
}

pub struct PeerClient {
    actors: ActorSystem,
    to: ActorPath,
    me: u64,
    target: u64,
    max_append_bytes: usize,
    /// Copies of the one AppendEntries with entries still on its way,
    /// oldest first (all of the same entries).
    inflight: Vec<InFlight>,
}

type AppendReply = Result<Result<AppendEntriesResponse<u64>, RaftError<u64>>, AskError>;

/// What identifies an AppendEntries for a retry: the leader's vote and the
/// log range it carries (the commit index may differ and does not matter
/// to the reply).
#[derive(Clone, PartialEq, Eq, Debug)]
struct AppendKey {
    vote: openraft::Vote<u64>,
    prev: Option<openraft::LogId<u64>>,
    last: Option<openraft::LogId<u64>>,
}

impl AppendKey {
    fn of(rpc: &AppendEntriesRequest<TypeConfig>) -> AppendKey {
        AppendKey {
            vote: rpc.vote,
            prev: rpc.prev_log_id,
            last: rpc.entries.last().map(|e| e.log_id),
        }
    }
}

struct InFlight {
    key: AppendKey,
    started: std::time::Instant,
    task: tokio::task::JoinHandle<AppendReply>,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        for f in self.inflight.drain(..) {
            f.task.abort();
        }
    }
}

/// Approximate encoded size of one log entry.
fn entry_size(e: &openraft::Entry<TypeConfig>) -> usize {
    match &e.payload {
        openraft::EntryPayload::Blank => 32,
        openraft::EntryPayload::Normal(r) => 32 + r.size(),
        openraft::EntryPayload::Membership(m) => 64 + 64 * m.nodes().count(),
    }
}

/// How many of `entries`, from the first, fit in `budget` bytes (at least
/// one).
pub fn entries_that_fit(entries: &[openraft::Entry<TypeConfig>], budget: usize) -> usize {
    let mut total = 0;
    for (i, e) in entries.iter().enumerate() {
        total += entry_size(e);
        if total > budget {
            return i.max(1);
        }
    }
    entries.len()
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            actors: self.actors.clone(),
            to: ActorPath::new(ACTOR, &node.addr),
            me: self.me,
            target,
            max_append_bytes: self.max_append_bytes,
            inflight: Vec::new(),
        }
    }
}

impl PeerClient {
    fn map<E: std::error::Error>(
        &self,
        e: AskError,
        action: openraft::network::RPCTypes,
        ttl: Duration,
    ) -> RPCError<u64, BasicNode, E> {
        match e {
            AskError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout: ttl,
            }),
            AskError::Unreachable(..) | AskError::UnknownNode(_) | AskError::Shutdown => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            other => RPCError::Network(NetworkError::new(&other)),
        }
    }

    /// Sends `rpc` in a task of its own, or joins the tasks already sending
    /// the same entries (adding a fresh copy when the newest is older than
    /// [`RESEND_AFTER`]). Dropping this future (openraft's timeout) leaves
    /// the tasks running for the retry to join.
    async fn append_in_task(&mut self, rpc: AppendEntriesRequest<TypeConfig>) -> AppendReply {
        let key = AppendKey::of(&rpc);
        if self.inflight.first().is_some_and(|f| f.key != key) {
            for f in self.inflight.drain(..) {
                f.task.abort();
            }
        }
        let stale = self
            .inflight
            .last()
            .is_none_or(|f| f.started.elapsed() >= RESEND_AFTER);
        if stale {
            if self.inflight.len() >= MAX_INFLIGHT {
                self.inflight.remove(0).task.abort();
            }
            let (actors, to) = (self.actors.clone(), self.to.clone());
            let task =
                tokio::spawn(
                    async move { actors.ask(&to, RaftAppend(rpc), APPEND_DEADLINE).await },
                );
            self.inflight.push(InFlight {
                key,
                started: std::time::Instant::now(),
                task,
            });
        }
        loop {
            let tasks = self.inflight.iter_mut().map(|f| &mut f.task);
            let (joined, i, _) = futures::future::select_all(tasks).await;
            let reply = joined
                .unwrap_or_else(|e| Err(AskError::Stream(format!("append task failed: {e}"))));
            if reply.is_err() && self.inflight.len() > 1 {
                // A copy that failed (the one lost on the way, timed out):
                // the other may still answer.
                self.inflight.remove(i);
                continue;
            }
            // One copy answered: the others carry the same entries.
            for f in self.inflight.drain(..) {
                f.task.abort();
            }
            return reply;
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let ttl = option.hard_ttl();
        let fit = entries_that_fit(&rpc.entries, self.max_append_bytes);
        if fit < rpc.entries.len() {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        let reply = if rpc.entries.is_empty() {
            // A heartbeat: small, sent as is, beside any append in flight.
            self.actors.ask(&self.to, RaftAppend(rpc), ttl).await
        } else {
            self.append_in_task(rpc).await
        };
        match reply {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(self.map(e, openraft::network::RPCTypes::AppendEntries, ttl)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let ttl = option.hard_ttl();
        match self.actors.ask(&self.to, RaftSnapshot(rpc), ttl).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(self.map(e, openraft::network::RPCTypes::InstallSnapshot, ttl)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let ttl = option.hard_ttl();
        match self.actors.ask(&self.to, RaftVote(rpc), ttl).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(self.map(e, openraft::network::RPCTypes::Vote, ttl)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{LogId, Vote};

    /// openraft's wire types survive postcard (they must: no self-describing
    /// format on the wire).
    #[test]
    fn raft_messages_round_trip_through_postcard() {
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            prev_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 7), 10)),
            entries: vec![openraft::Entry {
                log_id: LogId::new(openraft::CommittedLeaderId::new(3, 7), 11),
                payload: openraft::EntryPayload::Normal(super::super::Request::Compact {
                    revision: 4,
                }),
            }],
            leader_commit: None,
        };
        let bytes = postcard::to_allocvec(&RaftAppend(req.clone())).unwrap();
        let back: RaftAppend = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.0.vote, req.vote);
        assert_eq!(back.0.prev_log_id, req.prev_log_id);
        assert_eq!(back.0.entries, req.entries);
        let err: <RaftAppend as Message>::Reply =
            Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        let bytes = postcard::to_allocvec(&err).unwrap();
        let back: <RaftAppend as Message>::Reply = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(
            back,
            Err(RaftError::Fatal(openraft::error::Fatal::Stopped))
        ));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::command::{Request, Txn};

    fn entry(i: u64, bytes: usize) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i),
            payload: openraft::EntryPayload::Normal(Request::Txn(Txn::put(
                format!("k{i}"),
                vec![0u8; bytes],
            ))),
        }
    }

    #[test]
    fn append_entries_are_cut_to_the_frame_budget() {
        let mib = 1 << 20;
        let entries: Vec<_> = (1..=6).map(|i| entry(i, mib)).collect();
        assert_eq!(entries_that_fit(&entries, 4 * mib), 3);
        // One oversize entry still goes alone (transactions are capped
        // below a frame, so it fits the transport).
        assert_eq!(entries_that_fit(&entries, mib / 2), 1);
        assert_eq!(entries_that_fit(&entries[..2], 100 * mib), 2);
        assert_eq!(entries_that_fit(&[], mib), 0);
    }
}
