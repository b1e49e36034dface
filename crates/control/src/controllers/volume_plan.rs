//! The volume controller's decisions, as pure functions of the objects
//! (upstream's PersistentVolume controller, with the local-path
//! provisioner built in): which volume a claim binds to, when a volume is
//! provisioned and where, and what becomes of a volume whose claim is
//! gone. The scheduler shares the matching rules (`scheduler::volumes`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelectorTerm;
use serde_json::{json, Value};

use shoal_model::objects::{self, storage::LOCAL_PATH};
use shoal_model::quantity::Quantity;
use shoal_model::selectors::{label_selector_matches, labels_of};

/// The scheduler's choice of node for a WaitForFirstConsumer claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim and its volume when the controller bound them.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Which provisioner made a volume, and which one a claim waits for.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// Holds a local-path volume until the kubelet of its node has removed
/// its directory.
pub const LOCAL_PATH_FINALIZER: &str = "shoal.io/local-path";

/// The claim's class name ("" for none).
pub fn class_of(claim: &Value) -> &str {
    claim
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn pv_class(pv: &Value) -> &str {
    pv.pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The volume a claim is bound to, if any.
pub fn bound_volume(claim: &Value) -> Option<&str> {
    claim
        .pointer("/spec/volumeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
}

pub fn waits_for_consumer(class: &Value) -> bool {
    class.get("volumeBindingMode").and_then(Value::as_str) == Some("WaitForFirstConsumer")
}

pub fn provisions_locally(class: &Value) -> bool {
    class.get("provisioner").and_then(Value::as_str) == Some(LOCAL_PATH)
}

fn bytes(q: Option<&Value>) -> i64 {
    q.and_then(Value::as_str)
        .and_then(|s| Quantity::parse(s).ok())
        .map_or(0, |q| q.value())
}

/// The storage a claim requests, in bytes.
pub fn request(claim: &Value) -> i64 {
    bytes(claim.pointer("/spec/resources/requests/storage"))
}

/// A volume's capacity, in bytes.
pub fn capacity(pv: &Value) -> i64 {
    bytes(pv.pointer("/spec/capacity/storage"))
}

fn modes(v: &Value) -> Vec<&str> {
    v.pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A volume's required node terms (None: any node).
pub fn node_terms(pv: &Value) -> Option<Vec<NodeSelectorTerm>> {
    let terms = pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms")?;
    serde_json::from_value(terms.clone()).ok()
}

/// The claim a volume is reserved for: (namespace, name, uid).
pub fn claim_ref(pv: &Value) -> Option<(&str, &str, &str)> {
    let r = pv.pointer("/spec/claimRef")?;
    let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("");
    Some((s("namespace"), s("name"), s("uid"))).filter(|(_, n, _)| !n.is_empty())
}

/// Can `claim` take `pv`? The volume is free (or reserved for this very
/// claim), of the claim's class, offers its access modes and at least its
/// size, and has the labels its selector asks for.
pub fn matches(claim: &Value, pv: &Value) -> bool {
    // The cheap tests first: this runs over every volume for each claim.
    if !free_for(claim, pv) || pv_class(pv) != class_of(claim) {
        return false;
    }
    let selector_ok = match claim.pointer("/spec/selector") {
        None | Some(Value::Null) => true,
        Some(sel) => label_selector_matches(sel, &labels_of(pv)),
    };
    let offered = modes(pv);
    selector_ok
        && modes(claim).iter().all(|m| offered.contains(m))
        && capacity(pv) >= request(claim)
}

/// Is `pv` free (Available, reserved for no claim) or reserved for
/// `claim`, and not being deleted?
pub fn free_for(claim: &Value, pv: &Value) -> bool {
    if pv.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    match claim_ref(pv) {
        None => pv.pointer("/status/phase").and_then(Value::as_str) == Some("Available"),
        Some((ns, name, uid)) => {
            ns == objects::namespace_of(claim)
                && name == objects::name_of(claim)
                && (uid.is_empty()
                    || Some(uid) == claim.pointer("/metadata/uid").and_then(Value::as_str))
        }
    }
}

/// The smallest volume `claim` can take among `pvs`, of those `here`
/// admits (the selected node's, for a WaitForFirstConsumer claim). A
/// volume reserved for this claim goes first.
pub fn best<'a>(
    claim: &Value,
    pvs: &'a [Arc<Value>],
    here: impl Fn(&Value) -> bool,
) -> Option<&'a Arc<Value>> {
    pvs.iter()
        .filter(|pv| matches(claim, pv) && here(pv))
        .min_by_key(|pv| (claim_ref(pv).is_none(), capacity(pv)))
}

/// The directory of a local-path volume for `claim` under `root`, the
/// node's announced directory (upstream's local-path-provisioner names it
/// the same way).
pub fn local_dir(root: &str, claim: &Value) -> String {
    format!(
        "{}/pvc-{}_{}_{}",
        root.trim_end_matches('/'),
        claim
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or(""),
        objects::namespace_of(claim),
        objects::name_of(claim)
    )
}

/// The volume the local-path provisioner makes for `claim` of `class` on
/// `node` (whose directory root is `root`): sized as asked, pinned to the
/// node, reserved for the claim, the class's reclaim policy; a volume
/// deleted with its claim keeps a finalizer until its kubelet has removed
/// the directory.
pub fn provisioned(claim: &Value, class: &Value, node: &str, root: &str) -> Value {
    let uid = claim
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reclaim = class
        .get("reclaimPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Delete");
    let finalizers = if reclaim == "Delete" {
        json!([LOCAL_PATH_FINALIZER])
    } else {
        json!([])
    };
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{uid}"),
            "annotations": {PROVISIONED_BY: LOCAL_PATH},
            "finalizers": finalizers,
        },
        "spec": {
            "capacity": {"storage": claim.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("0"))},
            "accessModes": claim.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": objects::name_of(class),
            "volumeMode": "Filesystem",
            "hostPath": {"path": local_dir(root, claim), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
            "claimRef": claim_reference(claim),
        },
    })
}

/// A volume's `spec.claimRef` for `claim`.
pub fn claim_reference(claim: &Value) -> Value {
    json!({
        "kind": "PersistentVolumeClaim", "apiVersion": "v1",
        "namespace": objects::namespace_of(claim),
        "name": objects::name_of(claim),
        "uid": claim.pointer("/metadata/uid").cloned().unwrap_or(json!("")),
    })
}

/// What becomes of a volume: its phase, or its removal.
#[derive(Debug, PartialEq, Eq)]
pub enum VolumeStep {
    /// Nothing to do (being deleted, or already in `phase`).
    Keep,
    /// Write this phase (Available, Bound, Released) into the status.
    Phase(&'static str),
    /// Its claim is gone and its policy is Delete: delete it (a local-path
    /// volume's directory goes with it, by its kubelet).
    Delete,
    /// Its claim is gone, its policy is Delete, but no one here can delete
    /// it (a volume a user made): Failed, with upstream's reason.
    Failed(&'static str),
}

/// The step for `pv`, given its reserved claim as the cache holds it.
pub fn volume_step(pv: &Value, claim: Option<&Value>) -> VolumeStep {
    if pv.pointer("/metadata/deletionTimestamp").is_some() {
        return VolumeStep::Keep;
    }
    let phase = pv
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let want = match claim_ref(pv) {
        None => VolumeStep::Phase("Available"),
        Some((_, _, uid)) => {
            let same = claim.is_some_and(|c| {
                uid.is_empty() || c.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid)
            });
            let bound_here = claim.is_some_and(|c| bound_volume(c) == Some(objects::name_of(pv)));
            match (same, bound_here) {
                (true, true) => VolumeStep::Phase("Bound"),
                // Reserved for a claim that has not taken it yet.
                (true, false) => VolumeStep::Phase("Available"),
                // Its claim is gone: released, then reclaimed.
                (false, _) if uid.is_empty() => VolumeStep::Phase("Available"),
                (false, _) => match pv
                    .pointer("/spec/persistentVolumeReclaimPolicy")
                    .and_then(Value::as_str)
                {
                    Some("Delete") if provisioned_here(pv) => VolumeStep::Delete,
                    Some("Delete") if phase == "Failed" => VolumeStep::Keep,
                    Some("Delete") => VolumeStep::Failed(
                        "shoal deletes only the volumes its local-path provisioner made; delete this one by hand",
                    ),
                    _ => VolumeStep::Phase("Released"),
                },
            }
        }
    };
    match want {
        VolumeStep::Phase(p) if p == phase => VolumeStep::Keep,
        w => w,
    }
}

/// Made by the local-path provisioner.
pub fn provisioned_here(pv: &Value) -> bool {
    pv.pointer("/metadata/annotations")
        .and_then(|a| a.get(PROVISIONED_BY))
        .and_then(Value::as_str)
        == Some(LOCAL_PATH)
}

/// Does a pod that still runs (or may) use `claim`?
pub fn in_use(claim: &Value, pods: &[Arc<Value>]) -> bool {
    let name = objects::name_of(claim);
    pods.iter().any(|p| {
        let done = matches!(
            p.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        !done
            && p.pointer("/spec/volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|v| {
                    v.pointer("/persistentVolumeClaim/claimName")
                        .and_then(Value::as_str)
                        == Some(name)
                })
    })
}

#[cfg(test)]
mod tests;
