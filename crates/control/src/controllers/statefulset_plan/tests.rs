//! The StatefulSet plan on hand-built pods.

use super::*;

fn set(replicas: i64, policy: &str) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 3},
           "spec": {"replicas": replicas, "podManagementPolicy": policy, "serviceName": "web",
                    "selector": {"matchLabels": {"app": "web"}},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}],
                                          "volumes": [{"name": "data", "emptyDir": {}}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"t": "1"}},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

fn pod(ordinal: i64, rev: &str, state: &str) -> Arc<Value> {
    let mut p = json!({"metadata": {"name": format!("web-{ordinal}"), "labels": {REVISION_LABEL: rev}},
                       "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    match state {
        "ready" => {}
        "starting" => p["status"] = json!({"phase": "Pending"}),
        "failed" => p["status"] = json!({"phase": "Failed"}),
        "terminating" => p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"),
        _ => unreachable!(),
    }
    Arc::new(p)
}

fn names(v: &[Arc<Value>]) -> Vec<String> {
    v.iter().map(|p| objects::name_of(p).to_string()).collect()
}

#[test]
fn ordered_ready_creates_one_ordinal_at_a_time_after_the_lower_ones_are_ready() {
    let s = set(3, "OrderedReady");
    assert_eq!(plan(&s, &[], "r1", "r1").create, vec![(0, true)]);
    // web-0 not ready yet: nothing.
    let p = plan(&s, &[pod(0, "r1", "starting")], "r1", "r1");
    assert!(p.create.is_empty() && p.delete.is_empty());
    let p = plan(&s, &[pod(0, "r1", "ready")], "r1", "r1");
    assert_eq!(p.create, vec![(1, true)]);
    // A gap: the lowest missing ordinal first.
    let p = plan(
        &s,
        &[pod(0, "r1", "ready"), pod(2, "r1", "ready")],
        "r1",
        "r1",
    );
    assert_eq!(p.create, vec![(1, true)]);
    // A failed pod is deleted (and made again next time).
    let p = plan(&s, &[pod(0, "r1", "failed")], "r1", "r1");
    assert_eq!(names(&p.delete), vec!["web-0"]);
    // A terminating pod holds its ordinal: no replacement, nothing after.
    let p = plan(&s, &[pod(0, "r1", "terminating")], "r1", "r1");
    assert!(p.create.is_empty() && p.delete.is_empty());
}

#[test]
fn parallel_creates_every_ordinal_at_once_and_scale_down_takes_the_highest_first() {
    let p = plan(&set(3, "Parallel"), &[pod(1, "r1", "starting")], "r1", "r1");
    assert_eq!(p.create, vec![(0, true), (2, true)]);
    // Scale 4 → 2, ordered: web-3 first, one at a time.
    let pods: Vec<_> = (0..4).map(|i| pod(i, "r1", "ready")).collect();
    let p = plan(&set(2, "OrderedReady"), &pods, "r1", "r1");
    assert_eq!(names(&p.delete), vec!["web-3"]);
    assert_eq!(p.condemned, vec!["web-3"]);
    // ... and not while it terminates.
    let pods = vec![
        pod(0, "r1", "ready"),
        pod(1, "r1", "ready"),
        pod(2, "r1", "ready"),
        pod(3, "r1", "terminating"),
    ];
    let p = plan(&set(2, "OrderedReady"), &pods, "r1", "r1");
    assert!(p.delete.is_empty());
    // Parallel: both at once.
    let pods: Vec<_> = (0..4).map(|i| pod(i, "r1", "ready")).collect();
    let p = plan(&set(2, "Parallel"), &pods, "r1", "r1");
    assert_eq!(names(&p.delete), vec!["web-3", "web-2"]);
}

#[test]
fn a_rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
    let mut s = set(3, "OrderedReady");
    let pods: Vec<_> = (0..3).map(|i| pod(i, "r1", "ready")).collect();
    let p = plan(&s, &pods, "r2", "r1");
    assert_eq!(names(&p.delete), vec!["web-2"]);
    // web-2 back at r2 but not ready: wait.
    let pods2 = vec![
        pod(0, "r1", "ready"),
        pod(1, "r1", "ready"),
        pod(2, "r2", "starting"),
    ];
    let p = plan(&s, &pods2, "r2", "r1");
    assert!(p.delete.is_empty() && p.create.is_empty());
    // Ready: the next one.
    let pods3 = vec![
        pod(0, "r1", "ready"),
        pod(1, "r1", "ready"),
        pod(2, "r2", "ready"),
    ];
    let p = plan(&s, &pods3, "r2", "r1");
    assert_eq!(names(&p.delete), vec!["web-1"]);
    assert_eq!(p.status["updatedReplicas"], 1);
    assert_eq!(p.status["currentRevision"], "r1");
    // maxUnavailable 2: two at once.
    s["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!(2);
    assert_eq!(
        names(&plan(&s, &pods, "r2", "r1").delete),
        vec!["web-2", "web-1"]
    );
    // A partition of 2: only web-2 moves; a new web-0 comes at r1.
    s["spec"]["updateStrategy"]["rollingUpdate"] = json!({"partition": 2});
    assert_eq!(names(&plan(&s, &pods, "r2", "r1").delete), vec!["web-2"]);
    assert_eq!(plan(&s, &pods3, "r2", "r1").delete.len(), 0);
    assert_eq!(plan(&s, &pods3[1..], "r2", "r1").create, vec![(0, false)]);
    // OnDelete: nothing deleted; a missing pod comes at the update revision.
    s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    assert!(plan(&s, &pods, "r2", "r1").delete.is_empty());
    assert_eq!(plan(&s, &pods[1..], "r2", "r1").create, vec![(0, true)]);
    // Everything at r2 and ready: r2 is current.
    let done: Vec<_> = (0..3).map(|i| pod(i, "r2", "ready")).collect();
    let st = plan(&set(3, "OrderedReady"), &done, "r2", "r1").status;
    assert_eq!(
        (
            st["currentRevision"].as_str(),
            st["currentReplicas"].as_i64()
        ),
        (Some("r2"), Some(3))
    );
    assert_eq!(st["readyReplicas"], 3);
    assert_eq!(st["observedGeneration"], 3);
}

#[test]
fn pods_carry_their_identity_and_their_own_claims() {
    let s = set(3, "OrderedReady");
    let p = pod_for(&s, &s["spec"]["template"], 1, "web-abc");
    assert_eq!(p["metadata"]["name"], "web-1");
    assert_eq!(p["spec"]["hostname"], "web-1");
    assert_eq!(p["spec"]["subdomain"], "web");
    assert_eq!(p["metadata"]["labels"][REVISION_LABEL], "web-abc");
    assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-1");
    assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "1");
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    // The claim replaces the template's volume of the same name.
    let vols = p["spec"]["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0]["persistentVolumeClaim"]["claimName"], "data-web-1");
    let claims = claims_for(&s, 1);
    assert_eq!(claims[0]["metadata"]["name"], "data-web-1");
    assert_eq!(
        claims[0]["metadata"]["labels"],
        json!({"t": "1", "app": "web"})
    );
    assert!(claims[0]["metadata"].get("ownerReferences").is_none());
    let mut owned = s.clone();
    owned["spec"]["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Delete"});
    assert_eq!(
        claims_for(&owned, 0)[0]["metadata"]["ownerReferences"][0]["kind"],
        "StatefulSet"
    );
    // Names that only look like ordinals are not the set's.
    for other in ["web-01", "web--1", "webx-1", "web-1a"] {
        assert_eq!(
            ordinal_of(&s, &json!({"metadata": {"name": other}})),
            None,
            "{other}"
        );
    }
}
