//! The Job plan on hand-made pods and a fixed clock.

use super::*;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

const T0: &str = "2026-12-07T10:00:00Z";

fn job(spec: Value) -> Value {
    let mut s = json!({"parallelism": 1, "completions": 1, "backoffLimit": 6,
        "completionMode": "NonIndexed", "suspend": false,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"metadata": {"namespace": "d", "name": "j", "uid": "job-uid"}, "spec": s,
           "status": {"startTime": T0}})
}

fn pod(name: &str, phase: &str, index: Option<i64>) -> Arc<Value> {
    let mut p = json!({"metadata": {"namespace": "d", "name": name, "uid": format!("u-{name}"),
        "creationTimestamp": T0, "finalizers": [TRACKING_FINALIZER], "annotations": {}},
        "spec": {"nodeName": "n1"},
        "status": {"phase": phase}});
    if let Some(i) = index {
        p["metadata"]["annotations"][INDEX_KEY] = json!(i.to_string());
    }
    if phase == "Failed" || phase == "Succeeded" {
        let code = if phase == "Failed" { 1 } else { 0 };
        p["status"]["containerStatuses"] = json!([{"name": "c", "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "finishedAt": T0}}}]);
    }
    Arc::new(p)
}

/// The job with the status of `p` written (what the next plan reads).
fn after(mut j: Value, p: &Plan) -> Value {
    j["status"] = p.status.clone();
    j
}

fn without_finalizer(p: &Arc<Value>) -> Arc<Value> {
    let mut v = (**p).clone();
    v["metadata"]["finalizers"] = json!([]);
    Arc::new(v)
}

fn cond<'a>(status: &'a Value, ty: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

#[test]
fn parallelism_and_completions_create_what_is_missing() {
    let j = job(json!({"parallelism": 2, "completions": 3}));
    let p = plan(&j, &[], at(T0));
    assert_eq!(p.create.len(), 2);
    assert_eq!(p.status["active"], 2);
    // One succeeded, one running: one more (3 - 1 = 2 wanted, 1 running).
    let pods = [pod("a", "Succeeded", None), pod("b", "Running", None)];
    let p = plan(&j, &pods, at(T0));
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.status["succeeded"], 1);
    assert_eq!(
        p.status["uncountedTerminatedPods"]["succeeded"],
        json!(["u-a"])
    );
    assert_eq!(p.unfinalize.len(), 1, "the counted pod's finalizer goes");
    // Counted once: the same pod, finalizer gone, is not counted again and
    // leaves the uncounted list.
    let j2 = after(j.clone(), &p);
    let pods = [without_finalizer(&pods[0]), pods[1].clone()];
    let p = plan(&j2, &pods, at(T0));
    assert_eq!(p.status["succeeded"], 1);
    assert_eq!(p.status["uncountedTerminatedPods"], json!({}));
    assert!(p.unfinalize.is_empty());
}

#[test]
fn success_is_met_then_complete_once_nothing_runs() {
    let j = job(json!({"parallelism": 2, "completions": 2}));
    let done = [pod("a", "Succeeded", None), pod("b", "Succeeded", None)];
    let p = plan(&j, &done, at(T0));
    assert!(p.create.is_empty());
    assert_eq!(
        cond(&p.status, "SuccessCriteriaMet").unwrap()["status"],
        "True"
    );
    assert_eq!(
        cond(&p.status, "Complete").unwrap()["reason"],
        "CompletionsReached"
    );
    assert_eq!(p.status["completionTime"], T0);
    assert!(p.events.iter().any(|e| e.1 == "Completed"));
    // A work queue (no completions): the first success stops new pods, and
    // the Job completes when the others end.
    let q = job(json!({"parallelism": 3, "completions": null}));
    let pods = [pod("a", "Succeeded", None), pod("b", "Running", None)];
    let p = plan(&q, &pods, at(T0));
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert!(cond(&p.status, "Complete").is_none());
}

#[test]
fn indexed_pods_get_the_lowest_pending_indexes_and_completed_ranges() {
    let j = job(json!({"parallelism": 2, "completions": 5, "completionMode": "Indexed"}));
    let p = plan(&j, &[], at(T0));
    assert_eq!(p.create, vec![Some(0), Some(1)]);
    let pods = [
        pod("a", "Succeeded", Some(0)),
        pod("b", "Running", Some(1)),
        pod("c", "Succeeded", Some(3)),
        // A duplicate of a running index goes.
        pod("d", "Pending", Some(1)),
    ];
    let p = plan(&j, &pods, at(T0));
    assert_eq!(p.status["completedIndexes"], "0,3");
    assert_eq!(p.create, vec![Some(2)]);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(format_indexes(&parse_indexes("1,3-5,7")), "1,3-5,7");
    assert_eq!(parse_indexes("0-2").len(), 3);
}

#[test]
fn failures_back_off_and_exhausting_the_limit_fails_the_job() {
    let j = job(json!({"backoffLimit": 1}));
    let first = [pod("a", "Failed", None)];
    // Right after the failure: no replacement for 10 s.
    let p = plan(&j, &first, at("2026-12-07T10:00:04Z"));
    assert_eq!(p.status["failed"], 1);
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(6)));
    let p = plan(&j, &first, at("2026-12-07T10:00:10Z"));
    assert_eq!(p.create.len(), 1);
    // The second failure exceeds backoffLimit 1.
    let j2 = after(j.clone(), &p);
    let both = [without_finalizer(&first[0]), pod("b", "Failed", None)];
    let p = plan(&j2, &both, at("2026-12-07T10:00:11Z"));
    assert_eq!(p.status["failed"], 2);
    assert!(p.create.is_empty());
    let failed = cond(&p.status, "Failed").expect("Failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(
        cond(&p.status, "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(backoff(1), Duration::from_secs(10));
    assert_eq!(backoff(3), Duration::from_secs(40));
    assert_eq!(backoff(30), BACKOFF_MAX);
}

#[test]
fn a_failed_job_deletes_its_running_pods_before_it_is_failed() {
    let j = job(json!({"backoffLimit": 0, "parallelism": 2, "completions": 4}));
    let pods = [pod("a", "Failed", None), pod("b", "Running", None)];
    let p = plan(&j, &pods, at(T0));
    assert_eq!(p.delete.len(), 1);
    assert!(cond(&p.status, "FailureTarget").is_some());
    assert!(cond(&p.status, "Failed").is_none(), "b still runs");
    assert!(p
        .events
        .iter()
        .any(|e| e.0 && e.1 == "BackoffLimitExceeded"));
}

#[test]
fn pod_failure_policy_fails_ignores_or_counts() {
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
    ]});
    let j = job(json!({"backoffLimit": 5, "podFailurePolicy": policy}));
    let mut fatal = (*pod("a", "Failed", None)).clone();
    fatal["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = json!(42);
    let p = plan(&j, &[Arc::new(fatal)], at(T0));
    let c = cond(&p.status, "Failed").expect("FailJob fails at once");
    assert_eq!(c["reason"], "PodFailurePolicy");
    assert_eq!(
        c["message"],
        "Container c for pod d/a failed with exit code 42 matching FailJob rule at index 0"
    );
    // Exit code 1 is ignored: not counted as a failure, replaced.
    let p = plan(&j, &[pod("b", "Failed", None)], at("2026-12-07T11:00:00Z"));
    assert_eq!(p.status["failed"], 0);
    assert!(cond(&p.status, "FailureTarget").is_none());
}

#[test]
fn the_deadline_fails_a_job_and_is_looked_at_on_time() {
    let j = job(json!({"activeDeadlineSeconds": 30}));
    let running = [pod("a", "Running", None)];
    let p = plan(&j, &running, at("2026-12-07T10:00:20Z"));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
    let p = plan(&j, &running, at("2026-12-07T10:00:30Z"));
    assert_eq!(
        cond(&p.status, "FailureTarget").unwrap()["reason"],
        "DeadlineExceeded"
    );
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn suspension_deletes_pods_and_resuming_restarts_the_clock() {
    let j = job(json!({"suspend": true, "parallelism": 2, "completions": 2}));
    let p = plan(&j, &[pod("a", "Running", None)], at(T0));
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
    assert_eq!(cond(&p.status, "Suspended").unwrap()["status"], "True");
    let mut resumed = after(j, &p);
    resumed["spec"]["suspend"] = json!(false);
    let p = plan(&resumed, &[], at("2026-12-07T10:05:00Z"));
    assert_eq!(p.create.len(), 2);
    let c = cond(&p.status, "Suspended").unwrap();
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("JobResumed"))
    );
    assert_eq!(p.status["startTime"], "2026-12-07T10:05:00Z");
}

#[test]
fn a_finished_job_expires_after_its_ttl() {
    let j = job(json!({"ttlSecondsAfterFinished": 60}));
    let p = plan(&j, &[pod("a", "Succeeded", None)], at(T0));
    assert!(!p.expired);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    let done = after(j, &p);
    assert!(!plan(&done, &[], at("2026-12-07T10:00:59Z")).expired);
    assert!(plan(&done, &[], at("2026-12-07T10:01:00Z")).expired);
}

#[test]
fn on_failure_restarts_count_against_the_limit() {
    let j = job(json!({"backoffLimit": 2,
        "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}}}));
    let mut p1 = (*pod("a", "Running", None)).clone();
    p1["status"]["containerStatuses"] = json!([{"name": "c", "restartCount": 2}]);
    let p = plan(&j, &[Arc::new(p1)], at(T0));
    assert_eq!(
        cond(&p.status, "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
}

#[test]
fn a_pod_deleted_by_someone_else_counts_as_failed_and_is_replaced() {
    let j = job(json!({}));
    let mut gone = (*pod("a", "Running", None)).clone();
    gone["metadata"]["deletionTimestamp"] = json!("2026-12-07T09:00:00Z");
    let p = plan(&j, &[Arc::new(gone)], at(T0));
    assert_eq!(p.status["failed"], 1);
    assert_eq!(p.status["terminating"], 1);
    // Its back-off (10 s from its deletion) has passed.
    assert_eq!(p.create.len(), 1);
}
