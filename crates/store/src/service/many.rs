//! Many independent transactions in one request: a kubelet reports the
//! status of every pod that changed since its last report as one message
//! to the leader, which queues them all in its group commit. Each
//! transaction succeeds or fails alone (a conflict on one pod does not
//! hold back the others), unlike a fenced batch.

use serde::{Deserialize, Serialize};

use super::{ClientError, Store};
use crate::command::{Txn, TxnResult};
use shoal_fabric::actor::{Message, RemoteMessage};

/// The most transactions one request carries.
pub const MAX_TXNS: usize = 1024;

/// Per-transaction outcomes, in request order.
pub type ManyResults = Vec<Result<TxnResult, ClientError>>;

/// Transactions forwarded to the leader together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientWriteMany(pub Vec<Txn>);
impl Message for ClientWriteMany {
    type Reply = Result<ManyResults, ClientError>;
}
impl RemoteMessage for ClientWriteMany {
    const TAG: &'static str = "shoal.store.write-many/1";
}

impl Store {
    /// Commits each of `txns` (through the leader, in one message) and
    /// returns their results in order. An `Err` means none is known to
    /// have been applied or not (no leader, timeout).
    pub async fn write_many(&self, txns: Vec<Txn>) -> Result<ManyResults, ClientError> {
        if txns.len() > MAX_TXNS {
            return Err(ClientError::Invalid(format!(
                "{} transactions in one request (at most {MAX_TXNS})",
                txns.len()
            )));
        }
        let mut sealed = Vec::with_capacity(txns.len());
        for txn in txns {
            txn.validate().map_err(super::invalid_txn)?;
            sealed.push(self.seal(txn));
        }
        let local = || self.write_many_local(sealed.clone());
        let mut results = self
            .via_leader(local, || ClientWriteMany(sealed.clone()), true)
            .await?;
        for r in results.iter_mut().flatten() {
            for kv in r.prev.iter_mut().flatten() {
                self.unseal(kv)?;
            }
        }
        Ok(results)
    }

    /// `write_many` on this node; `NotLeader` (for the whole request) if
    /// this node does not lead.
    pub async fn write_many_local(&self, txns: Vec<Txn>) -> Result<ManyResults, ClientError> {
        if txns.len() > MAX_TXNS {
            return Err(ClientError::Invalid("too many transactions".into()));
        }
        let results =
            futures::future::join_all(txns.into_iter().map(|t| self.batcher.write(t))).await;
        // Not the leader for any of them: the caller forwards the request.
        if let Some(Err(e @ ClientError::NotLeader { .. })) = results.first() {
            if results
                .iter()
                .all(|r| matches!(r, Err(ClientError::NotLeader { .. })))
            {
                return Err(e.clone());
            }
        }
        Ok(results)
    }
}
