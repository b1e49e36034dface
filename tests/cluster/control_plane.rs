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
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

pub(crate) fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap()
}

/// Waits until the pods labelled `app=<app>` satisfy `ok`; returns them.
pub(crate) async fn pods_until(
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

/// Waits until `name` is gone from `api`.
pub async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_until(Duration::from_secs(20), || {
        let (api, name) = (api.clone(), name.to_string());
        async move {
            match api.get_opt(&name).await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name} is not gone: {e}"));
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
    let victim = left
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.metadata.name.clone())
        .unwrap();
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
    gone(&rss, "web").await;
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
    gone(&rss, "fg").await;
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

fn deployment(
    name: &str,
    replicas: i32,
    surge: i32,
    unavailable: i32,
    image: &str,
) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}
    }))
    .unwrap()
}

/// Every state the pods of `app` pass through, as (active, ready) counts
/// after each change, until `stop` fires.
fn record_states(
    pods: Api<Pod>,
    app: &str,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Vec<(usize, usize)>> {
    let app = app.to_string();
    tokio::spawn(async move {
        let lp = ListParams::default().labels(&format!("app={app}"));
        let listed = pods.list(&lp).await.unwrap();
        let mut seen: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
        let state = |p: &Pod| {
            let active = p.metadata.deletion_timestamp.is_none();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (active, active && ready)
        };
        for p in &listed.items {
            seen.insert(p.metadata.name.clone().unwrap(), state(p));
        }
        let count = |seen: &std::collections::BTreeMap<String, (bool, bool)>| {
            (
                seen.values().filter(|s| s.0).count(),
                seen.values().filter(|s| s.1).count(),
            )
        };
        let mut states = vec![count(&seen)];
        let rv = listed.metadata.resource_version.unwrap();
        let wp = kube::api::WatchParams::default().labels(&format!("app={app}"));
        let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
        let mut stop = stop;
        loop {
            tokio::select! {
                _ = &mut stop => return states,
                ev = stream.next() => match ev {
                    Some(Ok(kube::api::WatchEvent::Added(p) | kube::api::WatchEvent::Modified(p))) => {
                        seen.insert(p.metadata.name.clone().unwrap(), state(&p));
                        states.push(count(&seen));
                    }
                    Some(Ok(kube::api::WatchEvent::Deleted(p))) => {
                        seen.remove(p.metadata.name.as_deref().unwrap());
                        states.push(count(&seen));
                    }
                    Some(_) => {}
                    None => return states,
                },
            }
        }
    })
}

/// Waits until the Deployment reports a finished rollout of its current
/// generation (what `kubectl rollout status` checks).
async fn rolled_out(
    api: &Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    within: Duration,
) {
    wait_until(within, || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let d = api.get(&name).await.map_err(|e| e.to_string())?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let s = d.status.clone().unwrap_or_default();
            let done = s.observed_generation >= d.metadata.generation
                && s.updated_replicas.unwrap_or(0) == want
                && s.replicas.unwrap_or(0) == want
                && s.available_replicas.unwrap_or(0) == want;
            if done {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("rollout of {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_never_exceeds_max_surge_or_max_unavailable() {
    let c = TestCluster::start(3).unwrap();
    let k = api_ready(&c, 1).await;
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    for (name, replicas, surge, unavailable) in [
        ("roll-a", 6, 2, 1),
        ("roll-b", 4, 1, 0),
        ("roll-c", 4, 0, 1),
    ] {
        deploys
            .create(
                &PostParams::default(),
                &deployment(name, replicas, surge, unavailable, "v1"),
            )
            .await
            .unwrap();
        rolled_out(&deploys, name, Duration::from_secs(30)).await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let recorder = record_states(pods.clone(), name, stop_rx);
        let patch =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}});
        deploys
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
        rolled_out(&deploys, name, Duration::from_secs(30)).await;
        let _ = stop_tx.send(());
        let states = recorder.await.unwrap();
        assert!(
            states.len() > replicas as usize,
            "{name}: the rollout was recorded: {states:?}"
        );
        let max = (replicas + surge) as usize;
        let min = (replicas - unavailable) as usize;
        for (i, (active, ready)) in states.iter().enumerate() {
            assert!(
                *active <= max,
                "{name}: state {i}: {active} pods > replicas + maxSurge = {max}: {states:?}"
            );
            assert!(
                *ready >= min,
                "{name}: state {i}: {ready} ready < replicas - maxUnavailable = {min}: {states:?}"
            );
        }
        let images: Vec<String> = pods
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.spec.unwrap().containers[0].image.clone().unwrap())
            .collect();
        assert_eq!(images, vec!["v2".to_string(); replicas as usize], "{name}");
    }
}

/// The store leader (and so the control plane) is killed mid-rollout: the
/// rollout completes under the new leader, and the fenced writes never
/// let the pods exceed replicas + maxSurge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_the_death_of_the_leader() {
    let mut c = TestCluster::start(5).unwrap();
    let leader = c.wait_leader(1).await;
    let client_node = if leader == 1 { 2 } else { 1 };
    let k = api_ready(&c, client_node).await;
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let (replicas, surge) = (8, 2);
    deploys
        .create(
            &PostParams::default(),
            &deployment("ha", replicas, surge, 1, "v1"),
        )
        .await
        .unwrap();
    rolled_out(&deploys, "ha", Duration::from_secs(30)).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let recorder = record_states(pods.clone(), "ha", stop_rx);
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}});
    deploys
        .patch("ha", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    // As soon as the rollout has started, the leader dies.
    pods_until(&pods, "ha", "the first new pod", |p| {
        p.iter().any(|x| {
            x.spec
                .as_ref()
                .is_some_and(|s| s.containers[0].image.as_deref() == Some("v2"))
        })
    })
    .await;
    c.kill(leader);
    rolled_out(&deploys, "ha", Duration::from_secs(60)).await;
    let _ = stop_tx.send(());
    let states = recorder.await.unwrap();
    let max = (replicas + surge) as usize;
    assert!(
        states.iter().all(|(active, _)| *active <= max),
        "more than {max} pods at once: {states:?}"
    );
}

/// An unschedulable pod gets PodScheduled=False with upstream's message
/// and an Event; a node that fits appearing (a Node event, no polling)
/// gets it scheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_is_scheduled_when_a_fitting_node_joins() {
    let c = TestCluster::start(2).unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let nodes: Api<Node> = Api::all(k.clone());
    wait_until(Duration::from_secs(20), || {
        let nodes = nodes.clone();
        async move {
            let n = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{n} nodes"))
            }
        }
    })
    .await
    .unwrap();
    let big: Pod = serde_json::from_value(json!({
        "metadata": {"name": "big", "labels": {"app": "big"}},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "64"}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &big).await.unwrap();
    let waiting = pods_until(&pods, "big", "unschedulable", |p| {
        p.iter().any(|x| {
            x.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled"
                            && c.status == "False"
                            && c.reason.as_deref() == Some("Unschedulable")
                    })
                })
        })
    })
    .await;
    let cond = waiting[0]
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(
        cond.message.as_deref(),
        Some("0/2 nodes are available: 2 Insufficient cpu.")
    );
    // The Event follows the condition (a separate write).
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(k.clone());
    wait_until(Duration::from_secs(20), || {
        let events = events.clone();
        async move {
            let evs = events
                .list(&ListParams::default().fields("involvedObject.name=big"))
                .await
                .map_err(|e| e.to_string())?
                .items;
            if evs
                .iter()
                .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
            {
                Ok(())
            } else {
                Err(format!("{} events", evs.len()))
            }
        }
    })
    .await
    .unwrap();
    // A big node joins (registered as a kubelet would).
    let spec = shoal::kubelet::NodeSpec {
        name: "node-9".into(),
        address: "127.0.0.9".into(),
        region: "local".into(),
        zone: "a".into(),
        milli_cpu: 128_000,
        memory_bytes: 1 << 40,
        pods: 110,
    };
    let node: Node =
        serde_json::from_value(shoal::kubelet::node_object(&spec, "sim", &[], &[])).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let bound = pods_until(&pods, "big", "bound to the big node", |p| {
        p.iter()
            .any(|x| x.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-9"))
    })
    .await;
    assert_eq!(bound.len(), 1);
}

/// Deleting a Deployment removes its ReplicaSets and pods; with
/// `--cascade=orphan` (propagationPolicy Orphan) they stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_cascades_unless_orphaned() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::default_namespaced(k.clone());
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    for name in ["gone", "kept"] {
        deploys
            .create(&PostParams::default(), &deployment(name, 2, 1, 0, "v1"))
            .await
            .unwrap();
        rolled_out(&deploys, name, Duration::from_secs(30)).await;
    }
    deploys
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    pods_until(&pods, "gone", "pods gone", |p| p.is_empty()).await;
    wait_until(Duration::from_secs(20), || {
        let rss = rss.clone();
        async move {
            let n = rss
                .list(&ListParams::default().labels("app=gone"))
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} replica sets"))
            }
        }
    })
    .await
    .unwrap();
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    deploys.delete("kept", &orphan).await.unwrap();
    gone(&deploys, "kept").await;
    let left = rss
        .list(&ListParams::default().labels("app=kept"))
        .await
        .unwrap()
        .items;
    assert_eq!(left.len(), 1);
    assert!(left[0]
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(|r| r.is_empty()));
    let kept = pods_until(&pods, "kept", "pods kept", |p| live(p) == 2).await;
    assert_eq!(kept.len(), 2);
}
