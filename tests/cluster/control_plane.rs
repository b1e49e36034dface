//! The control plane on an in-process cluster: the ReplicaSet controller
//! keeps its pods, the garbage collector follows owners under each
//! propagation policy, and the sim kubelets register their Nodes and run
//! the pods bound to them.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use shoal::testing::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap()
}

/// Waits until the pods labelled `app=<app>` satisfy `ok`; returns them.
async fn pods_until(
    api: &Api<Pod>,
    app: &str,
    what: &str,
    ok: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("app={app}"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ok = &ok;
    wait_until(Duration::from_secs(20), || {
        let (api, lp, seen) = (api.clone(), lp.clone(), seen.clone());
        async move {
            let pods = api.list(&lp).await.map_err(|e| e.to_string())?.items;
            let good = ok(&pods);
            let n = pods.len();
            *seen.lock().unwrap() = pods;
            if good {
                Ok(())
            } else {
                Err(format!("{n} pods"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let pods = seen.lock().unwrap().clone();
    pods
}

fn live(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_keep_their_pods_and_dependents_follow_owners() {
    let c = TestCluster::start(3).unwrap();
    let k = api_ready(&c, 1).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let pp = PostParams::default();

    rss.create(&pp, &replica_set("web", 3)).await.unwrap();
    let made = pods_until(&pods, "web", "three pods", |p| live(p) == 3).await;
    let owner = &made[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ReplicaSet", "web", Some(true))
    );
    // Status follows.
    wait_until(Duration::from_secs(20), || {
        let rss = rss.clone();
        async move {
            let s = rss.get("web").await.map_err(|e| e.to_string())?.status;
            match s {
                Some(s) if s.replicas == 3 && s.observed_generation == Some(1) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();

    // Scale down, then a deleted pod is replaced.
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let left = pods_until(&pods, "web", "two pods", |p| live(p) == 2).await;
    let victim = left[0].metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    pods_until(&pods, "web", "a replacement", |p| {
        live(p) == 2
            && !p
                .iter()
                .any(|x| x.metadata.name.as_deref() == Some(victim.as_str()))
    })
    .await;

    // Orphan: the ReplicaSet goes, its pods stay without the reference.
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    rss.delete("web", &orphan).await.unwrap();
    wait_until(Duration::from_secs(20), || {
        let rss = rss.clone();
        async move {
            match rss.get_opt("web").await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();
    let kept = pods_until(&pods, "web", "orphans", |p| {
        live(p) == 2
            && p.iter().all(|x| {
                x.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|r| r.is_empty())
            })
    })
    .await;
    assert_eq!(kept.len(), 2);

    // Background (the default): the pods go with their ReplicaSet.
    rss.create(&pp, &replica_set("bg", 2)).await.unwrap();
    pods_until(&pods, "bg", "two pods", |p| live(p) == 2).await;
    rss.delete("bg", &DeleteParams::default()).await.unwrap();
    pods_until(&pods, "bg", "pods gone", |p| p.is_empty()).await;

    // Foreground: the ReplicaSet stays (marked) until its pods are gone.
    rss.create(&pp, &replica_set("fg", 2)).await.unwrap();
    pods_until(&pods, "fg", "two pods", |p| live(p) == 2).await;
    rss.delete("fg", &DeleteParams::foreground()).await.unwrap();
    pods_until(&pods, "fg", "pods gone", |p| p.is_empty()).await;
    wait_until(Duration::from_secs(20), || {
        let rss = rss.clone();
        async move {
            match rss.get_opt("fg").await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_kubelets_register_nodes_and_run_bound_pods() {
    let c = TestCluster::start(3).unwrap();
    let k = api_ready(&c, 1).await;
    let nodes: Api<Node> = Api::all(k.clone());
    wait_until(Duration::from_secs(20), || {
        let nodes = nodes.clone();
        async move {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let ready = list
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if ready == 3 {
                Ok(())
            } else {
                Err(format!("{ready} ready"))
            }
        }
    })
    .await
    .unwrap();
    let n2 = nodes.get("node-2").await.unwrap();
    let labels = n2.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-2");
    assert!(labels.contains_key("topology.kubernetes.io/zone"));
    assert!(n2.status.unwrap().allocatable.unwrap().contains_key("cpu"));

    let pods: Api<Pod> = Api::default_namespaced(k);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bound", "labels": {"app": "bound"}},
        "spec": {"nodeName": "node-2", "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = pods_until(&pods, "bound", "running and ready", |p| {
        p.iter().any(|x| {
            let s = x.status.as_ref();
            s.and_then(|s| s.phase.as_deref()) == Some("Running")
                && s.and_then(|s| s.pod_ip.as_ref()).is_some()
                && s.and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
    let st = running[0].status.as_ref().unwrap();
    assert_eq!(st.container_statuses.as_ref().unwrap()[0].restart_count, 0);
    let logs = pods.logs("bound", &Default::default()).await.unwrap();
    assert!(logs.contains("container c (busybox) started"), "{logs}");
    // A graceful delete is finished by the kubelet.
    pods.delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    pods_until(&pods, "bound", "gone", |p| p.is_empty()).await;
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
/// the bound (goal: under 5 s; asserted: 20 s on this shared machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_run_elsewhere_within_the_bound() {
    let mut c = TestCluster::start(5).unwrap();
    let k = api_ready(&c, 1).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    rss.create(&PostParams::default(), &replica_set("heal", 10))
        .await
        .unwrap();
    let placed = pods_until(&pods, "heal", "ten running", |p| {
        running_by_node(p).len() == 10
    })
    .await;
    let placed = running_by_node(&placed);
    // Kill a node that runs pods and is not the one the client uses.
    let victim = (2..=5)
        .map(|i| format!("node-{i}"))
        .find(|n| placed.iter().any(|(_, node)| node == n))
        .expect("pods spread over the nodes");
    let idx: usize = victim.trim_start_matches("node-").parse().unwrap();
    let killed = tokio::time::Instant::now();
    c.kill(idx);
    pods_until(&pods, "heal", "ten running off the dead node", |p| {
        let r = running_by_node(p);
        r.len() == 10 && r.iter().all(|(_, n)| *n != victim)
    })
    .await;
    let took = killed.elapsed();
    eprintln!("pods of {victim} ran elsewhere {took:?} after it was killed");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let nodes: Api<Node> = Api::all(k);
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
}

/// 5 % packet loss between all nodes for a minute, no node dead: no pod
/// is evicted and every node stays Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute of packet loss; run: cargo test --test cluster no_flapping -- --ignored"]
async fn no_pod_is_evicted_under_five_percent_packet_loss() {
    use shoal::transport::faults::{ChaosCommand, FaultSpec};
    let c = TestCluster::start(5).unwrap();
    let k = api_ready(&c, 1).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    rss.create(&PostParams::default(), &replica_set("steady", 10))
        .await
        .unwrap();
    let before = pods_until(&pods, "steady", "ten running", |p| {
        running_by_node(p).len() == 10
    })
    .await;
    let mut before = running_by_node(&before);
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
