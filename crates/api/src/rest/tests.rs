//! Tests of path parsing, selectors on watch events and request bodies.

use super::*;

#[test]
fn paths_resolve_against_the_resource_table() {
    let t = parse_target("", "v1", &["namespaces", "default", "pods", "web", "log"]).unwrap();
    assert_eq!(
        (
            t.res.kind,
            t.ns.as_deref(),
            t.name.as_deref(),
            t.sub.as_deref()
        ),
        ("Pod", Some("default"), Some("web"), Some("log"))
    );
    let t = parse_target("", "v1", &["namespaces", "kube-system"]).unwrap();
    assert_eq!(
        (t.res.kind, t.name.as_deref()),
        ("Namespace", Some("kube-system"))
    );
    let t = parse_target("", "v1", &["namespaces", "x", "status"]).unwrap();
    assert_eq!(
        (t.res.kind, t.sub.as_deref()),
        ("Namespace", Some("status"))
    );
    let t = parse_target("", "v1", &["pods"]).unwrap();
    assert_eq!(
        (t.res.kind, t.ns.is_none(), t.name.is_none()),
        ("Pod", true, true)
    );
    let t = parse_target(
        "apps",
        "v1",
        &["namespaces", "d", "deployments", "w", "scale"],
    )
    .unwrap();
    assert_eq!(
        (t.res.kind, t.sub.as_deref()),
        ("Deployment", Some("scale"))
    );
    assert_eq!(parse_target("", "v1", &["widgets"]).unwrap_err().code, 404);
    assert_eq!(
        parse_target("", "v1", &["namespaces", "d", "pods", "w", "scale"])
            .unwrap_err()
            .code,
        404
    );
    assert_eq!(
        parse_target("", "v1", &["pods", "web"]).unwrap_err().code,
        404
    );
    assert_eq!(
        parse_target("", "v1", &["namespaces", "d", "nodes", "n"])
            .unwrap_err()
            .code,
        404
    );
    assert_eq!(
        parse_target("", "v1", &["nodes", "n", "status", "x"])
            .unwrap_err()
            .code,
        404
    );
    assert_eq!(
        parse_target("apps", "v1", &["namespaces", "d", "pods"])
            .unwrap_err()
            .code,
        404
    );
}

#[test]
fn yaml_bodies_become_json_and_bad_yaml_is_a_400_with_the_parse_error() {
    let json =
        from_yaml(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: '1', b: 2}\n")
            .unwrap();
    let v: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["data"], json!({"a": "1", "b": 2}));
    let e = from_yaml(b"metadata: {name: x\n  bad: [").unwrap_err();
    assert_eq!(e.code, 400);
    assert!(e.message.contains("unknown format: "), "{}", e.message);
    assert!(e.message.len() > "the body of the request was in an unknown format: ".len() + 5);
}

#[test]
fn go_zero_values_of_protobuf_bodies_are_dropped_but_user_data_stays() {
    let mut v = json!({
        "metadata": {"name": "x", "namespace": "", "generateName": "", "creationTimestamp": null,
                     "labels": {"empty": ""}},
        "data": {"blank": ""},
        "spec": {"replicas": 0, "strategy": {"type": ""}, "paused": false,
                 "template": {"spec": {"containers": [{"name": "c", "imagePullPolicy": ""}],
                                       "volumes": [{"name": "v", "emptyDir": {}}]}}},
    });
    prune_go_zero_values(&mut v);
    assert_eq!(
        v,
        json!({
            "metadata": {"name": "x", "labels": {"empty": ""}},
            "data": {"blank": ""},
            "spec": {"replicas": 0, "strategy": {},
                     "template": {"spec": {"containers": [{"name": "c"}],
                                           "volumes": [{"name": "v", "emptyDir": {}}]}}},
        })
    );
}

#[test]
fn kubectl_protobuf_creates_decode_to_what_defaulting_expects() {
    let body = include_bytes!("../testdata/kubectl_create_deployment.pb");
    let json = from_protobuf(body).unwrap();
    let res = &shoal_model::resources::DEPLOYMENTS;
    let obj = objects::decode(res, &json).unwrap();
    let d = objects::prepare_create(res, "default", obj).unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert!(from_protobuf(b"k8s\0garbage").is_err());
}

#[test]
fn selectors_turn_changes_into_enter_and_leave_events() {
    let obj =
        |phase: &str| Arc::new(json!({"metadata": {"name": "p"}, "status": {"phase": phase}}));
    let fields = FieldSelector::parse("Pod", "status.phase=Running").unwrap();
    let labels = LabelSelector::default();
    let ev = |kind, now: &str, prev: Option<&str>| CacheEvent {
        rev: 5,
        key: b"/registry/pods/d/p".to_vec(),
        kind,
        object: obj(now),
        prev: prev.map(obj),
    };
    assert_eq!(
        visible(&ev(Kind::Added, "Running", None), &labels, &fields),
        Some(Kind::Added)
    );
    assert_eq!(
        visible(
            &ev(Kind::Modified, "Running", Some("Pending")),
            &labels,
            &fields
        ),
        Some(Kind::Added)
    );
    assert_eq!(
        visible(
            &ev(Kind::Modified, "Running", Some("Running")),
            &labels,
            &fields
        ),
        Some(Kind::Modified)
    );
    assert_eq!(
        visible(
            &ev(Kind::Modified, "Failed", Some("Running")),
            &labels,
            &fields
        ),
        Some(Kind::Deleted)
    );
    assert_eq!(
        visible(
            &ev(Kind::Modified, "Failed", Some("Pending")),
            &labels,
            &fields
        ),
        None
    );
    assert_eq!(
        visible(
            &ev(Kind::Deleted, "Running", Some("Running")),
            &labels,
            &fields
        ),
        Some(Kind::Deleted)
    );
}
