//! The `store` actor: Raft RPCs from peers and client requests forwarded
//! by other nodes, each handed to this node's [`Store`].

use serde::{Deserialize, Serialize};

use super::command::{Request, Response, Txn, TxnResult};
use super::network::{RaftAppend, RaftSnapshot, RaftVote, ACTOR};
use super::service::{ClientError, Store};
use shoal_fabric::actor::{
    Access, Actor, Called, Ctx, Handler, Message, RemoteMessage, Reply, Roles,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetRaftId;
impl Message for GetRaftId {
    /// (raft id, already initialized)
    type Reply = (u64, bool);
}
impl RemoteMessage for GetRaftId {
    const TAG: &'static str = "shoal.store.raft-id/1";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientWrite(pub Txn);
impl Message for ClientWrite {
    type Reply = Result<TxnResult, ClientError>;
}
impl RemoteMessage for ClientWrite {
    const TAG: &'static str = "shoal.store.write/1";
}

/// Compaction to a revision, proposed on the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientCompact(pub u64);
impl Message for ClientCompact {
    type Reply = Result<u64, ClientError>;
}
impl RemoteMessage for ClientCompact {
    const TAG: &'static str = "shoal.store.compact/1";
}

/// Asks the leader for a read index: the log index a linearizable read
/// must wait for (leadership confirmed by a quorum first).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadIndex;
impl Message for ReadIndex {
    type Reply = Result<u64, ClientError>;
}
impl RemoteMessage for ReadIndex {
    const TAG: &'static str = "shoal.store.read-index/1";
}

/// The `store` actor of one node.
pub struct StoreActor {
    store: Store,
}

impl StoreActor {
    pub fn new(store: Store) -> Self {
        StoreActor { store }
    }
}

impl Actor for StoreActor {}

impl Handler<RaftAppend> for StoreActor {
    fn handle(
        &mut self,
        msg: RaftAppend,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<<RaftAppend as Message>::Reply> {
        let store = self.store.clone();
        Reply::later(async move {
            let r = store.raft().append_entries(msg.0).await;
            if matches!(
                r,
                Ok(openraft::raft::AppendEntriesResponse::Success
                    | openraft::raft::AppendEntriesResponse::PartialSuccess(_))
            ) {
                store.note_leader_contact();
            }
            r
        })
    }
}

impl Handler<RaftVote> for StoreActor {
    fn handle(
        &mut self,
        msg: RaftVote,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<<RaftVote as Message>::Reply> {
        let raft = self.store.raft().clone();
        Reply::later(async move { raft.vote(msg.0).await })
    }
}

impl Handler<RaftSnapshot> for StoreActor {
    fn handle(
        &mut self,
        msg: RaftSnapshot,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<<RaftSnapshot as Message>::Reply> {
        let raft = self.store.raft().clone();
        Reply::later(async move { raft.install_snapshot(msg.0).await })
    }
}

impl Handler<GetRaftId> for StoreActor {
    fn handle(&mut self, _msg: GetRaftId, _ctx: &mut Ctx<Self>) -> Reply<(u64, bool)> {
        let store = self.store.clone();
        Reply::later(async move {
            (
                store.raft_id(),
                store.raft().is_initialized().await.unwrap_or(true),
            )
        })
    }
}

impl Handler<Called<ClientWrite>> for StoreActor {
    fn handle(
        &mut self,
        Called { caller, msg }: Called<ClientWrite>,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<TxnResult, ClientError>> {
        let store = self.store.clone();
        Reply::later(async move {
            msg.0
                .validate()
                .map_err(|e| ClientError::TooLarge(e.to_string()))?;
            store.authorize_write(&caller, &msg.0).await?;
            store.write_local(msg.0).await
        })
    }
}

impl Handler<Called<super::service::ClientWriteMany>> for StoreActor {
    fn handle(
        &mut self,
        Called { caller, msg }: Called<super::service::ClientWriteMany>,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<super::service::ManyResults, ClientError>> {
        let store = self.store.clone();
        Reply::later(async move {
            for t in &msg.0 {
                t.validate()
                    .map_err(|e| ClientError::TooLarge(e.to_string()))?;
                store.authorize_write(&caller, t).await?;
            }
            store.write_many_local(msg.0).await
        })
    }
}

impl Handler<ClientCompact> for StoreActor {
    fn handle(
        &mut self,
        msg: ClientCompact,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<u64, ClientError>> {
        let store = self.store.clone();
        Reply::later(async move {
            match store
                .propose_local(Request::Compact { revision: msg.0 })
                .await?
            {
                Response::Compacted { revision } => Ok(revision),
                other => Err(ClientError::Unavailable(format!(
                    "unexpected response {other:?}"
                ))),
            }
        })
    }
}

impl Handler<ReadIndex> for StoreActor {
    fn handle(&mut self, _msg: ReadIndex, _ctx: &mut Ctx<Self>) -> Reply<Result<u64, ClientError>> {
        let store = self.store.clone();
        Reply::later(async move { store.read_index_local().await })
    }
}

impl Handler<Called<super::service::ClientRead>> for StoreActor {
    fn handle(
        &mut self,
        Called { caller, msg }: Called<super::service::ClientRead>,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<super::service::ReadResult, ClientError>> {
        let store = self.store.clone();
        Reply::later(async move {
            store.authorize_read(&caller, &msg.0).await?;
            store.read_for_peer(msg.0).await
        })
    }
}

impl Handler<shoal_fabric::actor::Subscribe<super::watch::Watch>> for StoreActor {
    fn handle(
        &mut self,
        msg: shoal_fabric::actor::Subscribe<super::watch::Watch>,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<(), String>> {
        let store = self.store.clone();
        tokio::spawn(async move { store.serve_watch(msg.request, msg.sink, msg.caller).await });
        Ok(()).into()
    }
}

/// Registers the store actor's messages, each with who may call it (see
/// `access`).
pub fn serve(
    registry: &shoal_fabric::actor::Registry,
    addr: shoal_fabric::actor::Addr<StoreActor>,
    raft: &openraft::Raft<super::TypeConfig>,
) {
    let raft_peers = raft_members(raft.clone());
    registry.serve_with::<StoreActor, RaftAppend>(ACTOR, addr.clone(), raft_peers.clone());
    registry.serve_with::<StoreActor, RaftVote>(ACTOR, addr.clone(), raft_peers.clone());
    registry.serve_with::<StoreActor, RaftSnapshot>(ACTOR, addr.clone(), raft_peers);
    registry.serve::<StoreActor, GetRaftId>(ACTOR, addr.clone());
    registry.serve_called::<StoreActor, ClientWrite>(ACTOR, addr.clone(), Access::Members);
    registry.serve_called::<StoreActor, super::service::ClientWriteMany>(
        ACTOR,
        addr.clone(),
        Access::Members,
    );
    registry.serve_with::<StoreActor, ClientCompact>(
        ACTOR,
        addr.clone(),
        Access::AnyOf(Roles::API | Roles::STORE),
    );
    registry.serve::<StoreActor, ReadIndex>(ACTOR, addr.clone());
    registry.serve_called::<StoreActor, super::service::ClientRead>(
        ACTOR,
        addr.clone(),
        Access::Members,
    );
    registry.serve_subscription::<StoreActor, super::watch::Watch>(ACTOR, addr);
}

/// Raft RPCs come from members of this replica's configuration (voters and
/// learners, joint ones included), or from a node certified for the
/// `store` role: a replica that lags may not know yet of a new member that
/// already leads, and must still hear from it.
fn raft_members(raft: openraft::Raft<super::TypeConfig>) -> Access {
    Access::check(move |caller| {
        if caller.roles.contains(Roles::STORE) {
            return Ok(());
        }
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let member = m
            .membership_config
            .membership()
            .nodes()
            .any(|(_, n)| n.addr == caller.node);
        if member {
            Ok(())
        } else {
            Err(format!(
                "{} is neither a member of this replica's configuration nor a store node",
                caller.node
            ))
        }
    })
}
