//! Node lifecycle in in-process clusters with sim kubelets: the pods of
//! a killed node run elsewhere within the bound (evicted through the
//! eviction path, charged to their disruption budget), lossy links evict
//! nothing, and (a benchmark) how long a node of about 1,000 pods takes.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use shoal_harness::{wait_until, TestCluster};

use crate::control_plane::{pods_until, replica_set};
use crate::kube_api::api_ready;

/// A ReplicaSet `app` of ten pods, all Running: the client, the pods'
/// API, and (pod, node) of each.
async fn ten_running(
    c: &TestCluster,
    app: &str,
) -> (kube::Client, Api<Pod>, Vec<(String, String)>) {
    let k = api_ready(c, 1).await;
    // Every node registered first, or a slow start (CI) can put all ten
    // on the first one.
    all_registered(&k, c.len()).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    rss.create(&PostParams::default(), &replica_set(app, 10))
        .await
        .unwrap();
    let running = pods_until(&pods, app, "ten running", |p| {
        running_by_node(p).len() == 10
    })
    .await;
    (k, pods, running_by_node(&running))
}

/// Waits until `n` Nodes are registered.
async fn all_registered(k: &kube::Client, n: usize) {
    let nodes: Api<Node> = Api::all(k.clone());
    wait_until(Duration::from_secs(60), || {
        let nodes = nodes.clone();
        async move {
            let got = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if got == n {
                Ok(())
            } else {
                Err(format!("{got} nodes registered"))
            }
        }
    })
    .await
    .unwrap();
}

/// Live pods of `app` that are Running, by node.
fn running_by_node(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// SIGKILL-equivalent of one node of five: its pods run elsewhere within
/// the bound (goal: under 5 s, measured 2.8–3.3 s in a debug build; asserted:
/// 6 s, leaving room for a loaded CI machine, and below the 6 s this took
/// when tolerations counted from `down` instead of from the suspicion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_run_elsewhere_within_the_bound() {
    let _timing = crate::timing_guard().await;
    let mut c = TestCluster::start(5).unwrap();
    let (k, pods, placed) = ten_running(&c, "heal").await;
    // A budget over them: the node lifecycle's evictions go through the
    // eviction path, charged to it (a watch sees each recorded).
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(k.clone());
    let budget = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "heal"},
        "spec": {"maxUnavailable": 10, "selector": {"matchLabels": {"app": "heal"}}}}))
    .unwrap();
    let rv = pdbs
        .create(&PostParams::default(), &budget)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut budget_watch = pdbs
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    // Kill a node that runs pods and is not the one the client uses.
    let victim = (2..=5)
        .map(|i| format!("node-{i}"))
        .find(|n| placed.iter().any(|(_, node)| node == n))
        .expect("pods spread over the nodes");
    let idx = c.index_of(&victim).expect("a node of this cluster");
    let killed = tokio::time::Instant::now();
    c.kill(idx);
    pods_until(&pods, "heal", "ten running off the dead node", |p| {
        let r = running_by_node(p);
        r.len() == 10 && r.iter().all(|(_, n)| *n != victim)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("pods of {victim} ran elsewhere {took:?} after it was killed");
    assert!(took < Duration::from_secs(6), "{took:?}");
    let doomed: Vec<&String> = placed
        .iter()
        .filter(|(_, n)| *n == victim)
        .map(|(p, _)| p)
        .collect();
    let mut charged = std::collections::BTreeSet::new();
    while charged.len() < doomed.len() {
        let next = tokio::time::timeout(Duration::from_secs(20), budget_watch.next()).await;
        let Ok(Some(Ok(WatchEvent::Modified(b)))) = next else {
            assert!(
                matches!(next, Ok(Some(Ok(_)))),
                "the budget's watch ended before {doomed:?} were charged: {charged:?}"
            );
            continue;
        };
        let recorded = b.status.and_then(|s| s.disrupted_pods).unwrap_or_default();
        charged.extend(recorded.into_keys().filter(|p| doomed.contains(&p)));
    }
    let nodes: Api<Node> = Api::all(k.clone());
    let dead = nodes.get(&victim).await.unwrap();
    let ready = dead
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    let taints = dead.spec.unwrap().taints.unwrap_or_default();
    assert!(taints
        .iter()
        .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"));
    // Upstream's Events: the Node's status change, its pods not ready,
    // and each eviction.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::all(k.clone());
    wait_until(Duration::from_secs(20), || async {
        let all = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let has = |reason: &str, msg: &str| {
            all.iter().any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.message.as_deref().is_some_and(|m| m.contains(msg))
            })
        };
        let node_msg = format!("Node {victim} status is now: NodeNotReady");
        if has("NodeNotReady", &node_msg)
            && has("NodeNotReady", "Node is not ready")
            && has(
                "TaintManagerEviction",
                "Marking for deletion Pod default/heal-",
            )
        {
            Ok(())
        } else {
            Err(format!("{} Events", all.len()))
        }
    })
    .await
    .unwrap();
    // It comes back: Ready again, the taints gone.
    c.restart(idx).unwrap();
    wait_until(Duration::from_secs(30), || {
        let (nodes, victim) = (nodes.clone(), victim.clone());
        async move {
            let n = nodes.get(&victim).await.map_err(|e| e.to_string())?;
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == "node.kubernetes.io/unreachable"));
            if ready && !tainted {
                Ok(())
            } else {
                Err(format!("ready {ready}, tainted {tainted}"))
            }
        }
    })
    .await
    .unwrap();
}

/// 5 % packet loss between all nodes for a minute, no node dead: no pod
/// is evicted and every node stays Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute of packet loss; run: cargo test --test cluster no_pod_is_evicted -- --ignored"]
async fn no_pod_is_evicted_under_five_percent_packet_loss() {
    use shoal::transport::faults::{ChaosCommand, FaultSpec};
    let c = TestCluster::start(5).unwrap();
    let (k, pods, mut before) = ten_running(&c, "steady").await;
    before.sort();
    let all: Vec<String> = (1..=5).map(|i| format!("node-{i}")).collect();
    for i in 1..=5 {
        let rule = FaultSpec::Drop {
            p: 0.05,
            between: all.clone(),
        };
        c.node(i)
            .faults
            .apply(ChaosCommand::Add {
                rule,
                ttl_ms: Some(60_000),
            })
            .unwrap();
    }
    // The negative check: a minute under loss, watched through a watch of
    // every pod change (any eviction would show as a deletionTimestamp).
    let lp = ListParams::default().labels("app=steady");
    let mut changes = pods
        .watch(&kube::api::WatchParams::default().labels("app=steady"), "0")
        .await
        .unwrap()
        .boxed();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, changes.next()).await {
        if let Ok(kube::api::WatchEvent::Modified(p) | kube::api::WatchEvent::Deleted(p)) = ev {
            assert!(
                p.metadata.deletion_timestamp.is_none(),
                "evicted under packet loss: {:?}",
                p.metadata.name
            );
        }
    }
    for i in 1..=5 {
        c.node(i).faults.apply(ChaosCommand::Heal).unwrap();
    }
    let mut after = running_by_node(&pods.list(&lp).await.unwrap().items);
    after.sort();
    assert_eq!(after, before, "the same pods on the same nodes");
    let nodes: Api<Node> = Api::all(k);
    for n in nodes.list(&ListParams::default()).await.unwrap().items {
        let ready = n
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True", "{:?}", n.metadata.name);
    }
}

/// Benchmark (docs/BENCHMARKS.md): a node holding about 1,000 pods dies;
/// the time until every pod runs elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test --release --test cluster node_death_with_1000_pods -- --ignored --nocapture"]
async fn node_death_with_1000_pods() {
    // Room enough that LeastAllocated keeps spreading (with 2 cores a
    // node, default requests would score every node full and pile pods up).
    let mut c = TestCluster::start_with(5, |cfg| {
        cfg.capacity.pods = 2000;
        cfg.capacity.cpu_millis = 1_000_000;
        cfg.capacity.memory_bytes = 4 << 40;
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    // All five kubelets first, so the pods spread (about 1,000 a node).
    all_registered(&k, 5).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let total = 5000;
    rss.create(&PostParams::default(), &replica_set("many", total))
        .await
        .unwrap();
    let lp = ListParams::default().labels("app=many");
    wait_until(Duration::from_secs(300), || {
        let (pods, lp) = (pods.clone(), lp.clone());
        async move {
            let n = running_by_node(&pods.list(&lp).await.map_err(|e| e.to_string())?.items).len();
            if n == total as usize {
                Ok(())
            } else {
                Err(format!("{n} running"))
            }
        }
    })
    .await
    .unwrap();
    let placed = running_by_node(&pods.list(&lp).await.unwrap().items);
    // The node (other than the client's) holding the most pods dies.
    let count = |name: &str| placed.iter().filter(|(_, n)| n == name).count();
    let idx = (2..=5).max_by_key(|i| count(&format!("node-{i}"))).unwrap();
    let victim = format!("node-{idx}");
    let on_victim = count(&victim);
    assert!(on_victim > 0, "{placed:?}");
    let killed = tokio::time::Instant::now();
    c.kill(idx);
    wait_until(Duration::from_secs(300), || {
        let (pods, lp, victim) = (pods.clone(), lp.clone(), victim.clone());
        async move {
            let r = running_by_node(&pods.list(&lp).await.map_err(|e| e.to_string())?.items);
            let ok = r.len() == total as usize && r.iter().all(|(_, n)| *n != victim);
            if ok {
                Ok(())
            } else {
                Err(format!("{} running", r.len()))
            }
        }
    })
    .await
    .unwrap();
    eprintln!(
        "{on_victim} pods of the dead node ran elsewhere {:?} after the kill",
        killed.elapsed()
    );
}
