//! Watch by push: a subscriber sends `Watch{prefix, from_rev}` to
//! `store@<any node>` and that replica pushes ordered, batched events.
//!
//! ```text
//! apply (state machine) ── Applied{events, applied} ──► broadcast hub
//!                                                          │
//! Watch ─► store actor ─► serve(): subscribe to the hub first, then
//!          send history (kv table, from_rev..=applied), then live batches
//!          with rev > applied; Progress{rev} after a quiet second
//! ```
//!
//! Events of one revision always travel in one message, so a subscriber
//! that resumes from `last rev + 1` on another replica sees no gap and no
//! duplicate. The stream ends with a reason the subscriber can act on:
//! `Expired` (from_rev compacted, the subscriber lagged beyond its buffer,
//! or the replica installed a snapshot: re-list and watch again) or
//! `LeaderLost` (this replica has not heard from a leader for longer than
//! an election timeout, so it may be on a minority side and must not serve
//! a silently stale stream).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use shoal_fabric::actor::{RemoteSubscription, Sink, SinkError, SubscriptionEnd};

/// An event with the key's value before it (None if the key was absent),
/// so that filters can tell an object leaving their selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub event: Event,
    pub prev: Option<Vec<u8>>,
}

/// What one applied batch changed, as the state machine publishes it.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Changes of the entries up to `applied`, in revision order.
    Events { events: Vec<Change>, applied: u64 },
    /// A snapshot replaced the state: no events can bridge it.
    Reset { applied: u64 },
}

/// The hub the state machine publishes to.
pub type Hub = broadcast::Sender<Arc<Applied>>;

/// Batches the hub holds for a slow subscriber before it lags.
pub const HUB_CAPACITY: usize = 4096;

pub fn hub() -> Hub {
    broadcast::channel(HUB_CAPACITY).0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub rev: u64,
    pub kind: EventKind,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The new value (empty for a delete).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// The subscription request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    #[serde(with = "serde_bytes")]
    pub prefix: Vec<u8>,
    /// First revision wanted (inclusive); 0 = only what comes next.
    pub from_rev: u64,
    /// Server-side selection on the JSON values (e.g. pods of one node).
    pub filter: Option<FieldFilter>,
}

/// Selects objects whose JSON value has `field` (a dotted path such as
/// `spec.nodeName`; absent counts as "") equal to `equals`, as a
/// Kubernetes field selector does. An object that stops matching is sent
/// as a `Delete` (it left the selection); one that starts matching as a
/// `Put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldFilter {
    pub field: String,
    pub equals: String,
}

impl FieldFilter {
    pub fn matches(&self, value: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) else {
            return false;
        };
        let pointer = format!("/{}", self.field.replace('.', "/"));
        match v.pointer(&pointer) {
            None | Some(serde_json::Value::Null) => self.equals.is_empty(),
            Some(serde_json::Value::String(s)) => *s == self.equals,
            Some(other) => *other == self.equals,
        }
    }

    /// What a watcher with this filter sees of `c` (None: nothing).
    pub fn select(&self, c: Change) -> Option<Event> {
        let was = c.prev.as_deref().is_some_and(|p| self.matches(p));
        match c.event.kind {
            EventKind::Put if self.matches(&c.event.value) => Some(c.event),
            EventKind::Put | EventKind::Delete if was => Some(Event {
                kind: EventKind::Delete,
                value: Vec::new(),
                ..c.event
            }),
            _ => None,
        }
    }
}

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchEvent {
    /// Changes under the prefix, whole revisions, in order.
    Events(Vec<Event>),
    /// Nothing under the prefix changed up to and including `rev`.
    Progress { rev: u64 },
}

impl RemoteSubscription for Watch {
    const TAG: &'static str = "shoal.store.watch/1";
    type Event = WatchEvent;
}

/// Why a watch ended, as the subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// Re-list, then watch again from the listed revision.
    Expired(String),
    /// This replica lost the leader; watch another replica.
    LeaderLost(String),
    /// The stream broke (replica gone, transport): resume elsewhere.
    Lost(String),
}

const EXPIRED: &str = "Expired: ";
const LEADER_LOST: &str = "LeaderLost: ";

impl From<SubscriptionEnd> for WatchEnd {
    fn from(e: SubscriptionEnd) -> WatchEnd {
        match e {
            SubscriptionEnd::Ended(r) if r.starts_with(EXPIRED) => WatchEnd::Expired(r),
            SubscriptionEnd::Ended(r) if r.starts_with(LEADER_LOST) => WatchEnd::LeaderLost(r),
            other => WatchEnd::Lost(other.to_string()),
        }
    }
}

/// The changes an applied transaction made (deletes of absent keys make
/// none).
pub fn events_of(txn: &super::command::Txn, r: &super::command::TxnResult) -> Vec<Change> {
    let ops = if r.succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    ops.iter()
        .zip(&r.prev)
        .filter_map(|(op, prev)| {
            let event = match op {
                super::command::Op::Put { key, value } => Event {
                    rev: r.revision,
                    kind: EventKind::Put,
                    key: key.clone(),
                    value: value.clone(),
                },
                super::command::Op::Delete { key } => {
                    prev.as_ref()?;
                    Event {
                        rev: r.revision,
                        kind: EventKind::Delete,
                        key: key.clone(),
                        value: Vec::new(),
                    }
                }
            };
            Some(Change {
                event,
                prev: prev.as_ref().map(|p| p.value.clone()),
            })
        })
        .collect()
}

/// Most events in one message (whole revisions are never split, so one
/// large revision may exceed it).
const EVENTS_PER_MESSAGE: usize = 256;

/// Puts live events in the order history has them: by revision, then key,
/// one event per key and revision (the last write wins, as in the table).
fn normalize(events: &mut Vec<Event>) {
    events.reverse();
    events.sort_by(|a, b| (a.rev, &a.key).cmp(&(b.rev, &b.key)));
    events.dedup_by(|dup, kept| dup.rev == kept.rev && dup.key == kept.key);
}

/// Groups `events` (in revision order) into messages of whole revisions.
pub fn chunk_by_revision(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut out: Vec<Vec<Event>> = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    for e in events {
        let new_rev = cur.last().is_some_and(|l| l.rev != e.rev);
        if new_rev && cur.len() >= EVENTS_PER_MESSAGE {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(e);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What the serving loop needs from the store.
pub trait WatchSource: Send + Sync + 'static {
    /// History under `prefix` with from ≤ rev ≤ min(from + window - 1,
    /// applied), the applied revision it was read at, and the compaction
    /// revision.
    fn history(
        &self,
        prefix: &[u8],
        from: u64,
        window: u64,
    ) -> impl std::future::Future<Output = Result<(Vec<Change>, u64, u64), String>> + Send;
    /// How long this replica has been without a leader it hears from.
    fn leaderless_for(&self) -> Duration;
    /// Makes a value readable (secrets are sealed in the store).
    fn open(&self, key: &[u8], value: &mut Vec<u8>);
}

/// Revisions of history read (and held) at a time by a watch that starts
/// in the past.
pub const HISTORY_WINDOW: u64 = 1024;

/// Which keys' values a watcher sees emptied (see `access`).
pub type Hides = std::sync::Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// Serves one watch until the subscriber leaves or the stream must end.
pub async fn serve<S: WatchSource>(
    src: S,
    hub: Hub,
    req: Watch,
    sink: Sink<WatchEvent>,
    leader_lost_after: Duration,
    hides: Hides,
) {
    let visible = |mut c: Change| -> Option<Event> {
        if hides(&c.event.key) {
            c.event.value.clear();
            if let Some(p) = c.prev.as_mut() {
                p.clear();
            }
        } else {
            src.open(&c.event.key, &mut c.event.value);
            if let Some(p) = c.prev.as_mut() {
                src.open(&c.event.key, p);
            }
        }
        match &req.filter {
            None => Some(c.event),
            Some(f) => f.select(c),
        }
    };
    // History is read and sent a window of revisions at a time, so a watch
    // from the oldest revision holds one window in memory, not the whole
    // history. The hub is subscribed to only for the last window (the one
    // that reaches the applied revision), so nothing applied after it is
    // missed and nothing piles up while older windows stream.
    let mut from = req.from_rev;
    let mut live = None;
    let last = loop {
        if live.is_none() && from == 0 {
            live = Some(hub.subscribe());
        }
        let (history, applied, compacted) =
            match src.history(&req.prefix, from, HISTORY_WINDOW).await {
                Ok(h) => h,
                Err(e) => return sink.end(&format!("store unavailable: {e}")).await,
            };
        if from != 0 && from <= compacted {
            let why = format!(
                "{EXPIRED}revision {from} is compacted (history starts at {})",
                compacted + 1
            );
            return sink.end(&why).await;
        }
        let history: Vec<Event> = history.into_iter().filter_map(visible).collect();
        for chunk in chunk_by_revision(history) {
            if sink.send(&WatchEvent::Events(chunk)).await.is_err() {
                return;
            }
        }
        if from == 0 {
            break applied;
        }
        let to = applied.min(from.saturating_add(HISTORY_WINDOW - 1));
        from = to + 1;
        if to >= applied {
            if live.is_some() {
                break applied;
            }
            // Caught up: subscribe, then read what was applied since.
            live = Some(hub.subscribe());
        }
    };
    let Some(mut live) = live else {
        return sink.end("store unavailable: no subscription").await;
    };
    let mut last = last;
    let mut quiet_since = tokio::time::Instant::now();
    let mut check = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            got = live.recv() => match got {
                Ok(batch) => match &*batch {
                    Applied::Reset { .. } => {
                        let why = format!("{EXPIRED}this replica installed a snapshot");
                        return sink.end(&why).await;
                    }
                    Applied::Events { events, applied } => {
                        let mut mine: Vec<Event> = events
                            .iter()
                            .filter(|c| c.event.rev > last && c.event.key.starts_with(&req.prefix))
                            .cloned()
                            .filter_map(visible)
                            .collect();
                        last = last.max(*applied);
                        if mine.is_empty() {
                            continue;
                        }
                        normalize(&mut mine);
                        match sink.try_send(&WatchEvent::Events(mine)) {
                            Ok(()) => quiet_since = tokio::time::Instant::now(),
                            Err(SinkError::Full) => {
                                let why = format!("{EXPIRED}the subscriber fell too far behind");
                                return sink.end(&why).await;
                            }
                            Err(SinkError::Closed) => return,
                        }
                    }
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let why = format!("{EXPIRED}the subscriber fell {n} batches behind");
                    return sink.end(&why).await;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return sink.end("store stopped").await;
                }
            },
            _ = check.tick() => {
                if sink.is_closed() {
                    return;
                }
                let lost = src.leaderless_for();
                if lost > leader_lost_after {
                    let why = format!("{LEADER_LOST}no leader heard for {lost:?}");
                    return sink.end(&why).await;
                }
                if quiet_since.elapsed() >= Duration::from_secs(1) {
                    match sink.try_send(&WatchEvent::Progress { rev: last }) {
                        Ok(()) => quiet_since = tokio::time::Instant::now(),
                        Err(SinkError::Full) => {}
                        Err(SinkError::Closed) => return,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: u64, key: &str) -> Event {
        Event {
            rev,
            kind: EventKind::Put,
            key: key.as_bytes().to_vec(),
            value: vec![],
        }
    }

    #[test]
    fn chunks_never_split_a_revision() {
        let mut events = Vec::new();
        for rev in 1..=10u64 {
            for k in 0..100 {
                events.push(ev(rev, &format!("k{k}")));
            }
        }
        let chunks = chunk_by_revision(events);
        let mut seen = 0;
        for c in &chunks {
            seen += c.len();
            // A chunk starts at the first event of its revision.
            let first = c[0].rev;
            assert_eq!(c.iter().filter(|e| e.rev == first).count(), 100);
        }
        assert_eq!(seen, 1000);
        assert!(chunks.len() > 1);
    }

    #[test]
    fn a_field_filter_sees_objects_enter_and_leave() {
        let f = FieldFilter {
            field: "spec.nodeName".into(),
            equals: "node-2".into(),
        };
        let pod = |n: Option<&str>| match n {
            Some(n) => format!(r#"{{"spec":{{"nodeName":"{n}"}}}}"#).into_bytes(),
            None => br#"{"spec":{}}"#.to_vec(),
        };
        let put = |v: Vec<u8>, prev: Option<Vec<u8>>| Change {
            event: Event {
                rev: 7,
                kind: EventKind::Put,
                key: b"/p".to_vec(),
                value: v,
            },
            prev,
        };
        // Enters: a put.
        let e = f.select(put(pod(Some("node-2")), Some(pod(None)))).unwrap();
        assert_eq!(e.kind, EventKind::Put);
        // Leaves: a delete, without the new value.
        let e = f
            .select(put(pod(Some("node-3")), Some(pod(Some("node-2")))))
            .unwrap();
        assert_eq!((e.kind, e.value.len()), (EventKind::Delete, 0));
        // Never matched: nothing.
        assert!(f.select(put(pod(Some("node-3")), None)).is_none());
        assert!(f.select(put(b"not json".to_vec(), None)).is_none());
        // Deleted while matching: a delete; deleted elsewhere: nothing.
        let del = |prev: Vec<u8>| Change {
            event: Event {
                rev: 8,
                kind: EventKind::Delete,
                key: b"/p".to_vec(),
                value: vec![],
            },
            prev: Some(prev),
        };
        assert_eq!(
            f.select(del(pod(Some("node-2")))).unwrap().kind,
            EventKind::Delete
        );
        assert!(f.select(del(pod(Some("node-1")))).is_none());
        // An absent field equals "" (unscheduled pods).
        let unscheduled = FieldFilter {
            field: "spec.nodeName".into(),
            equals: String::new(),
        };
        assert!(unscheduled.matches(&pod(None)));
        assert!(!unscheduled.matches(&pod(Some("node-1"))));
    }

    #[test]
    fn end_reasons_are_classified() {
        let e: WatchEnd = SubscriptionEnd::Ended(format!("{EXPIRED}x")).into();
        assert!(matches!(e, WatchEnd::Expired(_)));
        let e: WatchEnd = SubscriptionEnd::Ended(format!("{LEADER_LOST}x")).into();
        assert!(matches!(e, WatchEnd::LeaderLost(_)));
        let e: WatchEnd = SubscriptionEnd::Ended("store stopped".into()).into();
        assert!(matches!(e, WatchEnd::Lost(_)));
    }

    /// A history of `revs` revisions of one change each; counts the
    /// changes it has produced.
    struct Fake {
        revs: u64,
        produced: Arc<std::sync::atomic::AtomicU64>,
    }

    impl WatchSource for Fake {
        async fn history(
            &self,
            _prefix: &[u8],
            from: u64,
            window: u64,
        ) -> Result<(Vec<Change>, u64, u64), String> {
            let to = self.revs.min(from.saturating_add(window - 1));
            let out: Vec<Change> = (from..=to)
                .map(|r| Change {
                    event: ev(r, &format!("/k/{r}")),
                    prev: None,
                })
                .collect();
            self.produced
                .fetch_add(out.len() as u64, std::sync::atomic::Ordering::SeqCst);
            Ok((out, self.revs, 0))
        }
        fn leaderless_for(&self) -> Duration {
            Duration::ZERO
        }
        fn open(&self, _key: &[u8], _value: &mut Vec<u8>) {}
    }

    #[tokio::test]
    async fn a_watch_from_the_oldest_revision_reads_its_history_a_window_at_a_time() {
        let revs = 10 * HISTORY_WINDOW;
        let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let src = Fake {
            revs,
            produced: produced.clone(),
        };
        let (sink, mut sub) = Sink::channel(1);
        let req = Watch {
            prefix: b"/k/".to_vec(),
            from_rev: 1,
            filter: None,
        };
        let hides: Hides = Arc::new(|_: &[u8]| false);
        let server = tokio::spawn(serve(src, hub(), req, sink, Duration::from_secs(60), hides));
        let mut next = 1;
        let mut first = true;
        while next <= revs {
            match sub.next().await.unwrap() {
                WatchEvent::Events(events) => {
                    if first {
                        // Sent before the rest of the history was read: at
                        // most the next window is read while this one waits.
                        let held = produced.load(std::sync::atomic::Ordering::SeqCst);
                        assert!(held <= 2 * HISTORY_WINDOW, "{held} changes read up front");
                        first = false;
                    }
                    for e in events {
                        assert_eq!(e.rev, next, "in order, each once");
                        next += 1;
                    }
                }
                WatchEvent::Progress { .. } => {}
            }
        }
        assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), revs);
        server.abort();
    }
}
