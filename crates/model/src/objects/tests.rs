//! Unit tests of object preparation: metadata, generations, typed round trips, unknown fields.
use super::*;

fn deployments() -> &'static Resource {
    &crate::resources::DEPLOYMENTS
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.14.2"}]}}}
    })
}

#[test]
fn names_follow_dns_rules() {
    assert!(is_dns1123_subdomain("web-1.example"));
    assert!(!is_dns1123_subdomain("Web"));
    assert!(!is_dns1123_subdomain("-web"));
    assert!(!is_dns1123_subdomain("web_1"));
    assert!(is_dns1123_label("a"));
    assert!(!is_dns1123_label(&"a".repeat(64)));
    assert!(is_dns1035_label("svc-1"));
    assert!(!is_dns1035_label("1svc"));
    assert_eq!(new_uid().len(), 36);
    assert_eq!(&new_uid()[14..15], "4");
}

#[test]
fn create_sets_server_metadata_and_validates() {
    let d = prepare_create(deployments(), "default", deployment("web")).unwrap();
    assert_eq!(d["metadata"]["namespace"], "default");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(d["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let e = prepare_create(deployments(), "default", deployment("Bad_Name")).unwrap_err();
    assert_eq!((e.code, e.reason), (422, "Invalid"));
    assert_eq!(e.details.unwrap()["causes"][0]["field"], "metadata.name");
    let mut bad = deployment("web");
    bad["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
    let e = prepare_create(deployments(), "default", bad).unwrap_err();
    assert!(
        e.message
            .contains("`selector` does not match template `labels`"),
        "{}",
        e.message
    );
    let mut other_ns = deployment("web");
    other_ns["metadata"]["namespace"] = json!("kube-system");
    assert_eq!(
        prepare_create(deployments(), "default", other_ns)
            .unwrap_err()
            .code,
        400
    );
}

#[test]
fn pod_quantities_are_validated_and_stored_canonically() {
    let pods = &crate::resources::PODS;
    let pod = |resources: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "image": "x", "resources": resources}]}})
    };
    let ok = prepare_create(pods, "default", pod(json!({"limits": {"cpu": "1.5"}}))).unwrap();
    let r = &ok["spec"]["containers"][0]["resources"];
    assert_eq!(
        (r["limits"]["cpu"].as_str(), r["requests"]["cpu"].as_str()),
        (Some("1500m"), Some("1500m"))
    );
    let cases = [
        (
            json!({"limits": {"memory": "12 parsecs"}}),
            "spec.containers[0].resources.limits[memory]",
            "quantities must match the regular expression",
        ),
        (
            json!({"requests": {"cpu": "-1"}}),
            "spec.containers[0].resources.requests[cpu]",
            "must be greater than or equal to 0",
        ),
        (
            json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            "spec.containers[0].resources.requests[cpu]",
            "must be less than or equal to cpu limit of 1",
        ),
    ];
    for (resources, field, why) in cases {
        let e = prepare_create(pods, "default", pod(resources.clone())).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"), "{resources}");
        let cause = &e.details.unwrap()["causes"][0];
        assert_eq!(cause["field"], field, "{resources}");
        assert!(
            cause["message"].as_str().unwrap().contains(why),
            "{resources}: {cause}"
        );
    }
}

/// Volume names become directories on the node: a name like "/" or
/// "/etc/cron.d" is refused at the API (422), as upstream.
#[test]
fn volume_names_are_dns_labels_and_mounts_name_a_volume() {
    let pods = &crate::resources::PODS;
    let pod = |volumes: Value, mounts: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"volumes": volumes,
                        "containers": [{"name": "c", "image": "x", "volumeMounts": mounts}]}})
    };
    let ok = pod(
        json!([{"name": "data", "emptyDir": {}}]),
        json!([{"name": "data", "mountPath": "/d"}]),
    );
    prepare_create(pods, "default", ok).unwrap();
    let cases = [
        (
            json!([{"name": "/", "emptyDir": {}}]),
            json!([]),
            "spec.volumes[0].name",
            "Invalid value: \"/\"",
        ),
        (
            json!([{"name": "/etc/cron.d", "configMap": {"name": "x"}}]),
            json!([]),
            "spec.volumes[0].name",
            "RFC 1123",
        ),
        (
            json!([{"emptyDir": {}}]),
            json!([]),
            "spec.volumes[0].name",
            "Required value",
        ),
        (
            json!([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]),
            json!([]),
            "spec.volumes[1].name",
            "Duplicate value",
        ),
        (
            json!([]),
            json!([{"name": "gone", "mountPath": "/g"}]),
            "spec.containers[0].volumeMounts[0].name",
            "Not found: \"gone\"",
        ),
    ];
    for (volumes, mounts, field, why) in cases {
        let e = prepare_create(pods, "default", pod(volumes.clone(), mounts)).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"), "{volumes}");
        let cause = &e.details.unwrap()["causes"][0];
        assert_eq!(cause["field"], field, "{volumes}");
        assert!(
            cause["message"].as_str().unwrap().contains(why),
            "{volumes}: {cause}"
        );
    }
}

#[test]
fn generation_moves_with_the_spec_only() {
    let res = deployments();
    let old = prepare_create(res, "default", deployment("web")).unwrap();
    let mut labels_only = old.clone();
    labels_only["metadata"]["labels"]["extra"] = json!("1");
    let n = prepare_update(res, None, &old, labels_only).unwrap();
    assert_eq!(n["metadata"]["generation"], 1);
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    let n = prepare_update(res, None, &old, scaled).unwrap();
    assert_eq!(n["metadata"]["generation"], 2);
    assert_eq!(n["metadata"]["uid"], old["metadata"]["uid"]);
    // The main resource ignores status; /status ignores the rest.
    let mut with_status = old.clone();
    with_status["status"] = json!({"replicas": 2});
    with_status["spec"]["replicas"] = json!(9);
    let n = prepare_update(res, None, &old, with_status.clone()).unwrap();
    assert!(n.get("status").is_none());
    let s = prepare_update(res, Some("status"), &old, with_status).unwrap();
    assert_eq!(
        (
            s["status"]["replicas"].as_i64(),
            s["spec"]["replicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn unknown_fields_are_found_by_the_typed_round_trip() {
    let res = deployments();
    let mut d = deployment("web");
    d["spec"]["replicaz"] = json!(3);
    d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
    d["metadata"]["creationTimestamp"] = Value::Null;
    let w = check_fields(res, &d, FieldValidation::Warn).unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    let e = check_fields(res, &d, FieldValidation::Strict).unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("unknown field \"spec.replicaz\""),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("spec.template.spec.containers[0].imagee"),
        "{}",
        e.message
    );
    assert!(check_fields(res, &d, FieldValidation::Ignore)
        .unwrap()
        .is_empty());
    assert!(
        check_fields(res, &deployment("web"), FieldValidation::Strict)
            .unwrap()
            .is_empty()
    );
    // Wrong types are a decode error (400).
    let mut wrong = deployment("web");
    wrong["spec"]["replicas"] = json!("two");
    assert_eq!(
        check_fields(res, &wrong, FieldValidation::Ignore)
            .unwrap_err()
            .code,
        400
    );
}

#[test]
fn decoding_reports_the_parse_error() {
    let e = decode(deployments(), b"{\"kind\": ").unwrap_err();
    assert_eq!(e.code, 400);
    assert!(e.message.contains("EOF"), "{}", e.message);
    assert_eq!(decode(deployments(), b"[1]").unwrap_err().code, 400);
    let e = decode(deployments(), br#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap_err();
    assert_eq!(e.code, 400);
}

#[test]
fn a_runtime_class_needs_a_handler_that_never_changes() {
    let res = &crate::resources::RUNTIMECLASSES;
    let class = prepare_create(res, "", runtime_class("docker")).unwrap();
    assert_eq!(class["handler"], "docker");
    assert_eq!(
        class["scheduling"]["nodeSelector"]["runtime.shoal.io/docker"],
        "true"
    );
    // The built-in classes pass strict decoding.
    assert!(check_fields(res, &class, FieldValidation::Strict)
        .unwrap()
        .is_empty());
    for bad in [json!(null), json!(""), json!("Not_A_Label")] {
        let mut c = runtime_class("x");
        c["handler"] = bad.clone();
        let e = prepare_create(res, "", c).unwrap_err();
        assert_eq!(e.code, 422, "handler {bad}: {}", e.message);
    }
    let mut changed = class.clone();
    changed["handler"] = json!("process");
    let e = prepare_update(res, None, &class, changed).unwrap_err();
    assert_eq!(e.code, 422);
    assert!(e.message.contains("field is immutable"), "{}", e.message);
    let mut labelled = class.clone();
    labelled["metadata"]["labels"] = json!({"tier": "fast"});
    assert!(prepare_update(res, None, &class, labelled).is_ok());
}
