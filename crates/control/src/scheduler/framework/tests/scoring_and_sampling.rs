//! Tests of the scheduling framework's scoring (spread, bin packing,
//! affinity, taints), its messages, node sampling and throughput.

use super::*;

#[test]
fn match_fields_prefilter_narrows_and_conflicts() {
    let nodes: Vec<NodeInfo> = (0..5)
        .map(|i| node(&format!("n{i}"), "1", "1Gi", "110"))
        .collect();
    let cfg = Config::default();
    // one term per name: the terms are ORed, so the candidates are their union
    let pinned = |names: &[&str]| {
        let terms: Vec<Value> = names
            .iter()
            .map(|n| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}))
            .collect();
        pod_spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": terms
            }}}}),
        )
    };
    // best effort on 1 cpu / 1Gi: fit (90 + 80) / 2 = 85, no taints 3 * 100
    assert_eq!(
        schedule(&pinned(&["n3", "gone"]), &nodes, &cfg, 4),
        Decision::Scheduled {
            node: "n3".into(),
            score: 385,
            feasible: 1,
            evaluated: 1
        }
    );
    // too big for n3: the other nodes count as filtered by PreFilter
    let mut big = pinned(&["n3"]);
    big.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(json!({"requests": {"cpu": "2"}})).unwrap());
    match schedule(&big, &nodes, &cfg, 0) {
        Decision::Unschedulable { message, reasons } => {
            assert_eq!(
                message,
                "0/5 nodes are available: 1 Insufficient cpu, 4 node(s) didn't satisfy plugin(s) [NodeAffinity]."
            );
            assert_eq!(reasons.values().sum::<usize>(), 5);
        }
        d => panic!("{d:?}"),
    }
    // two fields in one term intersect to nothing
    let conflict = pod_spec(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["n1"]},
                {"key": "metadata.name", "operator": "In", "values": ["n2"]}
            ]}]
        }}}}),
    );
    match schedule(&conflict, &nodes, &cfg, 0) {
        Decision::Unschedulable { message, .. } => {
            assert_eq!(
                message,
                "0/5 nodes are available: pod affinity terms conflict."
            )
        }
        d => panic!("{d:?}"),
    }
}

fn place_sequence(strategy: ScoringStrategy, nodes: &mut [NodeInfo], pods: usize) -> Vec<String> {
    let cfg = Config {
        strategy,
        ..Config::default()
    };
    let pod = pod_req("1", "1Gi");
    let mut placed = Vec::new();
    for _ in 0..pods {
        let d = schedule(&pod, nodes, &cfg, 0);
        let name = scheduled_node(&d).to_string();
        nodes
            .iter_mut()
            .find(|n| n.name() == name)
            .unwrap()
            .add_pod(&pod);
        placed.push(name);
    }
    placed
}

#[test]
fn least_allocated_spreads() {
    let mut nodes: Vec<NodeInfo> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, "4", "8Gi", "110"))
        .collect();
    let placed = place_sequence(ScoringStrategy::LeastAllocated, &mut nodes, 6);
    assert_eq!(placed, ["a", "b", "c", "a", "b", "c"]);
    // the bigger node absorbs more
    let mut nodes = vec![
        node("small", "2", "4Gi", "110"),
        node("big", "8", "16Gi", "110"),
    ];
    let placed = place_sequence(ScoringStrategy::LeastAllocated, &mut nodes, 5);
    assert_eq!(placed.iter().filter(|n| *n == "big").count(), 4);
}

#[test]
fn most_allocated_bin_packs() {
    let mut nodes: Vec<NodeInfo> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, "4", "8Gi", "110"))
        .collect();
    let placed = place_sequence(ScoringStrategy::MostAllocated, &mut nodes, 6);
    assert_eq!(placed, ["a", "a", "a", "a", "b", "b"]);
    assert_eq!(nodes[2].requested().pods, 0);
    // a partially used node is preferred over an empty one
    let mut nodes = vec![
        node("empty", "4", "8Gi", "110"),
        node("used", "4", "8Gi", "110"),
    ];
    nodes[1].add_pod(&pod_req("2", "2Gi"));
    let placed = place_sequence(ScoringStrategy::MostAllocated, &mut nodes, 1);
    assert_eq!(placed, ["used"]);
}

#[test]
fn resource_scores_exact() {
    let ctx_pod = pod_req("1", "2Gi");
    let ctx = PodCtx::new(&ctx_pod);
    let mut ni = node("n", "4", "8Gi", "110");
    ni.add_pod(&pod_req("1", "2Gi"));
    // cpu 2/4 used, memory 4/8 used after placement
    assert_eq!(
        score_node_resources_fit(ScoringStrategy::LeastAllocated, &ctx, &ni),
        50
    );
    assert_eq!(
        score_node_resources_fit(ScoringStrategy::MostAllocated, &ctx, &ni),
        50
    );
    // best-effort pods are scored with 100m / 200Mi defaults
    let be = pod_spec(json!({}));
    let ctx = PodCtx::new(&be);
    let empty = node("e", "1", "1000Mi", "110");
    // cpu: (1000-100)*100/1000 = 90; mem: (1000-200)*100/1000 = 80 -> 85
    assert_eq!(
        score_node_resources_fit(ScoringStrategy::LeastAllocated, &ctx, &empty),
        85
    );
    assert_eq!(
        score_node_resources_fit(ScoringStrategy::MostAllocated, &ctx, &empty),
        15
    );
    // no allocatable: nothing to score
    let bare = node_from(json!({"metadata": {"name": "x"}}));
    assert_eq!(
        score_node_resources_fit(ScoringStrategy::LeastAllocated, &ctx, &bare),
        0
    );
}

#[test]
fn preferred_affinity_scoring() {
    let nodes = vec![
        node_with("plain", json!({}), json!({})),
        node_with("ssd", json!({"disk": "ssd"}), json!({})),
        node_with("ssd-fast", json!({"disk": "ssd", "net": "fast"}), json!({})),
    ];
    let pref = |terms: Value| {
        pod_spec(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}}),
        )
    };
    let pod = pref(json!([
        {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 30, "preference": {"matchExpressions": [{"key": "net", "operator": "Exists"}]}}
    ]));
    let d = schedule(&pod, &nodes, &Config::default(), 0);
    assert_eq!(scheduled_node(&d), "ssd-fast");
    // ssd-fast: fit 100 (nz 100m/200Mi on 4cpu/8Gi: 97,97 -> 97) + 2*100 + 3*100
    match d {
        Decision::Scheduled {
            score,
            feasible,
            evaluated,
            ..
        } => {
            assert_eq!((score, feasible, evaluated), (97 + 200 + 300, 3, 3));
        }
        _ => unreachable!(),
    }
    let ctx = PodCtx::new(&pod);
    let raw: Vec<i64> = nodes.iter().map(|n| score_node_affinity(&ctx, n)).collect();
    assert_eq!(raw, [0, 10, 40]);
    assert_eq!(normalize(10, 40, false), 25);
    // weight-0 and empty preferences are ignored
    let pod = pref(json!([
        {"weight": 0, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
        {"weight": 5, "preference": {}}
    ]));
    assert!(PodCtx::new(&pod).preferred.is_empty());
}

#[test]
fn taint_toleration_scoring_prefers_fewer_soft_taints() {
    let soft = |k: &str| json!({"key": k, "effect": "PreferNoSchedule"});
    let nodes = vec![
        node_with("two", json!({}), json!({"taints": [soft("x"), soft("y")]})),
        node_with("one", json!({}), json!({"taints": [soft("x")]})),
        node_with("one-b", json!({}), json!({"taints": [soft("y")]})),
    ];
    let d = schedule(&pod_spec(json!({})), &nodes, &Config::default(), 0);
    assert_eq!(scheduled_node(&d), "one");
    // tolerating x makes "one" clean and "two" equal to "one-b"
    let tol = pod_spec(
        json!({"tolerations": [{"key": "x", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
    );
    assert_eq!(
        scheduled_node(&schedule(&tol, &nodes, &Config::default(), 0)),
        "one"
    );
    let ctx = PodCtx::new(&tol);
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| score_taint_toleration(&ctx, n))
        .collect();
    assert_eq!(raw, [1, 0, 1]);
    assert_eq!(normalize(1, 2, true), 50);
    assert_eq!(normalize(0, 0, true), 100);
}

#[test]
fn unschedulable_message_and_counts() {
    let cp_taint = json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]});
    let mut nodes: Vec<NodeInfo> = (0..3)
        .map(|i| node(&format!("w{i}"), "1", "4Gi", "110"))
        .collect();
    for i in 0..2 {
        nodes.push(node_from(json!({
            "metadata": {"name": format!("cp{i}")},
            "spec": cp_taint,
            "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}
        })));
    }
    let d = schedule(&pod_req("2", "1Gi"), &nodes, &Config::default(), 0);
    let Decision::Unschedulable { message, reasons } = d else {
        panic!("expected unschedulable")
    };
    assert_eq!(
        message,
        // upstream sorts the "<count> <reason>" strings, so "2 node(s)" precedes "3 Insufficient"
        "0/5 nodes are available: 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu."
    );
    assert_eq!(reasons.get("Insufficient cpu"), Some(&3));
    // a node can add several reasons; counts are per reason
    let d = schedule(&pod_req("2", "5Gi"), &nodes, &Config::default(), 0);
    let Decision::Unschedulable { message, .. } = d else {
        panic!()
    };
    assert_eq!(
        message,
        "0/5 nodes are available: 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu, 3 Insufficient memory."
    );
}

#[test]
fn message_sorting_is_lexicographic_like_upstream() {
    let reasons = BTreeMap::from([
        ("Insufficient cpu".to_string(), 10),
        ("node(s) were unschedulable".to_string(), 2),
        ("Insufficient memory".to_string(), 2),
    ]);
    assert_eq!(
        fit_error_message(14, &reasons),
        "0/14 nodes are available: 10 Insufficient cpu, 2 Insufficient memory, 2 node(s) were unschedulable."
    );
    assert_eq!(
        fit_error_message(3, &BTreeMap::new()),
        "0/3 nodes are available:"
    );
}

#[test]
fn num_feasible_nodes_table() {
    let cases = [
        (0, 0, 0),
        (0, 50, 50),
        (0, 99, 99),
        (0, 100, 100),
        (0, 1000, 420),
        (0, 5000, 500),
        (0, 6000, 300),
        (0, 10000, 500),
        (0, 200, 100),
        (10, 5000, 500),
        (1, 5000, 100),
        (100, 5000, 5000),
        (30, 50, 50),
    ];
    for (pct, n, want) in cases {
        assert_eq!(num_feasible_nodes_to_find(pct, n), want, "pct={pct} n={n}");
    }
}

#[test]
fn sampling_evaluates_fewer_nodes_on_big_cluster() {
    // every other node is tainted; 10% of 1000 = 100 feasible nodes wanted
    let nodes: Vec<NodeInfo> = (0..1000)
        .map(|i| {
            let spec = if i % 2 == 0 {
                json!({"taints": [{"key": "t", "effect": "NoSchedule"}]})
            } else {
                json!({})
            };
            node_with(&format!("n{i:04}"), json!({}), spec)
        })
        .collect();
    let cfg = Config {
        percentage_of_nodes_to_score: 10,
        ..Config::default()
    };
    let d = schedule(&pod_req("100m", "128Mi"), &nodes, &cfg, 0);
    match &d {
        Decision::Scheduled {
            node,
            feasible,
            evaluated,
            ..
        } => {
            assert_eq!((*feasible, *evaluated), (100, 200));
            assert_eq!(node, "n0001", "ties go to the first node from start");
        }
        _ => panic!("{d:?}"),
    }
    // adaptive default on 1000 nodes looks for 420 of the 500 feasible
    let d = schedule(&pod_req("100m", "128Mi"), &nodes, &Config::default(), 3);
    match d {
        Decision::Scheduled {
            node,
            feasible,
            evaluated,
            ..
        } => {
            assert_eq!((feasible, evaluated), (420, 839));
            assert_eq!(node, "n0003");
        }
        _ => panic!(),
    }
    // only the very last node fits: still found, whole cluster evaluated
    let mut nodes = nodes;
    for (i, n) in nodes.iter_mut().enumerate() {
        if i != 999 {
            n.add_pod(&pod_req("4", "0"));
        }
    }
    let d = schedule(&pod_req("1", "128Mi"), &nodes, &cfg, 500);
    match d {
        Decision::Scheduled {
            node,
            feasible,
            evaluated,
            ..
        } => {
            assert_eq!((node.as_str(), feasible, evaluated), ("n0999", 1, 1000));
        }
        _ => panic!(),
    }
}

#[test]
fn start_rotates_tie_breaking() {
    let nodes: Vec<NodeInfo> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, "4", "8Gi", "110"))
        .collect();
    let pod = pod_req("1", "1Gi");
    let cfg = Config::default();
    let picks: Vec<String> = (0..4)
        .map(|s| scheduled_node(&schedule(&pod, &nodes, &cfg, s)).to_string())
        .collect();
    assert_eq!(picks, ["a", "b", "c", "a"]);
}

#[test]
fn no_panic_on_malformed_and_empty_input() {
    let nodes = vec![
        NodeInfo::new(Node::default()),
        node("bad", "lots", "-", "1.5.5"),
        node_from(json!({"metadata": {"name": "odd"}, "spec": {"taints": []}, "status": {}})),
    ];
    assert_eq!(nodes[1].allocatable(), Resources::default());
    let malformed = pod_from(json!({"spec": {
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "x", "memory": "1Zi"}}}],
        "overhead": {"cpu": ""}
    }}));
    assert_eq!(pod_requests(&malformed).milli_cpu, 0);
    for pod in [
        Pod::default(),
        malformed,
        pod_spec(json!({"affinity": {"nodeAffinity": {}}})),
    ] {
        for start in [0, 7, usize::MAX] {
            match schedule(&pod, &nodes, &Config::default(), start) {
                Decision::Unschedulable { message, reasons } => {
                    assert!(
                        message.starts_with("0/3 nodes are available: 3 Too many pods"),
                        "{message}"
                    );
                    assert_eq!(reasons.get(REASON_TOO_MANY_PODS), Some(&3));
                }
                d => panic!("{d:?}"),
            }
        }
    }
    assert_eq!(
        schedule(&Pod::default(), &[], &Config::default(), 0),
        Decision::Unschedulable {
            message: "no nodes available to schedule pods".into(),
            reasons: BTreeMap::new()
        }
    );
    let huge = pod_req("9223372036854775807m", "9223372036854775807");
    let mut ni = node("n", "4", "8Gi", "110");
    ni.add_pod(&huge);
    ni.add_pod(&huge);
    let d = schedule(&huge, &[ni], &Config::default(), 0);
    assert!(matches!(d, Decision::Unschedulable { .. }));
}

#[test]
fn filter_order_reports_first_failing_plugin() {
    // cordoned, tainted, wrong labels and full: NodeUnschedulable wins
    let mut ni = node_with(
        "n",
        json!({}),
        json!({"unschedulable": true, "taints": [{"key": "t", "effect": "NoSchedule"}]}),
    );
    ni.add_pod(&pod_req("4", "0"));
    let pod = pod_spec(json!({"nodeSelector": {"zone": "a"},
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
    assert_eq!(filter_reasons(&pod, &ni), vec![REASON_UNSCHEDULABLE]);
    let pod = pod_spec(json!({"nodeSelector": {"zone": "a"},
        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}],
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
    assert_eq!(
        filter_reasons(&pod, &ni),
        vec!["node(s) had untolerated taint {t: }"]
    );
    let pod = pod_spec(json!({"nodeSelector": {"zone": "a"},
        "tolerations": [{"operator": "Exists"}],
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
    assert_eq!(filter_reasons(&pod, &ni), vec![REASON_NODE_AFFINITY]);
}

/// Timing check (docs/BENCHMARKS.md).
#[test]
#[ignore = "a timing run: cargo test --release --lib throughput_5000_nodes -- --ignored --nocapture"]
fn throughput_5000_nodes() {
    let mut nodes: Vec<NodeInfo> = (0..5000)
        .map(|i| {
            let spec = match i % 50 {
                0 => json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}),
                1..=5 => json!({"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}),
                _ => json!({}),
            };
            node_from(json!({
                "metadata": {"name": format!("node-{i:05}"), "labels": {
                    "kubernetes.io/hostname": format!("node-{i:05}"),
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                    "kubernetes.io/os": "linux"
                }},
                "spec": spec,
                "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}}
            }))
        })
        .collect();
    let pod = pod_spec(json!({
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-1"]}]}}
        ]}},
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
    }));
    let index: std::collections::HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name().to_string(), i))
        .collect();
    let cfg = Config::default();
    let n = 20_000;
    let mut start = 0;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let d = schedule(&pod, &nodes, &cfg, start);
        let Decision::Scheduled {
            node, evaluated, ..
        } = d
        else {
            panic!("{d:?}")
        };
        start = (start + evaluated) % nodes.len();
        nodes[index[&node]].add_pod(&pod);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{n} decisions in {secs:.3}s = {:.0}/s", n as f64 / secs);
}
