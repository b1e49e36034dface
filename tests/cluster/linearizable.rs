//! A register history under chaos, checked for linearizability.
//!
//! Three clients (one per node) write unique values to one key and read it
//! linearizably, while a chaos task cuts a random node off and heals, over
//! and over (seeded: SHOAL_SEED replays). The store orders writes by
//! revision, so the history is linearizable iff that order agrees with real
//! time and every read returns the latest write in it:
//! - a write that completed before another began has the lower revision;
//! - a read returns exactly the value written at the revision it reports;
//! - that write began before the read ended (no reads from the future);
//! - no write that completed before the read began has a higher revision
//!   (no stale reads);
//! - a read that began after another ended reports no lower revision.
//!
//! Writes that fail are ambiguous (they may have been applied); they join
//! the checks only through the reads that observe them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use shoal::store::command::Txn;
use shoal::store::ReadRequest;
use shoal_harness::{seed, wait_until, TestCluster};

#[derive(Debug, Clone)]
enum Op {
    /// A write that was acknowledged at `rev`.
    Write { value: String, rev: u64 },
    /// A write whose outcome is unknown.
    MaybeWrite { value: String },
    /// A read of `value` at `rev` (None: the key was absent).
    Read { value: Option<String>, rev: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    client: usize,
    start: Instant,
    end: Instant,
    op: Op,
}

fn check(history: &[Entry]) -> Result<(), String> {
    let writes: Vec<(&Entry, &str, u64)> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Write { value, rev } => Some((e, value.as_str(), *rev)),
            _ => None,
        })
        .collect();
    // Every value ever proposed, with when its write began.
    let mut began: HashMap<&str, Instant> = HashMap::new();
    for e in history {
        match &e.op {
            Op::Write { value, .. } | Op::MaybeWrite { value } => {
                began.insert(value.as_str(), e.start);
            }
            Op::Read { .. } => {}
        }
    }
    let mut at_rev: HashMap<u64, &str> = HashMap::new();
    for (a, va, ra) in &writes {
        if let Some(other) = at_rev.insert(*ra, va) {
            return Err(format!(
                "two acknowledged writes at revision {ra}: {other}, {va}"
            ));
        }
        for (b, _, rb) in &writes {
            if a.end < b.start && ra >= rb {
                return Err(format!(
                    "write {va} (rev {ra}) completed before a write at rev {rb} began"
                ));
            }
        }
    }
    let reads: Vec<(&Entry, Option<&str>, u64)> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read { value, rev } => Some((e, value.as_deref(), *rev)),
            _ => None,
        })
        .collect();
    for (r, value, rev) in &reads {
        if let Some(v) = value {
            let Some(b) = began.get(v) else {
                return Err(format!("read {v}, which nobody wrote"));
            };
            if *b > r.end {
                return Err(format!("read {v} before its write began"));
            }
            if let Some(w) = at_rev.get(rev) {
                if w != v {
                    return Err(format!("read {v} at rev {rev}, where {w} was written"));
                }
            }
        }
        for (w, vw, rw) in &writes {
            if w.end < r.start && rw > rev {
                return Err(format!(
                    "stale read by client {}: rev {rev} ({value:?}) after write {vw} at rev {rw} completed",
                    r.client
                ));
            }
        }
        for (r2, _, rev2) in &reads {
            if r.end < r2.start && rev2 < rev {
                return Err(format!(
                    "a later read saw rev {rev2} after an earlier one saw {rev}"
                ));
            }
        }
    }
    Ok(())
}

// Each client task is spawned on its node's runtime; its handle is the result.
#[allow(clippy::async_yields_async)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_under_partitions_is_linearizable() {
    let c = TestCluster::start(3).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let ready = wait_until(Duration::from_secs(20), || async {
        let s = c.on(1, |h| async move { h.store.status() }).await;
        s.leader.map(|_| ()).ok_or_else(|| "no leader".to_string())
    })
    .await;
    ready.unwrap();
    let base = seed();
    let history: Arc<Mutex<Vec<Entry>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for client in 1..=3usize {
        let history = history.clone();
        clients.push(
            c.on(client, move |h| async move {
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(base ^ client as u64);
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        let start = Instant::now();
                        let op = if rng.random_range(0..2u32) == 0 {
                            n += 1;
                            let value = format!("c{client}-{n}");
                            match h.store.write(Txn::put("/lin/x", value.clone())).await {
                                Ok(r) => Op::Write {
                                    value,
                                    rev: r.revision,
                                },
                                Err(_) => Op::MaybeWrite { value },
                            }
                        } else {
                            let req = ReadRequest::key(b"/lin/x".to_vec());
                            match h.store.read(req).await {
                                Ok(r) if !r.stale => {
                                    let kv = r.kvs.first();
                                    Op::Read {
                                        value: kv.map(|kv| {
                                            String::from_utf8_lossy(&kv.value).into_owned()
                                        }),
                                        rev: kv.map_or(0, |kv| kv.mod_rev),
                                    }
                                }
                                _ => {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    continue;
                                }
                            }
                        };
                        history.lock().unwrap().push(Entry {
                            client,
                            start,
                            end: Instant::now(),
                            op,
                        });
                    }
                })
            })
            .await,
        );
    }
    // Chaos: cut one random node off, or heal, every 400–900 ms.
    let mut rng = rand::rngs::StdRng::seed_from_u64(base);
    let mut cuts = 0;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..900u64))).await;
        if rng.random_range(0..3u32) == 0 {
            c.heal();
        } else {
            let i = rng.random_range(1..=3usize);
            let others: Vec<String> = (1..=3)
                .filter(|&j| j != i)
                .map(|j| format!("node-{j}"))
                .collect();
            c.heal();
            c.partition(&[format!("node-{i}")], &others);
            cuts += 1;
        }
    }
    c.heal();
    for t in clients {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("clients finish after the run")
            .unwrap();
    }
    let history = history.lock().unwrap().clone();
    let count = |f: fn(&Op) -> bool| history.iter().filter(|e| f(&e.op)).count();
    let (w, mw, r) = (
        count(|o| matches!(o, Op::Write { .. })),
        count(|o| matches!(o, Op::MaybeWrite { .. })),
        count(|o| matches!(o, Op::Read { .. })),
    );
    eprintln!("{cuts} cuts; {w} acknowledged writes, {mw} ambiguous, {r} reads");
    assert!(w > 20 && r > 20, "the run must have done real work");
    check(&history).unwrap_or_else(|e| panic!("not linearizable (SHOAL_SEED={base}): {e}"));
}

/// The checker itself catches a stale read and a write order that
/// contradicts real time.
#[test]
fn the_checker_rejects_non_linearizable_histories() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let w = |v: &str, rev: u64, s: u64, e: u64| Entry {
        client: 1,
        start: at(s),
        end: at(e),
        op: Op::Write {
            value: v.into(),
            rev,
        },
    };
    let r = |v: &str, rev: u64, s: u64, e: u64| Entry {
        client: 2,
        start: at(s),
        end: at(e),
        op: Op::Read {
            value: Some(v.into()),
            rev,
        },
    };
    assert!(check(&[w("a", 5, 0, 10), w("b", 6, 20, 30), r("b", 6, 40, 50)]).is_ok());
    // Stale: b (rev 6) completed at 30, the read began at 40 and saw a.
    assert!(check(&[w("a", 5, 0, 10), w("b", 6, 20, 30), r("a", 5, 40, 50)]).is_err());
    // Real-time order broken: a completed before b began, yet has the higher rev.
    assert!(check(&[w("a", 7, 0, 10), w("b", 6, 20, 30)]).is_err());
    // Read from the future.
    assert!(check(&[r("b", 6, 0, 10), w("b", 6, 20, 30)]).is_err());
    // Reads going backwards.
    assert!(check(&[
        w("a", 5, 0, 10),
        w("b", 6, 0, 10),
        r("b", 6, 20, 30),
        r("a", 5, 40, 50)
    ])
    .is_err());
}
