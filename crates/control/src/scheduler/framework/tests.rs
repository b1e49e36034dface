//! Table-driven tests of the scheduling framework, plugin by plugin.

use super::*;
use serde_json::{json, Value};

mod scoring_and_sampling;

fn node_from(v: Value) -> NodeInfo {
    NodeInfo::new(serde_json::from_value(v).expect("node json"))
}

fn pod_from(v: Value) -> Pod {
    serde_json::from_value(v).expect("pod json")
}

fn node(name: &str, cpu: &str, mem: &str, pods: &str) -> NodeInfo {
    node_from(json!({
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods}}
    }))
}

/// A node with 4 cpu, 8Gi, 110 pods plus extra spec/labels.
fn node_with(name: &str, labels: Value, spec: Value) -> NodeInfo {
    node_from(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    }))
}

fn pod_req(cpu: &str, mem: &str) -> Pod {
    pod_from(json!({"spec": {"containers": [
        {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}
    ]}}))
}

fn pod_spec(spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c"}]);
    }
    pod_from(json!({ "spec": spec }))
}

fn filter_reasons(pod: &Pod, ni: &NodeInfo) -> Vec<String> {
    let ctx = PodCtx::new(pod);
    let mut out = Vec::new();
    if let Some(f) = run_filters(&ctx, ni) {
        f.reasons(|r| out.push(r));
    }
    out
}

fn scheduled_node(d: &Decision) -> &str {
    match d {
        Decision::Scheduled { node, .. } => node,
        other => panic!("expected Scheduled, got {other:?}"),
    }
}

#[test]
fn pod_requests_sums_containers() {
    let pod = pod_from(json!({"spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi"}}},
        {"name": "b", "resources": {"requests": {"cpu": "0.5", "memory": "64Mi"}}},
        {"name": "c"}
    ]}}));
    assert_eq!(
        pod_requests(&pod),
        Resources {
            milli_cpu: 750,
            memory: 128 << 20,
            pods: 1,
            ephemeral_storage: 1 << 30
        }
    );
}

#[test]
fn pod_requests_init_containers_and_overhead() {
    let cases = [
        (
            // init containers raise the floor per resource
            json!({
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                "initContainers": [
                    {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}},
                    {"name": "i2", "resources": {"requests": {"cpu": "500m", "memory": "3Gi"}}}
                ]
            }),
            2000,
            3i64 << 30,
        ),
        (
            // overhead is added on top
            json!({
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3"}}}],
                "overhead": {"cpu": "250m", "memory": "120Mi"}
            }),
            3250,
            (1i64 << 30) + (120 << 20),
        ),
        (
            // sidecars run beside the app and beside later init containers
            json!({
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
                "initContainers": [
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "i", "resources": {"requests": {"cpu": "2"}}}
                ]
            }),
            2500,
            0,
        ),
        (
            // a sidecar alone adds to the sum
            json!({
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
                "initContainers": [
                    {"name": "i", "resources": {"requests": {"cpu": "1200m"}}},
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}}
                ]
            }),
            1500,
            0,
        ),
    ];
    for (i, (spec, cpu, mem)) in cases.into_iter().enumerate() {
        let r = pod_requests(&pod_from(json!({ "spec": spec })));
        assert_eq!((r.milli_cpu, r.memory, r.pods), (cpu, mem, 1), "case {i}");
    }
}

#[test]
fn non_zero_defaults_for_scoring() {
    let be = pod_spec(json!({}));
    let r = PodRequest::of(&be);
    assert_eq!((r.res.milli_cpu, r.res.memory), (0, 0));
    assert_eq!(
        (r.nz_cpu, r.nz_mem),
        (DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
    );
    // an explicit zero is kept (presence, not value, decides)
    let r = PodRequest::of(&pod_req("0", "1Gi"));
    assert_eq!((r.nz_cpu, r.nz_mem), (0, 1 << 30));
}

#[test]
fn node_info_accounting() {
    let mut ni = node("n", "4", "8Gi", "110");
    assert_eq!(
        ni.allocatable(),
        Resources {
            milli_cpu: 4000,
            memory: 8 << 30,
            pods: 110,
            ephemeral_storage: 0
        }
    );
    let p = pod_req("1500m", "1Gi");
    ni.add_pod(&p);
    ni.add_pod(&p);
    assert_eq!(ni.requested().milli_cpu, 3000);
    assert_eq!(ni.requested().pods, 2);
    ni.remove_pod(&p);
    assert_eq!(ni.requested().memory, 1 << 30);
    ni.remove_pod(&p);
    ni.remove_pod(&p);
    assert_eq!(ni.requested(), Resources::default());
    assert_eq!((ni.nz_cpu, ni.nz_mem), (0, 0));
}

#[test]
fn filter_node_name_table() {
    let ni = node("a", "4", "8Gi", "110");
    for (want, ok) in [
        (None, true),
        (Some(""), true),
        (Some("a"), true),
        (Some("b"), false),
    ] {
        let pod = pod_spec(json!({ "nodeName": want }));
        let r = filter_reasons(&pod, &ni);
        if ok {
            assert!(r.is_empty(), "{want:?}: {r:?}");
        } else {
            assert_eq!(r, vec![REASON_NODE_NAME], "{want:?}");
        }
    }
}

#[test]
fn filter_node_unschedulable_table() {
    let cordoned = node_with("a", json!({}), json!({"unschedulable": true}));
    let open = node_with("b", json!({}), json!({"unschedulable": false}));
    let cases = [
        (json!([]), &cordoned, false),
        (json!([]), &open, true),
        (
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
            &cordoned,
            true,
        ),
        (json!([{"operator": "Exists"}]), &cordoned, true),
        (
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}]),
            &cordoned,
            false,
        ),
    ];
    for (i, (tols, ni, ok)) in cases.into_iter().enumerate() {
        let r = filter_reasons(&pod_spec(json!({ "tolerations": tols })), ni);
        assert_eq!(r.is_empty(), ok, "case {i}: {r:?}");
        if !ok {
            assert_eq!(r, vec![REASON_UNSCHEDULABLE]);
        }
    }
}

#[test]
fn filter_resources_fit_table() {
    let mut busy = node("busy", "2", "4Gi", "3");
    busy.add_pod(&pod_req("1500m", "3Gi"));
    busy.add_pod(&pod_req("0", "0"));
    let cases: Vec<(Pod, Vec<&str>)> = vec![
        (pod_req("500m", "1Gi"), vec![]),
        (pod_req("501m", "1Gi"), vec![REASON_INSUFFICIENT_CPU]),
        (pod_req("100m", "2Gi"), vec![REASON_INSUFFICIENT_MEMORY]),
        (
            pod_req("1", "2Gi"),
            vec![REASON_INSUFFICIENT_CPU, REASON_INSUFFICIENT_MEMORY],
        ),
        // a pod requesting nothing only needs a pod slot
        (pod_spec(json!({})), vec![]),
        (
            pod_from(
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "1"}}}]}}),
            ),
            vec![REASON_INSUFFICIENT_EPHEMERAL],
        ),
    ];
    for (i, (pod, want)) in cases.iter().enumerate() {
        assert_eq!(filter_reasons(pod, &busy), *want, "case {i}");
    }
    busy.add_pod(&pod_spec(json!({})));
    assert_eq!(
        filter_reasons(&pod_req("4", "0"), &busy),
        vec![REASON_TOO_MANY_PODS, REASON_INSUFFICIENT_CPU]
    );
    assert_eq!(
        filter_reasons(&pod_spec(json!({})), &busy),
        vec![REASON_TOO_MANY_PODS]
    );
}

#[test]
fn toleration_matching_table() {
    let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        ..Taint::default()
    };
    let tol = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
    let t = taint("dedicated", Some("gpu"), "NoSchedule");
    let cases = [
        (
            json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
            true,
        ),
        (json!({"key": "dedicated", "value": "gpu"}), true),
        (
            json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}),
            false,
        ),
        (json!({"key": "dedicated", "operator": "Exists"}), true),
        (json!({"key": "other", "operator": "Exists"}), false),
        (json!({"operator": "Exists"}), true),
        (json!({"operator": "Exists", "effect": "NoExecute"}), false),
        (
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}),
            true,
        ),
        (
            json!({"key": "dedicated", "operator": "Bogus", "value": "gpu"}),
            false,
        ),
        (json!({"key": "dedicated"}), false),
    ];
    for (i, (tv, want)) in cases.into_iter().enumerate() {
        assert_eq!(toleration_tolerates(&tol(tv), &t), want, "case {i}");
    }
    let no_value = taint("node-role.kubernetes.io/control-plane", None, "NoSchedule");
    assert!(toleration_tolerates(
        &tol(json!({"key": "node-role.kubernetes.io/control-plane"})),
        &no_value
    ));
    assert!(toleration_tolerates(
        &tol(
            json!({"key": "node-role.kubernetes.io/control-plane", "operator": "Equal", "value": ""})
        ),
        &no_value
    ));
}

#[test]
fn filter_taint_toleration_table() {
    let tainted = |taints: Value| node_with("n", json!({}), json!({ "taints": taints }));
    let cases = [
        (
            json!([{"key": "a", "effect": "NoSchedule"}]),
            json!([]),
            Some("node(s) had untolerated taint {a: }"),
        ),
        (
            json!([{"key": "a", "value": "v", "effect": "NoExecute"}]),
            json!([]),
            Some("node(s) had untolerated taint {a: v}"),
        ),
        (
            json!([{"key": "a", "effect": "PreferNoSchedule"}]),
            json!([]),
            None,
        ),
        (
            json!([{"key": "a", "effect": "NoSchedule"}]),
            json!([{"key": "a", "operator": "Exists"}]),
            None,
        ),
        (
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "x", "effect": "NoSchedule"}]),
            json!([{"key": "a", "operator": "Exists"}]),
            Some("node(s) had untolerated taint {b: x}"),
        ),
        (
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]),
            json!([]),
            Some("node(s) had untolerated taint {a: }"),
        ),
        (
            json!([{"key": "a", "effect": "NoExecute"}]),
            json!([{"operator": "Exists"}]),
            None,
        ),
    ];
    for (i, (taints, tols, want)) in cases.into_iter().enumerate() {
        let r = filter_reasons(&pod_spec(json!({ "tolerations": tols })), &tainted(taints));
        assert_eq!(
            r,
            want.into_iter().map(String::from).collect::<Vec<_>>(),
            "case {i}"
        );
    }
}

#[test]
fn node_affinity_operators_table() {
    let ni = node_with(
        "node-1",
        json!({"zone": "a", "gen": "5", "ssd": "true"}),
        json!({}),
    );
    let expr = |key: &str, op: &str, values: Value| {
        pod_spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]
            }}}}),
        )
    };
    let cases = [
        ("zone", "In", json!(["a", "b"]), true),
        ("zone", "In", json!(["b"]), false),
        ("missing", "In", json!(["a"]), false),
        ("zone", "NotIn", json!(["b"]), true),
        ("zone", "NotIn", json!(["a"]), false),
        ("missing", "NotIn", json!(["a"]), true),
        ("ssd", "Exists", json!(null), true),
        ("missing", "Exists", json!([]), false),
        ("missing", "DoesNotExist", json!(null), true),
        ("ssd", "DoesNotExist", json!(null), false),
        ("gen", "Gt", json!(["4"]), true),
        ("gen", "Gt", json!(["5"]), false),
        ("gen", "Lt", json!(["6"]), true),
        ("gen", "Lt", json!(["5"]), false),
        ("zone", "Gt", json!(["1"]), false),
        ("missing", "Lt", json!(["9"]), false),
        // invalid requirements make the term match nothing
        ("gen", "Gt", json!(["x"]), false),
        ("gen", "Gt", json!(["1", "2"]), false),
        ("zone", "In", json!([]), false),
        ("ssd", "Exists", json!(["true"]), false),
        ("zone", "Like", json!(["a"]), false),
    ];
    for (key, op, values, want) in cases {
        let r = filter_reasons(&expr(key, op, values.clone()), &ni);
        assert_eq!(r.is_empty(), want, "{key} {op} {values}");
        if !want {
            assert_eq!(r, vec![REASON_NODE_AFFINITY]);
        }
    }
}

#[test]
fn node_affinity_selector_terms_and_fields() {
    let ni = node_with("node-1", json!({"zone": "a", "disk": "ssd"}), json!({}));
    let req = |terms: Value| json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
    let cases = [
        (json!({"nodeSelector": {"zone": "a"}}), true),
        (json!({"nodeSelector": {"zone": "a", "disk": "hdd"}}), false),
        (json!({"nodeSelector": {"missing": ""}}), false),
        (json!({"nodeSelector": {}}), true),
        // terms are ORed
        (
            json!({"affinity": req(json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
            ]))}),
            true,
        ),
        // requirements in a term are ANDed
        (
            json!({"affinity": req(json!([{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]},
                {"key": "disk", "operator": "In", "values": ["hdd"]}
            ]}]))}),
            false,
        ),
        // an empty term or an empty term list matches nothing
        (json!({"affinity": req(json!([{}]))}), false),
        (json!({"affinity": req(json!([]))}), false),
        // nodeSelector and affinity must both hold
        (
            json!({"nodeSelector": {"zone": "b"}, "affinity": req(json!([
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
            ]))}),
            false,
        ),
        // matchFields on metadata.name
        (
            json!({"affinity": req(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]))}),
            true,
        ),
        (
            json!({"affinity": req(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}]))}),
            false,
        ),
        (
            json!({"affinity": req(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1", "node-2"]}]}]))}),
            false,
        ),
        (
            json!({"affinity": req(json!([{
                "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}],
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]
            }]))}),
            false,
        ),
    ];
    for (i, (spec, want)) in cases.into_iter().enumerate() {
        let r = filter_reasons(&pod_spec(spec), &ni);
        assert_eq!(r.is_empty(), want, "case {i}: {r:?}");
    }
}
