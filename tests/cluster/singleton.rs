//! Leader-follow singletons with fencing (store part 2): a singleton runs
//! on the leader under its token; cut off, the old leader's singleton gets
//! nothing applied once a new leader is elected, and the singleton runs on
//! the new leader within a bound.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use shoal::store::command::{FenceToken, Txn};
use shoal::store::singleton::{Singleton, SingletonCtx, SingletonHost};
use shoal::store::ClientError;
use shoal_harness::{wait_until, TestCluster};

/// One write attempt: (node, term, when, revision or error).
type Log = Arc<Mutex<Vec<(String, u64, Instant, Result<u64, String>)>>>;

/// Writes `/singleton/<node>/<n>` every 50 ms with its fence token.
struct Ticker {
    log: Log,
}

impl Singleton for Ticker {
    fn name(&self) -> &str {
        "ticker"
    }
    fn run(&self, ctx: SingletonCtx) -> BoxFuture<'static, ()> {
        let log = self.log.clone();
        Box::pin(async move {
            let node = ctx.store.node().to_string();
            for n in 0u64.. {
                let key = format!("/singleton/{node}/{n:05}");
                let r = ctx
                    .store
                    .propose_fenced(ctx.token, Txn::put(key, "x"))
                    .await;
                log.lock().unwrap().push((
                    node.clone(),
                    ctx.token.term,
                    Instant::now(),
                    r.map(|r| r.revision).map_err(|e| e.to_string()),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

fn first_ok(log: &Log, node: &str) -> Option<u64> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(n, ..)| n == node)
        .find_map(|(.., r)| r.as_ref().ok().copied())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leaders_singleton_gets_nothing_applied_and_the_new_leader_runs_it() {
    let c = TestCluster::start(3).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let log: Log = Arc::default();
    let mut hosts: Vec<SingletonHost> = Vec::new();
    for i in 1..=3 {
        let log = log.clone();
        hosts.push(
            c.on(i, move |h| async move {
                SingletonHost::start(h.store.clone(), vec![Arc::new(Ticker { log })])
            })
            .await,
        );
    }
    // The singleton runs on the leader, and only there.
    let running = wait_until(Duration::from_secs(20), || async {
        let l = log.lock().unwrap();
        let ok: std::collections::HashSet<&String> = l
            .iter()
            .filter(|(.., r)| r.is_ok())
            .map(|(n, ..)| n)
            .collect();
        if ok.len() == 1 && l.iter().filter(|(.., r)| r.is_ok()).count() >= 5 {
            Ok(())
        } else {
            Err(format!("{} attempts by {ok:?}", l.len()))
        }
    })
    .await;
    running.unwrap();
    let old = log
        .lock()
        .unwrap()
        .iter()
        .find(|(.., r)| r.is_ok())
        .unwrap()
        .0
        .clone();
    let old_term = log.lock().unwrap()[0].1;

    // A stale token is refused by the state machine itself.
    let i = c.index_of(&old).expect("a node of this cluster");
    let stale = c
        .on(i, move |h| async move {
            let id = h.store.raft_id();
            let token = FenceToken {
                term: old_term.saturating_sub(1),
                node: id,
            };
            h.store
                .propose_fenced(token, Txn::put("/singleton/stale", "x"))
                .await
        })
        .await;
    assert!(matches!(stale, Err(ClientError::Fenced)), "{stale:?}");
    // So is an Event the control plane records with it (the recorder
    // writes through the fenced writer), and nothing is left behind.
    let (event, left) = c
        .on(i, move |h| async move {
            let stale = shoal::controllers::runtime::Fenced {
                store: h.store.clone(),
                token: FenceToken {
                    term: old_term.saturating_sub(1),
                    node: h.store.raft_id(),
                },
            };
            let events = shoal::model::events::EventRecorder::new(
                std::sync::Arc::new(stale),
                "default-scheduler",
                "here",
            );
            let pod = shoal::model::events::ObjectRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: "default".into(),
                name: "p".into(),
                uid: "u".into(),
            };
            let event = events
                .record(
                    &pod,
                    shoal::model::events::EventType::Warning,
                    "FailedScheduling",
                    "stale",
                )
                .await;
            let left = h
                .store
                .read(shoal::store::ReadRequest::prefix("/registry/events/"))
                .await
                .map(|r| r.kvs.len());
            (event, left)
        })
        .await;
    assert!(matches!(event, Err(ClientError::Fenced)), "{event:?}");
    assert_eq!(left.unwrap(), 0, "a fenced Event writes nothing");

    // Cut the leader off: a new leader is elected, and the singleton runs
    // there within a bound.
    let others: Vec<String> = (1..=3)
        .map(|i| format!("node-{i}"))
        .filter(|n| *n != old)
        .collect();
    let cut = Instant::now();
    c.partition(std::slice::from_ref(&old), &others);
    let moved = wait_until(Duration::from_secs(10), || async {
        let l = log.lock().unwrap();
        match l
            .iter()
            .find(|(n, _, t, r)| *n != old && *t > cut && r.is_ok())
        {
            Some((n, ..)) => {
                let _ = n;
                Ok(())
            }
            None => Err(format!("{} attempts", l.len())),
        }
    })
    .await;
    let took = moved.unwrap();
    let new = log
        .lock()
        .unwrap()
        .iter()
        .find(|(n, _, t, r)| *n != old && *t > cut && r.is_ok())
        .unwrap()
        .0
        .clone();
    eprintln!("the singleton moved from {old} to {new} in {took:?}");
    // The old leader's singleton stays cut off (its proposal in flight)
    // while the new leader's singleton applies ten more writes.
    let busy = wait_until(Duration::from_secs(10), || async {
        let l = log.lock().unwrap();
        let n = l
            .iter()
            .filter(|(n, _, t, r)| *n == new && *t > cut && r.is_ok())
            .count();
        if n >= 10 {
            Ok(())
        } else {
            Err(format!("{n} writes by {new}"))
        }
    })
    .await;
    busy.unwrap();
    c.heal();
    // After the heal the old leader learns of the new term and stops.
    let settled = wait_until(Duration::from_secs(10), || async {
        let n = c.index_of(&old).expect("a node of this cluster");
        let s = c.on(n, |h| async move { h.store.status() }).await;
        if s.leader.as_deref() == Some(new.as_str()) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    settled.unwrap();
    // The old host stops its singleton on the vote change; whatever its
    // last attempt did shows in the store, which is checked below.

    let first_new = first_ok(&log, &new).expect("the new leader wrote");
    let l = log.lock().unwrap().clone();
    let late: Vec<_> = l
        .iter()
        .filter(|(n, _, _, r)| *n == old && r.as_ref().is_ok_and(|rev| *rev >= first_new))
        .collect();
    assert!(
        late.is_empty(),
        "the deposed leader's singleton got writes applied after the new leader's first ({first_new}): {late:?}"
    );
    // What the store holds agrees (an attempt cut short when the host
    // stopped the singleton left no trace in the log above).
    let n = c.index_of(&new).expect("a node of this cluster");
    let prefix = format!("/singleton/{old}/").into_bytes();
    let stored = c
        .on(n, move |h| async move {
            h.store
                .read(shoal::store::ReadRequest::prefix(prefix))
                .await
                .unwrap()
        })
        .await;
    assert!(
        !stored.kvs.is_empty(),
        "the old leader's singleton wrote before the cut"
    );
    for kv in &stored.kvs {
        assert!(
            kv.mod_rev < first_new,
            "{} applied at {} after the new leader's first write at {first_new}",
            String::from_utf8_lossy(&kv.key),
            kv.mod_rev
        );
    }
    drop(hosts);
}
