//! Event expiry: upstream gives each Event an etcd lease of `--event-ttl`
//! (1 hour); here the leader's control plane deletes an Event once its
//! `lastTimestamp` (else `eventTime`, else its creation) is older than the
//! configured TTL. The Events are pushed from the watch cache into a
//! timetable ordered by expiry; the task sleeps until the earliest one is
//! due (nothing polls), then deletes what is due in concurrent batches,
//! each delete guarded by the Event's resourceVersion, so an Event that
//! was counted again meanwhile is kept for its new expiry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use shoal_model::cache::{Cache, CacheEvent, Kind, Start};
use shoal_model::registry::Registry;

/// Deletes one batch holds, at most.
const BATCH: usize = 256;

pub struct EventTtl {
    pub cache: Cache,
    pub registry: Registry,
    pub ttl: Duration,
}

fn events() -> &'static shoal_model::resources::Resource {
    &shoal_model::resources::EVENTS
}

/// When an Event expires (unix seconds), from its newest timestamp.
pub fn expiry(ev: &Value, ttl: Duration) -> i64 {
    let at = [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| ev.pointer(p)?.as_str())
    .filter_map(|s| s.parse::<jiff::Timestamp>().ok())
    .map(|t| t.as_second())
    .max()
    .unwrap_or(0);
    at.saturating_add(ttl.as_secs() as i64)
}

/// Events by expiry.
#[derive(Default)]
struct Timetable {
    due: BTreeSet<(i64, Vec<u8>)>,
    at: HashMap<Vec<u8>, i64>,
}

impl Timetable {
    fn set(&mut self, key: &[u8], when: i64) {
        self.remove(key);
        self.due.insert((when, key.to_vec()));
        self.at.insert(key.to_vec(), when);
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(w) = self.at.remove(key) {
            self.due.remove(&(w, key.to_vec()));
        }
    }

    fn apply(&mut self, e: &CacheEvent, ttl: Duration) {
        match e.kind {
            Kind::Deleted => self.remove(&e.key),
            _ => self.set(&e.key, expiry(&e.object, ttl)),
        }
    }

    fn next(&self) -> Option<i64> {
        self.due.first().map(|(w, _)| *w)
    }

    /// The keys due at `now`, at most `n`, taken out of the table.
    fn take_due(&mut self, now: i64, n: usize) -> Vec<Vec<u8>> {
        let keys: Vec<(i64, Vec<u8>)> = self
            .due
            .iter()
            .take_while(|(w, _)| *w <= now)
            .take(n)
            .cloned()
            .collect();
        for (w, k) in &keys {
            self.due.remove(&(*w, k.clone()));
            self.at.remove(k);
        }
        keys.into_iter().map(|(_, k)| k).collect()
    }
}

impl EventTtl {
    pub async fn run(self) {
        let me = Arc::new(self);
        loop {
            let mut opened = match me.cache.watch(&events().prefix(None), Start::Snapshot) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!("event expiry: watch: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut table = Timetable::default();
            for e in &opened.initial {
                table.apply(e, me.ttl);
            }
            let mut last = opened.rev;
            loop {
                let now = jiff::Timestamp::now().as_second();
                let wait = table
                    .next()
                    .map(|w| Duration::from_secs(w.saturating_sub(now).max(0) as u64));
                let sleep = async {
                    match wait {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    batch = opened.live.recv() => {
                        let Ok(batch) = batch else { break };
                        for e in opened.mine(&batch).filter(|e| e.rev > last) {
                            table.apply(e, me.ttl);
                        }
                        last = last.max(batch.rev);
                    }
                    _ = sleep => {
                        let now = jiff::Timestamp::now().as_second();
                        let due = table.take_due(now, BATCH);
                        // A delete that failed (no quorum, say) is tried again.
                        for key in me.delete(due).await {
                            table.set(&key, now + 5);
                        }
                    }
                }
            }
        }
    }

    /// Deletes the Events at `keys` that are still due in the cache;
    /// returns the keys whose delete failed.
    async fn delete(self: &Arc<Self>, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let now = jiff::Timestamp::now().as_second();
        let mut tasks = tokio::task::JoinSet::new();
        for key in keys {
            let Some(ev) = self.cache.get(&key) else {
                continue;
            };
            if expiry(&ev, self.ttl) > now {
                continue; // counted again: the watch has its new expiry
            }
            let me = self.clone();
            tasks.spawn(async move {
                match super::delete_object(&me.registry, events(), &ev, None).await {
                    // Gone or changed: the watch says what is there now.
                    Ok(_) | Err(crate::errors::ReconcileError::Conflict(_)) => None,
                    Err(e) => {
                        tracing::debug!("event expiry: {e}");
                        Some(key)
                    }
                }
            });
        }
        let mut failed = Vec::new();
        while let Some(r) = tasks.join_next().await {
            failed.extend(r.ok().flatten());
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_expires_a_ttl_after_its_last_timestamp() {
        let ttl = Duration::from_secs(3600);
        let ev = json!({"metadata": {"creationTimestamp": "2026-12-07T10:00:00Z"},
                        "lastTimestamp": "2026-12-07T10:30:00Z"});
        let t = "2026-12-07T11:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second();
        assert_eq!(expiry(&ev, ttl), t);
        let mut table = Timetable::default();
        table.set(b"a", 10);
        table.set(b"b", 5);
        table.set(b"a", 20); // moved by a newer count
        assert_eq!(table.next(), Some(5));
        assert_eq!(table.take_due(10, 10), vec![b"b".to_vec()]);
        assert_eq!(table.next(), Some(20));
        assert!(table.take_due(19, 10).is_empty());
    }
}
