//! The actor layer across two nodes: ask round trip, deadlines, tell order,
//! subscription order, error replies, frame limits, one-way cuts.

use std::time::{Duration, Instant};

use shoal::actor::diag::{Count, Echo, Record, Recorded, SlowEcho, ACTOR};
use shoal::actor::envelope::RemoteError;
use shoal::actor::{ActorPath, AskError, SubscriptionEnd};
use shoal::transport::faults::{ChaosCommand, FaultSpec};
use shoal_harness::TestCluster;

fn diag(node: &str) -> ActorPath {
    ActorPath::new(ACTOR, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_round_trip_errors_and_deadlines() {
    let c = TestCluster::start(2).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    c.on(1, |h| async move {
        let to = diag("node-2");
        // Round trip, small and large.
        let r = h
            .actors
            .ask(&to, Echo(b"hello".to_vec()), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&r[..], b"hello");
        let big = vec![7u8; 3 * 1024 * 1024];
        let r = h
            .actors
            .ask(&to, Echo(big.clone()), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.len(), big.len());

        // A payload over the frame limit is refused locally, with an error.
        let huge = vec![0u8; 9 * 1024 * 1024];
        let e = h
            .actors
            .ask(&to, Echo(huge), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, AskError::Stream(ref m) if m.contains("exceeds")),
            "{e:?}"
        );

        // Deadline: the caller gets Timeout close to its deadline, not later.
        let t = Instant::now();
        let e = h
            .actors
            .ask(
                &to,
                SlowEcho { delay_ms: 3_000 },
                Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        // Either side may notice first: the caller's own timer, or the far
        // side's budget (which arrived as "remaining 300 ms").
        assert!(
            matches!(
                e,
                AskError::Timeout | AskError::Remote(RemoteError::DeadlineExceeded)
            ),
            "{e:?}"
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        // Within the deadline it answers.
        let r = h
            .actors
            .ask(&to, SlowEcho { delay_ms: 50 }, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r, 50);

        // Unknown actor, unknown tag: error replies, typed.
        let e = h
            .actors
            .ask(
                &ActorPath::new("nobody", "node-2"),
                Echo(vec![]),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            AskError::Remote(RemoteError::UnknownActor("nobody".into()))
        );
        let e = h
            .actors
            .ask(
                &ActorPath::new("chaos", "node-2"),
                Echo(vec![]),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            AskError::Remote(RemoteError::UnknownTag("shoal.diag.echo/1".into()))
        );

        // The same call to the local node takes the local path, same answers.
        let r = h
            .actors
            .ask(&diag("node-1"), Echo(b"x".to_vec()), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&r[..], b"x");
        // The node still answers after all that.
        let r = h
            .actors
            .ask(&to, Echo(b"still".to_vec()), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&r[..], b"still");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_and_subscriptions_keep_order() {
    // A tiny mailbox: 2,000 tells must back-pressure, not get lost.
    let c = TestCluster::start_with(2, |cfg| cfg.transport.mailbox_capacity = 4)
        .expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    c.on(1, |h| async move {
        let to = diag("node-2");
        for v in 0..2_000u64 {
            h.actors
                .tell(
                    &to,
                    Record {
                        from: "order-test".into(),
                        value: v,
                    },
                )
                .await
                .unwrap();
        }
        // Tells are one-way; ask until all arrived, then check the order.
        let got = shoal_harness::wait_until(Duration::from_secs(10), || {
            let h = h.clone();
            let to = to.clone();
            async move {
                let got = h
                    .actors
                    .ask(
                        &to,
                        Recorded {
                            from: "order-test".into(),
                        },
                        Duration::from_secs(5),
                    )
                    .await;
                match got {
                    Ok(v) if v.len() == 2_000 => Ok(()),
                    other => Err(format!("{:?} recorded", other.map(|v| v.len()))),
                }
            }
        })
        .await;
        got.unwrap();
        let v = h
            .actors
            .ask(
                &to,
                Recorded {
                    from: "order-test".into(),
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(
            v,
            (0..2_000).collect::<Vec<_>>(),
            "tells must arrive in send order"
        );

        // A subscription delivers every event once, in order, then its end.
        let mut sub = h
            .actors
            .subscribe(
                &to,
                Count {
                    start: 10,
                    count: 5_000,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        for expect in 10..5_010u64 {
            assert_eq!(sub.next().await.unwrap(), expect);
        }
        assert_eq!(
            sub.next().await.unwrap_err(),
            SubscriptionEnd::Ended("done".into())
        );

        // A refused subscription is an error reply, not a hang.
        let e = h
            .actors
            .subscribe(
                &to,
                Count {
                    start: 0,
                    count: u64::MAX,
                },
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(e, Err(AskError::Remote(RemoteError::Handler(_)))),
            "{:?}",
            e.err()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cut_is_one_way_per_envelope() {
    let c = TestCluster::start(2).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    // Warm both directions up.
    c.on(1, |h| async move {
        h.actors
            .ask(&diag("node-2"), Echo(vec![1]), Duration::from_secs(5))
            .await
            .unwrap()
    })
    .await;
    c.on(2, |h| async move {
        h.actors
            .ask(&diag("node-1"), Echo(vec![1]), Duration::from_secs(5))
            .await
            .unwrap()
    })
    .await;
    for i in 1..=2 {
        let rule = FaultSpec::Oneway {
            from: "node-1".into(),
            to: "node-2".into(),
        };
        c.node(i)
            .faults
            .apply(ChaosCommand::Add {
                rule,
                ttl_ms: Some(60_000),
            })
            .unwrap();
    }
    // node-2 → node-1 flows: tells arrive.
    c.on(2, |h| async move {
        for v in 0..10 {
            h.actors
                .tell(
                    &diag("node-1"),
                    Record {
                        from: "n2".into(),
                        value: v,
                    },
                )
                .await
                .unwrap();
        }
    })
    .await;
    // node-1 → node-2 is cut: tells vanish.
    c.on(1, |h| async move {
        for v in 0..10 {
            h.actors
                .tell(
                    &diag("node-2"),
                    Record {
                        from: "n1".into(),
                        value: v,
                    },
                )
                .await
                .unwrap();
        }
    })
    .await;
    // An ask from node-2 reaches node-1 (its effect happens) but the reply,
    // node-1 → node-2, is cut: the caller times out.
    let e = c
        .on(2, |h| async move {
            h.actors
                .ask(
                    &diag("node-1"),
                    Record {
                        from: "n2".into(),
                        value: 99,
                    },
                    Duration::from_millis(500),
                )
                .await
        })
        .await;
    // No reply comes back: a timeout, or a lost stream if membership (whose
    // gossip is cut the same way) meanwhile declared node-1 down.
    let e = e.unwrap_err();
    assert!(
        matches!(
            e,
            AskError::Timeout | AskError::Stream(_) | AskError::Unreachable(..)
        ),
        "{e:?}"
    );
    // An ask from node-1 never reaches node-2.
    let e = c
        .on(1, |h| async move {
            h.actors
                .ask(&diag("node-2"), Echo(vec![2]), Duration::from_millis(500))
                .await
        })
        .await;
    assert_eq!(e.unwrap_err(), AskError::Timeout);

    // Observe each side locally (no network involved).
    let at1 = shoal_harness::wait_until(Duration::from_secs(5), || async {
        let v = c
            .on(1, |h| async move {
                h.actors
                    .ask(
                        &diag("node-1"),
                        Recorded { from: "n2".into() },
                        Duration::from_secs(1),
                    )
                    .await
                    .unwrap()
            })
            .await;
        // Tells keep their order among themselves; the ask travels on its
        // own stream and may overtake them.
        let tells: Vec<u64> = v.iter().copied().filter(|x| *x != 99).collect();
        if tells == (0..10).collect::<Vec<u64>>() && v.contains(&99) {
            Ok(())
        } else {
            Err(format!("node-1 has {v:?}"))
        }
    })
    .await;
    at1.unwrap();
    let at2 = c
        .on(2, |h| async move {
            h.actors
                .ask(
                    &diag("node-2"),
                    Recorded { from: "n1".into() },
                    Duration::from_secs(1),
                )
                .await
                .unwrap()
        })
        .await;
    assert!(
        at2.is_empty(),
        "nothing from node-1 may reach node-2, got {at2:?}"
    );

    // Heal through the control path; traffic flows again.
    for i in 1..=2 {
        c.node(i).faults.apply(ChaosCommand::Heal).unwrap();
    }
    let r = c
        .on(1, |h| async move {
            h.actors
                .ask(&diag("node-2"), Echo(vec![3]), Duration::from_secs(5))
                .await
        })
        .await;
    assert_eq!(r.unwrap().to_vec(), vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_actor_is_exempt_from_faults() {
    let c = TestCluster::start(2).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    for i in 1..=2 {
        let rule = FaultSpec::Partition {
            a: vec!["node-1".into()],
            b: vec!["node-2".into()],
        };
        c.node(i)
            .faults
            .apply(ChaosCommand::Add {
                rule,
                ttl_ms: Some(60_000),
            })
            .unwrap();
    }
    // Regular traffic is cut...
    let e = c
        .on(1, |h| async move {
            h.actors
                .ask(&diag("node-2"), Echo(vec![]), Duration::from_millis(300))
                .await
        })
        .await;
    assert_eq!(e.unwrap_err(), AskError::Timeout);
    // ...but heal, sent as an actor message, gets through.
    let rules = c
        .on(1, |h| async move {
            h.actors
                .ask(
                    &ActorPath::new("chaos", "node-2"),
                    shoal::chaos::Apply::new(&ChaosCommand::Heal),
                    Duration::from_secs(5),
                )
                .await
        })
        .await
        .unwrap()
        .unwrap();
    assert!(rules.is_empty());
    assert!(c.node(2).faults.view().is_empty());
}
