//! Watch by push (store part 2): every event exactly once and in order
//! across a leader change and the loss of the watched replica; `Expired`
//! for a compacted revision; progress notifications; `LeaderLost` on a
//! replica cut off from the leader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal::store::command::Txn;
use shoal::store::watch::{EventKind, WatchEnd, WatchEvent};
use shoal::store::{ClientError, ReadRequest};
use shoal_harness::{wait_until, TestCluster};

/// What the watcher saw: (rev, key, kind), in arrival order.
type Seen = Arc<Mutex<Vec<(u64, String, EventKind)>>>;

/// Creates `key` through node `via`, retrying until it is known to be
/// applied exactly once (a retried create that finds the key answers
/// Conflict; its revision is read back). Returns the revision.
async fn create(c: &TestCluster, via: usize, key: String) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let k = key.clone();
        let r = c
            .on(via, move |h| async move {
                h.store.put_if(k.into_bytes(), b"v".to_vec(), 0).await
            })
            .await;
        match r {
            Ok(rev) => return rev,
            Err(ClientError::Conflict { .. }) => {
                let k = key.clone();
                let got = c
                    .on(via, move |h| async move {
                        h.store.read(ReadRequest::key(k.into_bytes())).await
                    })
                    .await
                    .unwrap();
                return got.kvs[0].mod_rev;
            }
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("create {key}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_event_once_in_order_across_a_leader_change_and_its_replica_loss() {
    let mut c = TestCluster::start(3).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let l = c.wait_leader(1).await;
    let r = (1..=3).find(|&i| i != l).unwrap(); // the watched replica
    let s = (1..=3).find(|&i| i != l && i != r).unwrap(); // the client
    let first = create(&c, s, "/w/0000".into()).await;

    // The watcher runs on node s; it resumes on another replica from the
    // revision after the last it saw whenever its stream is lost.
    let seen: Seen = Arc::default();
    let ends: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen2, ends2) = (seen.clone(), ends.clone());
    let replicas = [
        format!("node-{r}"),
        format!("node-{s}"),
        format!("node-{l}"),
    ];
    c.on(s, move |h| async move {
        tokio::spawn(async move {
            let mut next_rev = first;
            let mut at = 0;
            loop {
                let node = &replicas[at % replicas.len()];
                let mut sub = match h.store.watch(node, b"/w/", next_rev).await {
                    Ok(sub) => sub,
                    Err(_) => {
                        at += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                loop {
                    match sub.next().await {
                        Ok(WatchEvent::Events(evs)) => {
                            for e in evs {
                                next_rev = e.rev + 1;
                                let key = String::from_utf8_lossy(&e.key).into_owned();
                                seen2.lock().unwrap().push((e.rev, key, e.kind));
                            }
                        }
                        Ok(WatchEvent::Progress { .. }) => {}
                        Err(end) => {
                            let end = WatchEnd::from(end);
                            ends2.lock().unwrap().push(format!("{node}: {end:?}"));
                            assert!(
                                !matches!(end, WatchEnd::Expired(_)),
                                "a live watch must not expire here: {end:?}"
                            );
                            at += 1;
                            break;
                        }
                    }
                }
            }
        });
    })
    .await;

    let mut written = vec![(first, "/w/0000".to_string(), EventKind::Put)];
    let mut write = |rev: u64, key: String| written.push((rev, key, EventKind::Put));
    for n in 1..40 {
        let key = format!("/w/{n:04}");
        write(create(&c, s, key.clone()).await, key);
    }
    // Leader change.
    c.kill(l);
    for n in 40..80 {
        let key = format!("/w/{n:04}");
        write(create(&c, s, key.clone()).await, key);
    }
    c.restart(l).unwrap();
    // Loss of the watched replica.
    c.kill(r);
    for n in 80..120 {
        let key = format!("/w/{n:04}");
        write(create(&c, s, key.clone()).await, key);
    }
    // A delete shows up as a delete.
    let del = c
        .on(s, |h| async move {
            h.store.write(Txn::delete("/w/0001", None)).await
        })
        .await
        .unwrap();
    written.push((del.revision, "/w/0001".into(), EventKind::Delete));
    written.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));

    let last = written.last().unwrap().0;
    let done = wait_until(Duration::from_secs(30), || async {
        let got = seen.lock().unwrap().last().map_or(0, |e| e.0);
        if got >= last {
            Ok(())
        } else {
            Err(format!("watcher at revision {got} of {last}"))
        }
    })
    .await;
    done.unwrap();
    let got = seen.lock().unwrap().clone();
    eprintln!(
        "{} events seen; streams ended: {:?}",
        got.len(),
        ends.lock().unwrap()
    );
    assert_eq!(got, written, "exactly once, in order, nothing else");
    assert!(
        !ends.lock().unwrap().is_empty(),
        "the watched replica was killed, so its stream must have ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_is_expired_and_quiet_watches_get_progress() {
    let c = TestCluster::start(1).expect("node starts");
    c.wait_leader(1).await;
    let mut revs = Vec::new();
    for n in 0..10 {
        let r = c
            .on(1, move |h| async move {
                h.store.write(Txn::put(format!("/c/{n}"), "v")).await
            })
            .await
            .unwrap();
        revs.push(r.revision);
    }
    let cut = revs[5];
    c.on(1, move |h| async move { h.store.compact(cut).await })
        .await
        .unwrap();
    let early = revs[2];
    let end = c
        .on(1, move |h| async move {
            let mut sub = h.store.watch("node-1", b"/c/", early).await.unwrap();
            sub.next().await.map(|_| ()).unwrap_err()
        })
        .await;
    assert!(
        matches!(WatchEnd::from(end.clone()), WatchEnd::Expired(_)),
        "{end:?}"
    );
    // Above the compaction point: the history, then progress while quiet.
    let (events, progress, waited) = c
        .on(1, move |h| async move {
            let mut sub = h.store.watch("node-1", b"/c/", cut + 1).await.unwrap();
            let mut events = Vec::new();
            let t = Instant::now();
            loop {
                match sub.next().await.unwrap() {
                    WatchEvent::Events(evs) => events.extend(evs.into_iter().map(|e| e.rev)),
                    WatchEvent::Progress { rev } => return (events, rev, t.elapsed()),
                }
            }
        })
        .await;
    assert_eq!(events, revs[6..].to_vec());
    // The compaction request is an entry too: progress reaches past it.
    assert!(progress > *revs.last().unwrap(), "progress at {progress}");
    assert!(waited < Duration::from_secs(3), "progress after {waited:?}");
}

/// Watches replica `i` from node `i` itself (so a cut does not break the
/// stream's own transport) and returns when and how it ends.
/// Also counts the progress notifications it receives.
#[allow(clippy::async_yields_async)] // the task's handle is the result
async fn local_watch(
    c: &TestCluster,
    i: usize,
    progress: Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<(Instant, WatchEnd)> {
    c.on(i, move |h| async move {
        let mut sub = h.store.watch(&format!("node-{i}"), b"/", 0).await.unwrap();
        tokio::spawn(async move {
            loop {
                match sub.next().await {
                    Ok(WatchEvent::Progress { .. }) => {
                        progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(end) => return (Instant::now(), WatchEnd::from(end)),
                }
            }
        })
    })
    .await
}

async fn isolate_and_expect_leader_lost(c: &TestCluster, i: usize, who: &str) {
    let progress: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let watch = local_watch(c, i, progress.clone()).await;
    // Healthy: the watch stays open and keeps saying so (two progress
    // notifications, each after a quiet second).
    let alive = wait_until(Duration::from_secs(10), || async {
        if watch.is_finished() {
            return Err("the watch ended".to_string());
        }
        match progress.load(std::sync::atomic::Ordering::SeqCst) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} progress notifications")),
        }
    })
    .await;
    assert!(
        alive.is_ok() && !watch.is_finished(),
        "a healthy {who}'s watch must stay open: {alive:?}"
    );
    let others: Vec<String> = (1..=3)
        .filter(|&j| j != i)
        .map(|j| format!("node-{j}"))
        .collect();
    let cut = Instant::now();
    c.partition(&[format!("node-{i}")], &others);
    let bound = Duration::from_secs(5);
    let (at, end) = tokio::time::timeout(bound, watch)
        .await
        .unwrap_or_else(|_| panic!("the {who}'s watch did not end within {bound:?}"))
        .unwrap();
    eprintln!("{who}: {end:?} {:?} after the cut", at - cut);
    assert!(matches!(end, WatchEnd::LeaderLost(_)), "{who}: {end:?}");
    c.heal();
}

/// A replica on the minority side of a partition — a follower, or the
/// leader itself — ends its watches with `LeaderLost` within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_replica_ends_its_watches_with_leader_lost() {
    // Ended after 2 s without a leader (the default, 5 s, outlasts any
    // ordinary election a replica of the majority sits through).
    let c = TestCluster::start_with(3, |cfg| cfg.store.watch_leaderless_ms = 2_000)
        .expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let l = c.wait_leader(1).await;
    let f = (1..=3).find(|&i| i != l).unwrap();
    isolate_and_expect_leader_lost(&c, f, "follower").await;
    // After the heal, cut off whoever leads now.
    let ok = wait_until(Duration::from_secs(20), || async {
        let a = c.on(1, |h| async move { h.store.status().leader }).await;
        let b = c.on(2, |h| async move { h.store.status().leader }).await;
        let d = c.on(3, |h| async move { h.store.status().leader }).await;
        if a.is_some() && a == b && b == d {
            Ok(())
        } else {
            Err(format!("{a:?} {b:?} {d:?}"))
        }
    })
    .await;
    ok.unwrap();
    let l = c.wait_leader(1).await;
    isolate_and_expect_leader_lost(&c, l, "leader").await;
}

/// A subscriber that does not keep up is told `Expired` (after what its
/// buffer held), not silently skipped over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_expired() {
    let c = TestCluster::start_with(1, |cfg| cfg.transport.subscription_buffer = 8)
        .expect("node starts");
    c.wait_leader(1).await;
    let (delivered, end) = c
        .on(1, |h| async move {
            let mut sub = h.store.watch("node-1", b"/lag/", 0).await.unwrap();
            // Many separate revisions while the subscriber reads nothing.
            for n in 0..100 {
                h.store
                    .write(Txn::put(format!("/lag/{n}"), "v"))
                    .await
                    .unwrap();
            }
            let mut delivered = 0;
            loop {
                match sub.next().await {
                    Ok(WatchEvent::Events(evs)) => delivered += evs.len(),
                    Ok(WatchEvent::Progress { .. }) => {}
                    Err(end) => return (delivered, WatchEnd::from(end)),
                }
            }
        })
        .await;
    eprintln!("{delivered} events delivered, then {end:?}");
    assert!(matches!(end, WatchEnd::Expired(_)), "{end:?}");
    assert!(
        delivered < 100,
        "it cannot have had everything: {delivered}"
    );
}

/// A server-side field filter (pods bound to one node): objects entering
/// the selection arrive as puts, leaving it as deletes, the rest not at
/// all; the history replays the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_filter_streams_only_the_selected_objects() {
    use shoal::store::watch::FieldFilter;
    // The store alone: no kubelet that would report status for the raw
    // pod values this test writes.
    let c = TestCluster::start_with(3, |cfg| {
        cfg.roles = vec![shoal::config::Role::Api, shoal::config::Role::Store]
    })
    .expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    c.wait_leader(1).await;
    let filter = FieldFilter {
        field: "spec.nodeName".into(),
        equals: "node-2".into(),
    };
    let pod = |n: &str| format!(r#"{{"spec":{{"nodeName":"{n}"}}}}"#);
    let steps: Vec<(&str, Option<String>)> = vec![
        ("/registry/pods/default/a", Some(pod("node-2"))), // enters
        ("/registry/pods/default/b", Some(pod("node-3"))), // never seen
        ("/registry/pods/default/b", Some(pod("node-2"))), // enters
        ("/registry/pods/default/a", Some(pod("node-3"))), // leaves
        ("/registry/pods/default/b", None),                // deleted
        ("/registry/pods/default/c", Some("{}".into())),   // unscheduled
    ];
    let f = filter.clone();
    let mut live = c
        .on(2, move |h| async move {
            h.store
                .watch_filtered("node-2", b"/registry/pods/", 0, Some(f))
                .await
                .unwrap()
        })
        .await;
    let mut first = 0;
    for (key, value) in &steps {
        let txn = match value {
            Some(v) => Txn::put(*key, v.clone()),
            None => Txn::delete(*key, None),
        };
        let r = c
            .on(1, move |h| async move { h.store.write(txn).await })
            .await
            .unwrap();
        if first == 0 {
            first = r.revision;
        }
    }
    let expected = vec![
        ("/registry/pods/default/a".to_string(), EventKind::Put),
        ("/registry/pods/default/b".to_string(), EventKind::Put),
        ("/registry/pods/default/a".to_string(), EventKind::Delete),
        ("/registry/pods/default/b".to_string(), EventKind::Delete),
    ];
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("events within 10 s")
            .unwrap()
        {
            WatchEvent::Events(evs) => got.extend(
                evs.into_iter()
                    .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.kind)),
            ),
            WatchEvent::Progress { .. } => {}
        }
    }
    assert_eq!(got, expected, "live");
    // The same from history, on another replica.
    let f = filter.clone();
    let hist = c
        .on(3, move |h| async move {
            let mut sub = h
                .store
                .watch_filtered("node-3", b"/registry/pods/", first, Some(f))
                .await
                .unwrap();
            let mut got = Vec::new();
            loop {
                match sub.next().await.unwrap() {
                    WatchEvent::Events(evs) => got.extend(
                        evs.into_iter()
                            .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.kind)),
                    ),
                    WatchEvent::Progress { .. } => return got,
                }
            }
        })
        .await;
    assert_eq!(hist, expected, "history");
}
