//! The volume controller (upstream's PersistentVolume binder, with the
//! local-path provisioner built in). Claims bind to the smallest free
//! volume that fits; a claim of the `shoal-local` class (or any class
//! whose provisioner is `shoal.io/local-path`) gets a volume made for it,
//! a directory on the node its first pod was scheduled to (the scheduler
//! names the node on the claim). A volume whose claim is gone is Released
//! (Retain) or deleted (Delete; its kubelet removes the directory, then
//! the volume's finalizer). A claim being deleted keeps upstream's
//! pvc-protection finalizer while a pod uses it. Decisions are the pure
//! functions of `volume_plan`; upstream's Events say what happened.
//!
//! Keys: `claim:<ns>/<name>` and `volume:<name>`.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::runtime::{Action, KeyFn, Reconciler};
use super::volume_plan::{self as plan, VolumeStep};
use super::{delete_object, update_object, update_object_and_status, update_status};
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::{Registry, PVC_PROTECTION};
use shoal_model::resources::{
    NODES, PERSISTENTVOLUMECLAIMS as CLAIMS, PERSISTENTVOLUMES as VOLUMES, PODS,
    STORAGECLASSES as CLASSES,
};

pub struct VolumeController {
    pub cache: Cache,
    pub registry: Registry,
    pub events: EventRecorder,
}

fn claim_key(ns: &str, name: &str) -> String {
    format!("claim:{ns}/{name}")
}

/// The keys of the claims `keep` selects.
fn claims_where(cache: &Cache, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    cache
        .list(&CLAIMS.prefix(None), keep)
        .0
        .iter()
        .map(|c| claim_key(objects::namespace_of(c), objects::name_of(c)))
        .collect()
}

impl VolumeController {
    fn note(&self, obj: &Value, ty: EventType, reason: &str, message: &str) {
        self.events.emit(&ObjectRef::of(obj), ty, reason, message);
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<u64, ReconcileError> {
        let Some(claim) = self.cache.get(&CLAIMS.key(ns, name)) else {
            return Ok(0);
        };
        if claim.pointer("/metadata/deletionTimestamp").is_some() {
            return self.release_protection(&claim).await;
        }
        if let Some(vol) = plan::bound_volume(&claim) {
            return self.settle_bound(&claim, vol).await;
        }
        // No class named, not even "": the default one, once there is one
        // (upstream's retroactive default StorageClass assignment).
        if claim
            .pointer("/spec/storageClassName")
            .is_none_or(Value::is_null)
        {
            if let Some(default) = self.default_class() {
                let mut classed = (*claim).clone();
                classed["spec"]["storageClassName"] = json!(default);
                return update_object(&self.registry, &CLAIMS, &classed).await;
            }
        }
        let class_name = plan::class_of(&claim);
        let class = (!class_name.is_empty())
            .then(|| self.cache.get(&CLASSES.key("", class_name)))
            .flatten();
        let wffc = class.as_deref().is_some_and(plan::waits_for_consumer);
        let selected = claim
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(plan::SELECTED_NODE))
            .and_then(Value::as_str)
            .map(str::to_string);
        if wffc && selected.is_none() {
            self.note(
                &claim,
                EventType::Normal,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            );
            return Ok(0);
        }
        // A free volume that fits (on the selected node, when one is).
        let node = selected
            .as_deref()
            .and_then(|n| self.cache.get(&NODES.key("", n)));
        let info = node
            .as_deref()
            .and_then(|n| serde_json::from_value(n.clone()).ok())
            .map(crate::scheduler::framework::NodeInfo::new);
        let (pvs, _) = self
            .cache
            .list(&VOLUMES.prefix(None), |pv| plan::free_for(&claim, pv));
        let here = |pv: &Value| match (&info, plan::node_terms(pv)) {
            (_, None) => true,
            (Some(ni), Some(t)) => crate::scheduler::framework::node_matches_terms(&t, ni),
            (None, Some(_)) => !wffc,
        };
        if let Some(pv) = plan::best(&claim, &pvs, here) {
            return self.bind(&claim, pv).await;
        }
        let Some(class) = class else {
            let (ty, reason, message) = if class_name.is_empty() {
                (
                    EventType::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set"
                        .to_string(),
                )
            } else {
                (
                    EventType::Warning,
                    "ProvisioningFailed",
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                )
            };
            self.note(&claim, ty, reason, &message);
            return Ok(0);
        };
        if !plan::provisions_locally(&class) {
            self.note(
                &claim,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim",
            );
            return Ok(0);
        }
        self.provision(&claim, &class, selected.as_deref(), node.as_deref())
            .await
    }

    /// The default StorageClass's name (the newest, if several say so).
    fn default_class(&self) -> Option<String> {
        let (classes, _) = self.cache.list(&CLASSES.prefix(None), |c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(shoal_model::registry::DEFAULT_CLASS))
                .and_then(Value::as_str)
                == Some("true")
        });
        classes
            .iter()
            .max_by_key(|c| {
                c.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .map(|c| objects::name_of(c).to_string())
    }

    /// The local-path provisioner: a volume for `claim` on the selected
    /// node, under the directory the node announces.
    async fn provision(
        &self,
        claim: &Value,
        class: &Value,
        selected: Option<&str>,
        node: Option<&Value>,
    ) -> Result<u64, ReconcileError> {
        let fail = |why: String| {
            self.note(claim, EventType::Warning, "ProvisioningFailed", &why);
            Ok(0)
        };
        let Some(selected) = selected else {
            return fail(format!(
                "the local-path provisioner makes a volume on the node of the claim's first pod: StorageClass {:?} needs volumeBindingMode WaitForFirstConsumer",
                objects::name_of(class)
            ));
        };
        let root = node
            .and_then(|n| n.pointer("/metadata/annotations"))
            .and_then(|a| a.get(objects::LOCAL_PATH_ANNOTATION))
            .and_then(Value::as_str);
        let Some(root) = root else {
            return fail(format!(
                "node {selected:?} announces no local-path directory (annotation {})",
                objects::LOCAL_PATH_ANNOTATION
            ));
        };
        let pv = plan::provisioned(claim, class, selected, root);
        let pv_name = objects::name_of(&pv).to_string();
        self.note(
            claim,
            EventType::Normal,
            "Provisioning",
            &format!(
                "External provisioner is provisioning volume for claim \"{}/{}\"",
                objects::namespace_of(claim),
                objects::name_of(claim)
            ),
        );
        match self.registry.create(&VOLUMES, "", pv, false).await {
            Ok(made) => {
                self.note(
                    claim,
                    EventType::Normal,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {pv_name}"),
                );
                // Made reserved for the claim: bind it now.
                self.bind(claim, &made).await
            }
            Err(e) if e.code == 409 => Ok(0),
            Err(e) => Err(ReconcileError::from(e)),
        }
    }

    /// Binds `claim` to `pv`: the volume reserved for the claim first,
    /// then the claim names the volume and reports Bound (upstream's
    /// order; a crash between the two is finished by the next reconcile,
    /// which finds the volume reserved for this claim).
    async fn bind(&self, claim: &Value, pv: &Value) -> Result<u64, ReconcileError> {
        let mut last = 0;
        if plan::claim_ref(pv).is_none_or(|(_, _, uid)| uid.is_empty()) {
            let mut reserved = pv.clone();
            reserved["spec"]["claimRef"] = plan::claim_reference(claim);
            objects::meta_mut(&mut reserved)
                .entry("annotations")
                .or_insert_with(|| json!({}))[plan::BOUND_BY_CONTROLLER] = json!("yes");
            last = update_object(&self.registry, &VOLUMES, &reserved).await?;
        }
        let mut bound = claim.clone();
        bound["spec"]["volumeName"] = json!(objects::name_of(pv));
        let notes = objects::meta_mut(&mut bound)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        notes[plan::BIND_COMPLETED] = json!("yes");
        notes[plan::BOUND_BY_CONTROLLER] = json!("yes");
        bound["status"] = bound_status(pv);
        let rev = update_object_and_status(&self.registry, &CLAIMS, &bound).await?;
        Ok(last.max(rev))
    }

    /// A claim that names its volume: Bound with the volume's size, or Lost
    /// when the volume is gone or taken by another claim.
    async fn settle_bound(&self, claim: &Value, vol: &str) -> Result<u64, ReconcileError> {
        let uid = claim.pointer("/metadata/uid").and_then(Value::as_str);
        let pv = self.cache.get(&VOLUMES.key("", vol));
        let ours = pv.as_deref().filter(|pv| {
            plan::claim_ref(pv).is_some_and(|(_, _, u)| u.is_empty() || Some(u) == uid)
        });
        // A claim made naming its volume (pre-bound by the user): the
        // volume is reserved for it if it is free and fits.
        if let Some(pv) = pv.as_deref().filter(|pv| plan::claim_ref(pv).is_none()) {
            if plan::matches(claim, pv) {
                return self.bind(claim, pv).await;
            }
            self.note(
                claim,
                EventType::Warning,
                "FailedBinding",
                &format!("Cannot bind to requested volume {vol:?}: it is not available or does not fit the claim"),
            );
            return Ok(0);
        }
        let status = match ours {
            Some(pv) => bound_status(pv),
            None => {
                if claim.pointer("/status/phase").and_then(Value::as_str) != Some("Lost") {
                    self.note(
                        claim,
                        EventType::Warning,
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                    );
                }
                json!({"phase": "Lost"})
            }
        };
        Ok(update_status(&self.registry, &CLAIMS, claim, status)
            .await?
            .unwrap_or(0))
    }

    /// pvc-protection: a deleted claim goes once no pod that may still run
    /// mounts it.
    async fn release_protection(&self, claim: &Value) -> Result<u64, ReconcileError> {
        let fins = claim
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !fins.iter().any(|f| f == PVC_PROTECTION) {
            return Ok(0);
        }
        let (pods, _) = self
            .cache
            .list(&PODS.prefix(Some(objects::namespace_of(claim))), |_| true);
        if plan::in_use(claim, &pods) {
            return Ok(0);
        }
        let mut freed = claim.clone();
        freed["metadata"]["finalizers"] = json!(fins
            .into_iter()
            .filter(|f| f != PVC_PROTECTION)
            .collect::<Vec<_>>());
        update_object(&self.registry, &CLAIMS, &freed).await
    }

    async fn sync_volume(&self, name: &str) -> Result<u64, ReconcileError> {
        let Some(pv) = self.cache.get(&VOLUMES.key("", name)) else {
            return Ok(0);
        };
        let claim = plan::claim_ref(&pv).and_then(|(ns, n, _)| self.cache.get(&CLAIMS.key(ns, n)));
        let step = plan::volume_step(&pv, claim.as_deref());
        let mut status = pv.get("status").cloned().unwrap_or(json!({}));
        match step {
            VolumeStep::Keep => Ok(0),
            VolumeStep::Phase(p) => {
                status["phase"] = json!(p);
                Ok(update_status(&self.registry, &VOLUMES, &pv, status)
                    .await?
                    .unwrap_or(0))
            }
            VolumeStep::Delete => Ok(delete_object(&self.registry, &VOLUMES, &pv, None)
                .await?
                .unwrap_or(0)),
            VolumeStep::Failed(why) => {
                self.note(&pv, EventType::Warning, "VolumeFailedDelete", why);
                status["phase"] = json!("Failed");
                status["message"] = json!(why);
                Ok(update_status(&self.registry, &VOLUMES, &pv, status)
                    .await?
                    .unwrap_or(0))
            }
        }
    }
}

/// A bound claim's status, from its volume.
fn bound_status(pv: &Value) -> Value {
    json!({
        "phase": "Bound",
        "accessModes": pv.pointer("/spec/accessModes").cloned().unwrap_or(json!([])),
        "capacity": pv.pointer("/spec/capacity").cloned().unwrap_or(json!({})),
    })
}

impl Reconciler for VolumeController {
    fn name(&self) -> &'static str {
        "persistentvolume-binder"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        // A claim, and the volume it names (released when the claim goes).
        let claims: KeyFn = Arc::new(|e| {
            let mut keys = vec![claim_key(
                objects::namespace_of(&e.object),
                objects::name_of(&e.object),
            )];
            if let Some(v) = plan::bound_volume(&e.object) {
                keys.push(format!("volume:{v}"));
            }
            keys
        });
        let cache = self.cache.clone();
        let volumes: KeyFn = Arc::new(move |e| {
            let mut keys = vec![format!("volume:{}", objects::name_of(&e.object))];
            match plan::claim_ref(&e.object) {
                Some((ns, name, _)) => keys.push(claim_key(ns, name)),
                // A free volume: any unbound claim may take it, and a
                // claim made naming it waits for it.
                None => {
                    let name = objects::name_of(&e.object);
                    keys.extend(claims_where(&cache, |c| {
                        plan::bound_volume(c).is_none_or(|v| v == name)
                    }));
                }
            }
            keys
        });
        // A pod's claims: pvc-protection waits for the pods that use them.
        let pods: KeyFn = Arc::new(|e| {
            let ns = objects::namespace_of(&e.object);
            e.object
                .pointer("/spec/volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName"))
                .filter_map(Value::as_str)
                .map(|n| claim_key(ns, n))
                .collect()
        });
        let cache = self.cache.clone();
        let classes: KeyFn = Arc::new(move |e| {
            let name = objects::name_of(&e.object);
            claims_where(&cache, |c| {
                plan::bound_volume(c).is_none()
                    && (plan::class_of(c) == name
                        || c.pointer("/spec/storageClassName")
                            .is_none_or(Value::is_null))
            })
        });
        vec![
            (CLAIMS.prefix(None), claims),
            (VOLUMES.prefix(None), volumes),
            (PODS.prefix(None), pods),
            (CLASSES.prefix(None), classes),
        ]
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move {
            let written = if let Some(k) = key.strip_prefix("claim:") {
                let (ns, name) = super::runtime::split_key(k)?;
                self.sync_claim(ns, name).await
            } else if let Some(name) = key.strip_prefix("volume:") {
                self.sync_volume(name).await
            } else {
                Ok(0)
            };
            let rev = written.as_ref().map_or(0, |r| *r);
            super::runtime::settle(&self.cache, rev, written.map(|_| Action::Done)).await
        })
    }
}
