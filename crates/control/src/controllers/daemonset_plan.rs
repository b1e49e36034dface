//! Pure planning logic of the DaemonSet controller, after upstream's
//! `pkg/controller/daemon` (daemon_controller.go, update.go): [`plan`]
//! takes a DaemonSet, its pods, the nodes (with whether each should run
//! the pod and whether a running pod may stay, from the scheduler's own
//! predicates) and the hash of the current revision, and returns the pods
//! to create (by node) and delete, and the status. No I/O.
//!
//! - A node that should run the pod and has none gets one; extra pods on a
//!   node go (the oldest stays); a node whose taints or labels no longer
//!   admit the pod loses it; a Failed pod is deleted so it is made again;
//!   a pod bound to a node that is gone is deleted.
//! - RollingUpdate with `maxSurge` 0 deletes old pods (the unavailable
//!   ones at once, available ones while fewer than `maxUnavailable` nodes
//!   are without an available pod) and the next plan makes their
//!   replacements; with `maxSurge` above 0 a new pod starts beside the old
//!   one, which goes once the new one is available. OnDelete replaces
//!   nothing: a pod the user deletes comes back with the new template.
//! - The status carries the counts `kubectl rollout status daemonset`
//!   reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

/// The label of a DaemonSet pod's revision (and of its ControllerRevision).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The deprecated label upstream still sets: the DaemonSet's generation.
pub const GENERATION_LABEL: &str = "pod-template-generation";

/// One node as the DaemonSet sees it.
#[derive(Debug, Clone)]
pub struct NodeFit {
    pub name: String,
    /// The pod should run here (labels, affinity, NoSchedule and
    /// NoExecute taints admit it).
    pub should_run: bool,
    /// A pod already here may stay (only NoExecute taints count).
    pub may_stay: bool,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes to start a pod on.
    pub create: Vec<String>,
    pub delete: Vec<Arc<Value>>,
    pub status: Value,
}

/// The node a DaemonSet pod is for: its `spec.nodeName`, or before it is
/// bound, the node its affinity pins.
pub fn node_of(pod: &Value) -> Option<String> {
    if let Some(n) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Some(n.to_string());
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().find_map(|t| {
        t.get("matchFields")?.as_array()?.iter().find_map(|r| {
            (r.get("key")? == "metadata.name" && r.get("operator")? == "In")
                .then(|| r.pointer("/values/0")?.as_str().map(String::from))?
        })
    })
}

fn phase(p: &Value) -> &str {
    p.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn deleting(p: &Value) -> bool {
    p.pointer("/metadata/deletionTimestamp").is_some()
}

fn hash_of(p: &Value) -> &str {
    p.pointer("/metadata/labels")
        .and_then(|l| l.get(REVISION_LABEL))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn created(p: &Value) -> &str {
    p.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// An int-or-percent of `total` (percentages round up, as upstream for
/// both maxSurge and maxUnavailable of DaemonSets).
pub fn scaled(v: Option<&Value>, total: i64, default: i64) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => (p * total + 99) / 100,
            None => s.parse().unwrap_or(default),
        },
        _ => default,
    }
    .max(0)
}

/// The next step for `ds` with `pods` on `nodes`, `hash` its current revision.
pub fn plan(ds: &Value, pods: &[Arc<Value>], nodes: &[NodeFit], hash: &str) -> Plan {
    let mut out = Plan::default();
    let known: BTreeMap<&str, &NodeFit> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut by_node: BTreeMap<String, Vec<&Arc<Value>>> = BTreeMap::new();
    for p in pods.iter().filter(|p| !deleting(p)) {
        match node_of(p) {
            Some(n) if known.contains_key(n.as_str()) => by_node.entry(n).or_default().push(p),
            // Bound to a node that is gone, or to none at all.
            _ => out.delete.push((*p).clone()),
        }
    }
    let rolling = ds.pointer("/spec/updateStrategy/type") != Some(&json!("OnDelete"));
    let desired = nodes.iter().filter(|n| n.should_run).count() as i64;
    let max_surge = if rolling {
        scaled(
            ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge"),
            desired,
            0,
        )
    } else {
        0
    };
    let max_unavailable = scaled(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        desired,
        1,
    );
    let max_unavailable = if max_surge == 0 {
        max_unavailable.max(1)
    } else {
        max_unavailable
    };
    // Per node: what stays after the basic rules.
    let mut staying: BTreeMap<&str, Vec<&Arc<Value>>> = BTreeMap::new();
    for n in nodes {
        let mut here: Vec<&Arc<Value>> = by_node.get(&n.name).cloned().unwrap_or_default();
        if !(n.should_run || n.may_stay && !here.is_empty()) {
            out.delete.extend(here.into_iter().cloned());
            continue;
        }
        // A failed pod is deleted and made again.
        let (failed, live): (Vec<_>, Vec<_>) = here.drain(..).partition(|p| phase(p) == "Failed");
        out.delete.extend(failed.into_iter().cloned());
        let mut live = live;
        if live.is_empty() {
            if n.should_run {
                out.create.push(n.name.clone());
            }
            continue;
        }
        live.sort_by(|a, b| created(a).cmp(created(b)));
        // Extra pods go, the oldest stays (during a surge, one new beside
        // one old is allowed).
        let keep = if max_surge > 0 && live.iter().any(|p| hash_of(p) == hash) {
            let new = live.iter().position(|p| hash_of(p) == hash).unwrap_or(0);
            let newest = live.remove(new);
            let mut kept = vec![newest];
            if let Some(old) = (!live.is_empty()).then(|| live.remove(0)) {
                kept.insert(0, old);
            }
            out.delete.extend(live.drain(..).cloned());
            kept
        } else {
            let first = live.remove(0);
            out.delete.extend(live.drain(..).cloned());
            vec![first]
        };
        staying.insert(n.name.as_str(), keep);
    }
    // The rolling update.
    if rolling {
        let available = |p: &Value| super::is_ready(p);
        let mut unavailable = nodes
            .iter()
            .filter(|n| n.should_run)
            .filter(|n| {
                !staying
                    .get(n.name.as_str())
                    .is_some_and(|ps| ps.iter().any(|p| available(p)))
            })
            .count() as i64;
        let mut surged = 0;
        for (node, ps) in &staying {
            let new = ps.iter().find(|p| hash_of(p) == hash);
            let old: Vec<&&Arc<Value>> = ps.iter().filter(|p| hash_of(p) != hash).collect();
            if old.is_empty() {
                continue;
            }
            if max_surge == 0 {
                let old_available = old.iter().any(|p| available(p));
                if !old_available {
                    out.delete.extend(old.into_iter().map(|p| (**p).clone()));
                } else if unavailable < max_unavailable {
                    unavailable += 1;
                    out.delete.extend(old.into_iter().map(|p| (**p).clone()));
                }
            } else {
                match new {
                    Some(n) if available(n) => {
                        out.delete.extend(old.into_iter().map(|p| (**p).clone()))
                    }
                    Some(_) => {}
                    None => {
                        let old_available = old.iter().any(|p| available(p));
                        if !old_available || surged < max_surge {
                            if old_available {
                                surged += 1;
                            }
                            out.create.push((*node).to_string());
                        }
                    }
                }
            }
        }
    }
    // Status.
    let fits: BTreeMap<&str, bool> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.should_run))
        .collect();
    let (mut current, mut misscheduled, mut ready, mut updated, mut avail) = (0, 0, 0, 0, 0);
    for (node, ps) in &by_node {
        let should = fits.get(node.as_str()).copied().unwrap_or(false);
        let live: Vec<&&Arc<Value>> = ps.iter().filter(|p| phase(p) != "Failed").collect();
        if live.is_empty() {
            continue;
        }
        if !should {
            misscheduled += 1;
            continue;
        }
        current += 1;
        if live.iter().any(|p| super::is_ready(p)) {
            ready += 1;
            avail += 1;
        }
        if live.iter().any(|p| hash_of(p) == hash) {
            updated += 1;
        }
    }
    let mut status = json!({
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": avail,
        "numberUnavailable": (desired - avail).max(0),
        "observedGeneration": ds.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    if let Some(c) = ds.pointer("/status/collisionCount") {
        status["collisionCount"] = c.clone();
    }
    out.status = status;
    out.delete.sort_by_key(|p| super::runtime::key_of(p));
    out.delete
        .dedup_by(|a, b| super::runtime::key_of(a) == super::runtime::key_of(b));
    out
}

/// Upstream's default DaemonSet tolerations, added to every pod.
pub fn default_tolerations(host_network: bool) -> Vec<Value> {
    let mut t: Vec<Value> = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .iter()
    .map(|(k, e)| json!({"key": k, "operator": "Exists", "effect": e}))
    .collect();
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

/// The DaemonSet's pod template with the default tolerations merged in
/// (what the node predicates and the pods use).
pub fn template_with_tolerations(ds: &Value) -> Value {
    let mut t = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let host = t.pointer("/spec/hostNetwork") == Some(&json!(true));
    let mut list = t
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for d in default_tolerations(host) {
        let same = list
            .iter()
            .any(|x| x.get("key") == d.get("key") && x.get("effect") == d.get("effect"));
        if !same {
            list.push(d);
        }
    }
    if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("tolerations".into(), json!(list));
    }
    t
}

/// A pod of DaemonSet `ds` for `node` at revision `hash`: the template
/// with the default tolerations, the revision labels, and required node
/// affinity replaced by the node's name (the scheduler binds it there).
pub fn pod_for(ds: &Value, node: &str, hash: &str) -> Value {
    let t = template_with_tolerations(ds);
    let name = shoal_model::objects::name_of(ds);
    let uid = ds
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels[REVISION_LABEL] = json!(hash);
    let generation = ds
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    labels[GENERATION_LABEL] = json!(generation.to_string());
    let mut spec = t.get("spec").cloned().unwrap_or(json!({}));
    let pin = json!({"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    let affinity = spec
        .as_object_mut()
        .map(|s| s.entry("affinity").or_insert(json!({})));
    if let Some(a) = affinity {
        a["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = pin;
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-"),
            "labels": labels,
            "annotations": t.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}

#[cfg(test)]
#[path = "daemonset_plan/tests.rs"]
mod tests;
