//! The watch cache of an API node: every Kubernetes object of the store
//! (keys under `/registry/`), decoded once, kept current by the local
//! replica's pushed changes, with a window of recent events for watches.
//!
//! ```text
//! state machine apply ─► hub (in process) ─► feeder ─► objects + history
//!                                                  └─► broadcast of batches ─► HTTP watches
//! ```
//!
//! The feeder subscribes to the hub before it lists, so nothing applied
//! between the two is lost, exactly as the store's own watches do. Every
//! applied batch moves the cache's revision, including batches that touch
//! no object, so a consistent read is: take a read index from the leader,
//! wait until the cache's revision reaches it, serve from memory. A watch
//! from resourceVersion R replays the window's events after R (410 Gone if
//! R is older than the window) and then follows the broadcast, under one
//! lock, so it sees each change exactly once. A snapshot installed under
//! the replica, or a feeder that fell behind the hub, resets the cache:
//! it lists again and ends the watches, which resume from their last
//! resourceVersion.
//!
//! Memory: a decoded object costs about seven times its JSON (a pod of
//! 1.9 KB decodes to about 14 KB of maps), so only the current objects are
//! kept decoded; the history window keeps each version as the JSON bytes
//! the store holds and decodes them for a watch that resumes from it. A
//! node that does not serve the API starts its cache only when something
//! first reads it (the control plane, once that node leads).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::errors::ApiError;
use super::resources::REGISTRY;
use shoal_store::watch::{Applied, EventKind};
use shoal_store::{ClientError, ReadRequest, Store};

/// Why the watch cache cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// A watch from a revision older than the window the cache keeps:
    /// the caller must list again (HTTP 410, as upstream's "too old").
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
    /// The cache did not catch up with the store in time.
    #[error("the watch cache did not reach revision {wanted} within {waited:?} (at {at})")]
    Behind {
        wanted: u64,
        at: u64,
        waited: Duration,
    },
    /// The cache's feed ended (the node is stopping).
    #[error("the watch cache stopped")]
    Stopped,
    /// The store gave no read index.
    #[error("no read index from the store leader: {0}")]
    Store(ClientError),
}

impl CacheError {
    /// Whether asking again later can succeed (a `Gone` watch must list
    /// again instead).
    pub fn is_retryable(&self) -> bool {
        match self {
            CacheError::Gone { .. } | CacheError::Stopped => false,
            CacheError::Behind { .. } => true,
            CacheError::Store(e) => e.is_retryable(),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> ApiError {
        match e {
            CacheError::Gone { .. } => ApiError::gone(e.to_string()),
            CacheError::Behind { .. } => ApiError::new(504, "Timeout", e.to_string()),
            CacheError::Stopped => ApiError::unavailable(e.to_string()),
            CacheError::Store(c) => c.into(),
        }
    }
}

/// Events kept for watches that resume from an older resourceVersion.
pub const HISTORY_EVENTS: usize = 100_000;

/// Batches a slow watch may fall behind before it is ended.
const BROADCAST_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }
}

/// One change of one object. `object` carries its resourceVersion (for a
/// delete: the last state, at the delete's revision); `prev` is the state
/// before, so selectors can tell an object entering or leaving them.
#[derive(Debug, Clone)]
pub struct CacheEvent {
    pub rev: u64,
    pub key: Vec<u8>,
    pub kind: Kind,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

/// What one applied batch did: its events (maybe none) and the revision
/// the cache reached with it.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Arc<CacheEvent>>,
    pub rev: u64,
}

/// One version of an object as the store holds it: its JSON (without
/// resourceVersion) and its revision.
#[derive(Debug, Clone)]
struct Raw {
    bytes: Arc<[u8]>,
    rev: u64,
}

impl Raw {
    fn decode(&self, key: &[u8]) -> Option<Arc<Value>> {
        decode(key, &self.bytes, self.rev)
    }
}

#[derive(Debug, Clone)]
struct Stored {
    object: Arc<Value>,
    raw: Raw,
}

/// One event of the history window, compact (see the module docs).
#[derive(Debug, Clone)]
struct Hist {
    rev: u64,
    key: Vec<u8>,
    kind: Kind,
    object: Raw,
    prev: Option<Raw>,
}

/// The owner index's key for objects without a controller (orphans a
/// controller may adopt).
const ORPHANS: &str = "";

/// The owner index's keys of an object: the uids it names in
/// `metadata.ownerReferences`, and [`ORPHANS`] if none of them is its
/// controller.
fn owner_uids(o: &Value) -> impl Iterator<Item = &str> {
    let refs = o
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let orphan = !refs
        .iter()
        .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true));
    refs.iter()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
        .filter(|uid| !uid.is_empty())
        .chain(orphan.then_some(ORPHANS))
}

impl State {
    fn index_owners(&mut self, key: &[u8], prev: Option<&Value>, now: Option<&Value>) {
        let old: BTreeSet<&str> = prev.map(|p| owner_uids(p).collect()).unwrap_or_default();
        let new: BTreeSet<&str> = now.map(|n| owner_uids(n).collect()).unwrap_or_default();
        for uid in old.difference(&new) {
            if let Some(keys) = self.owners.get_mut(*uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.owners.remove(*uid);
                }
            }
        }
        for uid in new.difference(&old) {
            self.owners
                .entry((*uid).to_string())
                .or_default()
                .insert(key.to_vec());
        }
    }
}

impl Hist {
    fn decode(&self) -> Option<Arc<CacheEvent>> {
        let prev = match &self.prev {
            Some(p) => Some(p.decode(&self.key)?),
            None => None,
        };
        Some(Arc::new(CacheEvent {
            rev: self.rev,
            key: self.key.clone(),
            kind: self.kind,
            object: self.object.decode(&self.key)?,
            prev,
        }))
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Vec<u8>, Stored>,
    /// Keys of the objects that name each uid in their ownerReferences
    /// (an informer's index: controllers find their pods without scanning
    /// every pod).
    owners: HashMap<String, BTreeSet<Vec<u8>>>,
    history: VecDeque<Hist>,
    /// Watches may resume from any revision ≥ this one.
    window_start: u64,
    rev: u64,
    ready: bool,
}

struct Inner {
    state: RwLock<State>,
    /// The replica that feeds the cache, until the feeder starts.
    store: Mutex<Option<Store>>,
    started: AtomicBool,
    rev: watch::Sender<u64>,
    batches: RwLock<broadcast::Sender<Arc<Batch>>>,
}

/// A handle on the cache (cheap to clone).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// How a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the current state as ADDED events.
    Snapshot,
    /// With the events after this revision.
    After(u64),
}

/// A watch's beginning: the events to send first, the revision they bring
/// the watcher to, and the live batches after it.
pub struct Opened {
    pub initial: Vec<Arc<CacheEvent>>,
    pub rev: u64,
    /// Batches of every change; [`Opened::mine`] picks this watch's.
    pub live: broadcast::Receiver<Arc<Batch>>,
    pub prefix: Vec<u8>,
}

impl Opened {
    /// The events of `batch` under this watch's prefix.
    pub fn mine<'a>(&'a self, batch: &'a Batch) -> impl Iterator<Item = &'a Arc<CacheEvent>> + 'a {
        batch
            .events
            .iter()
            .filter(|e| e.key.starts_with(&self.prefix))
    }
}

fn decode(key: &[u8], value: &[u8], rev: u64) -> Option<Arc<Value>> {
    match serde_json::from_slice::<Value>(value) {
        Ok(v) => Some(Arc::new(super::objects::with_rv(v, rev))),
        Err(e) => {
            tracing::error!(key = %String::from_utf8_lossy(key), "undecodable object in the store: {e}");
            None
        }
    }
}

impl Cache {
    /// Starts a cache fed by `store`'s local replica.
    pub fn start(store: Store) -> Cache {
        let cache = Cache::lazy(store);
        cache.ensure_started();
        cache
    }

    /// A cache that starts (lists the replica and follows it) when it is
    /// first read. Call within a Tokio runtime.
    pub fn lazy(store: Store) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                store: Mutex::new(Some(store)),
                started: AtomicBool::new(false),
                rev: watch::channel(0).0,
                batches: RwLock::new(broadcast::channel(BROADCAST_CAPACITY).0),
            }),
        }
    }

    /// Whether the feeder runs (a lazy cache not read yet does not).
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    fn ensure_started(&self) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self
            .inner
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(store) = store {
            let feeder = self.clone();
            tokio::spawn(async move { feeder.feed(store).await });
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn feed(&self, store: Store) {
        let Some(hub) = store.hub() else {
            tracing::error!("the watch cache needs a local store replica with a hub");
            return;
        };
        loop {
            let mut rx = hub.subscribe();
            let listed = match store.read_state(ReadRequest::prefix(REGISTRY)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("watch cache: cannot list the store: {e}");
                    if hub.receiver_count() == 0 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.reset(&listed.kvs, listed.revision);
            loop {
                match rx.recv().await {
                    Ok(applied) => match &*applied {
                        Applied::Events { events, applied } => {
                            self.apply(&store, events, *applied);
                        }
                        Applied::Reset { .. } => {
                            tracing::info!(
                                "watch cache: the replica installed a snapshot; listing again"
                            );
                            break;
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("watch cache fell {n} batches behind; listing again");
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    /// Replaces the state with a fresh list at `rev`; running watches end
    /// (their broadcast closes) and resume from their last revision.
    fn reset(&self, kvs: &[shoal_store::command::KeyValue], rev: u64) {
        let mut objects = BTreeMap::new();
        for kv in kvs {
            let raw = Raw {
                bytes: kv.value.as_slice().into(),
                rev: kv.mod_rev,
            };
            if let Some(object) = raw.decode(&kv.key) {
                objects.insert(kv.key.clone(), Stored { object, raw });
            }
        }
        let mut st = self.write();
        // A fresh broadcast: receivers of the old one see it closed.
        *self
            .inner
            .batches
            .write()
            .unwrap_or_else(|p| p.into_inner()) = broadcast::channel(BROADCAST_CAPACITY).0;
        st.owners.clear();
        for (key, stored) in &objects {
            for uid in owner_uids(&stored.object) {
                st.owners
                    .entry(uid.to_string())
                    .or_default()
                    .insert(key.clone());
            }
        }
        st.objects = objects;
        st.history.clear();
        st.window_start = rev.max(st.rev);
        st.rev = rev.max(st.rev);
        st.ready = true;
        let r = st.rev;
        drop(st);
        self.inner.rev.send_replace(r);
    }

    fn apply(&self, store: &Store, changes: &[shoal_store::watch::Change], applied: u64) {
        let mut st = self.write();
        let mut out = Vec::new();
        for c in changes {
            let e = &c.event;
            if e.rev <= st.rev || !e.key.starts_with(REGISTRY.as_bytes()) {
                continue;
            }
            let prev = st.objects.get(&e.key).cloned();
            let (event, hist) = match e.kind {
                EventKind::Put => {
                    let mut value = e.value.clone();
                    store.open_value(&e.key, &mut value);
                    let raw = Raw {
                        bytes: value.into(),
                        rev: e.rev,
                    };
                    let Some(object) = raw.decode(&e.key) else {
                        continue;
                    };
                    st.index_owners(&e.key, prev.as_ref().map(|p| &*p.object), Some(&object));
                    st.objects.insert(
                        e.key.clone(),
                        Stored {
                            object: object.clone(),
                            raw: raw.clone(),
                        },
                    );
                    let kind = if prev.is_some() {
                        Kind::Modified
                    } else {
                        Kind::Added
                    };
                    let hist = Hist {
                        rev: e.rev,
                        key: e.key.clone(),
                        kind,
                        object: raw,
                        prev: prev.as_ref().map(|p| p.raw.clone()),
                    };
                    let event = CacheEvent {
                        rev: e.rev,
                        key: e.key.clone(),
                        kind,
                        object,
                        prev: prev.map(|p| p.object),
                    };
                    (event, hist)
                }
                EventKind::Delete => {
                    st.objects.remove(&e.key);
                    if let Some(last) = &prev {
                        st.index_owners(&e.key, Some(&last.object), None);
                    }
                    let Some(last) = prev else { continue };
                    let object = Arc::new(super::objects::with_rv((*last.object).clone(), e.rev));
                    let hist = Hist {
                        rev: e.rev,
                        key: e.key.clone(),
                        kind: Kind::Deleted,
                        object: Raw {
                            bytes: last.raw.bytes.clone(),
                            rev: e.rev,
                        },
                        prev: Some(last.raw),
                    };
                    let event = CacheEvent {
                        rev: e.rev,
                        key: e.key.clone(),
                        kind: Kind::Deleted,
                        object,
                        prev: Some(last.object),
                    };
                    (event, hist)
                }
            };
            st.history.push_back(hist);
            out.push(Arc::new(event));
        }
        while st.history.len() > HISTORY_EVENTS {
            if let Some(old) = st.history.pop_front() {
                st.window_start = st.window_start.max(old.rev);
            }
        }
        st.rev = st.rev.max(applied);
        let rev = st.rev;
        let sender = self
            .inner
            .batches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Sent under the state lock, so a watch that opens under the read
        // lock sees each batch either in its history or live, never both.
        let _ = sender.send(Arc::new(Batch { events: out, rev }));
        drop(st);
        self.inner.rev.send_replace(rev);
    }

    /// The revision the cache reflects.
    pub fn rev(&self) -> u64 {
        *self.inner.rev.borrow()
    }

    /// Waits until the cache reflects at least `rev`.
    pub async fn wait_for(&self, rev: u64, timeout: Duration) -> Result<(), CacheError> {
        self.ensure_started();
        let mut rx = self.inner.rev.subscribe();
        let ready = || self.read().ready;
        let reached = tokio::time::timeout(timeout, async {
            rx.wait_for(|r| *r >= rev && ready()).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CacheError::Stopped),
            Err(_) => Err(CacheError::Behind {
                wanted: rev,
                at: self.rev(),
                waited: timeout,
            }),
        }
    }

    /// Read-your-writes from any API node: a read index from the leader,
    /// then the cache catching up to it. Returns the revision reached.
    pub async fn sync(&self, store: &Store, timeout: Duration) -> Result<u64, CacheError> {
        let index = tokio::time::timeout(timeout, store.read_index())
            .await
            .map_err(|_| CacheError::Store(ClientError::Timeout))?
            .map_err(CacheError::Store)?;
        self.wait_for(index, timeout).await?;
        Ok(self.rev())
    }

    /// One object.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Value>> {
        self.ensure_started();
        self.read().objects.get(key).map(|s| s.object.clone())
    }

    /// The objects under `prefix` that `keep` selects, and the revision of
    /// this view.
    pub fn list(&self, prefix: &[u8], keep: impl Fn(&Value) -> bool) -> (Vec<Arc<Value>>, u64) {
        self.ensure_started();
        let st = self.read();
        let items = st
            .objects
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, s)| keep(&s.object))
            .map(|(_, s)| s.object.clone())
            .collect();
        (items, st.rev)
    }

    /// The objects under `prefix` that name `uid` among their owners,
    /// from the owner index (no scan), and the revision of this view.
    pub fn dependents(&self, uid: &str, prefix: &[u8]) -> (Vec<Arc<Value>>, u64) {
        self.ensure_started();
        let st = self.read();
        // The keys are ordered: only those under `prefix` are visited.
        let items = st
            .owners
            .get(uid)
            .into_iter()
            .flat_map(|keys| keys.range(prefix.to_vec()..))
            .take_while(|k| k.starts_with(prefix))
            .filter_map(|k| st.objects.get(k).map(|s| s.object.clone()))
            .collect();
        (items, st.rev)
    }

    /// The objects under `prefix` that have no controller (no
    /// ownerReference with `controller: true`), from the owner index.
    pub fn orphans(&self, prefix: &[u8]) -> (Vec<Arc<Value>>, u64) {
        self.dependents(ORPHANS, prefix)
    }

    /// Opens a watch of the keys under `prefix`.
    pub fn watch(&self, prefix: &[u8], start: Start) -> Result<Opened, CacheError> {
        self.ensure_started();
        let st = self.read();
        let live = self
            .inner
            .batches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .subscribe();
        let mut replay: Vec<Hist> = Vec::new();
        let mut initial: Vec<Arc<CacheEvent>> = match start {
            Start::Snapshot => st
                .objects
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, s)| {
                    Arc::new(CacheEvent {
                        rev: st.rev,
                        key: k.clone(),
                        kind: Kind::Added,
                        object: s.object.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Start::After(rev) => {
                if rev < st.window_start {
                    return Err(CacheError::Gone {
                        requested: rev,
                        oldest: st.window_start,
                    });
                }
                // Decoded below, outside the lock.
                replay = st
                    .history
                    .iter()
                    .filter(|e| e.rev > rev && e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                Vec::new()
            }
        };
        let rev = match start {
            Start::After(rev) => rev.max(st.rev),
            Start::Snapshot => st.rev,
        };
        drop(st);
        initial.extend(replay.iter().filter_map(Hist::decode));
        Ok(Opened {
            initial,
            rev,
            live,
            prefix: prefix.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(owners: &[&str]) -> Value {
        json!({"metadata": {"name": "p", "ownerReferences":
            owners.iter().map(|u| json!({"kind": "ReplicaSet", "name": "rs", "uid": u, "controller": true})).collect::<Vec<_>>()}})
    }

    #[test]
    fn the_owner_index_follows_owner_references() {
        let mut st = State::default();
        let (a, b) = (
            b"/registry/pods/d/a".to_vec(),
            b"/registry/pods/d/b".to_vec(),
        );
        st.index_owners(&a, None, Some(&pod(&["u1"])));
        st.index_owners(&b, None, Some(&pod(&["u1", "u2"])));
        assert_eq!(st.owners["u1"].len(), 2);
        assert_eq!(st.owners["u2"].len(), 1);
        // b is orphaned from u1 and adopted by u3.
        st.index_owners(&b, Some(&pod(&["u1", "u2"])), Some(&pod(&["u2", "u3"])));
        assert_eq!(st.owners["u1"], BTreeSet::from([a.clone()]));
        assert_eq!(st.owners["u3"], BTreeSet::from([b.clone()]));
        // Deleted: nothing names a uid without dependents.
        st.index_owners(&a, Some(&pod(&["u1"])), None);
        assert!(!st.owners.contains_key("u1"));
        st.index_owners(&b, Some(&pod(&["u2", "u3"])), None);
        assert!(st.owners.is_empty());
        // Without a controller reference an object is an orphan.
        let free = json!({"metadata": {"name": "f", "ownerReferences": [{"uid": "u4"}]}});
        st.index_owners(&a, None, Some(&free));
        assert_eq!(st.owners[ORPHANS], BTreeSet::from([a.clone()]));
        assert_eq!(st.owners["u4"], BTreeSet::from([a.clone()]));
        st.index_owners(&a, Some(&free), Some(&pod(&["u5"])));
        assert!(!st.owners.contains_key(ORPHANS));
    }

    #[test]
    fn a_history_event_decodes_with_its_previous_version() {
        let raw = |v: Value, rev| Raw {
            bytes: serde_json::to_vec(&v).unwrap().into(),
            rev,
        };
        let h = Hist {
            rev: 9,
            key: b"/registry/pods/d/p".to_vec(),
            kind: Kind::Modified,
            object: raw(
                json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}}),
                9,
            ),
            prev: Some(raw(json!({"metadata": {"name": "p"}, "spec": {}}), 4)),
        };
        let e = h.decode().expect("decodes");
        assert_eq!(e.rev, 9);
        assert_eq!(e.object["metadata"]["resourceVersion"], "9");
        assert_eq!(e.object["spec"]["nodeName"], "n1");
        let prev = e.prev.as_deref().expect("prev");
        assert_eq!(prev["metadata"]["resourceVersion"], "4");
        assert!(prev["spec"].get("nodeName").is_none());
        // Bytes that are not JSON are skipped, not a panic.
        let bad = Hist {
            object: Raw {
                bytes: b"{not json".to_vec().into(),
                rev: 10,
            },
            ..h
        };
        assert!(bad.decode().is_none());
    }

    #[test]
    fn cache_errors_say_whether_to_retry_and_map_to_kubernetes_statuses() {
        let gone = CacheError::Gone {
            requested: 3,
            oldest: 10,
        };
        assert!(!gone.is_retryable(), "a too-old watch must list again");
        assert_eq!(ApiError::from(gone).code, 410);
        let behind = CacheError::Behind {
            wanted: 9,
            at: 7,
            waited: Duration::from_secs(1),
        };
        assert!(behind.is_retryable());
        assert_eq!(ApiError::from(behind).code, 504);
        assert!(!CacheError::Stopped.is_retryable());
        assert!(CacheError::Store(ClientError::NoQuorum).is_retryable());
        assert!(!CacheError::Store(ClientError::Invalid("x".into())).is_retryable());
        assert_eq!(
            ApiError::from(CacheError::Store(ClientError::Timeout)).code,
            504
        );
    }
}
