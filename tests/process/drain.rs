//! `kubectl drain` (1.33) against a 3-node `shoal dev` with the process
//! runtime: a Deployment of 3 replicas under a PodDisruptionBudget of
//! minAvailable 2 (`kubectl create poddisruptionbudget`), two of its pods on
//! the drained node. kubectl cordons
//! the node and evicts both; the budget lets one go, answers 429 for the
//! other (kubectl says so and retries), and lets it go once the first
//! one's replacement is Ready. A watch of the pods checks that fewer than
//! two Ready pods never existed. `kubectl get pdb` prints upstream's
//! columns.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: ["sleep", "3600"]
        readinessProbe:
          exec: {command: ["true"]}
          initialDelaySeconds: 2
          periodSeconds: 1
"#;

/// One pod as the watch saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    ready: bool,
    deleting: bool,
}

fn seen(p: &Value) -> Seen {
    let ready = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    Seen {
        ready,
        deleting: p["metadata"]["deletionTimestamp"].is_string(),
    }
}

#[test]
fn kubectl_drain_evicts_one_pod_at_a_time_as_the_budget_allows() {
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    // Node-3 out of the way at first: the three pods land 2 + 1 on the
    // other two nodes.
    k.ok(&["cordon", "node-3"]);
    let web = k.file("web.yaml", WEB);
    k.ok(&["apply", "-f", &web]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    // kubectl sends this one in protobuf.
    k.ok(&[
        "create",
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    k.ok(&["uncordon", "node-3"]);
    let placed = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    ]);
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in placed.lines() {
        let (pod, node) = l.split_once(' ').unwrap();
        by_node.entry(node.into()).or_default().push(pod.into());
    }
    let (node, doomed) = by_node
        .iter()
        .find(|(_, pods)| pods.len() == 2)
        .map(|(n, p)| (n.clone(), p.clone()))
        .unwrap_or_else(|| panic!("two pods on one node: {by_node:?}"));
    let original: BTreeSet<String> = by_node.values().flatten().cloned().collect();
    super::wait_for(Duration::from_secs(30), "the budget allows one", || {
        let table = k.ok(&["get", "pdb", "web"]);
        let row: Vec<&str> = table
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let header: Vec<&str> = table
            .lines()
            .next()
            .unwrap_or("")
            .split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS",
                "AGE"
            ]
        );
        if row.get(..4) == Some(&["web", "2", "N/A", "1"]) {
            Ok(())
        } else {
            Err(table)
        }
    });

    // A watch of the pods, from their current state on.
    let mut watch = k
        .command(&["get", "pods", "-l", "app=web", "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let out = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        let stream = serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter();
        for v in stream.map_while(Result::ok) {
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut pods: BTreeMap<String, Seen> = BTreeMap::new();
    let healthy =
        |pods: &BTreeMap<String, Seen>| pods.values().filter(|s| s.ready && !s.deleting).count();
    let apply = |pods: &mut BTreeMap<String, Seen>, v: Value| {
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        pods.insert(name, seen(&v));
    };
    while healthy(&pods) < 3 {
        let v = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the watch lists the pods");
        apply(&mut pods, v);
    }

    let drain = k
        .command(&["drain", &node, "--ignore-daemonsets", "--timeout=120s"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&drain.stdout),
        String::from_utf8_lossy(&drain.stderr)
    );
    assert!(drain.status.success(), "kubectl drain failed: {said}");
    assert!(
        said.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "the second eviction was refused (429) and retried: {said}"
    );
    for pod in &doomed {
        assert!(said.contains(&format!("pod/{pod} evicted")), "{said}");
    }

    // What the watch saw until then: never fewer than two healthy pods,
    // and the second doomed pod marked only once a replacement was Ready.
    let mut least = healthy(&pods);
    let mut marked = Vec::new();
    while let Ok(v) = rx.recv_timeout(Duration::from_millis(500)) {
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let before = pods.get(&name).copied();
        apply(&mut pods, v);
        least = least.min(healthy(&pods));
        let now = pods[&name];
        if doomed.contains(&name) && now.deleting && !before.is_some_and(|b| b.deleting) {
            let replacements_ready = pods
                .iter()
                .filter(|(n, s)| !original.contains(*n) && s.ready && !s.deleting)
                .count();
            marked.push((name, replacements_ready));
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(least >= 2, "fewer than 2 healthy pods were seen: {least}");
    assert_eq!(
        marked.len(),
        2,
        "both pods of {node} were evicted: {marked:?}"
    );
    assert_eq!(marked[0].1, 0, "the first went at once: {marked:?}");
    assert!(
        marked[1].1 >= 1,
        "the second went once a replacement was Ready: {marked:?}"
    );
    let nodes = k.ok(&["get", "nodes", &node]);
    assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
    let now = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
    ]);
    assert!(!now.lines().any(|n| n == node), "{now}");
}
