//! The StatefulSet controller's decisions, as pure functions (upstream's
//! `stateful_set_control`): which ordinals get a pod now, which pods go,
//! and the status. Pods are named `<set>-<ordinal>`; a name is reused only
//! once the pod that held it is gone (at most one pod per ordinal, as the
//! cache still holds a terminating one under the same name).
//!
//! - **OrderedReady:** ordinals are created in order, each once every lower
//!   one is Running and Ready; scale-down removes the highest first, one at
//!   a time, while the rest are healthy; nothing proceeds past a
//!   terminating pod.
//! - **Parallel:** every missing ordinal at once, every surplus pod at once.
//! - **RollingUpdate:** once every ordinal has a healthy pod, pods at
//!   ordinals at or above the partition that run an older revision are
//!   deleted from the highest ordinal down, at most `maxUnavailable`
//!   unavailable at once; each comes back at the update revision.
//! - **OnDelete:** a pod is replaced at the update revision only when
//!   someone deletes it.
//!
//! A pod that failed or finished is deleted and created again.

use std::sync::Arc;

use serde_json::{json, Value};

use super::daemonset_plan::REVISION_LABEL;
use super::{is_active, is_ready};
use shoal_model::objects;

/// Upstream's labels on a StatefulSet's pods.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// What one reconcile does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Ordinals to create a pod for, with whether at the update revision
    /// (else the current one).
    pub create: Vec<(i64, bool)>,
    /// Pods to delete: failed ones, surplus ones, old revisions.
    pub delete: Vec<Arc<Value>>,
    /// Surplus pods among `delete` (their claims follow whenScaled).
    pub condemned: Vec<String>,
    pub status: Value,
}

fn int(v: &Value, pointer: &str, default: i64) -> i64 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// The first ordinal (`spec.ordinals.start`).
pub fn start_of(set: &Value) -> i64 {
    int(set, "/spec/ordinals/start", 0).max(0)
}

/// The ordinal of `pod` if it is one of `set`'s (`<set>-<n>`).
pub fn ordinal_of(set: &Value, pod: &Value) -> Option<i64> {
    let name = objects::name_of(pod);
    let n = name
        .strip_prefix(objects::name_of(set))?
        .strip_prefix('-')?;
    n.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0 && v.to_string() == n)
}

/// The revision (ControllerRevision name) a pod runs.
pub fn revision_of(pod: &Value) -> &str {
    pod.pointer("/metadata/labels")
        .and_then(|l| l.get(REVISION_LABEL))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn terminating(p: &Value) -> bool {
    p.pointer("/metadata/deletionTimestamp").is_some()
}

fn finished(p: &Value) -> bool {
    matches!(
        p.pointer("/status/phase").and_then(Value::as_str),
        Some("Failed" | "Succeeded")
    )
}

fn healthy(p: &Value) -> bool {
    !terminating(p)
        && p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && is_ready(p)
}

/// `maxUnavailable` of a RollingUpdate (a number or a percentage of
/// replicas, at least 1).
fn max_unavailable(set: &Value, replicas: i64) -> i64 {
    let v = set.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable");
    super::daemonset_plan::scaled(v, replicas, 1).max(1)
}

/// The plan for `set` with its `pods`, `update` being the current
/// template's revision name and `current` the revision its pods were at
/// before the update began.
pub fn plan(set: &Value, pods: &[Arc<Value>], update: &str, current: &str) -> Plan {
    let replicas = int(set, "/spec/replicas", 1).max(0);
    let start = start_of(set);
    let ordered = set
        .pointer("/spec/podManagementPolicy")
        .and_then(Value::as_str)
        != Some("Parallel");
    let strategy = set
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    let partition = int(set, "/spec/updateStrategy/rollingUpdate/partition", 0).max(0);
    let mut slots: Vec<Option<&Arc<Value>>> = vec![None; replicas as usize];
    let mut condemned: Vec<(i64, &Arc<Value>)> = Vec::new();
    for p in pods {
        match ordinal_of(set, p) {
            Some(o) if o >= start && o < start + replicas => slots[(o - start) as usize] = Some(p),
            Some(o) => condemned.push((o, p)),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    let mut plan = Plan {
        status: status(set, pods, update, current, replicas),
        ..Plan::default()
    };
    // Ordinals in range: created, or replaced when they failed.
    let mut waiting = false;
    for (i, slot) in slots.iter().enumerate() {
        let ordinal = start + i as i64;
        match slot {
            None => {
                let at_update = strategy != "RollingUpdate" || ordinal >= start + partition;
                plan.create.push((ordinal, at_update));
                if ordered {
                    waiting = true;
                    break;
                }
            }
            Some(p) if finished(p) && !terminating(p) => {
                plan.delete.push((*p).clone());
                if ordered {
                    waiting = true;
                    break;
                }
            }
            Some(p) if ordered && !healthy(p) => {
                waiting = true;
                break;
            }
            Some(_) => {}
        }
    }
    if waiting {
        return plan;
    }
    // Surplus ordinals, highest first.
    for (_, p) in &condemned {
        if terminating(p) {
            if ordered {
                return plan;
            }
            continue;
        }
        plan.delete.push((*p).clone());
        plan.condemned.push(objects::name_of(p).to_string());
        if ordered {
            return plan;
        }
    }
    // A rolling update: every ordinal healthy first.
    if strategy != "RollingUpdate" {
        return plan;
    }
    let unavailable = slots
        .iter()
        .filter(|s| !s.is_some_and(|p| healthy(p)))
        .count() as i64;
    let mut budget = max_unavailable(set, replicas) - unavailable;
    for (i, slot) in slots.iter().enumerate().rev() {
        let ordinal = start + i as i64;
        if ordinal < start + partition || budget <= 0 {
            break;
        }
        let Some(p) = slot else { continue };
        if revision_of(p) != update && !terminating(p) && is_active(p) {
            plan.delete.push((*p).clone());
            budget -= 1;
        }
    }
    plan
}

/// Upstream's status: counts by revision and readiness; the current
/// revision becomes the update revision once every pod runs it and is
/// ready.
fn status(set: &Value, pods: &[Arc<Value>], update: &str, current: &str, replicas: i64) -> Value {
    let live: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| !terminating(p) && ordinal_of(set, p).is_some())
        .collect();
    let ready = live.iter().filter(|p| healthy(p)).count() as i64;
    let updated = live.iter().filter(|p| revision_of(p) == update).count() as i64;
    let at_current = live.iter().filter(|p| revision_of(p) == current).count() as i64;
    let count = live.len() as i64;
    let done = updated == replicas && ready == replicas && count == replicas;
    let (current, at_current) = if done || current.is_empty() {
        (update, updated)
    } else {
        (current, at_current)
    };
    let mut s = json!({
        "observedGeneration": int(set, "/metadata/generation", 1),
        "replicas": count,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": at_current,
        "updatedReplicas": updated,
        "currentRevision": current,
        "updateRevision": update,
    });
    if let Some(c) = set.pointer("/status/collisionCount") {
        s["collisionCount"] = c.clone();
    }
    s
}

/// The name of claim template `template`'s claim for `ordinal` of `set`.
pub fn claim_name(template: &Value, set: &Value, ordinal: i64) -> String {
    format!(
        "{}-{}-{ordinal}",
        objects::name_of(template),
        objects::name_of(set)
    )
}

/// The claims of `ordinal`, from the set's `volumeClaimTemplates`: the
/// template's labels and the set's selector labels; owned by the set when
/// its retention policy deletes claims with it.
pub fn claims_for(set: &Value, ordinal: i64) -> Vec<Value> {
    let selector = set
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or(json!({}));
    let owned = set
        .pointer("/spec/persistentVolumeClaimRetentionPolicy/whenDeleted")
        .and_then(Value::as_str)
        == Some("Delete");
    set.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            if let (Some(l), Some(sel)) = (labels.as_object_mut(), selector.as_object()) {
                for (k, v) in sel {
                    l.insert(k.clone(), v.clone());
                }
            }
            let mut meta = json!({"name": claim_name(t, set, ordinal), "labels": labels});
            if let Some(a) = t.pointer("/metadata/annotations") {
                meta["annotations"] = a.clone();
            }
            if owned {
                meta["ownerReferences"] = json!([owner_ref("apps/v1", "StatefulSet", set, false)]);
            }
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                   "spec": t.get("spec").cloned().unwrap_or(json!({}))})
        })
        .collect()
}

/// An ownerReference to `owner`.
pub fn owner_ref(api_version: &str, kind: &str, owner: &Value, controller: bool) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "name": objects::name_of(owner),
        "uid": owner.pointer("/metadata/uid").cloned().unwrap_or(json!("")),
        "controller": controller, "blockOwnerDeletion": true,
    })
}

/// The pod for `ordinal` of `set` from `template` at revision `revision`:
/// its stable name, hostname and subdomain (the headless Service's DNS
/// name), upstream's labels, and a volume per claim template naming the
/// ordinal's claim.
pub fn pod_for(set: &Value, template: &Value, ordinal: i64, revision: &str) -> Value {
    let set_name = objects::name_of(set);
    let name = format!("{set_name}-{ordinal}");
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    labels[REVISION_LABEL] = json!(revision);
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["hostname"] = json!(name);
    if let Some(svc) = set.pointer("/spec/serviceName").and_then(Value::as_str) {
        if !svc.is_empty() {
            spec["subdomain"] = json!(svc);
        }
    }
    let claims: Vec<(String, String)> = set
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| (objects::name_of(t).to_string(), claim_name(t, set, ordinal)))
        .collect();
    if !claims.is_empty() {
        let mut volumes: Vec<Value> = spec
            .get("volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        volumes.retain(|v| !claims.iter().any(|(n, _)| v.get("name") == Some(&json!(n))));
        for (volume, claim) in &claims {
            volumes.push(json!({"name": volume, "persistentVolumeClaim": {"claimName": claim}}));
        }
        spec["volumes"] = json!(volumes);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [owner_ref("apps/v1", "StatefulSet", set, true)],
        },
        "spec": spec,
    })
}

#[cfg(test)]
#[path = "statefulset_plan/tests.rs"]
mod tests;
