//! StatefulSets on two process-runtime nodes: ordinals created in order,
//! each Ready before the next (read from a watch, not from timestamps);
//! scale-down from the highest ordinal; a deleted pod comes back under its
//! name with its own claim and the data on it; deleting the set keeps the
//! claims (Retain); a set whose Service is missing still runs, with an
//! Event.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::json;
use shoal_harness::TestCluster;

use crate::kube_api::api_ready;
use crate::until;

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinals_start_in_order_keep_their_claims_and_scale_down_from_the_top() {
    let c = TestCluster::start_with(2, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let (sets, pods, claims, events): (
        Api<StatefulSet>,
        Api<Pod>,
        Api<PersistentVolumeClaim>,
        Api<Event>,
    ) = (
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
    );
    let list = pods.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut watch = pods
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    // The pod writes its ordinal's name into its claim once, then serves.
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "none",
                    "command": ["sh", "-c", "[ -f /data/who ] || echo $POD > /data/who; exec sleep 3600"],
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();

    // From the watch: when web-i first appears, web-0..i-1 were all seen
    // Ready already.
    let mut seen_ready: BTreeSet<String> = BTreeSet::new();
    let mut created: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen_ready.len() < 3 {
        let Ok(ev) = tokio::time::timeout_at(deadline, watch.next()).await else {
            let l = pods.list(&ListParams::default()).await.unwrap();
            let st: Vec<_> = l
                .items
                .iter()
                .map(|p| (p.metadata.name.clone(), p.status.clone()))
                .collect();
            let cl: Vec<_> = claims
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| (c.metadata.name, c.spec, c.status))
                .collect();
            panic!("three Ready pods within 90 s: created {created:?}, ready {seen_ready:?}, pods {st:?}, claims {cl:?}");
        };
        let ev = ev.expect("the watch goes on").unwrap();
        let p = match ev {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
            _ => continue,
        };
        let name = p.metadata.name.clone().unwrap();
        if !created.contains(&name) {
            let i: usize = name.trim_start_matches("web-").parse().unwrap();
            let before: BTreeSet<String> = (0..i).map(|j| format!("web-{j}")).collect();
            assert!(
                before.is_subset(&seen_ready),
                "{name} created before {before:?} were Ready (ready: {seen_ready:?})"
            );
            created.push(name.clone());
        }
        if ready(&p) {
            seen_ready.insert(name);
        }
    }
    assert_eq!(created, ["web-0", "web-1", "web-2"]);
    // Each pod has its identity and its own claim.
    let p1 = pods.get("web-1").await.unwrap();
    let spec = p1.spec.unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-1"), Some("web"))
    );
    for i in 0..3 {
        let c = claims.get(&format!("data-web-{i}")).await.unwrap();
        assert_eq!(
            c.status.and_then(|s| s.phase).as_deref(),
            Some("Bound"),
            "data-web-{i}"
        );
    }
    // The Service named does not exist: an Event says so.
    until("ServiceNotFound", 20, || async {
        let l = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        l.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ServiceNotFound"))
            .then_some(())
            .ok_or("no ServiceNotFound Event".to_string())
    })
    .await;

    // web-0 deleted: it comes back under its name, with its claim and data.
    let uid0 = pods.get("web-0").await.unwrap().metadata.uid.unwrap();
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    until("web-0 again, Ready", 60, || async {
        let p = pods.get("web-0").await.map_err(|e| e.to_string())?;
        (p.metadata.uid.as_deref() != Some(uid0.as_str()) && ready(&p))
            .then_some(())
            .ok_or("not yet".to_string())
    })
    .await;
    let claim0 = claims.get("data-web-0").await.unwrap();
    let pv = claim0.spec.unwrap().volume_name.unwrap();
    let dir = serde_json::to_value(
        Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(k.clone())
            .get(&pv)
            .await
            .unwrap(),
    )
    .unwrap()["spec"]["hostPath"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/who"))
            .unwrap()
            .trim(),
        "web-0"
    );
    assert!(pods.logs("web-0", &LogParams::default()).await.is_ok());

    // Scale to 1: web-2 goes before web-1.
    let mut gone_order: Vec<String> = Vec::new();
    let scale = json!({"spec": {"replicas": 1}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while gone_order.len() < 2 {
        let ev = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("two pods gone within 90 s")
            .expect("the watch goes on")
            .unwrap();
        if let WatchEvent::Deleted(p) = ev {
            let n = p.metadata.name.unwrap();
            if n != "web-0" {
                gone_order.push(n);
            }
        }
    }
    assert_eq!(gone_order, ["web-2", "web-1"]);

    // The set deleted: its claims stay (Retain, the default).
    sets.delete("web", &DeleteParams::default()).await.unwrap();
    until("the pods gone", 60, || async {
        let n = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (n == 0).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;
    let left: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["data-web-0", "data-web-1", "data-web-2"]);
}

/// The interim rule (README): a StatefulSet pod on a killed node stays
/// Terminating and is not replaced, while a ReplicaSet's pods move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_pod_on_a_lost_node_stays_terminating_while_others_move() {
    let _timing = crate::timing_guard().await;
    let mut c = TestCluster::start(3).unwrap();
    let k = api_ready(&c, 1).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(k.clone());
    until("three nodes", 60, || async {
        let n = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (n == 3).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    let rss: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::default_namespaced(k.clone());
    rss.create(
        &PostParams::default(),
        &crate::control_plane::replica_set("mover", 6),
    )
    .await
    .unwrap();
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "serviceName": "web", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    Api::<StatefulSet>::default_namespaced(k.clone())
        .create(&PostParams::default(), &set)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let running = |p: &Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    };
    until("nine pods running", 60, || async {
        let l = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let n = l.items.iter().filter(|p| running(p)).count();
        (n == 9).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    let web1 = pods.get("web-1").await.unwrap();
    let (uid, victim) = (
        web1.metadata.uid.unwrap(),
        web1.spec.unwrap().node_name.unwrap(),
    );
    // The scheduler does not spread a set's pods by owner, so web-1's node
    // may hold another ordinal too: those stay behind with it.
    let ready_after = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(victim.as_str()))
        .count() as i32;
    // Ask through a node that stays.
    let v = c.index_of(&victim).unwrap();
    let k = api_ready(&c, v % 3 + 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let sets: Api<StatefulSet> = Api::default_namespaced(k.clone());
    c.kill(v);
    until(
        "the ReplicaSet's pods running off the dead node",
        60,
        || async {
            let l = pods
                .list(&ListParams::default().labels("app=mover"))
                .await
                .map_err(|e| e.to_string())?;
            let off = l
                .items
                .iter()
                .filter(|p| {
                    running(p)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                            != Some(victim.as_str())
                })
                .count();
            (off == 6).then_some(()).ok_or(format!("{off} of 6"))
        },
    )
    .await;
    // web-1 evicted: Terminating, and the set has seen it (only the
    // ordinals off the dead node ready).
    until(
        "web-1 terminating, the set at the others ready",
        60,
        || async {
            let p = pods.get("web-1").await.map_err(|e| e.to_string())?;
            let s = sets.get("web").await.map_err(|e| e.to_string())?;
            let ready = s.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            (p.metadata.deletion_timestamp.is_some() && ready == ready_after)
                .then_some(())
                .ok_or(format!(
                    "terminating {}, {ready} ready of {ready_after} off the dead node",
                    p.metadata.deletion_timestamp.is_some()
                ))
        },
    )
    .await;
    let still = pods.get("web-1").await.unwrap();
    assert_eq!(
        still.metadata.uid.as_deref(),
        Some(uid.as_str()),
        "web-1 was replaced"
    );
    assert_eq!(
        still.spec.unwrap().node_name.as_deref(),
        Some(victim.as_str())
    );
    let others = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(others.len(), 3, "one pod per ordinal");
}
