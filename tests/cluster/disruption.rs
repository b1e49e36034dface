//! PodDisruptionBudgets and `pods/eviction` through kube-rs on one sim
//! node: the disruption controller's status (integer and percentage
//! `minAvailable`, `maxUnavailable` over a Deployment's scale, pods with
//! no controller), an eviction spending the budget and the next one
//! refused with 429 and upstream's reason, a dry-run eviction that
//! changes nothing, and a pod that is not Ready evicted only as
//! `unhealthyPodEvictionPolicy` says.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use shoal_harness::TestCluster;

use crate::kube_api::{api_ready, config_with_token};
use crate::until;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// A bare pod (no controller) labelled `app`; `sick` ones crash-loop
/// (never Ready) on the sim runtime.
fn pod(name: &str, app: &str, sick: bool) -> Pod {
    let mut p = json!({"metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "none"}]}});
    if sick {
        p["metadata"]["annotations"] = json!({"sim.shoal.dev/exit-code": "1"});
    }
    obj(p)
}

fn budget(name: &str, app: &str, spec: Value) -> PodDisruptionBudget {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": app}});
    obj(json!({"metadata": {"name": name}, "spec": spec}))
}

/// The budget's status as JSON.
async fn status(pdbs: &Api<PodDisruptionBudget>, name: &str) -> Value {
    let pdb = pdbs.get(name).await.unwrap();
    serde_json::to_value(pdb.status).unwrap_or(Value::Null)
}

/// Waits until budget `name`'s status has `want`'s fields, for its
/// current generation.
async fn settles(pdbs: &Api<PodDisruptionBudget>, name: &str, want: Value) {
    until(&format!("budget {name}: {want}"), 30, || async {
        let pdb = pdbs.get(name).await.map_err(|e| e.to_string())?;
        let generation = pdb.metadata.generation.unwrap_or(0);
        let s = serde_json::to_value(&pdb.status).unwrap_or(Value::Null);
        let fits = want.as_object().unwrap().iter().all(|(k, v)| &s[k] == v)
            && s["observedGeneration"] == json!(generation);
        if fits {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
}

/// An eviction's answer: Ok, or the error's code and message with its
/// causes.
async fn evict(pods: &Api<Pod>, name: &str, dry_run: bool) -> Result<(), (u16, String)> {
    let ep = EvictParams {
        delete_options: None,
        post_options: PostParams {
            dry_run,
            ..PostParams::default()
        },
    };
    match pods.evict(name, &ep).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => {
            let causes = serde_json::to_string(&s.details).unwrap_or_default();
            Err((s.code, format!("{} {causes}", s.message)))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

async fn being_deleted(pods: &Api<Pod>, name: &str) -> bool {
    pods.get_opt(name)
        .await
        .unwrap()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_spend_budgets_and_a_spent_budget_answers_429() {
    let c = TestCluster::start(1).unwrap();
    api_ready(&c, 1).await;
    // kube-rs retries a 429 by default (for minutes, with no
    // Retry-After): this client is told not to, to see the answer.
    let token = std::fs::read_to_string(&c.config(1).auth.admin_token_file).unwrap();
    let mut config = config_with_token(&c, 1, Some(token.trim())).await;
    config.default_retry = false;
    let k = kube::Client::try_from(config).unwrap();
    let (pods, pdbs, deploys): (Api<Pod>, Api<PodDisruptionBudget>, Api<Deployment>) = (
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
    );
    let pp = PostParams::default();

    // Three bare pods under minAvailable 2: one disruption allowed.
    for i in 0..3 {
        pods.create(&pp, &pod(&format!("bare-{i}"), "bare", false))
            .await
            .unwrap();
    }
    pdbs.create(&pp, &budget("bare", "bare", json!({"minAvailable": 2})))
        .await
        .unwrap();
    settles(
        &pdbs,
        "bare",
        json!({"currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "disruptionsAllowed": 1}),
    )
    .await;
    // A dry run changes nothing.
    evict(&pods, "bare-0", true).await.unwrap();
    assert!(!being_deleted(&pods, "bare-0").await);
    assert_eq!(status(&pdbs, "bare").await["disruptionsAllowed"], 1);
    // The first eviction spends the budget at once: the status says so,
    // with the pod recorded, until the controller has seen the pod go
    // (then it is no longer healthy); the next is refused: 429.
    evict(&pods, "bare-0", false).await.unwrap();
    assert!(being_deleted(&pods, "bare-0").await);
    let s = status(&pdbs, "bare").await;
    assert_eq!(s["disruptionsAllowed"], 0, "{s}");
    assert!(
        s["disruptedPods"].get("bare-0").is_some() || s["currentHealthy"] == 2,
        "{s}"
    );
    let (code, why) = evict(&pods, "bare-1", false).await.unwrap_err();
    assert_eq!(code, 429, "{why}");
    assert!(
        why.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{why}"
    );
    assert!(
        // (3 until the controller has seen bare-0 go, then 2)
        why.contains("The disruption budget bare needs 2 healthy pods and has "),
        "{why}"
    );
    assert!(!being_deleted(&pods, "bare-1").await);
    settles(
        &pdbs,
        "bare",
        json!({"currentHealthy": 2, "disruptionsAllowed": 0}),
    )
    .await;

    // A pod that is not Ready: under IfHealthyBudget (the default) it
    // spends like any other while the budget is short of healthy pods;
    // AlwaysAllow lets it go.
    pods.create(&pp, &pod("sick", "bare", true)).await.unwrap();
    pdbs.patch(
        "bare",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 3}})),
    )
    .await
    .unwrap();
    settles(
        &pdbs,
        "bare",
        json!({"currentHealthy": 2, "desiredHealthy": 3, "disruptionsAllowed": 0}),
    )
    .await;
    let (code, why) = evict(&pods, "sick", false).await.unwrap_err();
    assert_eq!(code, 429, "{why}");
    pdbs.patch(
        "bare",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
    )
    .await
    .unwrap();
    settles(&pdbs, "bare", json!({"disruptionsAllowed": 0})).await;
    evict(&pods, "sick", false).await.unwrap();
    assert!(being_deleted(&pods, "sick").await);
    // Healthy pods are still held by the budget.
    assert_eq!(evict(&pods, "bare-2", false).await.unwrap_err().0, 429);

    // Percentages and maxUnavailable count the Deployment's replicas.
    let web: Deployment = obj(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "none"}]}}}}));
    deploys.create(&pp, &web).await.unwrap();
    pdbs.create(&pp, &budget("web", "web", json!({"maxUnavailable": "25%"})))
        .await
        .unwrap();
    settles(
        &pdbs,
        "web",
        json!({"currentHealthy": 4, "desiredHealthy": 3, "expectedPods": 4, "disruptionsAllowed": 1}),
    )
    .await;
    pdbs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"maxUnavailable": null, "minAvailable": "50%"}})),
    )
    .await
    .unwrap();
    settles(
        &pdbs,
        "web",
        json!({"desiredHealthy": 2, "expectedPods": 4, "disruptionsAllowed": 2}),
    )
    .await;
    // A percentage over pods with no controller cannot be counted.
    pdbs.patch(
        "bare",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": "50%"}})),
    )
    .await
    .unwrap();
    settles(&pdbs, "bare", json!({"disruptionsAllowed": 0})).await;
    let s = status(&pdbs, "bare").await;
    assert_eq!(s["conditions"][0]["reason"], "SyncFailed", "{s}");
    assert!(
        s["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("found no controllers for pod"),
        "{s}"
    );

    // Two budgets over one pod: upstream's refusal.
    pdbs.create(&pp, &budget("web-too", "web", json!({"minAvailable": 1})))
        .await
        .unwrap();
    let one = pods
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let (code, why) = evict(&pods, &one, false).await.unwrap_err();
    assert_eq!(code, 500, "{why}");
    assert!(why.contains("more than one PodDisruptionBudget"), "{why}");
    pdbs.delete("web-too", &DeleteParams::default())
        .await
        .unwrap();
}
