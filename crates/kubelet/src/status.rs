//! Pod status reported in batches: the kubelet queues each pod's new
//! status (or final delete) and a reporter task sends whatever has queued
//! as one [`Store::write_many`] request, so a node that starts a hundred
//! pods at once sends a few messages to the leader, not a hundred. While
//! a batch is in flight the next one forms; a lone update goes at once.
//! Of two queued updates of one pod only the later is sent.
//!
//! A conflict (the pod changed since the version the status was computed
//! from) is dropped: the newer version is on its way to the kubelet's
//! watch, which computes the status again. A write that fails for want of
//! a leader (an election) is sent again with back-off: the kubelet's watch
//! sits through the election, so nothing else would bring that status
//! back. A retried write guarded by the pod's version cannot undo a newer
//! one: it conflicts and is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use shoal_store::command::Txn;
use shoal_store::service::MAX_WRITE_MANY;
use shoal_store::Store;

/// Queues pod status writes for the reporter task (cheap to clone).
#[derive(Clone)]
pub struct StatusReporter {
    tx: mpsc::UnboundedSender<(Vec<u8>, Txn)>,
}

/// What the reporter has done (for tests and `shoal sim`).
#[derive(Debug, Default)]
pub struct ReportStats {
    pub requests: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
}

impl StatusReporter {
    /// Starts the reporter for `store`, with at most `in_flight` requests
    /// outstanding. It ends when every clone is dropped.
    pub fn start(store: Store, in_flight: usize) -> (StatusReporter, Arc<ReportStats>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ReportStats::default());
        tokio::spawn(run(store, rx, in_flight.max(1), stats.clone()));
        (StatusReporter { tx }, stats)
    }

    /// Queues `txn`, the write of the pod at `key`.
    pub fn report(&self, key: Vec<u8>, txn: Txn) {
        let _ = self.tx.send((key, txn));
    }
}

/// Takes what is queued (up to the request limit), keeping the last
/// update of each key, in first-queued order.
pub fn coalesce(
    first: (Vec<u8>, Txn),
    mut next: impl FnMut() -> Option<(Vec<u8>, Txn)>,
) -> Vec<Txn> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut latest: HashMap<Vec<u8>, Txn> = HashMap::new();
    let mut item = Some(first);
    while let Some((key, txn)) = item {
        if latest.insert(key.clone(), txn).is_none() {
            order.push(key);
        }
        if order.len() >= MAX_WRITE_MANY {
            break;
        }
        item = next();
    }
    order
        .into_iter()
        .filter_map(|k| latest.remove(&k))
        .collect()
}

async fn run(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Txn)>,
    in_flight: usize,
    stats: Arc<ReportStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let permits = Arc::new(Semaphore::new(in_flight));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let batch = coalesce(first, || rx.try_recv().ok());
        let store = store.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            stats.requests.fetch_add(1, Relaxed);
            stats.writes.fetch_add(batch.len() as u64, Relaxed);
            send(&store, batch).await;
            drop(permit);
        });
    }
}

/// How often a batch is sent again while the store has no leader.
const ATTEMPTS: u32 = 12;

/// Sends one batch; the writes that fail for want of a leader go again
/// with back-off (100 ms doubling to 2 s, about 15 s in all).
async fn send(store: &Store, mut batch: Vec<Txn>) {
    let mut pause = std::time::Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match store.write_many(batch.clone()).await {
            Ok(results) => {
                batch = batch
                    .into_iter()
                    .zip(results)
                    .filter_map(|(t, r)| match r {
                        Err(e) if e.is_retryable() => Some(t),
                        _ => None,
                    })
                    .collect();
                if batch.is_empty() {
                    return;
                }
            }
            Err(e) if e.is_retryable() => {
                tracing::debug!("pod status report failed (attempt {attempt}): {e}");
            }
            Err(e) => {
                tracing::warn!("pod status report failed: {e}");
                return;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
    tracing::warn!(
        "{} pod status reports still without a leader after {ATTEMPTS} attempts",
        batch.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, v: &str) -> (Vec<u8>, Txn) {
        (
            key.as_bytes().to_vec(),
            Txn::update(key.as_bytes().to_vec(), v.as_bytes().to_vec(), 1),
        )
    }

    #[test]
    fn a_batch_keeps_the_last_update_of_each_pod_in_order() {
        let mut queued = vec![put("b", "b2"), put("c", "c1"), put("b", "b3")].into_iter();
        let batch = coalesce(put("a", "a1"), || queued.next());
        let keys: Vec<Vec<u8>> = batch
            .iter()
            .map(|t| t.written_keys().next().unwrap().to_vec())
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        match &batch[1].success[0] {
            shoal_store::command::Op::Put { value, .. } => assert_eq!(value, b"b3"),
            other => panic!("expected a put, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_stops_at_the_request_limit() {
        let mut n = 0;
        let batch = coalesce(put("k0", "v"), || {
            n += 1;
            Some(put(&format!("k{n}"), "v"))
        });
        assert_eq!(batch.len(), MAX_WRITE_MANY);
    }
}
