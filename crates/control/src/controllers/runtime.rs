//! The controller runtime, kube-runtime style: a reconciler is an
//! idempotent function of one key (`namespace/name`); a work queue feeds
//! it keys from the watch cache's pushed events (nothing polls), never
//! runs two reconciles of one key at once, remembers a key that changed
//! while its reconcile ran, and requeues failures with exponential
//! back-off.
//!
//! Everything a controller spawns lives in a `JoinSet` owned by its
//! future, so when the singleton host aborts the controllers (this node
//! stopped leading) their workers go with them.
//!
//! Writes go through [`Fenced`], which proposes on this node under the
//! singleton's fence token: a controller left running on a deposed
//! leader gets `Fenced`, never an applied write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Notify;

use shoal_model::cache::{Cache, CacheEvent, Start};

pub use crate::fenced::Fenced;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the next change.
    Done,
    /// Look again after this long (a deadline to check, say).
    After(Duration),
}

/// An idempotent reconcile of one key.
pub trait Reconciler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The store prefixes whose changes matter, each with the keys a change
    /// enqueues (its own key, or its owner's).
    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)>;
    fn reconcile(self: Arc<Self>, key: String) -> BoxFuture<'static, Result<Action, String>>;
}

/// Maps a change to the keys it enqueues.
pub type KeyFn = Arc<dyn Fn(&CacheEvent) -> Vec<String> + Send + Sync>;

/// `namespace/name` of a JSON object.
pub fn key_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        shoal_model::objects::namespace_of(obj),
        shoal_model::objects::name_of(obj)
    )
}

/// The key of an object's controller (its ownerReference with
/// `controller: true`) of `kind`, if it has one.
pub fn controller_key(obj: &Value, kind: &str) -> Option<String> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let owner = refs.iter().find(|r| {
        r.get("controller").and_then(Value::as_bool) == Some(true)
            && r.get("kind").and_then(Value::as_str) == Some(kind)
    })?;
    Some(format!(
        "{}/{}",
        shoal_model::objects::namespace_of(obj),
        owner.get("name")?.as_str()?
    ))
}

/// The watches of a controller of `kind` that owns objects under
/// `children`: its own objects enqueue their keys, a child enqueues its
/// controller's key (before and after the change).
pub fn owner_watches(own: Vec<u8>, children: Vec<u8>, kind: &'static str) -> Vec<(Vec<u8>, KeyFn)> {
    let by_key: KeyFn = Arc::new(|e| vec![key_of(&e.object)]);
    let by_owner: KeyFn = Arc::new(move |e| {
        let now = controller_key(&e.object, kind);
        let before = e.prev.as_deref().and_then(|p| controller_key(p, kind));
        now.into_iter().chain(before).collect()
    });
    vec![(own, by_key), (children, by_owner)]
}

/// Keys waiting, running, and those that changed while running.
#[derive(Default)]
struct QueueState {
    ready: BTreeSet<String>,
    running: BTreeSet<String>,
    dirty: BTreeSet<String>,
    failures: HashMap<String, u32>,
}

/// The work queue of one controller.
#[derive(Clone, Default)]
pub struct Queue {
    state: Arc<Mutex<QueueState>>,
    wake: Arc<Notify>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: String) {
        let mut st = self.lock();
        if st.running.contains(&key) {
            st.dirty.insert(key);
        } else {
            st.ready.insert(key);
            drop(st);
            self.wake.notify_one();
        }
    }

    /// The next key to work on, marked running.
    async fn next(&self) -> String {
        loop {
            let notified = self.wake.notified();
            {
                let mut st = self.lock();
                if let Some(k) = st.ready.pop_first() {
                    st.running.insert(k.clone());
                    if !st.ready.is_empty() {
                        self.wake.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` done; returns the back-off for a failure.
    fn done(&self, key: &str, ok: bool) -> Option<Duration> {
        let mut st = self.lock();
        st.running.remove(key);
        let backoff = if ok {
            st.failures.remove(key);
            None
        } else {
            let n = st.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            Some(backoff(*n))
        };
        if st.dirty.remove(key) {
            st.ready.insert(key.to_string());
            drop(st);
            self.wake.notify_one();
        }
        backoff
    }

    pub fn len(&self) -> usize {
        let st = self.lock();
        st.ready.len() + st.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 10 ms doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    let ms = 10u64.saturating_mul(1u64 << failures.min(20).saturating_sub(1));
    Duration::from_millis(ms.min(30_000))
}

/// Runs `r` with `workers` concurrent reconciles until dropped.
pub async fn run<R: Reconciler>(r: Arc<R>, cache: Cache, workers: usize) {
    let queue = Queue::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (prefix, keys) in r.watches() {
        tasks.spawn(feed(cache.clone(), prefix, keys, queue.clone()));
    }
    for _ in 0..workers.max(1) {
        let (r, queue) = (r.clone(), queue.clone());
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                let result = r.clone().reconcile(key.clone()).await;
                let retry = match &result {
                    Ok(Action::Done) => queue.done(&key, true),
                    Ok(Action::After(d)) => {
                        queue.done(&key, true);
                        Some(*d)
                    }
                    Err(e) => {
                        tracing::debug!(controller = r.name(), %key, "reconcile failed: {e}");
                        queue.done(&key, false)
                    }
                };
                if let Some(after) = retry {
                    let q = queue.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        q.add(key);
                    });
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Enqueues the keys of every change under `prefix`: first the current
/// state, then each event; a watch that ends (cache reset, lag) starts
/// again from a snapshot, so nothing is missed.
async fn feed(cache: Cache, prefix: Vec<u8>, keys: KeyFn, queue: Queue) {
    loop {
        let mut opened = match cache.watch(&prefix, Start::Snapshot) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("controller watch: {}", e.message);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for e in &opened.initial {
            keys(e).into_iter().for_each(|k| queue.add(k));
        }
        let mut last = opened.rev;
        while let Ok(batch) = opened.live.recv().await {
            for e in opened.mine(&batch).filter(|e| e.rev > last) {
                keys(e).into_iter().for_each(|k| queue.add(k));
            }
            last = last.max(batch.rev);
        }
    }
}

/// Objects under `prefix` grouped by `key_of`, from the cache.
pub fn index_by<F>(cache: &Cache, prefix: &[u8], group: F) -> BTreeMap<String, Vec<Arc<Value>>>
where
    F: Fn(&Value) -> Option<String>,
{
    let (items, _) = cache.list(prefix, |_| true);
    let mut out: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for o in items {
        if let Some(k) = group(&o) {
            out.entry(k).or_default().push(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_reconcile_per_key_and_changes_while_running_come_back() {
        let q = Queue::default();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.next().await, "a");
        // "a" changes while it runs: it comes back once it is done.
        q.add("a".into());
        assert_eq!(q.next().await, "b");
        assert_eq!(q.done("b", true), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.done("a", true), None);
        assert_eq!(q.next().await, "a");
        // Failures back off exponentially, success resets.
        assert_eq!(q.done("a", false), Some(Duration::from_millis(10)));
        q.add("a".into());
        assert_eq!(q.next().await, "a");
        assert_eq!(q.done("a", false), Some(Duration::from_millis(20)));
        assert!(q.is_empty());
        assert_eq!(backoff(100), Duration::from_secs(30));
    }

    #[test]
    fn controller_keys_come_from_owner_references() {
        let pod = serde_json::json!({"metadata": {"namespace": "d", "name": "p",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": true, "uid": "u"}]}});
        assert_eq!(controller_key(&pod, "ReplicaSet").as_deref(), Some("d/rs"));
        assert_eq!(controller_key(&pod, "Deployment"), None);
        assert_eq!(key_of(&pod), "d/p");
    }
}
