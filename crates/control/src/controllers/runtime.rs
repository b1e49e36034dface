//! The controller runtime, kube-runtime style: a reconciler is an
//! idempotent function of one key (`namespace/name`); a work queue feeds
//! it keys from the watch cache's pushed events (nothing polls), never
//! runs two reconciles of one key at once, remembers a key that changed
//! while its reconcile ran, and acts on a failure by its kind
//! ([`ReconcileError`]): a conflict runs again at once (five in a row back
//! off, so a lagging cache cannot spin a worker), a fenced write drops the
//! key (this node no longer leads), an unavailable store backs off
//! exponentially, and an invalid object gets a Warning Event (fenced, like
//! every control-plane write) and waits for its next change.
//!
//! A key that changed while its reconcile ran runs again after a pause of
//! four times that reconcile's duration (at most 1 s): a reconcile of a
//! few pods runs again at once, while one over a 30,000-pod ReplicaSet,
//! whose pods change thousands of times a second, takes at most a fifth
//! of a core instead of all of it, and each run sees every change since.
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

pub use crate::errors::ReconcileError;
pub use crate::fenced::Fenced;
use shoal_model::events::{EventRecorder, EventType};

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
    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>>;
}

/// Maps a change to the keys it enqueues.
pub type KeyFn = Arc<dyn Fn(&CacheEvent) -> Vec<String> + Send + Sync>;

/// The namespace and name of a `namespace/name` key.
pub fn split_key(key: &str) -> Result<(&str, &str), ReconcileError> {
    key.split_once('/')
        .ok_or_else(|| ReconcileError::invalid(None, "BadKey", format!("bad key {key:?}")))
}

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

/// Keys waiting, running, those that changed while running, and those
/// pausing before they run again.
#[derive(Default)]
struct QueueState {
    ready: BTreeSet<String>,
    running: BTreeSet<String>,
    dirty: BTreeSet<String>,
    pausing: BTreeSet<String>,
    failures: HashMap<String, u32>,
}

/// The pause before a key that changed while it ran runs again: four times
/// the reconcile's duration, at most 1 s.
pub fn rerun_pause(took: Duration) -> Duration {
    took.saturating_mul(4).min(Duration::from_secs(1))
}

/// Pauses shorter than this are not worth a timer.
const NO_PAUSE: Duration = Duration::from_millis(2);

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
        } else if st.pausing.contains(&key) {
            // It runs when its pause ends.
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

    /// Marks `key` done after `result`; returns when to run it again
    /// (`Some(ZERO)`: at once), by the policy of the module note.
    fn finish(&self, key: &str, result: &Result<Action, ReconcileError>) -> Option<Duration> {
        match result {
            Ok(Action::Done) => self.done(key, true),
            Ok(Action::After(d)) => {
                self.done(key, true);
                Some(*d)
            }
            Err(ReconcileError::Conflict(_)) => {
                let again = self.done(key, false);
                let failures = self.lock().failures.get(key).copied().unwrap_or(0);
                if failures <= CONFLICTS_AT_ONCE {
                    Some(Duration::ZERO)
                } else {
                    again
                }
            }
            Err(ReconcileError::Unavailable(_)) => self.done(key, false),
            Err(ReconcileError::Fenced) => {
                self.done(key, true);
                let mut st = self.lock();
                st.dirty.remove(key);
                st.ready.remove(key);
                None
            }
            Err(ReconcileError::Invalid { .. }) => self.done(key, true),
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

    /// Takes a key that changed while it ran (now done) out of the ready
    /// set to pause; false if it was not waiting.
    fn pause(&self, key: &str) -> bool {
        let mut st = self.lock();
        if st.ready.remove(key) {
            st.pausing.insert(key.to_string());
            true
        } else {
            false
        }
    }

    /// Ends a key's pause: it is ready again.
    fn resume(&self, key: String) {
        let mut st = self.lock();
        if st.pausing.remove(&key) {
            drop(st);
            self.add(key);
        }
    }

    pub fn len(&self) -> usize {
        let st = self.lock();
        st.ready.len() + st.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a worker waits for the cache to catch up after a conflict.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Conflicts in a row that run again at once, before backing off.
const CONFLICTS_AT_ONCE: u32 = 5;

/// 10 ms doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    let ms = 10u64.saturating_mul(1u64 << failures.min(20).saturating_sub(1));
    Duration::from_millis(ms.min(30_000))
}

/// What the workers of a controller share besides its queue.
#[derive(Clone)]
pub struct Context {
    /// Where the Warning Events of invalid objects go (fenced).
    pub events: EventRecorder,
    /// The cache and its store: after a conflict the cache catches up with
    /// the store (a read index) before the key runs again, so "at once"
    /// means on the newer object. None: no catching up (unit tests).
    pub catch_up: Option<(Cache, shoal_store::Store)>,
}

/// Runs `r` with `workers` concurrent reconciles until dropped.
pub async fn run<R: Reconciler>(r: Arc<R>, cache: Cache, workers: usize, ctx: Context) {
    let queue = Queue::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (prefix, keys) in r.watches() {
        tasks.spawn(feed(cache.clone(), prefix, keys, queue.clone()));
    }
    for _ in 0..workers.max(1) {
        let (r, queue, ctx) = (r.clone(), queue.clone(), ctx.clone());
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                let began = std::time::Instant::now();
                let result = r.clone().reconcile(key.clone()).await;
                let pause = rerun_pause(began.elapsed());
                let ok = result.is_ok();
                work_done(r.name(), &queue, &ctx, key.clone(), result).await;
                // Changed meanwhile (and so ready again): pause first.
                if ok && pause >= NO_PAUSE && queue.pause(&key) {
                    let q = queue.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(pause).await;
                        q.resume(key);
                    });
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// After one reconcile: the Event of an invalid object, then the key back
/// in the queue when the policy says so.
async fn work_done(
    controller: &str,
    queue: &Queue,
    ctx: &Context,
    key: String,
    result: Result<Action, ReconcileError>,
) {
    let events = &ctx.events;
    if let Err(e) = &result {
        tracing::debug!(controller, %key, "reconcile failed: {e}");
    }
    if let Err(ReconcileError::Invalid {
        object: Some(object),
        reason,
        message,
    }) = &result
    {
        if let Err(e) = events
            .record(object, EventType::Warning, reason, message)
            .await
        {
            tracing::debug!(controller, %key, "the Warning Event: {e}");
        }
    }
    match queue.finish(&key, &result) {
        Some(Duration::ZERO) => {
            if let (Err(ReconcileError::Conflict(_)), Some((cache, store))) =
                (&result, &ctx.catch_up)
            {
                if let Err(e) = cache.sync(store, CATCH_UP).await {
                    tracing::debug!(controller, %key, "catching up after a conflict: {e}");
                }
            }
            queue.add(key)
        }
        Some(after) => {
            let q = queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                q.add(key);
            });
        }
        None => {}
    }
}

/// Enqueues the keys of every change under `prefix`: first the current
/// state, then each event; a watch that ends (cache reset, lag) starts
/// again from a snapshot, so nothing is missed.
async fn feed(cache: Cache, prefix: Vec<u8>, keys: KeyFn, queue: Queue) {
    loop {
        let mut opened = match cache.watch(&prefix, Start::Snapshot) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("controller watch: {e}");
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

/// The end of a reconcile that wrote up to revision `written`: whatever
/// its outcome, wait until the cache holds those writes, so the next
/// reconcile (a conflict's runs at once) never counts from a view without
/// them.
pub async fn settle(
    cache: &Cache,
    written: u64,
    result: Result<Action, ReconcileError>,
) -> Result<Action, ReconcileError> {
    if written > 0 {
        cache.wait_for(written, Duration::from_secs(10)).await?;
    }
    result
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

    /// The back-off policy, on tokio's paused clock: time moves only when
    /// every task waits, so "at once" and "after 10 ms" are exact.
    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_by_their_kind_on_a_fake_clock() {
        use tokio::time::{timeout, Instant};
        let q = Queue::default();
        let store_less = Context {
            events: EventRecorder::new(Arc::new(NoWriter), "test", "here"),
            catch_up: None,
        };
        // Runs one reconcile of "k" that returns `result`; returns when "k"
        // came back (None: not within a minute of fake time).
        async fn after(
            q: &Queue,
            events: &Context,
            result: Result<Action, ReconcileError>,
        ) -> Option<Duration> {
            q.add("k".into());
            assert_eq!(q.next().await, "k");
            let t0 = Instant::now();
            work_done("test", q, events, "k".into(), result).await;
            let back = timeout(Duration::from_secs(60), q.next()).await.ok()?;
            assert_eq!(back, "k");
            let waited = t0.elapsed();
            q.done(&back, true);
            Some(waited)
        }
        let conflict = || Err(ReconcileError::Conflict("changed".into()));
        let unavailable = || Err(ReconcileError::Unavailable("no quorum".into()));
        // Conflict: at once (no fake time passes).
        assert_eq!(
            after(&q, &store_less, conflict()).await,
            Some(Duration::ZERO)
        );
        // Unavailable: 10 ms, then 20 ms, then 40 ms (exponential).
        q.add("k".into());
        assert_eq!(q.next().await, "k");
        let mut got = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            work_done("test", &q, &store_less, "k".into(), unavailable()).await;
            assert_eq!(q.next().await, "k");
            got.push(t0.elapsed());
        }
        assert_eq!(got, [10, 20, 40].map(Duration::from_millis).to_vec());
        q.done("k", true); // success resets the count
                           // Fenced: never again on this node, even if it changed meanwhile.
        q.add("k".into());
        assert_eq!(q.next().await, "k");
        q.add("k".into()); // changed while running
        work_done(
            "test",
            &q,
            &store_less,
            "k".into(),
            Err(ReconcileError::Fenced),
        )
        .await;
        assert!(timeout(Duration::from_secs(60), q.next()).await.is_err());
        assert!(q.is_empty());
        // Invalid: not retried (the Event is the answer), and an After is
        // honoured exactly.
        let invalid = Err(ReconcileError::invalid(None, "Bad", "no"));
        assert_eq!(after(&q, &store_less, invalid).await, None);
        q.done("k", true);
        let later = Ok(Action::After(Duration::from_secs(7)));
        assert_eq!(
            after(&q, &store_less, later).await,
            Some(Duration::from_secs(7))
        );
        // Conflicts in a row: five at once, then back-off.
        q.add("k".into());
        assert_eq!(q.next().await, "k");
        for _ in 0..CONFLICTS_AT_ONCE {
            let t0 = Instant::now();
            work_done("test", &q, &store_less, "k".into(), conflict()).await;
            assert_eq!(q.next().await, "k");
            assert_eq!(t0.elapsed(), Duration::ZERO);
        }
        let t0 = Instant::now();
        work_done("test", &q, &store_less, "k".into(), conflict()).await;
        assert_eq!(q.next().await, "k");
        assert_eq!(
            t0.elapsed(),
            backoff(CONFLICTS_AT_ONCE + 1),
            "the sixth backs off"
        );
    }

    /// A writer that refuses everything (the Events of this unit test).
    struct NoWriter;

    impl shoal_model::writer::Writer for NoWriter {
        fn read(
            &self,
            _: shoal_store::ReadRequest,
        ) -> BoxFuture<'_, Result<shoal_store::ReadResult, shoal_store::ClientError>> {
            Box::pin(async { Err(shoal_store::ClientError::NoQuorum) })
        }

        fn write(
            &self,
            _: shoal_store::command::Txn,
        ) -> BoxFuture<'_, Result<shoal_store::command::TxnResult, shoal_store::ClientError>>
        {
            Box::pin(async { Err(shoal_store::ClientError::NoQuorum) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_that_changed_during_a_long_reconcile_pauses_before_it_runs_again() {
        assert_eq!(
            rerun_pause(Duration::from_millis(1)),
            Duration::from_millis(4)
        );
        assert_eq!(rerun_pause(Duration::from_secs(3)), Duration::from_secs(1));
        let q = Queue::default();
        q.add("k".into());
        assert_eq!(q.next().await, "k");
        q.add("k".into()); // changed while running
        assert_eq!(q.done("k", true), None);
        assert!(q.pause("k"));
        q.add("k".into()); // changes during the pause only wait for it
        assert!(
            tokio::time::timeout(Duration::from_millis(50), q.next())
                .await
                .is_err(),
            "paused keys do not run"
        );
        q.resume("k".into());
        assert_eq!(q.next().await, "k");
        assert!(!q.pause("other"), "only a waiting key pauses");
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
