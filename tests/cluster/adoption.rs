//! Adoption and release, as upstream's controllers do: a ReplicaSet
//! created over orphaned pods its selector matches takes them instead of
//! creating new ones; a pod relabelled out of its selector is released
//! and replaced; a Deployment adopts an orphaned ReplicaSet.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use shoal_harness::TestCluster;

use crate::control_plane::{gone, pods_until, replica_set};
use crate::kube_api::api_ready;

fn controller_uid(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_adopt_orphans_and_release_what_no_longer_matches() {
    let c = TestCluster::start(3).unwrap();
    let k = api_ready(&c, 1).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());

    // Three pods, orphaned by deleting their ReplicaSet with Orphan.
    rss.create(&PostParams::default(), &replica_set("adopt", 3))
        .await
        .unwrap();
    let first = pods_until(&pods, "adopt", "three owned pods", |p| {
        names(p).len() == 3 && p.iter().all(|p| controller_uid(p).is_some())
    })
    .await;
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    rss.delete("adopt", &orphan).await.unwrap();
    pods_until(&pods, "adopt", "three orphans", |p| {
        names(p).len() == 3 && p.iter().all(|p| controller_uid(p).is_none())
    })
    .await;
    // The garbage collector drops the orphan finalizer after releasing the
    // pods: only then is the name free again.
    gone(&rss, "adopt").await;

    // A new ReplicaSet with the same selector adopts them: no new pods.
    let rs = rss
        .create(&PostParams::default(), &replica_set("adopt", 3))
        .await
        .unwrap();
    let uid = rs.metadata.uid.clone().unwrap();
    let adopted = pods_until(&pods, "adopt", "the orphans adopted", |p| {
        p.iter()
            .all(|p| controller_uid(p).as_deref() == Some(uid.as_str()))
    })
    .await;
    assert_eq!(
        names(&adopted),
        names(&first),
        "the same three pods, none new"
    );

    // A pod relabelled out of the selector is released and replaced.
    let moved = names(&adopted).into_iter().next().unwrap();
    let relabel = json!({"metadata": {"labels": {"app": "elsewhere"}}});
    pods.patch(&moved, &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    let now = pods_until(&pods, "adopt", "a replacement", |p| {
        names(p).len() == 3 && !names(p).contains(&moved)
    })
    .await;
    assert!(now
        .iter()
        .all(|p| controller_uid(p).as_deref() == Some(uid.as_str())));
    let released = pods.get(&moved).await.unwrap();
    assert_eq!(controller_uid(&released), None, "released");

    // A bare pod the selector matches appearing later is adopted (its
    // event enqueues the ReplicaSet), and the surplus goes.
    let stray: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &stray).await.unwrap();
    pods_until(
        &pods,
        "adopt",
        "the stray adopted or removed, three left",
        |p| {
            names(p).len() == 3
                && p.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .all(|p| controller_uid(p).as_deref() == Some(uid.as_str()))
        },
    )
    .await;

    // A Deployment adopts an orphaned ReplicaSet (this one has no owner)
    // whose labels its selector matches.
    let label = json!({"metadata": {"labels": {"app": "adopt"}}});
    rss.patch("adopt", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let deploys: Api<Deployment> = Api::default_namespaced(k);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "adopt"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "adopt"}},
                 "template": {"metadata": {"labels": {"app": "adopt"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    let duid = d.metadata.uid.unwrap();
    shoal_harness::wait_until(std::time::Duration::from_secs(20), || {
        let (rss, duid) = (rss.clone(), duid.clone());
        async move {
            let rs = rss.get("adopt").await.map_err(|e| e.to_string())?;
            let owner = rs
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid);
            if owner.as_deref() == Some(duid.as_str()) {
                Ok(())
            } else {
                Err(format!("owner {owner:?}"))
            }
        }
    })
    .await
    .unwrap();
}
