//! Admission the registry applies to a new object beyond validation, as
//! upstream's plugins do: NamespaceLifecycle for every namespaced kind; for
//! Pods RuntimeClass and the ServiceAccount's imagePullSecrets; for
//! PersistentVolumeClaims DefaultStorageClass and the pvc-protection
//! finalizer.

use serde_json::{json, Value};

use super::Registry;
use crate::errors::{ApiError, ApiResult};
use crate::resources::Resource;
use shoal_store::ReadRequest;

/// Upstream's annotation naming the default StorageClass.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Upstream's finalizer that keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

impl Registry {
    /// DefaultStorageClass: a claim that names no class (the field absent,
    /// not "") gets the default one, the newest if several are marked; and
    /// every claim gets the pvc-protection finalizer, so it outlives no pod
    /// that mounts it.
    pub(super) async fn admit_claim(&self, pvc: &mut Value) -> ApiResult<()> {
        if pvc
            .pointer("/spec/storageClassName")
            .is_none_or(Value::is_null)
        {
            let res = &crate::resources::STORAGECLASSES;
            let classes: Vec<Value> = match &self.cache {
                Some(c) => c
                    .list(&res.prefix(None), |_| true)
                    .0
                    .iter()
                    .map(|v| (**v).clone())
                    .collect(),
                None => self
                    .writer
                    .read(ReadRequest::prefix(res.prefix(None)))
                    .await?
                    .kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                    .collect(),
            };
            let default = classes
                .iter()
                .filter(|c| {
                    c.pointer("/metadata/annotations")
                        .and_then(|a| a.get(DEFAULT_CLASS))
                        .and_then(Value::as_str)
                        == Some("true")
                })
                .max_by_key(|c| {
                    c.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                });
            if let (Some(class), Some(spec)) = (default, pvc.get_mut("spec")) {
                spec["storageClassName"] = json!(crate::objects::name_of(class));
            }
        }
        let meta = crate::objects::meta_mut(pvc);
        let fins = meta
            .entry("finalizers")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(f) = fins.as_array_mut() {
            if !f.iter().any(|v| v == PVC_PROTECTION) {
                f.push(json!(PVC_PROTECTION));
            }
        }
        Ok(())
    }

    /// Refuses objects (`name`, of `res`) in namespaces that do not exist
    /// or are being deleted, as the NamespaceLifecycle admission plugin
    /// does.
    pub async fn check_namespace(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<()> {
        if !res.namespaced {
            return Ok(());
        }
        let nss = &crate::resources::NAMESPACES;
        let key = nss.key("", ns);
        let cached = self.cache.as_ref().and_then(|c| c.get(&key));
        let terminating = match cached {
            Some(n) => n.pointer("/metadata/deletionTimestamp").is_some(),
            None => {
                let r = self.writer.read(ReadRequest::key(key)).await?;
                let Some(kv) = r.kvs.first() else {
                    return Err(ApiError::not_found(nss, ns));
                };
                serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some())
            }
        };
        if terminating {
            return Err(ApiError::namespace_terminating(res, name, ns));
        }
        Ok(())
    }

    /// The ServiceAccount admission plugin's part for images, as
    /// upstream's: a pod that names no `imagePullSecrets` gets those of its
    /// ServiceAccount (`default` unless it names another), so a namespace's
    /// registry login reaches every pod of it.
    pub(super) async fn admit_pull_secrets(&self, pod: &mut Value) -> ApiResult<()> {
        let has = pod
            .pointer("/spec/imagePullSecrets")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has {
            return Ok(());
        }
        let ns = crate::objects::namespace_of(pod).to_string();
        let sa = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string();
        let key = crate::resources::SERVICEACCOUNTS.key(&ns, &sa);
        // Every pod create comes here: with a watch cache its answer is
        // taken (as upstream's admission reads a lister), so a namespace
        // without the account costs no store read per pod.
        let account: Option<Value> = match &self.cache {
            Some(cache) => cache.get(&key).map(|obj| (*obj).clone()),
            None => self
                .writer
                .read(ReadRequest::key(key))
                .await?
                .kvs
                .first()
                .and_then(|kv| serde_json::from_slice(&kv.value).ok()),
        };
        let secrets = account
            .as_ref()
            .and_then(|a| a.get("imagePullSecrets"))
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .cloned();
        if let (Some(secrets), Some(spec)) =
            (secrets, pod.get_mut("spec").and_then(Value::as_object_mut))
        {
            spec.insert("imagePullSecrets".into(), Value::Array(secrets));
        }
        Ok(())
    }

    /// The RuntimeClass admission plugin, as upstream's: a pod naming a
    /// class that does not exist is refused; the class's fixed overhead
    /// becomes the pod's, and its scheduling constraints (node selector,
    /// tolerations) are merged into the pod's, so the scheduler places it
    /// on nodes that offer the class's handler.
    pub(super) async fn admit_runtime_class(&self, pod: &mut Value) -> ApiResult<()> {
        let Some(class_name) = pod
            .pointer("/spec/runtimeClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let res = &crate::resources::RUNTIMECLASSES;
        let key = res.key("", &class_name);
        let class: Option<Value> = match self.cache.as_ref().and_then(|c| c.get(&key)) {
            Some(obj) => Some((*obj).clone()),
            None => {
                let r = self.writer.read(ReadRequest::key(key)).await?;
                r.kvs
                    .first()
                    .and_then(|kv| serde_json::from_slice(&kv.value).ok())
            }
        };
        let forbidden =
            |why: String| ApiError::new(403, "Forbidden", format!("pod rejected: {why}"));
        let Some(class) = class else {
            return Err(forbidden(format!("RuntimeClass {class_name:?} not found")));
        };
        let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
            Some(s) => s,
            None => return Ok(()),
        };
        if let Some(fixed) = class.pointer("/overhead/podFixed") {
            match spec.get("overhead") {
                Some(o) if o != fixed => {
                    return Err(forbidden(
                        "Pod's Overhead doesn't match RuntimeClass's defined Overhead".into(),
                    ))
                }
                _ => {
                    spec.insert("overhead".into(), fixed.clone());
                }
            }
        }
        if let Some(want) = class
            .pointer("/scheduling/nodeSelector")
            .and_then(Value::as_object)
        {
            let sel = spec
                .entry("nodeSelector")
                .or_insert_with(|| Value::Object(Default::default()));
            if !sel.is_object() {
                *sel = Value::Object(Default::default());
            }
            if let Some(sel) = sel.as_object_mut() {
                for (k, v) in want {
                    match sel.get(k) {
                        Some(have) if have != v => {
                            return Err(forbidden(format!(
                                "conflict: RuntimeClass {class_name:?} wants node selector {k}={v}, the pod has {k}={have}"
                            )))
                        }
                        _ => {
                            sel.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        if let Some(add) = class
            .pointer("/scheduling/tolerations")
            .and_then(Value::as_array)
        {
            let tols = spec
                .entry("tolerations")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(tols) = tols.as_array_mut() {
                for t in add {
                    if !tols.contains(t) {
                        tols.push(t.clone());
                    }
                }
            }
        }
        Ok(())
    }
}
