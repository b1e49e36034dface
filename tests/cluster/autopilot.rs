//! Autopilot (store part 2): a dead voter is replaced by a healthy learner
//! within a bound; two dead voters of three lead to no configuration change.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_harness::{wait_until, TestCluster};

/// 5 nodes, 3 voters, autopilot after 2 s of `down`.
fn cluster() -> TestCluster {
    TestCluster::start_with(5, |cfg| cfg.store.autopilot_down_after_ms = 2_000)
        .expect("cluster starts")
}

/// Waits for every node to see every other alive (0.6 to 0.8 s alone
/// here), printing how long it took.
async fn mesh(c: &TestCluster) {
    let took = c.wait_mesh(shoal_harness::MESH).await.unwrap();
    println!("the mesh formed in {took:?}");
}

async fn status(c: &TestCluster, i: usize) -> shoal::store::StoreStatus {
    c.on(i, |h| async move { h.store.status() }).await
}

/// Waits for 3 voters and 2 learners with a leader.
async fn settled(c: &TestCluster, ask: usize) -> shoal::store::StoreStatus {
    let ok = wait_until(Duration::from_secs(30), || async {
        let s = status(c, ask).await;
        if s.leader.is_some() && s.voters.len() == 3 && s.learners.len() == 2 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    ok.unwrap();
    status(c, ask).await
}

fn index(c: &TestCluster, name: &str) -> usize {
    c.index_of(name).expect("a node of this cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_voter_is_replaced_by_a_learner() {
    let mut c = cluster();
    mesh(&c).await;
    let before = settled(&c, 1).await;
    let leader = before.leader.clone().unwrap();
    let victim = before
        .voters
        .iter()
        .find(|v| **v != leader)
        .unwrap()
        .clone();
    let ask = (1..=5).find(|&i| format!("node-{i}") != victim).unwrap();
    let victim_i = index(&c, &victim);
    c.kill(victim_i);
    let t = std::time::Instant::now();
    // Bound: SWIM down detection (~3 s) + the 2 s threshold + a tick +
    // the joint-consensus change.
    let replaced = wait_until(Duration::from_secs(20), || async {
        let s = status(&c, ask).await;
        let healthy = s.voters.len() == 3 && !s.voters.contains(&victim);
        if healthy {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    replaced.unwrap();
    let after = status(&c, ask).await;
    eprintln!(
        "voters {:?} -> {:?} in {:?}",
        before.voters,
        after.voters,
        t.elapsed()
    );
    let old: BTreeSet<&String> = before.voters.iter().collect();
    let new: BTreeSet<&String> = after.voters.iter().collect();
    assert_eq!(
        old.intersection(&new).count(),
        2,
        "exactly one voter replaced"
    );
    assert!(
        !after.learners.contains(&victim),
        "the dead voter is removed"
    );
    // The new configuration commits writes.
    c.on(ask, |h| async move {
        h.store
            .write(shoal::store::command::Txn::put("/after-autopilot", "ok"))
            .await
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dead_voters_of_three_change_nothing() {
    let mut c = cluster();
    mesh(&c).await;
    let before = settled(&c, 1).await;
    let leader = before.leader.clone().unwrap();
    // Kill the two voters that are not the leader: the leader (openraft 0.9
    // does not step down) keeps running autopilot, which must not propose.
    let dead: Vec<String> = before
        .voters
        .iter()
        .filter(|v| **v != leader)
        .cloned()
        .collect();
    for d in &dead {
        let victim_i = index(&c, d);
        c.kill(victim_i);
    }
    // Until autopilot has had three ticks with both dead voters past the
    // 2 s threshold in the leader's view, the configuration must not move
    // (the leader's view includes any configuration it has proposed).
    let l = index(&c, &leader);
    let expected_voters = before.voters.clone();
    let waited = wait_until(Duration::from_secs(30), || async {
        let s = status(&c, l).await;
        if s.voters != expected_voters {
            return Ok(()); // checked below, with the details
        }
        let members = c.members(l).await;
        let past = dead.iter().all(|d| {
            members.iter().any(|m| {
                m.name == *d
                    && m.state == shoal::membership::MemberState::Down
                    && m.since_ms >= 2_000 + 3_000
            })
        });
        if past {
            Ok(())
        } else {
            Err("the dead voters are not yet down long enough".to_string())
        }
    })
    .await;
    waited.unwrap();
    let s = status(&c, l).await;
    let voters: BTreeSet<&String> = s.voters.iter().collect();
    let expected: BTreeSet<&String> = before.voters.iter().collect();
    assert_eq!(
        voters, expected,
        "no configuration change without a healthy quorum: {s:?}"
    );
}

/// `store.voters = 5` is honoured once there are 5 nodes: the two learners
/// are promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_voters_when_asked_and_there_are_five_nodes() {
    let c = TestCluster::start_with(5, |cfg| cfg.store.voters = 5).expect("cluster starts");
    mesh(&c).await;
    let five = wait_until(Duration::from_secs(30), || async {
        let s = status(&c, 1).await;
        if s.voters.len() == 5 && s.learners.is_empty() {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    eprintln!("5 voters after {:?}", five.unwrap());
    c.on(2, |h| async move {
        h.store
            .write(shoal::store::command::Txn::put("/five", "ok"))
            .await
    })
    .await
    .unwrap();
}
