//! The disruption controller's arithmetic on hand-built budgets and pods.

use super::*;

fn budget(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default", "generation": 3}, "spec": spec})
}

fn pod(name: &str, ready: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"},
           "status": {"phase": "Running", "conditions": [
               {"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
}

fn now() -> jiff::Timestamp {
    "2026-12-07T12:00:00Z".parse().unwrap()
}

fn no_scale() -> Result<i64, String> {
    panic!("an integer minAvailable counts the pods, not their controllers' scale")
}

#[test]
fn min_available_two_of_three_ready_pods_allows_one_disruption() {
    let pdb = budget(json!({"minAvailable": 2}));
    let (a, b, c) = (pod("a", true), pod("b", true), pod("c", true));
    let counts = expected_and_desired(&pdb, 3, no_scale);
    assert_eq!(counts, Ok((3, 2)));
    let got = compute(&pdb, &[&a, &b, &c], counts, now());
    let s = &got.status;
    assert_eq!(
        (
            &s["currentHealthy"],
            &s["desiredHealthy"],
            &s["expectedPods"],
            &s["disruptionsAllowed"]
        ),
        (&json!(3), &json!(2), &json!(3), &json!(1))
    );
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
    assert_eq!(got.recheck, None);
    // One not Ready: nothing more may go.
    let b = pod("b", false);
    let s = compute(&pdb, &[&a, &b, &c], Ok((3, 2)), now()).status;
    assert_eq!(s["disruptionsAllowed"], 0);
    assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
}

#[test]
fn percentages_and_max_unavailable_count_the_controllers_scale_rounding_up() {
    // 50 % of 5 replicas is 3 (rounded up) healthy wanted.
    let pdb = budget(json!({"minAvailable": "50%"}));
    assert!(needs_scale(&pdb));
    assert_eq!(expected_and_desired(&pdb, 4, || Ok(5)), Ok((5, 3)));
    // maxUnavailable 34 % of 3 is 2 (rounded up) unavailable: 1 wanted.
    let pdb = budget(json!({"maxUnavailable": "34%"}));
    assert_eq!(expected_and_desired(&pdb, 3, || Ok(3)), Ok((3, 1)));
    let pdb = budget(json!({"maxUnavailable": 1}));
    assert!(needs_scale(&pdb));
    assert_eq!(expected_and_desired(&pdb, 2, || Ok(3)), Ok((3, 2)));
    // More unavailable allowed than there are pods: none wanted.
    let pdb = budget(json!({"maxUnavailable": 9}));
    assert_eq!(expected_and_desired(&pdb, 3, || Ok(3)), Ok((3, 0)));
    assert!(!needs_scale(&budget(json!({"minAvailable": 1}))));
}

#[test]
fn pods_without_a_known_controller_fail_the_sync_and_allow_nothing() {
    let pdb = budget(json!({"maxUnavailable": 1}));
    let counts = expected_and_desired(&pdb, 1, || Err("found no controllers for pod \"a\"".into()));
    let a = pod("a", true);
    let s = compute(&pdb, &[&a], counts, now()).status;
    assert_eq!(s["disruptionsAllowed"], 0);
    assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
    assert_eq!(
        s["conditions"][0]["message"],
        "found no controllers for pod \"a\""
    );
}

#[test]
fn a_recorded_eviction_counts_until_its_pod_goes_or_two_minutes_pass() {
    let mut pdb = budget(json!({"minAvailable": 1}));
    pdb["status"] = json!({"disruptedPods": {
        "a": "2026-12-07T11:59:30Z",   // 30 s ago: counts, 90 s left
        "b": "2026-12-07T11:57:00Z",   // 3 min ago: expired
        "gone": "2026-12-07T11:59:50Z" // its pod is gone
    }});
    let (a, b, c) = (pod("a", true), pod("b", true), pod("c", true));
    let got = compute(&pdb, &[&a, &b, &c], Ok((3, 1)), now());
    assert_eq!(
        got.status["disruptedPods"],
        json!({"a": "2026-12-07T11:59:30Z"})
    );
    assert_eq!(got.status["currentHealthy"], 2, "a is not counted healthy");
    assert_eq!(got.status["disruptionsAllowed"], 1);
    assert_eq!(got.recheck, Some(Duration::from_secs(90)));
    // Once a is being deleted the record is done.
    let mut a = a;
    a["metadata"]["deletionTimestamp"] = json!("2026-12-07T12:00:00Z");
    let got = compute(&pdb, &[&a, &b, &c], Ok((3, 1)), now());
    assert!(got.status.get("disruptedPods").is_none());
    assert_eq!(got.status["currentHealthy"], 2);
    assert_eq!(got.recheck, None);
}

#[test]
fn the_condition_keeps_its_transition_time_while_it_says_the_same() {
    let mut pdb = budget(json!({"minAvailable": 1}));
    pdb["status"] = json!({"conditions": [{"type": "DisruptionAllowed", "status": "True",
        "reason": "SufficientPods", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    let (a, b) = (pod("a", true), pod("b", true));
    let s = compute(&pdb, &[&a, &b], Ok((2, 1)), now()).status;
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"],
        "2026-01-01T00:00:00Z"
    );
    let s = compute(&pdb, &[&a], Ok((2, 1)), now()).status;
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"],
        "2026-12-07T12:00:00Z"
    );
}

#[test]
fn a_budget_with_neither_field_allows_nothing_as_upstream() {
    let pdb = budget(json!({"selector": {}}));
    assert_eq!(expected_and_desired(&pdb, 2, no_scale), Ok((0, 0)));
    let (a, b) = (pod("a", true), pod("b", true));
    let s = compute(&pdb, &[&a, &b], Ok((0, 0)), now()).status;
    assert_eq!(s["disruptionsAllowed"], 0);
}
