//! The DaemonSet plan on hand-made nodes and pods.

use super::*;

fn ds(strategy: Value) -> Value {
    json!({"metadata": {"namespace": "d", "name": "agent", "uid": "ds-uid", "generation": 2},
           "spec": {"selector": {"matchLabels": {"app": "agent"}},
                    "updateStrategy": strategy,
                    "template": {"metadata": {"labels": {"app": "agent"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
}

fn rolling(unavailable: Value, surge: Value) -> Value {
    ds(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}}),
    )
}

fn node(name: &str) -> NodeFit {
    NodeFit {
        name: name.into(),
        should_run: true,
        may_stay: true,
    }
}

fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Value> {
    Arc::new(
        json!({"metadata": {"namespace": "d", "name": name, "creationTimestamp": format!("2026-12-07T10:00:0{}Z", name.len() % 10),
        "labels": {"app": "agent", REVISION_LABEL: hash}},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}),
    )
}

fn names(ps: &[Arc<Value>]) -> Vec<String> {
    ps.iter()
        .map(|p| shoal_model::objects::name_of(p).to_string())
        .collect()
}

#[test]
fn one_pod_per_eligible_node() {
    let d = rolling(json!(1), json!(0));
    let mut nodes = vec![node("n1"), node("n2"), node("n3")];
    nodes[2].should_run = false;
    nodes[2].may_stay = false;
    let pods = [
        pod("a", "n1", "h1", true),
        pod("bb", "n1", "h1", true),  // a second pod on n1 goes
        pod("c", "n3", "h1", true),   // n3 no longer admits it
        pod("d", "gone", "h1", true), // its node is gone
    ];
    let p = plan(&d, &pods, &nodes, "h1");
    assert_eq!(p.create, ["n2"]);
    let mut gone = names(&p.delete);
    gone.sort();
    assert_eq!(gone, ["bb", "c", "d"]);
    assert_eq!(p.status["desiredNumberScheduled"], 2);
    assert_eq!(p.status["currentNumberScheduled"], 1);
    assert_eq!(p.status["numberMisscheduled"], 1);
    assert_eq!(p.status["updatedNumberScheduled"], 1);
}

#[test]
fn a_rolling_update_replaces_within_max_unavailable() {
    let d = rolling(json!(1), json!(0));
    let nodes = [node("n1"), node("n2"), node("n3")];
    let old = [
        pod("a", "n1", "old", true),
        pod("b", "n2", "old", true),
        pod("c", "n3", "old", true),
    ];
    let p = plan(&d, &old, &nodes, "new");
    assert_eq!(p.delete.len(), 1, "one node at a time");
    assert!(p.create.is_empty());
    // n1's old pod gone, its new one not ready yet: nothing more goes.
    let mid = [
        pod("a2", "n1", "new", false),
        pod("b", "n2", "old", true),
        pod("c", "n3", "old", true),
    ];
    let p = plan(&d, &mid, &nodes, "new");
    assert!(p.delete.is_empty() && p.create.is_empty());
    assert_eq!(p.status["updatedNumberScheduled"], 1);
    assert_eq!(p.status["numberUnavailable"], 1);
    // An unavailable old pod goes at once, whatever the budget.
    let broken = [
        pod("a2", "n1", "new", false),
        pod("b", "n2", "old", false),
        pod("c", "n3", "old", true),
    ];
    assert_eq!(names(&plan(&d, &broken, &nodes, "new").delete), ["b"]);
    // maxUnavailable as a percentage rounds up.
    assert_eq!(scaled(Some(&json!("10%")), 3, 1), 1);
    assert_eq!(scaled(Some(&json!("50%")), 3, 1), 2);
}

#[test]
fn a_surge_starts_the_new_pod_before_the_old_one_goes() {
    let d = rolling(json!(0), json!(1));
    let nodes = [node("n1"), node("n2")];
    let old = [pod("a", "n1", "old", true), pod("b", "n2", "old", true)];
    let p = plan(&d, &old, &nodes, "new");
    assert_eq!(p.create.len(), 1, "one surge pod");
    assert!(p.delete.is_empty());
    let both = [
        pod("a", "n1", "old", true),
        pod("a2", "n1", "new", true),
        pod("b", "n2", "old", true),
    ];
    let p = plan(&d, &both, &nodes, "new");
    assert_eq!(
        names(&p.delete),
        ["a"],
        "the old pod goes once the new is available"
    );
    assert_eq!(p.create, ["n2"]);
}

#[test]
fn on_delete_replaces_only_what_the_user_deleted() {
    let d = ds(json!({"type": "OnDelete"}));
    let nodes = [node("n1"), node("n2")];
    let p = plan(&d, &[pod("a", "n1", "old", true)], &nodes, "new");
    assert!(p.delete.is_empty());
    assert_eq!(p.create, ["n2"]);
}

#[test]
fn pods_are_pinned_to_their_node_and_tolerate_upstreams_defaults() {
    let d = rolling(json!(1), json!(0));
    let p = pod_for(&d, "n7", "h1");
    assert_eq!(node_of(&p).as_deref(), Some("n7"));
    assert_eq!(p["metadata"]["labels"][REVISION_LABEL], "h1");
    assert_eq!(p["metadata"]["labels"][GENERATION_LABEL], "2");
    let tol = p["spec"]["tolerations"].as_array().unwrap();
    assert!(tol
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));
    assert_eq!(tol.len(), 6, "network-unavailable only for hostNetwork");
}
