//! A worker-only node (roles = ["worker"]): it holds no store replica, yet
//! its kubelet registers, runs the pods bound to it and reports them
//! through the replicas, and keeps doing so when the leader dies.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use shoal::config::Role;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn pod_on(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "worker-only"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

/// Waits until pod `name` is Running.
async fn running(pods: &Api<Pod>, name: &str) {
    wait_until(Duration::from_secs(30), || {
        let pods = pods.clone();
        let name = name.to_string();
        async move {
            let p = pods.get(&name).await.map_err(|e| e.to_string())?;
            match p.status.and_then(|s| s.phase) {
                Some(phase) if phase == "Running" => Ok(()),
                other => Err(format!("{name}: {other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name} runs on the worker: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_only_node_runs_pods_without_a_replica_and_outlives_the_leader() {
    // Kills the leader and waits on scheduling: not beside the other heavy
    // tests (a full run once saw its pod Pending for 30 s).
    let _timing = crate::timing_guard().await;
    let mut c = TestCluster::start_with(4, |cfg| {
        if cfg.name == "node-4" {
            cfg.roles = vec![Role::Worker];
        }
    })
    .unwrap();
    let leader = c.wait_leader(1).await;
    // The client talks to an API node that is not the leader, which dies.
    let via = (1..=3).find(|&i| i != leader).unwrap();
    let k = api_ready(&c, via).await;
    let nodes: Api<Node> = Api::all(k.clone());
    wait_until(Duration::from_secs(30), || {
        let nodes = nodes.clone();
        async move {
            nodes
                .get_opt("node-4")
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ())
                .ok_or_else(|| "node-4 not registered".to_string())
        }
    })
    .await
    .expect("the worker registers its Node");
    let pods: Api<Pod> = Api::default_namespaced(k);
    pods.create(&PostParams::default(), &pod_on("w1", "node-4"))
        .await
        .unwrap();
    running(&pods, "w1").await;
    // It holds no replica: the leader admits store nodes only.
    let status = c.node(leader).store.status();
    assert_eq!(status.role_of("node-4"), "none", "{status:?}");
    assert!(!c.node(4).store.is_replica());

    // The leader (perhaps the replica the worker watches) dies: the worker
    // finds the new one and another replica to watch.
    c.kill(leader);
    let old = format!("node-{leader}");
    wait_until(Duration::from_secs(20), || async {
        let s = c.on(via, |h| async move { h.store.status() }).await;
        match s.leader {
            Some(l) if l != old => Ok(()),
            other => Err(format!("leader {other:?}")),
        }
    })
    .await
    .expect("a new leader");
    pods.create(&PostParams::default(), &pod_on("w2", "node-4"))
        .await
        .unwrap();
    running(&pods, "w2").await;
}

/// The replica a worker's kubelet watches dies: its watches resume from
/// their last revision on another replica, without listing every pod
/// again, and a pod bound afterwards starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_resumes_its_watches_on_another_replica_without_listing_again() {
    let mut c = TestCluster::start_with(4, |cfg| {
        if cfg.name == "node-4" {
            cfg.roles = vec![Role::Worker];
        }
    })
    .unwrap();
    c.wait_leader(1).await;
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k);
    pods.create(&PostParams::default(), &pod_on("r1", "node-4"))
        .await
        .unwrap();
    running(&pods, "r1").await;
    // The replica its watches are on, as it says on /metrics.
    let on = |c: &TestCluster| -> Vec<String> {
        c.node(4)
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("shoal_kubelet_watch_replica{") && l.ends_with(" 1"))
            .filter_map(|l| Some(l.split("replica=\"").nth(1)?.split('"').next()?.to_string()))
            .collect()
    };
    let watched = on(&c);
    assert_eq!(watched.len(), 1, "{watched:?}");
    let watched = watched[0].clone();
    let dies = c.index_of(&watched).expect("a replica of this cluster");
    let via = (1..=3).find(|&i| i != dies).unwrap();
    let k = api_ready(&c, via).await;
    let pods: Api<Pod> = Api::default_namespaced(k);
    let metric = |c: &TestCluster, name: &str| -> u64 {
        c.node(4)
            .metrics
            .render()
            .lines()
            .find(|l| l.starts_with(&format!("shoal_{name}_total")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(metric(&c, "kubelet_pod_lists"), 1);
    c.kill(dies);
    pods.create(&PostParams::default(), &pod_on("r2", "node-4"))
        .await
        .unwrap();
    running(&pods, "r2").await;
    assert!(
        metric(&c, "kubelet_watch_resumes") >= 1,
        "the watches resumed"
    );
    assert_eq!(metric(&c, "kubelet_pod_lists"), 1, "without listing again");
    let now = on(&c);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], watched);
}
