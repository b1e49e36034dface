//! Following a few store prefixes as one: list each, hand every key to a
//! [`Follower`], then watch them all from the lowest listed revision and
//! hand over each change as it is pushed. Some prefixes are only watched,
//! never listed (a node may not list Secrets; it learns from the watch
//! which changed, values emptied, and reads the ones it may by key). A watch that breaks resumes from
//! its last revision on another replica; only an expired one lists again.
//! The service proxy follows Services and EndpointSlices this way, the
//! Ingress controller Ingresses, Services, EndpointSlices and Secrets.

use std::time::Duration;

use async_trait::async_trait;
use shoal_store::watch::{WatchEnd, WatchEvent};
use shoal_store::{ReadRequest, Store};

/// What follows the prefixes.
#[async_trait]
pub trait Follower: Send {
    /// Forgets everything: a listing follows.
    fn reset(&mut self);
    /// Takes one key's value (empty: deleted).
    fn apply(&mut self, key: &[u8], value: &[u8]);
    /// Everything listed is applied: the state is whole at `rev`.
    async fn listed(&mut self, rev: u64);
    /// A batch of changes is applied; every prefix is seen up to `rev`.
    async fn changed(&mut self, rev: u64);
}

/// Follows `prefixes` (listed, then watched) and `watched` (only watched)
/// into `f`, forever (`who` names the follower in logs).
pub async fn follow(
    store: &Store,
    who: &str,
    prefixes: &[Vec<u8>],
    watched: &[Vec<u8>],
    f: &mut dyn Follower,
) {
    loop {
        if let Err(e) = follow_once(store, prefixes, watched, f).await {
            tracing::debug!("{who}: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Lists, then follows changes until a watch expires.
async fn follow_once(
    store: &Store,
    prefixes: &[Vec<u8>],
    watched: &[Vec<u8>],
    f: &mut dyn Follower,
) -> Result<(), String> {
    let mut listed = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        listed.push(
            store
                .read(ReadRequest::prefix(p.clone()))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    f.reset();
    for kv in listed.iter().flat_map(|l| &l.kvs) {
        f.apply(&kv.key, &kv.value);
    }
    let mut rev = listed.iter().map(|l| l.revision).min().unwrap_or(0);
    f.listed(rev).await;
    let all: Vec<Vec<u8>> = prefixes.iter().chain(watched).cloned().collect();
    loop {
        let replica = store.watch_replica();
        match watch_from(store, &replica, &all, f, &mut rev).await {
            WatchEnd::Expired(why) => return Err(format!("a watch expired: {why}")),
            WatchEnd::LeaderLost(why) | WatchEnd::Lost(why) => {
                tracing::debug!(%replica, "watches resume from revision {}: {why}", rev + 1);
                store.watch_failed(&replica);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn watch_from(
    store: &Store,
    replica: &str,
    prefixes: &[Vec<u8>],
    f: &mut dyn Follower,
    rev: &mut u64,
) -> WatchEnd {
    let mut subs = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        match store.watch(replica, p, *rev + 1).await {
            Ok(s) => subs.push(s),
            Err(e) => return WatchEnd::Lost(e.to_string()),
        }
    }
    // Each watch's revision; the state is whole up to the lowest.
    let mut revs = vec![*rev; subs.len()];
    loop {
        let (next, i, _) =
            futures::future::select_all(subs.iter_mut().map(|s| Box::pin(s.next()))).await;
        if let Some(end) = take(next, i, &mut revs, f) {
            return end;
        }
        // Whatever else has come already joins this change: a burst of
        // writes costs one sync, not one each.
        for _ in 0..MAX_COALESCED {
            let ready = futures::future::select_all(subs.iter_mut().map(|s| Box::pin(s.next())));
            let Some((next, i, _)) = futures::FutureExt::now_or_never(ready) else {
                break;
            };
            if let Some(end) = take(next, i, &mut revs, f) {
                return end;
            }
        }
        *rev = revs.iter().copied().min().unwrap_or(*rev);
        f.changed(*rev).await;
    }
}

/// The most watch batches joined into one change.
const MAX_COALESCED: usize = 256;

/// Applies one watch message of prefix `i`; the end of the watch, if it
/// ended.
fn take(
    next: Result<WatchEvent, shoal_fabric::actor::SubscriptionEnd>,
    i: usize,
    revs: &mut [u64],
    f: &mut dyn Follower,
) -> Option<WatchEnd> {
    match next {
        Ok(WatchEvent::Events(events)) => {
            for e in events {
                revs[i] = revs[i].max(e.rev);
                f.apply(&e.key, &e.value);
            }
            None
        }
        Ok(WatchEvent::Progress { rev }) => {
            revs[i] = revs[i].max(rev);
            None
        }
        Err(end) => Some(end.into()),
    }
}
