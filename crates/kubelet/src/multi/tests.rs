//! The multi-runtime's dispatch with two hollow runtimes: pods go to the
//! handler their RuntimeClass names, wait while it is not built, and start
//! once it is; stops, logs and states follow the pod.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use shoal_fabric::testing::wait_until;
use shoal_model::podcidr::PodSlot;

use super::*;
use crate::sim::SimRuntime;

fn sim(index: u32) -> Arc<dyn Runtime> {
    Arc::new(SimRuntime::new(&PodSlot {
        index,
        cidr: format!("10.88.{index}.0/24"),
    }))
}

fn pod(uid: &str, class: Option<&str>) -> PodConfig {
    let pod = json!({"metadata": {"uid": uid, "name": uid, "namespace": "default"},
        "spec": {"runtimeClassName": class,
            "containers": [{"name": "c", "image": "img", "command": ["sleep", "1"]}]}});
    PodConfig::of(&pod).expect("the pod decodes")
}

/// Classes `fast` → handler `other`, `gone` → none.
fn lookup() -> ClassLookup {
    Arc::new(|class: String| {
        Box::pin(async move {
            Ok(match class.as_str() {
                "fast" => Some("other".to_string()),
                "elsewhere" => Some("kata".to_string()),
                _ => None,
            })
        })
    })
}

fn waiting_reason(s: &PodState) -> Option<(String, String)> {
    match &s.containers.first()?.state {
        ContainerState::Waiting { reason, message } => Some((reason.clone(), message.clone())),
        _ => None,
    }
}

// Paused time: the rebuild's pause passes at once.
#[tokio::test(start_paused = true)]
async fn pods_run_with_their_classs_handler_and_wait_until_it_is_built() {
    let (default, other) = (sim(1), sim(2));
    let may_build = Arc::new(AtomicBool::new(false));
    let (gate, built) = (may_build.clone(), other.clone());
    let build: Build = Box::new(move || {
        let (ok, rt) = (gate.load(Ordering::SeqCst), built.clone());
        Box::pin(async move {
            if ok {
                Ok(rt)
            } else {
                Err(RuntimeError::Unsupported(
                    "the engine does not answer".into(),
                ))
            }
        })
    });
    let multi = MultiRuntime::new(default.clone(), vec![("other".into(), build)], lookup());
    let mut changes = multi.changes().expect("it pushes changes");
    let handlers = multi.handlers();

    // No class: the default runs it at once.
    let plain = multi.start(&pod("plain", None)).await;
    assert!(plain.containers[0].ready, "{plain:?}");
    assert!(default.state("plain").is_some() && other.state("plain").is_none());

    // A class whose handler is not built yet: the pod waits saying why,
    // and so does the handler.
    let fast = pod("fast-1", Some("fast"));
    let s = multi.start(&fast).await;
    let (reason, message) = waiting_reason(&s).expect("waiting");
    assert_eq!(reason, "ContainerCreating");
    assert!(
        message.contains("runtime"),
        "the message says which runtime: {message}"
    );
    assert!(multi
        .state("fast-1")
        .is_some_and(|s| waiting_reason(&s).is_some()));
    let mut h = handlers.clone();
    wait_until(Duration::from_secs(10), || {
        let problem = h
            .borrow_and_update()
            .iter()
            .find(|h| h.name == "other")
            .and_then(|h| h.problem.clone());
        async move {
            match problem {
                Some(p) if p.contains("does not answer") => Ok(()),
                other => Err(format!("the handler's problem: {other:?}")),
            }
        }
    })
    .await
    .expect("the build's failure is the handler's problem");
    assert!(handlers
        .borrow()
        .iter()
        .any(|h| h.name == "sim" && h.default && h.problem.is_none()));

    // Once built (the next try, REBUILD_PAUSE later), the waiting pod starts
    // there and its change is pushed; the handler is able.
    may_build.store(true, Ordering::SeqCst);
    let pushed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match changes.recv().await {
                Ok(uid) if uid == "fast-1" => return,
                Ok(_) => continue,
                Err(e) => panic!("changes: {e}"),
            }
        }
    })
    .await;
    assert!(pushed.is_ok(), "the started pod's change is pushed");
    assert!(other.state("fast-1").is_some() && default.state("fast-1").is_none());
    assert!(multi.state("fast-1").is_some_and(|s| s.containers[0].ready));
    let mut h = handlers.clone();
    wait_until(Duration::from_secs(10), || {
        let ok = h.borrow_and_update().iter().all(|h| h.problem.is_none());
        async move { ok.then_some(()).ok_or("a handler still has a problem") }
    })
    .await
    .expect("every handler is able");

    // A new pod of the class goes straight there.
    multi.start(&pod("fast-2", Some("fast"))).await;
    assert!(other.state("fast-2").is_some());
    let mut running = multi.running();
    running.sort();
    assert_eq!(running, ["fast-1", "fast-2", "plain"]);

    // Stops go where the pod runs.
    multi.stop("fast-1", Duration::ZERO).await;
    multi.stop("plain", Duration::ZERO).await;
    assert!(other.state("fast-1").is_none() && default.state("plain").is_none());
    assert_eq!(multi.running(), ["fast-2"]);
}

#[tokio::test]
async fn a_missing_class_or_a_handler_not_offered_waits_saying_so() {
    let multi = MultiRuntime::new(sim(3), Vec::new(), lookup());
    let s = multi.start(&pod("g", Some("gone"))).await;
    assert_eq!(
        waiting_reason(&s).map(|(_, m)| m),
        Some("RuntimeClass \"gone\" not found".into())
    );
    let s = multi.start(&pod("k", Some("elsewhere"))).await;
    let (_, message) = waiting_reason(&s).expect("waiting");
    assert!(message.contains("\"kata\" not supported"), "{message}");
    // Deleting such a pod forgets it.
    multi.stop("k", Duration::ZERO).await;
    assert!(multi.state("k").is_none());
    // A lookup that fails says so rather than guessing.
    let failing: ClassLookup = Arc::new(|_| Box::pin(async { Err("no leader".to_string()) }));
    let multi = MultiRuntime::new(sim(4), Vec::new(), failing);
    let s = multi.start(&pod("f", Some("fast"))).await;
    let (_, message) = waiting_reason(&s).expect("waiting");
    assert!(message.contains("no leader"), "{message}");
}
