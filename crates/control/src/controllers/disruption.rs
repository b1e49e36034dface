//! The disruption controller (upstream's): keeps each
//! PodDisruptionBudget's status true to the pods it covers, so the
//! eviction subresource can decide from it (`Registry::evict`). The
//! arithmetic is `disruption_plan`'s; this reads the cache, finds the
//! pods' controllers (a ReplicaSet's Deployment, a StatefulSet) for the
//! budgets that count their scale, and writes the status when it
//! changed. A recorded eviction that has not been seen through is looked
//! at again when its two minutes run out.
//!
//! Keys: `<ns>/<name>` of a budget. A pod enqueues the budgets covering
//! it (before and after its change); a change of a Deployment,
//! ReplicaSet or StatefulSet enqueues its namespace's budgets.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::disruption_plan as plan;
use super::runtime::{key_of, Action, KeyFn, Reconciler};
use super::update_status;
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::disruption;
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::Registry;
use shoal_model::resources::{
    Resource, DEPLOYMENTS, PODDISRUPTIONBUDGETS as BUDGETS, PODS, REPLICASETS, STATEFULSETS,
};

pub struct DisruptionController {
    pub cache: Cache,
    pub registry: Registry,
    pub events: EventRecorder,
    pub clock: crate::clock::Clock,
}

/// The controller (ownerReference with `controller: true`) of `obj`:
/// its kind and name.
fn controller_of(obj: &Value) -> Option<(&str, &str)> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    Some((r.get("kind")?.as_str()?, r.get("name")?.as_str()?))
}

impl DisruptionController {
    /// The budgets of namespace `ns` that cover `pod`.
    fn budgets_covering(cache: &Cache, pod: &Value) -> Vec<String> {
        let ns = objects::namespace_of(pod);
        cache
            .list(&BUDGETS.prefix(Some(ns)), |b| disruption::covers(b, pod))
            .0
            .iter()
            .map(|b| key_of(b))
            .collect()
    }

    /// The sum of the replicas of the controllers of `pods`, each counted
    /// once (a ReplicaSet's Deployment stands for it, as upstream).
    fn scale_of(&self, ns: &str, pods: &[&Value]) -> Result<i64, String> {
        let mut scales: BTreeMap<String, i64> = BTreeMap::new();
        let get = |res: &Resource, name: &str| self.cache.get(&res.key(ns, name));
        let replicas = |o: &Value| {
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        };
        for pod in pods {
            let none = || format!("found no controllers for pod {:?}", objects::name_of(pod));
            let (kind, name) = controller_of(pod).ok_or_else(none)?;
            let owner = match kind {
                "ReplicaSet" => {
                    let rs = get(&REPLICASETS, name).ok_or_else(none)?;
                    match controller_of(&rs) {
                        Some(("Deployment", d)) => get(&DEPLOYMENTS, d).ok_or_else(none)?,
                        _ => rs,
                    }
                }
                "StatefulSet" => get(&STATEFULSETS, name).ok_or_else(none)?,
                _ => return Err(none()),
            };
            let uid = owner
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            scales.insert(uid, replicas(&owner));
        }
        Ok(scales.values().sum())
    }

    async fn sync(&self, ns: &str, name: &str) -> Result<Action, ReconcileError> {
        let Some(pdb) = self.cache.get(&BUDGETS.key(ns, name)) else {
            return Ok(Action::Done);
        };
        let (pods, _) = self
            .cache
            .list(&PODS.prefix(Some(ns)), |p| disruption::covers(&pdb, p));
        let pods: Vec<&Value> = pods.iter().map(|p| &**p).collect();
        if pods.is_empty() {
            self.events.emit(
                &ObjectRef::of(&pdb),
                EventType::Normal,
                "NoPods",
                "No matching pods found",
            );
        }
        let counts = plan::expected_and_desired(&pdb, pods.len(), || self.scale_of(ns, &pods));
        if let Err(why) = &counts {
            self.events.emit(
                &ObjectRef::of(&pdb),
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                &format!("Failed to calculate the number of expected pods: {why}"),
            );
        }
        let computed = plan::compute(&pdb, &pods, counts, self.clock.now());
        let written = update_status(&self.registry, &BUDGETS, &pdb, computed.status).await?;
        let action = computed.recheck.map_or(Action::Done, Action::After);
        super::runtime::settle(&self.cache, written.unwrap_or(0), Ok(action)).await
    }
}

impl Reconciler for DisruptionController {
    fn name(&self) -> &'static str {
        "disruption"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let own: KeyFn = Arc::new(|e| vec![key_of(&e.object)]);
        let cache = self.cache.clone();
        let pods: KeyFn = Arc::new(move |e| {
            let mut keys = Self::budgets_covering(&cache, &e.object);
            if let Some(prev) = e.prev.as_deref() {
                keys.extend(Self::budgets_covering(&cache, prev));
            }
            keys
        });
        let cache = self.cache.clone();
        let scaled: KeyFn = Arc::new(move |e| {
            let ns = objects::namespace_of(&e.object);
            cache
                .list(&BUDGETS.prefix(Some(ns)), |_| true)
                .0
                .iter()
                .map(|b| key_of(b))
                .collect()
        });
        vec![
            (BUDGETS.prefix(None), own),
            (PODS.prefix(None), pods),
            (DEPLOYMENTS.prefix(None), scaled.clone()),
            (REPLICASETS.prefix(None), scaled.clone()),
            (STATEFULSETS.prefix(None), scaled),
        ]
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move {
            let (ns, name) = super::runtime::split_key(&key)?;
            self.sync(ns, name).await
        })
    }
}
