//! Upstream's slow start, as a window: a controller that creates many
//! objects starts one create, and each create that succeeds lets two more
//! go (the window doubles every round trip, as TCP's slow start), up to
//! [`MAX_WINDOW`] in flight; the first failure stops new creates and is
//! returned once those in flight have ended. A template the API refuses
//! costs one create, not hundreds; a healthy one reaches full concurrency
//! after a few round trips and then keeps the store's group commit full
//! (no barrier between batches: a batch waits for its slowest create,
//! which for one big ReplicaSet halved the pods per Raft entry).

use std::future::Future;

use crate::errors::ReconcileError;

/// Creates in flight at most: beyond this they only queue in the store's
/// group commit (`MAX_TXNS` per entry, a few entries in flight).
pub const MAX_WINDOW: usize = 2048;

/// Runs `make(i)` for i in 0..n under the window; returns the outputs of
/// those that succeeded and the first failure.
pub async fn run<T, F, Fut>(n: usize, mut make: F) -> (Vec<T>, Option<ReconcileError>)
where
    T: Send + 'static,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, ReconcileError>> + Send + 'static,
{
    let mut done = Vec::with_capacity(n);
    let mut failed: Option<ReconcileError> = None;
    let mut tasks = tokio::task::JoinSet::new();
    let (mut next, mut window) = (0, 1usize);
    loop {
        while failed.is_none() && next < n && tasks.len() < window {
            tasks.spawn(make(next));
            next += 1;
        }
        let Some(r) = tasks.join_next().await else {
            break;
        };
        match r {
            Ok(Ok(t)) => {
                done.push(t);
                window = (window + 1).min(MAX_WINDOW);
            }
            Ok(Err(e)) => {
                failed.get_or_insert(e);
            }
            Err(e) => {
                failed.get_or_insert(ReconcileError::Unavailable(e.to_string()));
            }
        }
    }
    (done, failed)
}

/// Creates `pods` (built by `make(i)`, i in 0..n) in `ns` for `owner`
/// under the window, each success a `SuccessfulCreate` Event about the
/// owner; raises `last` to the highest revision written. A pod the API's
/// rules refuse is upstream's `FailedCreate` Warning about the owner.
pub async fn create_pods<F>(
    reg: &shoal_model::registry::Registry,
    events: &shoal_model::events::EventRecorder,
    owner: &serde_json::Value,
    n: usize,
    make: F,
    last: &mut u64,
) -> Result<(), ReconcileError>
where
    F: Fn(usize) -> serde_json::Value,
{
    use shoal_model::events::{EventType, ObjectRef};
    use shoal_model::objects;
    let ns = objects::namespace_of(owner).to_string();
    let (made, failed) = run(n, |i| {
        let (reg, pod, ns) = (reg.clone(), make(i), ns.clone());
        async move {
            let made = reg
                .create(&shoal_model::resources::PODS, &ns, pod.clone(), false)
                .await;
            made.map_err(|e| ReconcileError::from(e).about(&pod))
        }
    })
    .await;
    let me = ObjectRef::of(owner);
    for pod in &made {
        *last = (*last).max(objects::rv_of(pod).ok().flatten().unwrap_or(0));
        let msg = format!("Created pod: {}", objects::name_of(pod));
        events.emit(&me, EventType::Normal, "SuccessfulCreate", &msg);
    }
    match failed {
        None => Ok(()),
        Some(ReconcileError::Invalid { message, .. }) => Err(ReconcileError::invalid(
            Some(me),
            "FailedCreate",
            format!("Error creating: {message}"),
        )),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn the_window_grows_and_the_first_failure_stops_new_creates() {
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (ok, err) = run(3000, |i| {
            let (peak, now) = (peak.clone(), now.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            }
        })
        .await;
        assert_eq!(ok.len(), 3000);
        assert!(err.is_none());
        assert!(peak.load(Ordering::SeqCst) <= MAX_WINDOW);
        // A template that always fails: one create, then nothing more.
        let tried = Arc::new(AtomicUsize::new(0));
        let (ok, err) = run(500, |_| {
            let tried = tried.clone();
            async move {
                tried.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ReconcileError::invalid(None, "Bad", "refused"))
            }
        })
        .await;
        assert!(ok.is_empty() && err.is_some());
        assert_eq!(tried.load(Ordering::SeqCst), 1);
    }
}
