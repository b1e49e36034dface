//! Table columns and rows for PersistentVolumes, PersistentVolumeClaims
//! and StorageClasses, as `kubectl get pv,pvc,sc` prints them upstream.

use super::columns::{col, Col, Ty::Str, AGE, NAME};
use super::*;

pub(super) const PERSISTENT_VOLUME_COLUMNS: &[Col] = &[
    NAME,
    col("Capacity", Str, "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", Str, "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", Str, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    col("Status", Str, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", Str, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", Str, "storageClassName is the name of StorageClass to which this persistent volume belongs."),
    col("VolumeAttributesClass", Str, "Name of VolumeAttributesClass to which this persistent volume belongs."),
    col("Reason", Str, "reason is a brief CamelCase string that describes any failure."),
    AGE,
];

pub(super) const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Col] = &[
    NAME,
    col("Status", Str, "phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", Str, "volumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", Str, "capacity represents the actual resources of the underlying volume."),
    col("Access Modes", Str, "accessModes contains the desired access modes the volume should have."),
    col("StorageClass", Str, "storageClassName is the name of the StorageClass required by the claim."),
    col("VolumeAttributesClass", Str, "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
    AGE,
];

pub(super) const STORAGE_CLASS_COLUMNS: &[Col] = &[
    NAME,
    col("Provisioner", Str, "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", Str, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    col("VolumeBindingMode", Str, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    col("AllowVolumeExpansion", Str, "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

/// Upstream's short access modes (RWO, ROX, RWX, RWOP), comma-joined.
fn access_modes(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn unset(s: &str) -> Value {
    json!(if s.is_empty() { "<unset>" } else { s })
}

pub(super) fn persistent_volume_row(ctx: &Ctx) -> Vec<Value> {
    let claim = match (
        ctx.str("/spec/claimRef/namespace"),
        ctx.str("/spec/claimRef/name"),
    ) {
        (_, "") => String::new(),
        (ns, name) => format!("{ns}/{name}"),
    };
    vec![
        ctx.name(),
        json!(ctx.str("/spec/capacity/storage")),
        json!(access_modes(ctx.obj, "/spec/accessModes")),
        json!(ctx.str("/spec/persistentVolumeReclaimPolicy")),
        json!(ctx.str("/status/phase")),
        json!(claim),
        json!(ctx.str("/spec/storageClassName")),
        unset(ctx.str("/spec/volumeAttributesClassName")),
        json!(ctx.str("/status/reason")),
        ctx.age(),
    ]
}

pub(super) fn persistent_volume_claim_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(ctx.str("/status/phase")),
        json!(ctx.str("/spec/volumeName")),
        json!(ctx.str("/status/capacity/storage")),
        json!(access_modes(ctx.obj, "/status/accessModes")),
        json!(ctx.str("/spec/storageClassName")),
        unset(ctx.str("/spec/volumeAttributesClassName")),
        ctx.age(),
    ]
}

pub(super) fn storage_class_row(ctx: &Ctx) -> Vec<Value> {
    let default = ctx
        .obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
        .and_then(Value::as_str)
        == Some("true");
    let name = ctx.str("/metadata/name");
    vec![
        json!(if default {
            format!("{name} (default)")
        } else {
            name.to_string()
        }),
        json!(ctx.str("/provisioner")),
        json!(ctx.str("/reclaimPolicy")),
        json!(ctx.str("/volumeBindingMode")),
        json!(ctx
            .obj
            .get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()),
        ctx.age(),
    ]
}
