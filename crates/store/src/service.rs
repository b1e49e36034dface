//! The store on one node: the `store` actor (Raft RPCs and client requests)
//! and the [`Store`] handle that the API and components use.
//!
//! Writes go to the leader: a node that is not leader forwards the write to
//! `store@<leader>` (learned from openraft's `ForwardToLeader`), and the
//! leader proposes it. Concurrent writes share one Raft entry and so one
//! fsync per replica (group commit, see [`super::batch`]).
//!
//! Reads are linearizable on every node: the leader confirms it still
//! leads with a quorum and names a read index (followers ask it with a
//! `ReadIndex` message), and the node waits until it has applied that
//! index before reading its own state machine. `read_recent` skips the
//! leader and says how stale its answer may be.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::{BasicNode, Raft, ServerState};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};

use super::actor::{ClientCompact, ClientWrite, GetRaftId, ReadIndex};
use super::command::{KeyValue, Request, Response, Txn, TxnResult};
use super::mvcc::{self, KV, LATEST, META};
use super::network::ACTOR;
use super::TypeConfig;

mod admin;
mod many;
mod reads;
mod remote;
pub use many::{ClientWriteMany, ManyResults, MAX_TXNS as MAX_WRITE_MANY};
pub use remote::ClientRead;
use shoal_fabric::actor::{ActorPath, ActorSystem, AskError, RemoteMessage};

/// The budget of one forwarding attempt to the leader.
const FORWARD_ATTEMPT: Duration = Duration::from_secs(1);

/// A transaction's validation error as the client sees it.
fn invalid_txn(e: crate::command::TxnError) -> ClientError {
    match e {
        crate::command::TxnError::EmptyKey => ClientError::Invalid(e.to_string()),
        _ => ClientError::TooLarge(e.to_string()),
    }
}

/// Typed client errors of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<String> },
    #[error("no quorum: the leader cannot reach a majority")]
    NoQuorum,
    #[error("timed out")]
    Timeout,
    #[error(
        "the leader changed while the write was in flight; it may or may not have been applied"
    )]
    LeaderChanged,
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("revision {requested} is compacted (history starts at {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A guarded write whose precondition failed: the key's mod_rev is
    /// not `expected` (0 = the key had to be absent). Last, so the other
    /// variants keep their wire tags.
    #[error("conflict: {key} is not at mod_rev {expected}")]
    Conflict { key: String, expected: u64 },
    /// A singleton's write under a leader that is no longer the leader.
    #[error("fenced: proposed under a leader that no longer leads")]
    Fenced,
    /// The caller's certificate does not allow the request (see `access`).
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl ClientError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::NotLeader { .. }
                | ClientError::NoQuorum
                | ClientError::Timeout
                | ClientError::LeaderChanged
                | ClientError::Unavailable(_)
        )
    }
}

/// A read: one key, or every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub prefix: bool,
    pub at: Option<u64>,
    pub limit: u32,
    /// With `prefix`: the first key to read (the keys under the prefix
    /// from this one on), for a list read in pages.
    #[serde(with = "serde_bytes")]
    pub start: Option<Vec<u8>>,
}

impl ReadRequest {
    /// The latest value of one key.
    pub fn key(key: impl Into<Vec<u8>>) -> ReadRequest {
        ReadRequest {
            key: key.into(),
            prefix: false,
            at: None,
            limit: 0,
            start: None,
        }
    }

    /// At most `limit` keys under `prefix` from `start` on, as of revision
    /// `at` (latest if None): one page of a list.
    pub fn page(prefix: &[u8], start: &[u8], at: Option<u64>, limit: u32) -> ReadRequest {
        ReadRequest {
            at,
            limit,
            start: Some(start.to_vec()),
            ..ReadRequest::prefix(prefix)
        }
    }

    /// Every latest key under `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> ReadRequest {
        ReadRequest {
            prefix: true,
            ..ReadRequest::key(prefix)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    pub kvs: Vec<KeyValue>,
    /// The applied revision the read was served at.
    pub revision: u64,
    /// True when served without a quorum check (this node's Raft stopped).
    pub stale: bool,
}

/// A read served from this node's state without a quorum check, and how
/// stale it may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRead {
    pub result: ReadResult,
    /// Milliseconds since this node last heard from the leader (on the
    /// leader: since a quorum last acknowledged it); None if never.
    pub leader_contact_ms: Option<u64>,
    /// Log entries this node holds but has not applied yet.
    pub behind_log: u64,
}

/// Store status, as `shoal store status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub node: String,
    pub raft_id: u64,
    pub leader: Option<String>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub state: String,
}

impl StoreStatus {
    /// A node's role in Raft: `leader`, `voter`, `learner` or `none`.
    pub fn role_of(&self, node: &str) -> &'static str {
        if self.leader.as_deref() == Some(node) {
            "leader"
        } else if self.voters.iter().any(|v| v == node) {
            "voter"
        } else if self.learners.iter().any(|v| v == node) {
            "learner"
        } else {
            "none"
        }
    }
}

/// Cheap-clone handle to this node's store.
#[derive(Clone)]
pub struct Store {
    raft: Raft<TypeConfig>,
    actors: ActorSystem,
    db: Arc<Database>,
    node: String,
    raft_id: u64,
    /// Budget for one write or read, including forwarding.
    pub timeout: Duration,
    secrets: Option<Arc<super::secrets::SecretBox>>,
    batcher: super::batch::Batcher,
    /// When the leader's AppendEntries was last accepted here.
    leader_contact: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Applied changes, for watchers, and how long without a leader ends
    /// their streams.
    watch: Option<(super::watch::Hub, Duration)>,
    started: std::time::Instant,
    /// Where a node without a replica sends its requests.
    replicas: Arc<std::sync::Mutex<remote::Replicas>>,
    /// What peers without the api role may read, write and watch.
    policy: Arc<dyn super::access::PeerPolicy>,
}

impl Store {
    pub fn new(
        raft: Raft<TypeConfig>,
        actors: ActorSystem,
        db: Arc<Database>,
        node: &str,
        raft_id: u64,
    ) -> Store {
        Store {
            batcher: super::batch::Batcher::start(raft.clone()),
            raft,
            actors,
            db,
            node: node.to_string(),
            raft_id,
            timeout: Duration::from_secs(5),
            secrets: None,
            leader_contact: Arc::default(),
            watch: None,
            started: std::time::Instant::now(),
            replicas: Arc::default(),
            policy: Arc::new(super::access::Strict),
        }
    }

    /// Decides with `policy` what peers without the api role may do.
    pub fn with_policy(mut self, policy: Arc<dyn super::access::PeerPolicy>) -> Store {
        self.policy = policy;
        self
    }

    /// `Forbidden` unless `caller` may commit `txn` (see `access`).
    pub async fn authorize_write(
        &self,
        caller: &shoal_fabric::actor::Caller,
        txn: &Txn,
    ) -> Result<(), ClientError> {
        if super::access::writes_freely(caller) {
            return Ok(());
        }
        let (caller, txn) = (caller.clone(), txn.clone());
        self.policy_decides(move |db, policy| {
            let mut current = |key: &[u8]| {
                reads::read_state_blocking(db, ReadRequest::key(key))
                    .ok()
                    .and_then(|r| r.kvs.into_iter().next())
                    .map(|kv| kv.value)
            };
            policy.write(&caller, &txn, &mut current)
        })
        .await
    }

    /// `Forbidden` unless `caller` may read `req` (see `access`).
    pub async fn authorize_read(
        &self,
        caller: &shoal_fabric::actor::Caller,
        req: &ReadRequest,
    ) -> Result<(), ClientError> {
        if super::access::reads_freely(caller) {
            return Ok(());
        }
        let (caller, req) = (caller.clone(), req.clone());
        self.policy_decides(move |db, policy| {
            let mut scan = |prefix: &[u8]| {
                reads::read_state_blocking(db, ReadRequest::prefix(prefix))
                    .map(|r| r.kvs)
                    .unwrap_or_default()
            };
            policy.read(&caller, &req, &mut scan)
        })
        .await
    }

    /// Runs a policy decision over this replica's state on a blocking
    /// thread; `Err(reason)` is `Forbidden`.
    async fn policy_decides(
        &self,
        decide: impl FnOnce(&Database, &dyn super::access::PeerPolicy) -> Result<(), String>
            + Send
            + 'static,
    ) -> Result<(), ClientError> {
        let (db, policy) = (self.db.clone(), self.policy.clone());
        match tokio::task::spawn_blocking(move || decide(&db, policy.as_ref())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(ClientError::Forbidden(reason)),
            Err(e) => Err(ClientError::Unavailable(e.to_string())),
        }
    }

    /// Serves watches from `hub` (the state machine's); a replica that has
    /// heard from no leader for `leader_lost_after` ends them.
    pub fn with_watch(mut self, hub: super::watch::Hub, leader_lost_after: Duration) -> Store {
        self.watch = Some((hub, leader_lost_after));
        self
    }

    /// Serves one watch of `caller`'s on this replica until it ends; the
    /// values the policy hides from `caller` are emptied.
    pub async fn serve_watch(
        &self,
        req: super::watch::Watch,
        sink: shoal_fabric::actor::Sink<super::watch::WatchEvent>,
        caller: shoal_fabric::actor::Caller,
    ) {
        let Some((hub, after)) = self.watch.clone() else {
            return sink.end("this node does not serve watches").await;
        };
        let hides: super::watch::Hides = if super::access::reads_freely(&caller) {
            Arc::new(|_: &[u8]| false)
        } else {
            let policy = self.policy.clone();
            Arc::new(move |key: &[u8]| policy.hides(&caller, key))
        };
        super::watch::serve(self.clone(), hub, req, sink, after, hides).await
    }

    /// This replica's hub of applied changes (in-process watchers such as
    /// the API's watch cache subscribe to it directly).
    pub fn hub(&self) -> Option<super::watch::Hub> {
        self.watch.as_ref().map(|(hub, _)| hub.clone())
    }

    /// Makes a stored value readable (secrets are sealed in the store);
    /// values that cannot be opened are emptied and logged.
    pub fn open_value(&self, key: &[u8], value: &mut Vec<u8>) {
        super::watch::WatchSource::open(self, key, value)
    }

    /// A linearizable read index: the leader confirms its leadership with
    /// a quorum and names the index every read must reflect.
    pub async fn read_index(&self) -> Result<u64, ClientError> {
        self.via_leader(|| self.read_index_local(), || ReadIndex, false)
            .await
    }

    /// Watches `prefix` from `from_rev` on the replica `node`.
    pub async fn watch(
        &self,
        node: &str,
        prefix: &[u8],
        from_rev: u64,
    ) -> Result<shoal_fabric::actor::Subscription<super::watch::WatchEvent>, ClientError> {
        self.watch_filtered(node, prefix, from_rev, None).await
    }

    /// `watch` with a server-side filter on the JSON values.
    pub async fn watch_filtered(
        &self,
        node: &str,
        prefix: &[u8],
        from_rev: u64,
        filter: Option<super::watch::FieldFilter>,
    ) -> Result<shoal_fabric::actor::Subscription<super::watch::WatchEvent>, ClientError> {
        let req = super::watch::Watch {
            prefix: prefix.to_vec(),
            from_rev,
            filter,
        };
        self.actors
            .subscribe(&ActorPath::new(ACTOR, node), req, self.timeout)
            .await
            .map_err(|e| ClientError::Unavailable(e.to_string()))
    }

    /// Seals values under `/registry/secrets/` with `secrets` from now on.
    pub fn with_secrets(mut self, secrets: super::secrets::SecretBox) -> Store {
        self.secrets = Some(Arc::new(secrets));
        self
    }

    fn seal(&self, mut txn: Txn) -> Txn {
        if let Some(b) = &self.secrets {
            for op in txn.success.iter_mut().chain(txn.failure.iter_mut()) {
                if let super::command::Op::Put { key, value } = op {
                    if super::secrets::is_secret(key) {
                        *value = b.seal(key, value);
                    }
                }
            }
        }
        txn
    }

    fn unseal(&self, kv: &mut KeyValue) -> Result<(), ClientError> {
        if let Some(b) = &self.secrets {
            if super::secrets::is_secret(&kv.key) {
                kv.value = b
                    .open(&kv.key, &kv.value)
                    .map_err(|e| ClientError::Unavailable(e.to_string()))?;
            }
        }
        Ok(())
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn raft_id(&self) -> u64 {
        self.raft_id
    }

    fn leader_name(&self, id: Option<u64>) -> Option<String> {
        let id = id?;
        let m = self.raft.metrics().borrow().membership_config.clone();
        let name = m.membership().get_node(&id).map(|n| n.addr.clone());
        name
    }

    /// Puts `value` only if `key` is absent (`mod_rev == 0`) or at
    /// `mod_rev`; `Conflict` otherwise. Returns the new revision.
    pub async fn put_if(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        mod_rev: u64,
    ) -> Result<u64, ClientError> {
        let txn = if mod_rev == 0 {
            Txn::create(key.clone(), value)
        } else {
            Txn::update(key.clone(), value, mod_rev)
        };
        self.guarded(txn, key, mod_rev).await.map(|r| r.revision)
    }

    /// Deletes `key` only if it is at `mod_rev`; `Conflict` otherwise.
    pub async fn delete_if(&self, key: Vec<u8>, mod_rev: u64) -> Result<TxnResult, ClientError> {
        self.guarded(Txn::delete(key.clone(), Some(mod_rev)), key, mod_rev)
            .await
    }

    async fn guarded(
        &self,
        txn: Txn,
        key: Vec<u8>,
        expected: u64,
    ) -> Result<TxnResult, ClientError> {
        let r = self.write(txn).await?;
        if r.succeeded {
            Ok(r)
        } else {
            Err(ClientError::Conflict {
                key: String::from_utf8_lossy(&key).into_owned(),
                expected,
            })
        }
    }

    /// Commits `txn` (through the leader) and returns its result.
    pub async fn write(&self, txn: Txn) -> Result<TxnResult, ClientError> {
        txn.validate().map_err(invalid_txn)?;
        // Seal before proposing: the log never sees a secret's plaintext.
        let txn = self.seal(txn);
        let mut result = self.write_sealed(txn).await?;
        for kv in result.prev.iter_mut().flatten() {
            self.unseal(kv)?;
        }
        Ok(result)
    }

    async fn write_sealed(&self, txn: Txn) -> Result<TxnResult, ClientError> {
        let local = || self.write_local(txn.clone());
        self.via_leader(local, || ClientWrite(txn.clone()), true)
            .await
    }

    /// Runs `local` here, or, when this node is not the leader, sends
    /// `remote()` to the leader's store actor, retrying while an election
    /// runs, within `self.timeout`. One forwarding attempt at a time, so a
    /// leader that just died cannot eat the whole budget. With
    /// `ambiguous_on_change` (writes), a leader change seen while the request
    /// is in flight answers `LeaderChanged` at once: its outcome is unknown.
    async fn via_leader<R, Fut, M>(
        &self,
        local: impl Fn() -> Fut,
        remote: impl Fn() -> M,
        ambiguous_on_change: bool,
    ) -> Result<R, ClientError>
    where
        Fut: std::future::Future<Output = Result<R, ClientError>>,
        M: RemoteMessage<Reply = Result<R, ClientError>>,
        R: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            // A node without a replica asks the leader, or a replica that
            // names it (see `remote`).
            let replica = self.is_replica();
            let res = if replica {
                match tokio::time::timeout_at(deadline, local()).await {
                    Ok(r) => r,
                    Err(_) => return Err(self.timeout_error()),
                }
            } else {
                Err(ClientError::NotLeader {
                    leader: self.remote_target(),
                })
            };
            match res {
                Err(ClientError::NotLeader { leader: Some(name) }) if name != self.node => {
                    let left = deadline
                        .saturating_duration_since(tokio::time::Instant::now())
                        .min(FORWARD_ATTEMPT);
                    let to = ActorPath::new(ACTOR, &name);
                    let ask = self.actors.ask(&to, remote(), left);
                    // This node's view of the leader says something only
                    // on a replica (one still joining learns the leader
                    // while its first forwarded write is in flight).
                    let changed = async {
                        if ambiguous_on_change && replica {
                            self.leader_changed().await
                        } else {
                            std::future::pending().await
                        }
                    };
                    let outcome = tokio::select! {
                        r = ask => r,
                        _ = changed => return Err(ClientError::LeaderChanged),
                    };
                    match outcome {
                        Ok(Err(ClientError::NotLeader { leader })) if !replica => {
                            let learned = leader.is_some();
                            self.remote_answer(&name, leader);
                            if learned {
                                continue;
                            }
                        }
                        Err(AskError::Unreachable(..)) if !replica => {
                            self.remote_answer(&name, None)
                        }
                        Ok(Err(ClientError::NotLeader { .. })) | Err(AskError::Unreachable(..)) => {
                        }
                        Ok(r) => return r,
                        Err(AskError::Timeout) => {
                            // Without a replica, a silent leader (dead, not
                            // yet declared down) is not asked first again.
                            if !replica {
                                self.remote_answer(&name, None);
                            }
                            return Err(ClientError::Timeout);
                        }
                        Err(e) => return Err(ClientError::Unavailable(e.to_string())),
                    }
                }
                Err(ClientError::NotLeader { .. }) => {}
                other => return other,
            }
            // No leader known yet (election in progress): wait and retry.
            if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(ClientError::NotLeader {
                    leader: self.leader_name(self.raft.metrics().borrow().current_leader),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Why this node's Raft stopped, if it did (storage errors are fatal).
    pub fn fatal(&self) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string())
    }

    /// Resolves when this node's view of the leader changes.
    async fn leader_changed(&self) {
        let mut m = self.raft.metrics();
        let start = m.borrow().current_leader;
        loop {
            if m.changed().await.is_err() {
                return std::future::pending().await;
            }
            if m.borrow().current_leader != start {
                return;
            }
        }
    }

    fn timeout_error(&self) -> ClientError {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            ClientError::NoQuorum
        } else {
            ClientError::Timeout
        }
    }

    /// Proposes on this node; `NotLeader` if it is not the leader.
    pub async fn write_local(&self, txn: Txn) -> Result<TxnResult, ClientError> {
        self.batcher.write(txn).await
    }

    /// Proposes `req` on this node alone; `NotLeader` if it is not the leader.
    pub(super) async fn propose_local(&self, req: Request) -> Result<Response, ClientError> {
        super::batch::proposal(&self.raft, req).await
    }

    /// Proposes `txn` on this node for a singleton running under `token`,
    /// never forwarding: `NotLeader` here, or `Fenced` if the entry ends up
    /// under another leader than `token`.
    pub async fn propose_fenced(
        &self,
        token: super::command::FenceToken,
        txn: Txn,
    ) -> Result<TxnResult, ClientError> {
        txn.validate().map_err(invalid_txn)?;
        let txn = self.seal(txn);
        // Group commit like any write, with others under the same token.
        let proposal = self.batcher.write_fenced(txn, Some(token));
        tokio::time::timeout(self.timeout, proposal)
            .await
            .map_err(|_| self.timeout_error())?
    }

    /// Drops history older than `revision` on every replica (through the
    /// leader). Current values stay; reads below `revision` become
    /// `Compacted`. Returns the revision actually compacted to.
    pub async fn compact(&self, revision: u64) -> Result<u64, ClientError> {
        let local = || async move {
            match self.propose_local(Request::Compact { revision }).await? {
                Response::Compacted { revision } => Ok(revision),
                other => Err(ClientError::Unavailable(format!(
                    "unexpected response {other:?}"
                ))),
            }
        };
        self.via_leader(local, || ClientCompact(revision), true)
            .await
    }
}

impl super::watch::WatchSource for Store {
    async fn history(
        &self,
        prefix: &[u8],
        from: u64,
        window: u64,
    ) -> Result<(Vec<super::watch::Change>, u64, u64), String> {
        let db = self.db.clone();
        let prefix = prefix.to_vec();
        let join = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let r = db.begin_read().map_err(|e| e.to_string())?;
            let kv = r.open_table(KV).map_err(|e| e.to_string())?;
            let meta = r.open_table(META).map_err(|e| e.to_string())?;
            let compacted = meta
                .get("compacted")
                .map_err(|e| e.to_string())?
                .and_then(|g| postcard::from_bytes::<u64>(g.value()).ok())
                .unwrap_or(0);
            let applied = meta
                .get("applied")
                .map_err(|e| e.to_string())?
                .and_then(|g| postcard::from_bytes::<Option<openraft::LogId<u64>>>(g.value()).ok())
                .flatten()
                .map_or(0, |l| l.index);
            let events = if from == 0 || from <= compacted {
                Vec::new()
            } else {
                let to = applied.min(from.saturating_add(window.max(1) - 1));
                mvcc::history(&kv, &prefix, from, to).map_err(|e| e.to_string())?
            };
            Ok((events, applied, compacted))
        });
        join.await.map_err(|e| e.to_string())?
    }

    fn leaderless_for(&self) -> Duration {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.raft_id) {
            // A leader cut off from its quorum does not step down in
            // openraft 0.9; it only stops hearing acknowledgements.
            return Duration::from_millis(m.millis_since_quorum_ack.unwrap_or(0));
        }
        let last = *self
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.unwrap_or(self.started).elapsed()
    }

    fn open(&self, key: &[u8], value: &mut Vec<u8>) {
        if let Some(b) = &self.secrets {
            if super::secrets::is_secret(key) && !value.is_empty() {
                match b.open(key, value) {
                    Ok(v) => *value = v,
                    Err(err) => {
                        tracing::error!(key = %String::from_utf8_lossy(key), "cannot unseal a watched secret: {err}");
                        value.clear();
                    }
                }
            }
        }
    }
}
