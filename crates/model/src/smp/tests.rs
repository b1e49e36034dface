//! Tests of strategic merge patch, starting with kubectl's own apply patch.

use super::*;
use serde_json::json;

fn apply(kind: &str, original: Value, patch: Value) -> Value {
    strategic_merge_patch(kind, &original, &patch).expect("patch applies")
}

fn apply_err(kind: &str, original: Value, patch: Value) -> String {
    strategic_merge_patch(kind, &original, &patch)
        .expect_err("patch is rejected")
        .to_string()
}

fn has_dollar_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_dollar_key(v)),
        Value::Array(items) => items.iter().any(has_dollar_key),
        _ => false,
    }
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}
    })
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| c["name"].as_str().expect("a name"))
        .collect()
}

#[test]
fn kubectl_apply_trace_patch() {
    let original = deployment(json!([
        {"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}
    ]));
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]
        }}}
    });
    let out = apply("Deployment", original, patch);
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1));
    assert_eq!(containers[0]["image"], "nginx:1.16.1");
    assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]));
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "x"
    );
    assert_eq!(out["metadata"]["labels"]["app"], "web");
    assert_eq!(out["spec"]["replicas"], 1);
    assert!(!has_dollar_key(&out), "directive left in {out}");
}

#[test]
fn adds_a_second_container_in_set_order() {
    let original = deployment(json!([{"name": "nginx", "image": "nginx"}]));
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "busybox"}]
    }}}});
    let out = apply("Deployment", original, patch);
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), ["nginx", "sidecar"]);
    assert_eq!(containers[0]["image"], "nginx");
    assert_eq!(containers[1]["image"], "busybox");
}

#[test]
fn deletes_a_container_with_patch_delete() {
    let original = deployment(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "b"}],
        "containers": [{"$patch": "delete", "name": "a"}]
    }}}});
    let out = apply("Deployment", original, patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "b", "image": "b"}])
    );
}

#[test]
fn env_is_merged_by_name() {
    let original = json!({"spec": {"containers": [{"name": "app", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}
    ]}]}});
    let patch = json!({"spec": {"containers": [{"name": "app", "env": [
        {"name": "B", "value": "3"}, {"name": "C", "value": "4"}
    ]}]}});
    let out = apply("Pod", original, patch);
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
    );
}

#[test]
fn null_deletes_a_label() {
    let original = deployment(json!([]));
    let out = apply(
        "Deployment",
        original,
        json!({"metadata": {"labels": {"tier": null, "new": null}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn finalizers_are_unioned_and_deleted_from() {
    let original = json!({"metadata": {"name": "x", "finalizers": ["a", "b"]}});
    let out = apply(
        "ConfigMap",
        original,
        json!({"metadata": {"finalizers": ["b", "c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = apply(
        "ConfigMap",
        out,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    assert!(!has_dollar_key(&out));
}

#[test]
fn retain_keys_drops_unlisted_fields() {
    let original = json!({"spec": {"strategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}
    }}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = apply("Deployment", original, patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_rejects_an_unlisted_patch_field() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
    let message = apply_err("Deployment", json!({}), patch);
    assert!(message.contains("rollingUpdate"), "{message}");
    let message = apply_err(
        "Deployment",
        json!({}),
        json!({"spec": {"$retainKeys": "type"}}),
    );
    assert!(message.contains("$retainKeys"), "{message}");
}

#[test]
fn patch_replace_on_a_map() {
    let original = deployment(json!([]));
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}});
    let out = apply("Deployment", original, patch);
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    assert_eq!(out["metadata"]["name"], "web");
}

#[test]
fn patch_merge_is_the_default_made_explicit() {
    let original = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}]}});
    let patch = json!({"spec": {"$patch": "merge", "containers": [
        {"$patch": "merge", "name": "a", "image": "y"}, {"$patch": "merge"}
    ]}});
    let out = apply("Pod", original, patch);
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "y", "env": [{"name": "E", "value": "1"}]}])
    );
}

#[test]
fn patch_delete_on_a_map_empties_it() {
    let original = json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 2}});
    let out = apply(
        "Deployment",
        original,
        json!({"spec": {"strategy": {"$patch": "delete"}}}),
    );
    assert_eq!(out["spec"], json!({"strategy": {}, "replicas": 2}));
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let original = json!({"spec": {
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "containers": [{"name": "app", "args": ["--x", "--y"]}]
    }});
    let patch = json!({"spec": {
        "tolerations": [{"key": "b", "operator": "Exists"}],
        "containers": [{"name": "app", "args": ["--z"]}]
    }});
    let out = apply("Pod", original, patch);
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["--z"]));
}

#[test]
fn service_ports_are_merged_by_port() {
    let original = json!({"spec": {"type": "ClusterIP", "ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "protocol": "TCP"}
    ]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 8443, "name": "alt"}]}});
    let out = apply("Service", original, patch);
    // Without $setElementOrder, upstream puts a new patch item ahead of server-only items
    // whose relative order to it is unknown.
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
            {"name": "alt", "port": 8443},
            {"name": "https", "port": 443, "protocol": "TCP"}
        ])
    );
}

#[test]
fn set_element_order_reorders_an_existing_list() {
    let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}});
    let out = apply("Pod", original, patch);
    assert_eq!(names(&out["spec"]["containers"]), ["b", "a"]);
}

#[test]
fn set_element_order_interleaves_server_only_items_like_upstream() {
    let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}});
    let out = apply("Pod", original, patch);
    // "b" preceded "c" in the live list, so it stays in front of it.
    assert_eq!(names(&out["spec"]["containers"]), ["b", "c", "a"]);
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b"}, {"name": "a"}]
    }});
    let message = apply_err("Pod", original, patch);
    assert!(message.contains("$setElementOrder/containers"), "{message}");
}

#[test]
fn patch_replace_inside_a_list() {
    let original = json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]}});
    let patch =
        json!({"spec": {"volumes": [{"name": "c", "emptyDir": {}}, {"$patch": "replace"}]}});
    let out = apply("Pod", original, patch);
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "c", "emptyDir": {}}])
    );
}

#[test]
fn directives_in_new_values_are_stripped() {
    let original = json!({"spec": {"template": {"spec": {}}}});
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s", "optional": null}}
    ]}}}});
    let out = apply("StatefulSet", original, patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "v", "secret": {"secretName": "s"}}])
    );
    assert!(!has_dollar_key(&out));
}

#[test]
fn cronjob_pod_spec_is_reached_through_job_template() {
    let spec = |containers: Value| json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": containers}}}}}});
    let original =
        spec(json!([{"name": "job", "image": "a", "env": [{"name": "X", "value": "1"}]}]));
    let patch = spec(json!([{"name": "job", "env": [{"name": "Y", "value": "2"}]}]));
    let out = apply("CronJob", original, patch);
    let container = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "a");
    assert_eq!(
        container["env"],
        json!([{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}])
    );
}

#[test]
fn status_lists_merge_by_type_and_owner_references_by_uid() {
    let original = json!({
        "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
        }
    });
    let patch = json!({
        "metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "n1"}]
        }
    });
    let out = apply("Node", original, patch);
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}])
    );
    assert_eq!(out["status"]["addresses"].as_array().map(Vec::len), Some(2));
}

#[test]
fn merge_keys_compare_numbers_by_value() {
    let original = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}});
    let patch = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0, "name": "http"}]}]}});
    let out = apply("Pod", original, patch);
    let ports = &out["spec"]["containers"][0]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1));
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["protocol"], "TCP");
}

#[test]
fn unknown_kind_falls_back_to_merge_patch_semantics() {
    let original = json!({"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x"}], "keep": 1, "drop": 2}});
    let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}], "drop": null}});
    let out = apply("Widget", original, patch);
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    assert_eq!(out["spec"], json!({"items": [{"name": "y"}], "keep": 1}));
}

#[test]
fn internal_type_names_are_not_kinds() {
    let out = apply(
        "core.PodSpec",
        json!({"containers": [{"name": "a"}]}),
        json!({"containers": [{"name": "b"}]}),
    );
    assert_eq!(out["containers"], json!([{"name": "b"}]));
}

#[test]
fn malformed_patches_are_errors() {
    assert!(apply_err("Pod", json!({}), json!([1, 2])).contains("JSON object"));
    assert!(apply_err("Pod", json!({}), json!("x")).contains("JSON object"));
    let missing = apply_err(
        "Pod",
        json!({"spec": {"containers": [{"name": "a"}]}}),
        json!({"spec": {"containers": [{"image": "x"}]}}),
    );
    assert!(missing.contains("merge key \"name\""), "{missing}");
    let delete_without_key = apply_err(
        "Pod",
        json!({}),
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
    );
    assert!(
        delete_without_key.contains("merge key"),
        "{delete_without_key}"
    );
    let bad_directive = apply_err("Pod", json!({}), json!({"metadata": {"$patch": "explode"}}));
    assert!(
        bad_directive.contains("invalid $patch directive"),
        "{bad_directive}"
    );
    let bad_in_list = apply_err(
        "Pod",
        json!({}),
        json!({"spec": {"containers": [{"name": "a", "$patch": 3}]}}),
    );
    assert!(
        bad_in_list.contains("invalid $patch directive"),
        "{bad_in_list}"
    );
    let mixed = apply_err(
        "Pod",
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"finalizers": [{"a": 1}]}}),
    );
    assert!(mixed.contains("same type"), "{mixed}");
    let bad_order = apply_err(
        "Pod",
        json!({}),
        json!({"spec": {"$setElementOrder/containers": "a"}}),
    );
    assert!(bad_order.contains("must be a list"), "{bad_order}");
    let bad_delete = apply_err(
        "Pod",
        json!({}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
    );
    assert!(bad_delete.contains("must be a list"), "{bad_delete}");
}

#[test]
fn original_that_is_not_an_object_is_an_error() {
    assert!(strategic_merge_patch("Pod", &json!([1]), &json!({})).is_err());
    assert_eq!(
        strategic_merge_patch("Pod", &Value::Null, &json!({"a": 1})),
        Ok(json!({"a": 1}))
    );
}

#[test]
fn every_listed_kind_is_in_the_table() {
    let kinds = [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "CronJob",
        "Service",
        "Endpoints",
        "EndpointSlice",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Namespace",
        "Node",
        "Event",
        "Ingress",
        "Lease",
        "PodTemplate",
    ];
    for kind in kinds {
        assert_eq!(lookup(kind, "metadata").ty, "meta.ObjectMeta", "{kind}");
    }
    // Every referenced type is defined.
    for &(_, field, _, _, ty) in SCHEMA {
        assert!(
            ty.is_empty() || SCHEMA.iter().any(|row| row.0 == ty),
            "{field} -> {ty}"
        );
    }
}

#[test]
fn pod_spec_is_mounted_under_every_workload() {
    let pod_spec_at = |kind: &str, path: &[&str]| {
        let ty = path.iter().fold(kind.to_owned(), |ty, field| {
            lookup(&ty, field).ty.to_owned()
        });
        lookup(&ty, "containers").merge_key
    };
    assert_eq!(pod_spec_at("Pod", &["spec"]), "name");
    assert_eq!(pod_spec_at("PodTemplate", &["template", "spec"]), "name");
    for kind in [
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
    ] {
        assert_eq!(
            pod_spec_at(kind, &["spec", "template", "spec"]),
            "name",
            "{kind}"
        );
    }
    assert_eq!(
        pod_spec_at(
            "CronJob",
            &["spec", "jobTemplate", "spec", "template", "spec"]
        ),
        "name"
    );
}

mod hostile {
    //! Arbitrary JSON as a strategic merge patch (or as the object it
    //! patches) is applied or refused with a message, never a panic.

    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z$/]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        "[a-z]{1,8}",
                        Just("$patch".to_string()),
                        Just("$retainKeys".to_string()),
                        Just("$setElementOrder/containers".to_string()),
                        Just("$deleteFromPrimitiveList/finalizers".to_string()),
                        Just("containers".to_string()),
                        Just("name".to_string()),
                        Just("spec".to_string()),
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "finalizers": ["a", "b"]},
               "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}]}})
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_patches_never_panic(patch in json_value()) {
            let _ = super::strategic_merge_patch("Pod", &pod(), &patch);
            let _ = super::strategic_merge_patch("Deployment", &pod(), &json!({"spec": patch.clone()}));
        }

        #[test]
        fn arbitrary_originals_never_panic(original in json_value(), patch in json_value()) {
            let _ = super::strategic_merge_patch("Pod", &original, &patch);
        }
    }
}
