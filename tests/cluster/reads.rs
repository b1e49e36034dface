//! Reads on every node (store part 2): linearizable follower reads give
//! read-your-writes across nodes; recent reads say how stale they may be.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use shoal::store::command::Txn;
use shoal::store::{ClientError, ReadRequest};
use shoal_harness::{seed, wait_until, TestCluster};

fn one(key: &str) -> ReadRequest {
    ReadRequest::key(key.as_bytes().to_vec())
}

/// A write through node A, then a linearizable read through node B, sees
/// it: randomized nodes and keys, many rounds (SHOAL_SEED replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_any_node_sees_a_write_through_any_other() {
    // Each of its 800 requests has the store's 5 s budget: not beside a
    // test that loads both cores.
    let _timing = crate::timing_guard().await;
    let c = TestCluster::start(3).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    c.wait_leader(1).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    for round in 0..400u32 {
        let a = rng.random_range(1..=3usize);
        let b = 1 + (a + rng.random_range(0..2usize)) % 3; // another node
        assert_ne!(a, b);
        // Few keys, so a stale read would show an older value.
        let key = format!("/ryw/{}", rng.random_range(0..4u32));
        let value = format!("{round}");
        let (k, v) = (key.clone(), value.clone());
        c.on(
            a,
            move |h| async move { h.store.write(Txn::put(k, v)).await },
        )
        .await
        .unwrap_or_else(|e| panic!("round {round}: write via node-{a}: {e}"));
        let k = key.clone();
        let got = c
            .on(b, move |h| async move { h.store.read(one(&k)).await })
            .await
            .unwrap_or_else(|e| panic!("round {round}: read via node-{b}: {e}"));
        let got = got
            .kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "round {round}: {key} written via node-{a}, read via node-{b}"
        );
    }
}

/// A follower cut off from the leader refuses linearizable reads within the
/// budget, but still serves recent reads that say how long it has not heard
/// from the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_follower_serves_recent_reads_that_say_how_stale() {
    let c = TestCluster::start(3).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let l = c.wait_leader(1).await;
    let f = (1..=3).find(|&i| i != l).unwrap();
    c.on(l, |h| async move {
        h.store.write(Txn::put("/recent", "1")).await
    })
    .await
    .unwrap();
    // Waits until a recent read on the follower finds the key and reports
    // a leader contact age that satisfies `ok`.
    let recent_until = |ok: fn(u64) -> bool| {
        let c = &c;
        wait_until(Duration::from_secs(10), move || async move {
            let r = c
                .on(
                    f,
                    |h| async move { h.store.read_recent(one("/recent")).await },
                )
                .await
                .map_err(|e| e.to_string())?;
            match (r.result.kvs.len(), r.leader_contact_ms) {
                (1, Some(ms)) if ok(ms) => Ok(()),
                _ => Err(format!("{r:?}")),
            }
        })
    };
    // The follower has the value and heard from the leader just now.
    recent_until(|ms| ms < 1_000).await.unwrap();
    let others: Vec<String> = (1..=3)
        .filter(|&i| i != f)
        .map(|i| format!("node-{i}"))
        .collect();
    c.partition(&[format!("node-{f}")], &others);
    let stale = recent_until(|ms| ms >= 1_500).await;
    eprintln!(
        "the cut-off follower's recent reads said it was stale after {:?}",
        stale.unwrap()
    );
    let t = std::time::Instant::now();
    let e = c
        .on(f, |h| async move { h.store.read(one("/recent")).await })
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        !matches!(e, ClientError::Conflict { .. }),
        "a read cannot conflict: {e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "answered after {:?}",
        t.elapsed()
    );
    c.heal();
}
