//! Validation of PersistentVolumes, PersistentVolumeClaims and
//! StorageClasses, as upstream's, narrowed to what shoal acts on: volumes
//! are directories on a node (hostPath or local), and classes are
//! provisioned by the built-in local-path provisioner or statically.
//! Anything else is refused here rather than accepted and never acted on.

use super::*;

/// The provisioner of the built-in `shoal-local` class.
pub const LOCAL_PATH: &str = "shoal.io/local-path";
/// Upstream's name for a class whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn access_modes(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    let modes = spec.get("accessModes").and_then(Value::as_array);
    match modes {
        None => causes.push(Cause::required(field)),
        Some(m) if m.is_empty() => causes.push(Cause::required(field)),
        Some(m) => {
            for v in m {
                let v = v.as_str().unwrap_or("");
                if !ACCESS_MODES.contains(&v) {
                    causes.push(Cause::not_supported(field, v, ACCESS_MODES));
                }
            }
        }
    }
}

/// `field` must be a positive quantity.
fn storage_quantity(q: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    match q.and_then(Value::as_str) {
        None => causes.push(Cause::required(field)),
        Some(s) => match Quantity::parse(s) {
            Ok(q) if q.value() > 0 => {}
            Ok(_) => causes.push(Cause::invalid(field, s, "must be greater than zero")),
            Err(_) => causes.push(Cause::invalid(
                field,
                s,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
        },
    }
}

pub(in crate::objects) fn validate_persistent_volume(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    storage_quantity(
        spec.pointer("/capacity/storage"),
        "spec.capacity.storage",
        causes,
    );
    access_modes(spec, "spec.accessModes", causes);
    let sources: Vec<&str> = spec
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| VOLUME_SOURCES.contains(&k.as_str()))
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    match sources.as_slice() {
        [] => causes.push(Cause {
            reason: "FieldValueRequired",
            field: "spec".into(),
            message: "Required value: must specify a volume type".into(),
        }),
        ["hostPath" | "local"] => {}
        [one] => causes.push(Cause::not_supported(
            format!("spec.{one}"),
            one,
            &["hostPath", "local"],
        )),
        _ => causes.push(Cause {
            reason: "FieldValueForbidden",
            field: "spec".into(),
            message: "Forbidden: may not specify more than 1 volume type".into(),
        }),
    }
    for (src, path) in [("hostPath", "/hostPath/path"), ("local", "/local/path")] {
        if spec.get(src).is_some() {
            let p = spec.pointer(path).and_then(Value::as_str).unwrap_or("");
            if p.is_empty() {
                causes.push(Cause::required(format!("spec.{src}.path")));
            } else if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                causes.push(Cause::invalid(
                    format!("spec.{src}.path"),
                    p,
                    "must be an absolute path without '..'",
                ));
            }
        }
    }
    let terms = spec.pointer("/nodeAffinity/required/nodeSelectorTerms");
    if spec.get("local").is_some() && terms.and_then(Value::as_array).is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.nodeAffinity"));
    }
    if let Some(p) = spec
        .get("persistentVolumeReclaimPolicy")
        .and_then(Value::as_str)
    {
        if !["Retain", "Delete"].contains(&p) {
            causes.push(Cause::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(m) = spec.get("volumeMode").and_then(Value::as_str) {
        if m != "Filesystem" {
            causes.push(Cause::not_supported("spec.volumeMode", m, &["Filesystem"]));
        }
    }
}

/// The volume sources a PersistentVolume may name (upstream's), to tell a
/// source shoal does not mount from an unknown field.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "iscsi",
    "csi",
    "fc",
    "cephfs",
    "rbd",
    "glusterfs",
    "azureDisk",
    "azureFile",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "cinder",
    "flexVolume",
    "flocker",
    "vsphereVolume",
    "quobyte",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "photonPersistentDisk",
];

pub(in crate::objects) fn validate_claim(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    access_modes(spec, "spec.accessModes", causes);
    storage_quantity(
        spec.pointer("/resources/requests/storage"),
        "spec.resources.requests[storage]",
        causes,
    );
    for f in ["dataSource", "dataSourceRef"] {
        if spec.get(f).is_some_and(|v| !v.is_null()) {
            causes.push(Cause {
                reason: "FieldValueForbidden",
                field: format!("spec.{f}"),
                message: "Forbidden: shoal's provisioner makes empty volumes; cloning and snapshots are not supported".into(),
            });
        }
    }
    if let Some(m) = spec.get("volumeMode").and_then(Value::as_str) {
        if m != "Filesystem" {
            causes.push(Cause::not_supported("spec.volumeMode", m, &["Filesystem"]));
        }
    }
}

pub(in crate::objects) fn validate_storage_class(obj: &Value, causes: &mut Vec<Cause>) {
    match obj.get("provisioner").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("provisioner")),
        Some(p) if p != LOCAL_PATH && p != NO_PROVISIONER => causes.push(Cause::not_supported(
            "provisioner",
            p,
            &[LOCAL_PATH, NO_PROVISIONER],
        )),
        Some(_) => {}
    }
    if let Some(m) = obj.get("volumeBindingMode").and_then(Value::as_str) {
        if !["Immediate", "WaitForFirstConsumer"].contains(&m) {
            causes.push(Cause::not_supported(
                "volumeBindingMode",
                m,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
    }
    if let Some(p) = obj.get("reclaimPolicy").and_then(Value::as_str) {
        if !["Retain", "Delete"].contains(&p) {
            causes.push(Cause::not_supported(
                "reclaimPolicy",
                p,
                &["Delete", "Retain"],
            ));
        }
    }
    if obj.get("allowVolumeExpansion") == Some(&json!(true)) {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            field: "allowVolumeExpansion".into(),
            message: "Forbidden: shoal's volumes are directories without a size to grow; expansion is not supported".into(),
        });
    }
}

/// Upstream's update rules: a class is immutable but for its metadata; a
/// claim's spec is immutable but for its requests (and a volume name set
/// once), and a request that grows is refused, as no class here expands.
pub(in crate::objects) fn validate_storage_update(
    kind: &str,
    old: &Value,
    new: &Value,
    causes: &mut Vec<Cause>,
) {
    let forbidden = |field: &str, message: String| Cause {
        reason: "FieldValueForbidden",
        field: field.into(),
        message,
    };
    match kind {
        "StorageClass" => {
            for f in [
                "provisioner",
                "parameters",
                "reclaimPolicy",
                "volumeBindingMode",
            ] {
                if old.get(f) != new.get(f) {
                    causes.push(forbidden(
                        f,
                        format!("Forbidden: updates to {f} are forbidden."),
                    ));
                }
            }
        }
        "PersistentVolumeClaim" => {
            let request = |o: &Value| {
                o.pointer("/spec/resources/requests/storage")
                    .and_then(Value::as_str)
                    .and_then(|s| Quantity::parse(s).ok())
                    .map(|q| q.value())
            };
            if request(new) > request(old) {
                causes.push(forbidden(
                    "spec.resources.requests.storage",
                    "Forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize".into(),
                ));
            }
            let mut a = old.get("spec").cloned().unwrap_or(Value::Null);
            let mut b = new.get("spec").cloned().unwrap_or(Value::Null);
            for s in [&mut a, &mut b] {
                if let Some(m) = s.as_object_mut() {
                    m.remove("resources");
                }
            }
            // Binding sets the volume name once; a claim made with no
            // class gets the default one later (upstream's retroactive
            // default StorageClass assignment).
            for f in ["volumeName", "storageClassName"] {
                if old
                    .pointer(&format!("/spec/{f}"))
                    .is_none_or(Value::is_null)
                {
                    if let Some(m) = b.as_object_mut() {
                        m.remove(f);
                    }
                }
            }
            if a != b {
                causes.push(forbidden(
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
                ));
            }
        }
        "PersistentVolume" => {
            for f in ["hostPath", "local"] {
                if old.pointer(&format!("/spec/{f}")) != new.pointer(&format!("/spec/{f}")) {
                    causes.push(forbidden(
                        "spec.persistentvolumesource",
                        "Forbidden: spec.persistentvolumesource is immutable after creation".into(),
                    ));
                    break;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(f: fn(&Value, &mut Vec<Cause>), obj: Value) -> Vec<String> {
        let mut c = Vec::new();
        f(&obj, &mut c);
        c.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn volumes_must_be_directories_shoal_can_mount() {
        let ok = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                 "hostPath": {"path": "/data/a"}}});
        assert!(causes(validate_persistent_volume, ok).is_empty());
        let nfs = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                  "nfs": {"server": "x", "path": "/"}}});
        let c = causes(validate_persistent_volume, nfs);
        assert!(c[0].starts_with("spec.nfs: Unsupported value"), "{c:?}");
        let local = json!({"spec": {"capacity": {"storage": "0"}, "accessModes": ["Sometimes"],
                                    "local": {"path": "rel/../x"}}});
        let c = causes(validate_persistent_volume, local).join("\n");
        for want in [
            "spec.capacity.storage",
            "spec.accessModes",
            "spec.local.path",
            "spec.nodeAffinity",
        ] {
            assert!(c.contains(want), "{want} in {c}");
        }
    }

    #[test]
    fn claims_and_classes_refuse_what_nothing_would_do() {
        let clone = json!({"spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}, "dataSource": {"kind": "PersistentVolumeClaim", "name": "x"}}});
        assert!(causes(validate_claim, clone)[0].starts_with("spec.dataSource: Forbidden"));
        let empty = json!({"spec": {}});
        assert_eq!(causes(validate_claim, empty).len(), 2);
        let ebs = json!({"provisioner": "ebs.csi.aws.com"});
        assert!(causes(validate_storage_class, ebs)[0]
            .contains("supported values: \"shoal.io/local-path\""));
        let grow = json!({"provisioner": LOCAL_PATH, "allowVolumeExpansion": true});
        assert!(
            causes(validate_storage_class, grow)[0].starts_with("allowVolumeExpansion: Forbidden")
        );
    }

    #[test]
    fn a_claim_may_not_grow_and_a_class_may_not_change() {
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let mut bigger = old.clone();
        bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let mut c = Vec::new();
        validate_storage_update("PersistentVolumeClaim", &old, &bigger, &mut c);
        assert!(c[0]
            .message
            .contains("only dynamically provisioned pvc can be resized"));
        // Binding names the volume once: allowed; renaming it is not.
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv-1");
        let mut c = Vec::new();
        validate_storage_update("PersistentVolumeClaim", &old, &bound, &mut c);
        assert!(c.is_empty(), "{c:?}");
        let mut moved = bound.clone();
        moved["spec"]["volumeName"] = json!("pv-2");
        validate_storage_update("PersistentVolumeClaim", &bound, &moved, &mut c);
        assert_eq!(c.len(), 1);
        let mut c = Vec::new();
        let class = json!({"provisioner": LOCAL_PATH, "reclaimPolicy": "Delete"});
        let mut retain = class.clone();
        retain["reclaimPolicy"] = json!("Retain");
        validate_storage_update("StorageClass", &class, &retain, &mut c);
        assert_eq!(
            c[0].message,
            "Forbidden: updates to reclaimPolicy are forbidden."
        );
    }
}
