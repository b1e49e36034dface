//! Reads through the [`Store`] handle: linearizable reads (a read index
//! from the leader, then this node's applied state), recent reads that say
//! how stale they may be, and reads of a node without a replica, which ask
//! a replica whole.

use super::*;

impl Store {
    /// A linearizable read on this node: the leader confirms its
    /// leadership with a quorum and names a read index (asked over the
    /// transport when this node is a follower), this node waits until it
    /// has applied that index, then reads its own state machine.
    pub async fn read(&self, req: ReadRequest) -> Result<ReadResult, ClientError> {
        // A node whose Raft stopped on a storage error (a full disk, say)
        // still answers reads from what it has applied, marked stale.
        if let Some(fatal) = self.fatal() {
            tracing::debug!(node = %self.node, "serving a stale read: {fatal}");
            let mut r = self.read_state(req).await?;
            r.stale = true;
            return Ok(r);
        }
        if !self.is_replica() {
            return self.read_remote(req).await;
        }
        let started = tokio::time::Instant::now();
        // Reads change nothing, so a leader change mid-flight is not
        // ambiguous: they simply retry.
        let index = match self
            .via_leader(|| self.read_index_local(), || ReadIndex, false)
            .await
        {
            Ok(i) => i,
            // The leader's Raft stopped (its disk is full, say) and no
            // other can be elected yet: answer from what this node has
            // applied, marked stale, as on a node whose own Raft stopped.
            // Likewise when the leader cannot reach a majority (the
            // followers' disks are full, or this side is cut off): the
            // read is served, marked stale, rather than refused.
            Err(e @ (ClientError::Unavailable(_) | ClientError::NoQuorum)) => {
                let why = e.to_string();
                tracing::debug!(node = %self.node, "serving a stale read: leader: {why}");
                let mut r = self.read_state(req).await?;
                r.stale = true;
                return Ok(r);
            }
            Err(e) => return Err(e),
        };
        let left = self.timeout.saturating_sub(started.elapsed());
        self.raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|e| match e {
                // The quorum confirmed the read index: only the apply is
                // late, which is a timeout, never a lost quorum.
                openraft::metrics::WaitError::Timeout(..) => ClientError::Timeout,
                other => ClientError::Unavailable(other.to_string()),
            })?;
        self.read_state(req).await
    }

    /// A read of this node's state as it is, without asking the leader,
    /// with how stale it may be.
    pub async fn read_recent(&self, req: ReadRequest) -> Result<RecentRead, ClientError> {
        let m = self.raft.metrics().borrow().clone();
        let leader_contact_ms = if m.current_leader == Some(self.raft_id) {
            m.millis_since_quorum_ack
        } else {
            self.leader_contact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(|t| t.elapsed().as_millis() as u64)
        };
        let commit = m.last_log_index.unwrap_or(0);
        let result = self.read_state(req).await?;
        Ok(RecentRead {
            behind_log: commit.saturating_sub(result.revision),
            leader_contact_ms,
            result,
        })
    }

    /// Records that the leader's AppendEntries (or heartbeat) was accepted.
    pub fn note_leader_contact(&self) {
        *self
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// On the leader: confirms leadership with a quorum and returns the
    /// read index. `NotLeader` elsewhere.
    pub async fn read_index_local(&self) -> Result<u64, ClientError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ClientError::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(ClientError::NoQuorum)
            }
            Err(RaftError::Fatal(e)) => Err(ClientError::Unavailable(e.to_string())),
        }
    }

    /// Reads this node's state machine as it is (no freshness guarantee).
    pub async fn read_state(&self, req: ReadRequest) -> Result<ReadResult, ClientError> {
        let db = self.db.clone();
        let join = tokio::task::spawn_blocking(move || read_state_blocking(&db, req));
        let mut result = join
            .await
            .map_err(|e| ClientError::Unavailable(e.to_string()))??;
        for kv in result.kvs.iter_mut() {
            self.unseal(kv)?;
        }
        Ok(result)
    }
}

/// [`Store::read_state`] on this thread, values as stored (secrets sealed).
pub(super) fn read_state_blocking(
    db: &Database,
    req: ReadRequest,
) -> Result<ReadResult, ClientError> {
    let unavailable = |e: &dyn std::fmt::Display| ClientError::Unavailable(e.to_string());
    let r = db.begin_read().map_err(|e| unavailable(&e))?;
    let latest = r.open_table(LATEST).map_err(|e| unavailable(&e))?;
    let kv = r.open_table(KV).map_err(|e| unavailable(&e))?;
    let meta = r.open_table(META).map_err(|e| unavailable(&e))?;
    let get_u64 = |k: &str| -> u64 {
        meta.get(k)
            .ok()
            .flatten()
            .and_then(|g| postcard::from_bytes::<u64>(g.value()).ok())
            .unwrap_or(0)
    };
    let compacted = get_u64("compacted");
    let applied = meta
        .get("applied")
        .ok()
        .flatten()
        .and_then(|g| postcard::from_bytes::<Option<openraft::LogId<u64>>>(g.value()).ok())
        .flatten()
        .map_or(0, |l| l.index);
    let map = |e: mvcc::MvccError| match e {
        mvcc::MvccError::Compacted {
            requested,
            compacted,
        } => ClientError::Compacted {
            requested,
            compacted,
        },
        other => ClientError::Unavailable(other.to_string()),
    };
    let kvs = if req.prefix {
        mvcc::list(
            &latest,
            &kv,
            &req.key,
            req.start.as_deref(),
            req.at,
            compacted,
            req.limit as usize,
        )
        .map_err(map)?
    } else {
        mvcc::get(&latest, &kv, &req.key, req.at, compacted)
            .map_err(map)?
            .into_iter()
            .collect()
    };
    Ok(ReadResult {
        kvs,
        revision: applied,
        stale: false,
    })
}
