//! Group commit on the leader: concurrent client transactions share one
//! Raft entry.
//!
//! openraft 0.9 appends one entry per `client_write` and its core waits for
//! that append to be durable before it takes the next one, so one entry per
//! client write means one fsync per write on the leader (measured: batches
//! of 1.0 entry per log commit, about 350 µs each, capping the leader near
//! 2,800 writes/s). The batcher queues transactions and proposes whatever
//! has queued as one [`Request::Batch`] entry, with at most
//! [`MAX_IN_FLIGHT`] entries proposed and not yet applied: while those are
//! in flight, new transactions wait and form the next, larger batch. A lone
//! writer never waits (its batch of one goes at once as a plain
//! [`Request::Txn`]).
//!
//! A batch never holds two transactions that write the same key: they
//! share the entry's revision, and two versions of one key must not share
//! a mod_rev. The later one starts the next batch.

use std::collections::HashSet;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::command::{FenceToken, Request, Response, Txn, TxnResult};
use super::service::ClientError;
use super::TypeConfig;

/// Entries proposed and not yet applied, at most.
pub const MAX_IN_FLIGHT: usize = 4;
/// Transactions in one batch, at most.
pub const MAX_TXNS: usize = 1024;
/// Bytes of keys and values in one batch, at most (a larger single
/// transaction still goes alone).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

type Waiter = oneshot::Sender<Result<TxnResult, ClientError>>;

/// A queued transaction and whoever waits for its result.
pub struct Queued {
    txn: Txn,
    /// A singleton's fence token: fenced transactions share entries only
    /// with others of the same token.
    fence: Option<FenceToken>,
    reply: Waiter,
}

/// Sends transactions to the batcher task of this node.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Queued>,
}

impl Batcher {
    /// Starts the batcher task for `raft`; it ends when every `Batcher`
    /// clone is dropped.
    pub fn start(raft: Raft<TypeConfig>) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes `txn` with whatever else is queued; `NotLeader` if this
    /// node is not the leader.
    pub async fn write(&self, txn: Txn) -> Result<TxnResult, ClientError> {
        self.write_fenced(txn, None).await
    }

    /// `write` for a singleton under `fence` (None: a plain write).
    pub async fn write_fenced(
        &self,
        txn: Txn,
        fence: Option<FenceToken>,
    ) -> Result<TxnResult, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Queued { txn, fence, reply })
            .map_err(|_| ClientError::Unavailable("store stopped".into()))?;
        rx.await
            .map_err(|_| ClientError::Unavailable("store stopped".into()))?
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Queued> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let (batch, next) = take_batch(first, || rx.try_recv().ok());
        carry = next;
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(permit);
        });
    }
}

/// Forms one batch from `first` and what `next` yields: stops at the size
/// limits, when nothing more is queued, or at a transaction that writes a
/// key the batch already writes (returned, to start the next batch).
pub fn take_batch(
    first: Queued,
    mut next: impl FnMut() -> Option<Queued>,
) -> (Vec<Queued>, Option<Queued>) {
    let mut keys: HashSet<Vec<u8>> = first.txn.written_keys().map(<[u8]>::to_vec).collect();
    let mut bytes = first.txn.size();
    let mut batch = vec![first];
    while batch.len() < MAX_TXNS && bytes < MAX_BYTES {
        let Some(q) = next() else { break };
        let size = q.txn.size();
        let other_fence = q.fence != batch[0].fence;
        if other_fence || bytes + size > MAX_BYTES || q.txn.written_keys().any(|k| keys.contains(k))
        {
            return (batch, Some(q));
        }
        keys.extend(q.txn.written_keys().map(<[u8]>::to_vec));
        bytes += size;
        batch.push(q);
    }
    (batch, None)
}

/// Proposes one batch and answers each of its waiters.
async fn propose(raft: &Raft<TypeConfig>, mut batch: Vec<Queued>) {
    let fence = batch[0].fence;
    let req = match (batch.len(), fence) {
        (1, None) => Request::Txn(std::mem::take(&mut batch[0].txn)),
        (1, Some(token)) => Request::Fenced {
            token,
            txn: std::mem::take(&mut batch[0].txn),
        },
        (_, None) => Request::Batch(
            batch
                .iter_mut()
                .map(|q| std::mem::take(&mut q.txn))
                .collect(),
        ),
        (_, Some(token)) => Request::FencedBatch {
            token,
            txns: batch
                .iter_mut()
                .map(|q| std::mem::take(&mut q.txn))
                .collect(),
        },
    };
    match proposal(raft, req).await {
        Ok(Response::Fenced) => {
            for q in batch {
                let _ = q.reply.send(Err(ClientError::Fenced));
            }
        }
        Ok(Response::Txn(r)) if batch.len() == 1 => {
            let _ = batch.remove(0).reply.send(Ok(r));
        }
        Ok(Response::Batch(results)) if results.len() == batch.len() => {
            for (q, r) in batch.into_iter().zip(results) {
                let _ = q.reply.send(Ok(r));
            }
        }
        Ok(other) => {
            let e = ClientError::Unavailable(format!("unexpected response {other:?}"));
            for q in batch {
                let _ = q.reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for q in batch {
                let _ = q.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Proposes `req` on this node; `NotLeader` if it is not the leader.
pub async fn proposal(raft: &Raft<TypeConfig>, req: Request) -> Result<Response, ClientError> {
    match raft.client_write(req).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ClientError::NotLeader {
                leader: f.leader_node.map(|n| n.addr),
            })
        }
        Err(RaftError::APIError(e)) => Err(ClientError::Invalid(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(ClientError::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(txn: Txn) -> (Queued, oneshot::Receiver<Result<TxnResult, ClientError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Queued {
                txn,
                fence: None,
                reply,
            },
            rx,
        )
    }

    fn keys(batch: &[Queued]) -> Vec<String> {
        batch
            .iter()
            .map(|q| String::from_utf8_lossy(q.txn.written_keys().next().unwrap()).into_owned())
            .collect()
    }

    #[test]
    fn a_batch_takes_everything_queued_with_distinct_keys() {
        let mut queue: std::collections::VecDeque<Queued> = ["b", "c", "d"]
            .into_iter()
            .map(|k| queued(Txn::put(k, "v")).0)
            .collect();
        let (batch, carry) = take_batch(queued(Txn::put("a", "v")).0, || queue.pop_front());
        assert_eq!(keys(&batch), ["a", "b", "c", "d"]);
        assert!(carry.is_none());
    }

    #[test]
    fn a_second_write_of_one_key_starts_the_next_batch() {
        let mut queue: std::collections::VecDeque<Queued> = [
            Txn::put("b", "v"),
            Txn::delete("a", None),
            Txn::put("c", "v"),
        ]
        .into_iter()
        .map(|t| queued(t).0)
        .collect();
        let (batch, carry) = take_batch(queued(Txn::put("a", "v")).0, || queue.pop_front());
        assert_eq!(keys(&batch), ["a", "b"]);
        let carry = carry.expect("the conflicting write is carried over");
        assert_eq!(carry.txn, Txn::delete("a", None));
        // What follows the carried write is still queued, in order.
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn failure_branch_keys_count_as_written() {
        let guarded = Txn {
            failure: vec![super::super::command::Op::Put {
                key: b"a".to_vec(),
                value: b"x".to_vec(),
            }],
            ..Txn::default()
        };
        let mut queue: std::collections::VecDeque<Queued> =
            [guarded].into_iter().map(|t| queued(t).0).collect();
        let (batch, carry) = take_batch(queued(Txn::put("a", "v")).0, || queue.pop_front());
        assert_eq!(batch.len(), 1);
        assert!(carry.is_some());
    }

    #[test]
    fn fenced_writes_share_entries_only_with_the_same_token() {
        let token = FenceToken { term: 3, node: 7 };
        let fenced = |k: &str, fence| {
            let (mut q, _) = queued(Txn::put(k, "v"));
            q.fence = fence;
            q
        };
        let mut queue: std::collections::VecDeque<Queued> =
            [fenced("b", Some(token)), fenced("c", None)]
                .into_iter()
                .collect();
        let (batch, carry) = take_batch(fenced("a", Some(token)), || queue.pop_front());
        assert_eq!(keys(&batch), ["a", "b"]);
        assert_eq!(
            carry.expect("a plain write starts the next batch").fence,
            None
        );
    }

    #[test]
    fn a_batch_stops_at_the_byte_limit() {
        let big = vec![0u8; MAX_BYTES / 3];
        let mut queue: std::collections::VecDeque<Queued> = (1..5)
            .map(|i| queued(Txn::put(format!("k{i}"), big.clone())).0)
            .collect();
        let (batch, carry) =
            take_batch(queued(Txn::put("k0", big.clone())).0, || queue.pop_front());
        assert!(batch.iter().map(|q| q.txn.size()).sum::<usize>() <= MAX_BYTES);
        assert_eq!(batch.len(), 2);
        assert!(carry.is_some());
    }
}
