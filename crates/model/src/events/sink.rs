//! The queue behind [`EventRecorder::emit`]: upstream's event broadcaster
//! and correlator (client-go `tools/record`), one task per recorder.
//!
//! 1. **Spam filter.** A token bucket per source and object: 25 Events,
//!    then one more every 5 minutes. An Event without a token is dropped.
//! 2. **Aggregation.** Events of one object, type and reason with
//!    different messages: after 10 distinct messages within 10 minutes the
//!    rest fold into one Event whose message is `(combined from similar
//!    events): <latest message>`.
//! 3. **Series.** Repeats of one Event raise its `count` and move its
//!    `lastTimestamp`; the recorder remembers the Events it wrote (4,096 at
//!    most), so a repeat is written without reading the store first.
//! 4. **Batches.** Whatever queued while the previous writes ran is folded
//!    (same Event: one write with the summed count) and written at once;
//!    the store's group commit puts concurrent writes into one Raft entry.
//!
//! The queue holds 4,096 Events; a full queue drops the Event, as
//! upstream's broadcaster does. Events never hold their caller up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{EventRecorder, EventType, ObjectRef};

/// Events queued and not yet written, at most.
const QUEUE: usize = 4096;
/// Events one batch writes, at most.
const BATCH: usize = 512;
/// Entries each correlator table keeps, at most (upstream's LRU size).
const REMEMBERED: usize = 4096;
/// Upstream's spam filter: a burst of 25, then one per 5 minutes.
pub const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Upstream's aggregation: 10 distinct messages within 10 minutes.
pub const AGGREGATE_AFTER: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);

/// What the sink did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Events taken by `emit`.
    pub emitted: u64,
    /// Dropped: the queue was full, or the spam filter said no.
    pub dropped: u64,
    /// Store writes made (one per distinct Event per batch).
    pub writes: u64,
    /// Writes that failed (logged; Events are best effort).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    emitted: AtomicU64,
    dropped: AtomicU64,
    writes: AtomicU64,
    failed: AtomicU64,
}

struct Queued {
    obj: ObjectRef,
    ty: EventType,
    reason: String,
    message: String,
}

/// A recorder's queue and counters (the task holds the other end).
pub(super) struct Sink {
    tx: mpsc::Sender<Queued>,
    counters: Arc<Counters>,
}

impl Sink {
    pub(super) fn start(recorder: EventRecorder) -> Sink {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        // The task's recorder has a sink of its own (never started), so it
        // holds no sender of this queue: when the last recorder that emits
        // into it goes (a control plane that stopped leading), the queue
        // closes and the task ends.
        let writer = EventRecorder {
            sink: Arc::default(),
            ..recorder
        };
        tokio::spawn(run(writer, rx, counters.clone()));
        Sink { tx, counters }
    }

    pub(super) fn push(&self, obj: ObjectRef, ty: EventType, reason: &str, message: &str) {
        self.counters.emitted.fetch_add(1, Ordering::Relaxed);
        let q = Queued {
            obj,
            ty,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if self.tx.try_send(q).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn stats(&self) -> SinkStats {
        let c = &self.counters;
        SinkStats {
            emitted: c.emitted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

/// A map that forgets its oldest entries beyond [`REMEMBERED`].
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> Bounded<V> {
    fn new() -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn entry(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(key) {
            while self.map.len() >= REMEMBERED {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key.to_string());
            self.map.insert(key.to_string(), make());
        }
        self.map.get_mut(key).expect("just inserted")
    }
}

/// A token bucket of the spam filter.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Distinct messages of one series within the aggregation window.
struct Similar {
    since: Instant,
    messages: std::collections::HashSet<String>,
}

/// The correlator's memory: spam buckets, similar-message sets, and the
/// Events this recorder wrote (their last value and revision).
pub(super) struct Correlator {
    buckets: Bounded<Bucket>,
    similar: Bounded<Similar>,
    written: Bounded<Option<(Value, u64)>>,
}

impl Correlator {
    pub(super) fn new() -> Correlator {
        Correlator {
            buckets: Bounded::new(),
            similar: Bounded::new(),
            written: Bounded::new(),
        }
    }

    /// Whether the spam filter lets an Event about `obj` through at `now`.
    pub(super) fn allow(&mut self, source: &str, obj: &ObjectRef, now: Instant) -> bool {
        let key = format!(
            "{source}\0{}\0{}\0{}\0{}",
            obj.kind, obj.namespace, obj.name, obj.uid
        );
        let b = self.buckets.entry(&key, || Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        b.tokens = (b.tokens + refill).min(SPAM_BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The message an Event is written with: its own, or once its series
    /// has had [`AGGREGATE_AFTER`] distinct messages, the combined one
    /// (which folds them into one Event).
    pub(super) fn aggregate(
        &mut self,
        obj: &ObjectRef,
        ty: EventType,
        reason: &str,
        message: &str,
        now: Instant,
    ) -> String {
        let key = format!(
            "{}\0{}\0{}\0{}\0{}\0{reason}",
            obj.kind,
            obj.namespace,
            obj.name,
            obj.uid,
            ty.as_str()
        );
        let s = self.similar.entry(&key, || Similar {
            since: now,
            messages: Default::default(),
        });
        if now.saturating_duration_since(s.since) > AGGREGATE_WINDOW {
            s.since = now;
            s.messages.clear();
        }
        if s.messages.len() < AGGREGATE_AFTER * 4 {
            s.messages.insert(message.to_string());
        }
        if s.messages.len() > AGGREGATE_AFTER {
            format!("(combined from similar events): {message}")
        } else {
            message.to_string()
        }
    }
}

/// One Event to write: the first of its kind in the batch, and how many.
struct Folded {
    q: Queued,
    name: String,
    n: u64,
}

async fn run(recorder: EventRecorder, mut rx: mpsc::Receiver<Queued>, counters: Arc<Counters>) {
    let mut corr = Correlator::new();
    let source = format!("{}\0{}", recorder.component, recorder.host);
    while let Some(first) = rx.recv().await {
        let now = Instant::now();
        let mut batch: Vec<Folded> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut next = Some(first);
        while let Some(mut q) = next.take() {
            if corr.allow(&source, &q.obj, now) {
                let combined = corr.aggregate(&q.obj, q.ty, &q.reason, &q.message, now);
                // A combined series is one Event whatever its latest message.
                let name_of = if combined != q.message {
                    "(combined from similar events)"
                } else {
                    q.message.as_str()
                };
                let name = recorder.event_name(&q.obj, q.ty, &q.reason, name_of);
                q.message = combined;
                match index.get(&name) {
                    Some(&i) => {
                        batch[i].n += 1;
                        batch[i].q.message = q.message;
                    }
                    None => {
                        index.insert(name.clone(), batch.len());
                        batch.push(Folded { q, name, n: 1 });
                    }
                }
            } else {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let mut writes = tokio::task::JoinSet::new();
        for f in batch {
            let known = corr.written.entry(&f.name, || None).take();
            let r = recorder.clone();
            writes.spawn(async move {
                let out = r
                    .fold(
                        &f.q.obj,
                        f.q.ty,
                        &f.q.reason,
                        &f.q.message,
                        &f.name,
                        f.n,
                        known,
                    )
                    .await;
                (f.name, f.q.reason, out)
            });
        }
        while let Some(done) = writes.join_next().await {
            counters.writes.fetch_add(1, Ordering::Relaxed);
            match done {
                Ok((name, _, Ok(written))) => {
                    *corr.written.entry(&name, || None) = Some(written);
                }
                Ok((_, reason, Err(e))) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(component = %recorder.component, %reason, "writing an Event: {e}");
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("writing an Event: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: "d".into(),
            name: name.into(),
            uid: format!("u-{name}"),
        }
    }

    #[test]
    fn the_spam_filter_allows_a_burst_then_one_per_five_minutes() {
        let mut c = Correlator::new();
        let t0 = Instant::now();
        let allowed = (0..100)
            .filter(|_| c.allow("kubelet", &obj("a"), t0))
            .count();
        assert_eq!(allowed, SPAM_BURST as usize);
        // Another object has its own bucket.
        assert!(c.allow("kubelet", &obj("b"), t0));
        assert!(!c.allow("kubelet", &obj("a"), t0 + Duration::from_secs(299)));
        assert!(c.allow("kubelet", &obj("a"), t0 + Duration::from_secs(600)));
    }

    #[test]
    fn similar_messages_are_combined_after_ten() {
        let mut c = Correlator::new();
        let t0 = Instant::now();
        let msgs: Vec<String> = (0..12)
            .map(|i| {
                c.aggregate(
                    &obj("rs"),
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: p{i}"),
                    t0,
                )
            })
            .collect();
        assert_eq!(msgs[9], "Created pod: p9");
        assert_eq!(msgs[10], "(combined from similar events): Created pod: p10");
        // A repeat of an old message is not a new one; the window resets.
        let later = t0 + AGGREGATE_WINDOW + Duration::from_secs(1);
        assert_eq!(
            c.aggregate(
                &obj("rs"),
                EventType::Normal,
                "SuccessfulCreate",
                "Created pod: p0",
                later
            ),
            "Created pod: p0"
        );
    }

    /// A writer that accepts every write (counts them).
    struct Accepting(std::sync::atomic::AtomicU64);

    impl crate::writer::Writer for Accepting {
        fn read(
            &self,
            _: shoal_store::ReadRequest,
        ) -> futures::future::BoxFuture<'_, Result<shoal_store::ReadResult, shoal_store::ClientError>>
        {
            Box::pin(async { Err(shoal_store::ClientError::NoQuorum) })
        }

        fn write(
            &self,
            _: shoal_store::command::Txn,
        ) -> futures::future::BoxFuture<
            '_,
            Result<shoal_store::command::TxnResult, shoal_store::ClientError>,
        > {
            let revision = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                Ok(shoal_store::command::TxnResult {
                    succeeded: true,
                    revision,
                    prev: Vec::new(),
                })
            })
        }
    }

    #[tokio::test]
    async fn the_sink_writes_then_ends_with_the_last_recorder() {
        let writer = Arc::new(Accepting(std::sync::atomic::AtomicU64::new(0)));
        let r = EventRecorder::new(writer.clone(), "test", "here");
        r.emit(
            &obj("a"),
            EventType::Normal,
            "Started",
            "Started container c",
        );
        r.emit(
            &obj("a"),
            EventType::Normal,
            "Started",
            "Started container c",
        );
        use shoal_fabric::testing::wait_until;
        wait_until(Duration::from_secs(5), || async {
            let st = r.stats();
            (st.writes >= 1).then_some(()).ok_or(format!("{st:?}"))
        })
        .await
        .unwrap();
        // The two folded into one write.
        assert_eq!((r.stats().emitted, r.stats().writes), (2, 1));
        drop(r);
        // The task held the writer; once it ends only this test does.
        wait_until(Duration::from_secs(5), || async {
            let n = Arc::strong_count(&writer);
            (n == 1).then_some(()).ok_or(format!("{n} holders"))
        })
        .await
        .unwrap();
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut b: Bounded<u32> = Bounded::new();
        for i in 0..(REMEMBERED + 10) {
            *b.entry(&i.to_string(), || 0) += 1;
        }
        assert_eq!(b.map.len(), REMEMBERED);
        assert!(!b.map.contains_key("0"));
    }
}
