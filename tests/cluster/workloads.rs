//! Jobs run to completion and Events tell what happened, on one in-process
//! node with the sim runtime (a pod's containers exit with the code its
//! `sim.shoal.dev/exit-code` annotation names).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

/// A Job whose sim pods exit with `exit` (below 0: they run on).
fn job(name: &str, spec: Value, exit: i32) -> Job {
    let mut s = json!({"template": {"metadata": {"annotations": {"sim.shoal.dev/exit-code": exit.to_string()}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}});
    if exit < 0 {
        s["template"]["metadata"] = json!({});
    }
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": s})).unwrap()
}

/// Waits until Job `name` has condition `ty` True; returns the Job.
async fn condition(jobs: &Api<Job>, name: &str, ty: &str, within: Duration) -> Job {
    let has = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
    };
    wait_until(within, || async {
        let j = jobs.get(name).await.map_err(|e| e.to_string())?;
        if has(&j) {
            Ok(())
        } else {
            Err(format!("{name}: {:?}", j.status))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{name} never {ty}: {e}"));
    jobs.get(name).await.unwrap()
}

async fn namespace(k: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(k.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Reasons of the Events about `name` in the namespace.
async fn reasons(events: &Api<Event>, name: &str) -> Vec<(String, String)> {
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    events
        .list(&lp)
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_index_their_pods_fail_past_their_backoff_limit_and_record_events() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    namespace(&k, "jobs").await;
    let jobs: Api<Job> = Api::namespaced(k.clone(), "jobs");
    let pods: Api<Pod> = Api::namespaced(k.clone(), "jobs");
    let events: Api<Event> = Api::namespaced(k.clone(), "jobs");
    let pp = PostParams::default();

    // 3 completions, 2 at a time.
    jobs.create(
        &pp,
        &job("three", json!({"completions": 3, "parallelism": 2}), 0),
    )
    .await
    .unwrap();
    // Indexed: each pod carries its own index.
    let indexed = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"});
    jobs.create(&pp, &job("idx", indexed, 0)).await.unwrap();
    // Fails every time: backoffLimit 1 means the second failure fails it
    // (after upstream's 10 s back-off).
    jobs.create(&pp, &job("doomed", json!({"backoffLimit": 1}), 3))
        .await
        .unwrap();

    let three = condition(&jobs, "three", "Complete", Duration::from_secs(30)).await;
    let st = three.status.unwrap();
    assert_eq!(st.succeeded, Some(3));
    assert_eq!(st.active.unwrap_or(0), 0);
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    let pods_of = |job: &str| {
        let pods = pods.clone();
        let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
        async move { pods.list(&lp).await.unwrap().items }
    };
    let finished = pods_of("three").await;
    assert_eq!(finished.len(), 3, "three pods, no more");
    // The status that completes the Job counts the pods; their tracking
    // finalizers go in the writes right after it (the same reconcile).
    wait_until(Duration::from_secs(10), || async {
        let held = pods_of("three")
            .await
            .iter()
            .filter(|p| !p.metadata.finalizers.clone().unwrap_or_default().is_empty())
            .count();
        (held == 0).then_some(()).ok_or(format!(
            "{held} counted pods still hold the tracking finalizer"
        ))
    })
    .await
    .unwrap();

    let idx = condition(&jobs, "idx", "Complete", Duration::from_secs(30)).await;
    assert_eq!(
        idx.status.unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    let mut seen: Vec<String> = pods_of("idx")
        .await
        .iter()
        .map(|p| {
            let a = p.metadata.annotations.clone().unwrap_or_default();
            let i = a["batch.kubernetes.io/job-completion-index"].clone();
            let spec = p.spec.clone().unwrap();
            assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
            let env = spec.containers[0].env.clone().unwrap_or_default();
            assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
            assert!(p
                .metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with(&format!("idx-{i}-")));
            i
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    let doomed = condition(&jobs, "doomed", "Failed", Duration::from_secs(40)).await;
    let st = doomed.status.unwrap();
    let failed = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert_eq!(st.failed, Some(2));
    assert_eq!(
        pods_of("doomed").await.len(),
        2,
        "one pod and one replacement"
    );

    // A Job deleted in the background (kubectl's default) takes its pods
    // with it, running or not: their tracking finalizer goes once the Job
    // is gone.
    jobs.create(
        &pp,
        &job("brief", json!({"parallelism": 2, "completions": 4}), -1),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(20), || async {
        let n = pods_of("brief").await.len();
        (n == 2).then_some(()).ok_or(format!("{n} pods"))
    })
    .await
    .unwrap();
    jobs.delete("brief", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), || async {
        let left: Vec<String> = pods_of("brief")
            .await
            .into_iter()
            .map(|p| format!("{:?} {:?}", p.metadata.name, p.metadata.finalizers))
            .collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await
    .unwrap();

    // The Job controller's Events.
    wait_until(Duration::from_secs(10), || async {
        let r = reasons(&events, "three").await;
        let has = |x: &str| r.iter().any(|(reason, _)| reason == x);
        if has("SuccessfulCreate") && has("Completed") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await
    .unwrap();
    wait_until(Duration::from_secs(10), || async {
        let r = reasons(&events, "doomed").await;
        if r.iter().any(|(reason, _)| reason == "BackoffLimitExceeded") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await
    .unwrap();
}

/// The scheduler's, the Deployment controller's and the ReplicaSet
/// controller's Events; then the TTL (shortened to 8 s) removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_records_events_that_expire_after_the_ttl() {
    let c = TestCluster::start_with(1, |cfg| cfg.control_plane.event_ttl_secs = 8).unwrap();
    let k = api_ready(&c, 1).await;
    namespace(&k, "scale").await;
    let deploys: Api<Deployment> = Api::namespaced(k.clone(), "scale");
    let events: Api<Event> = Api::namespaced(k.clone(), "scale");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let scale = json!({"spec": {"replicas": 3}});
    deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(scale))
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), || async {
        let all: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let has = |reason: &str, msg: &str| {
            all.iter().any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.message.as_deref().is_some_and(|m| m.contains(msg))
            })
        };
        if has("ScalingReplicaSet", "from 1 to 3")
            && has("SuccessfulCreate", "Created pod: web-")
            && has("Scheduled", "Successfully assigned scale/web-")
            && has("Started", "Started container c")
        {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                all.iter()
                    .map(|e| (e.reason.clone(), e.message.clone()))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await
    .unwrap();
    // Nothing new happens now: every Event expires within TTL + a margin.
    wait_until(Duration::from_secs(30), || async {
        let n = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} Events left"))
        }
    })
    .await
    .unwrap();
}
