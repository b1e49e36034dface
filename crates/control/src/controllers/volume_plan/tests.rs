//! The volume controller's decisions on hand-built objects.

use super::*;

fn claim(name: &str, size: &str, class: Option<&str>) -> Value {
    let mut c = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    });
    if let Some(k) = class {
        c["spec"]["storageClassName"] = json!(k);
    }
    c
}

fn volume(name: &str, size: &str, class: &str, phase: &str) -> Arc<Value> {
    Arc::new(json!({
        "metadata": {"name": name, "labels": {"tier": "fast"}},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                 "storageClassName": class, "hostPath": {"path": format!("/data/{name}")},
                 "persistentVolumeReclaimPolicy": "Retain"},
        "status": {"phase": phase},
    }))
}

#[test]
fn a_claim_takes_the_smallest_free_volume_of_its_class_that_fits() {
    let c = claim("data", "2Gi", Some("manual"));
    let pvs = vec![
        volume("big", "10Gi", "manual", "Available"),
        volume("small", "1Gi", "manual", "Available"),
        volume("right", "3Gi", "manual", "Available"),
        volume("other-class", "2Gi", "fast", "Available"),
        volume("taken", "2Gi", "manual", "Bound"),
    ];
    let got = best(&c, &pvs, |_| true).map(|pv| objects::name_of(pv).to_string());
    assert_eq!(got.as_deref(), Some("right"));
    // Only where `here` admits.
    let got = best(&c, &pvs, |pv| objects::name_of(pv) == "big")
        .map(|pv| objects::name_of(pv).to_string());
    assert_eq!(got.as_deref(), Some("big"));
    // A mode no volume offers, a selector no volume matches: none.
    let mut rwx = c.clone();
    rwx["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert!(best(&rwx, &pvs, |_| true).is_none());
    let mut sel = c.clone();
    sel["spec"]["selector"] = json!({"matchLabels": {"tier": "slow"}});
    assert!(best(&sel, &pvs, |_| true).is_none());
    sel["spec"]["selector"] = json!({"matchLabels": {"tier": "fast"}});
    assert!(best(&sel, &pvs, |_| true).is_some());
    // No class on the claim matches only volumes with none.
    let plain = claim("plain", "1Gi", None);
    assert!(best(&plain, &pvs, |_| true).is_none());
}

#[test]
fn a_volume_reserved_for_a_claim_goes_to_that_claim_only() {
    let c = claim("data", "1Gi", Some("manual"));
    let mut reserved = (*volume("kept", "5Gi", "manual", "Available")).clone();
    reserved["spec"]["claimRef"] = claim_reference(&c);
    let pvs = vec![
        volume("free", "1Gi", "manual", "Available"),
        Arc::new(reserved),
    ];
    // Reserved for it: chosen first, though bigger.
    assert_eq!(objects::name_of(best(&c, &pvs, |_| true).unwrap()), "kept");
    // Another claim cannot take it.
    let other = claim("other", "1Gi", Some("manual"));
    assert_eq!(
        objects::name_of(best(&other, &pvs, |_| true).unwrap()),
        "free"
    );
}

#[test]
fn a_released_volume_is_kept_deleted_or_failed_by_its_policy() {
    let c = claim("data", "1Gi", Some("manual"));
    let mut pv = (*volume("v", "1Gi", "manual", "Bound")).clone();
    pv["spec"]["claimRef"] = claim_reference(&c);
    let mut bound = c.clone();
    bound["spec"]["volumeName"] = json!("v");
    // Bound while its claim names it.
    assert_eq!(volume_step(&pv, Some(&bound)), VolumeStep::Keep);
    pv["status"]["phase"] = json!("Available");
    assert_eq!(volume_step(&pv, Some(&bound)), VolumeStep::Phase("Bound"));
    // Reserved, not taken yet: Available.
    assert_eq!(volume_step(&pv, Some(&c)), VolumeStep::Keep);
    // The claim gone: Retain releases it.
    pv["status"]["phase"] = json!("Bound");
    assert_eq!(volume_step(&pv, None), VolumeStep::Phase("Released"));
    // A claim of the same name but another uid is not its claim.
    let mut again = c.clone();
    again["metadata"]["uid"] = json!("uid-new");
    assert_eq!(
        volume_step(&pv, Some(&again)),
        VolumeStep::Phase("Released")
    );
    // Delete: a volume the provisioner made is deleted; one a user made
    // fails, once.
    pv["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
    assert!(matches!(volume_step(&pv, None), VolumeStep::Failed(_)));
    pv["status"]["phase"] = json!("Failed");
    assert_eq!(volume_step(&pv, None), VolumeStep::Keep);
    pv["metadata"]["annotations"] = json!({PROVISIONED_BY: LOCAL_PATH});
    assert_eq!(volume_step(&pv, None), VolumeStep::Delete);
    // Being deleted: nothing more.
    pv["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(volume_step(&pv, None), VolumeStep::Keep);
    // No claim at all: Available.
    let free = volume("f", "1Gi", "", "Pending");
    assert_eq!(volume_step(&free, None), VolumeStep::Phase("Available"));
}

#[test]
fn the_provisioner_pins_a_sized_directory_to_the_selected_node() {
    let c = claim("data", "3Gi", Some("shoal-local"));
    let class = json!({"metadata": {"name": "shoal-local"}, "provisioner": LOCAL_PATH,
                       "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
    let pv = provisioned(&c, &class, "node-2", "/var/lib/shoal/local-path/");
    assert_eq!(pv["metadata"]["name"], "pvc-uid-data");
    assert_eq!(
        pv["spec"]["hostPath"]["path"],
        "/var/lib/shoal/local-path/pvc-uid-data_default_data"
    );
    assert_eq!(pv["spec"]["capacity"]["storage"], "3Gi");
    assert_eq!(pv["spec"]["claimRef"]["uid"], "uid-data");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["metadata"]["finalizers"], json!([LOCAL_PATH_FINALIZER]));
    let terms = node_terms(&pv).unwrap();
    assert_eq!(
        terms[0].match_expressions.as_ref().unwrap()[0]
            .values
            .as_deref(),
        Some(&["node-2".to_string()][..])
    );
    // It fits the claim it was made for.
    assert!(matches(&c, &pv));
    // Retain: no finalizer (the directory stays with the volume).
    let retain =
        json!({"metadata": {"name": "keep"}, "provisioner": LOCAL_PATH, "reclaimPolicy": "Retain"});
    let pv = provisioned(&c, &retain, "node-2", "/d");
    assert_eq!(pv["metadata"]["finalizers"], json!([]));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
}

#[test]
fn a_claim_is_in_use_while_a_pod_that_may_run_mounts_it() {
    let c = claim("data", "1Gi", None);
    let pod = |phase: &str, claim: &str| {
        Arc::new(
            json!({"spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
                        "status": {"phase": phase}}),
        )
    };
    assert!(in_use(&c, &[pod("Running", "data")]));
    assert!(in_use(&c, &[pod("Pending", "data")]));
    assert!(!in_use(
        &c,
        &[pod("Succeeded", "data"), pod("Running", "other")]
    ));
    assert!(!in_use(&c, &[]));
}
