//! The namespace controller: a Namespace being deleted (phase
//! `Terminating`, its `kubernetes` finalizer still in `spec.finalizers`)
//! has every object of every namespaced resource the API serves deleted
//! (the resource table is the discovery document, so a kind added to it
//! is covered), pods gracefully through their kubelets; the Namespace
//! carries upstream's deletion conditions while it waits; once nothing is
//! left, the controller removes its finalizer and the registry removes the
//! Namespace. A change to any object in a terminating namespace enqueues
//! the namespace again (pushed, nothing polls).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::runtime::{Action, KeyFn, Reconciler};
use super::{update_object, update_status};
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::registry::{DeleteOptions, Propagation, Registry};
use shoal_model::resources::{Resource, NAMESPACES, RESOURCES};

/// The finalizer of the namespace controller (in `spec.finalizers`).
pub const FINALIZER: &str = "kubernetes";

/// Deletes in flight at once.
const IN_FLIGHT: usize = 64;

pub struct NamespaceController {
    pub cache: Cache,
    pub registry: Registry,
}

fn terminating(ns: &Value) -> bool {
    ns.pointer("/metadata/deletionTimestamp").is_some()
}

fn spec_finalizers(ns: &Value) -> Vec<String> {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's deletion conditions, from what remains: (resource plural,
/// objects left) and (finalizer, objects holding it).
pub fn conditions(
    remaining: &BTreeMap<String, usize>,
    finalizers: &BTreeMap<String, usize>,
    now: &str,
) -> Vec<Value> {
    let cond = |ty: &str, status: bool, reason: &str, message: String| {
        json!({"type": ty, "status": if status {"True"} else {"False"}, "reason": reason,
               "message": message, "lastTransitionTime": now})
    };
    let mut out = vec![
        cond(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        cond(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        ),
    ];
    out.push(if remaining.is_empty() {
        cond(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let parts: Vec<String> = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        cond(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        )
    });
    out.push(if finalizers.is_empty() {
        cond(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let parts: Vec<String> = finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        cond(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        )
    });
    out
}

/// The resources a namespace holds objects of.
fn namespaced() -> impl Iterator<Item = &'static Resource> {
    RESOURCES.iter().filter(|r| r.namespaced)
}

impl NamespaceController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let name = key.trim_start_matches('/');
        let Some(ns) = self.cache.get(&NAMESPACES.key("", name)) else {
            return Ok(Action::Done);
        };
        if !terminating(&ns) || !spec_finalizers(&ns).iter().any(|f| f == FINALIZER) {
            return Ok(Action::Done);
        }
        // Everything in it, deleted (objects already deleting are left to
        // whoever finishes them).
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        let mut holding: BTreeMap<String, usize> = BTreeMap::new();
        let mut doomed = Vec::new();
        for res in namespaced() {
            let (items, _) = self.cache.list(&res.prefix(Some(name)), |_| true);
            if items.is_empty() {
                continue;
            }
            remaining.insert(format!("{}.{}", res.plural, res.group), items.len());
            for o in items {
                for f in objects::finalizers(&o) {
                    *holding.entry(f).or_default() += 1;
                }
                if !terminating(&o) {
                    doomed.push((res, o));
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut failed = None;
        for (res, o) in doomed {
            if tasks.len() >= IN_FLIGHT {
                if let Some(Ok(Err(e))) = tasks.join_next().await {
                    failed.get_or_insert(e);
                }
            }
            let reg = self.registry.clone();
            tasks.spawn(async move {
                let opts = DeleteOptions {
                    uid: o
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .map(String::from),
                    propagation: Some(Propagation::Background),
                    ..DeleteOptions::default()
                };
                match reg
                    .delete(res, objects::namespace_of(&o), objects::name_of(&o), &opts)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.code == 404 || e.code == 409 => Ok(()),
                    Err(e) => Err(ReconcileError::from(e)),
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                failed.get_or_insert(e);
            }
        }
        let now = objects::now();
        let mut new = (*ns).clone();
        // Conditions keep their transition times while unchanged.
        let mut conds = conditions(&remaining, &holding, &now);
        let old: Vec<Value> = ns
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &mut conds {
            if let Some(o) = old.iter().find(|o| {
                o.get("type") == c.get("type")
                    && o.get("status") == c.get("status")
                    && o.get("message") == c.get("message")
            }) {
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
            }
        }
        if remaining.is_empty() && failed.is_none() {
            // Nothing left: the finalizer goes (and with the last one, the
            // Namespace).
            let kept: Vec<String> = spec_finalizers(&ns)
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            new["spec"]["finalizers"] = json!(kept);
            update_object(&self.registry, &NAMESPACES, &new).await?;
        } else {
            let mut status = ns.get("status").cloned().unwrap_or(json!({}));
            status["phase"] = json!("Terminating");
            status["conditions"] = json!(conds);
            update_status(&self.registry, &NAMESPACES, &ns, status).await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(Action::Done),
        }
    }
}

impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let own: KeyFn = Arc::new(|e| vec![format!("/{}", objects::name_of(&e.object))]);
        let mut w = vec![(NAMESPACES.prefix(None), own)];
        // Any object of a terminating namespace that changes (a pod that
        // finished, say) enqueues its namespace.
        for res in namespaced() {
            let cache = self.cache.clone();
            let keys: KeyFn = Arc::new(move |e| {
                let ns = objects::namespace_of(&e.object);
                match cache.get(&NAMESPACES.key("", ns)) {
                    Some(n) if terminating(&n) => vec![format!("/{ns}")],
                    _ => Vec::new(),
                }
            });
            w.push((res.prefix(None), keys));
        }
        w
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move { self.sync(&key).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains_as_upstream() {
        let remaining = BTreeMap::from([("pods.".to_string(), 2)]);
        let fins = BTreeMap::from([("example.com/hold".to_string(), 1)]);
        let c = conditions(&remaining, &fins, "t");
        let by = |ty: &str| c.iter().find(|x| x["type"] == ty).unwrap().clone();
        assert_eq!(
            by("NamespaceContentRemaining")["message"],
            "Some resources are remaining: pods. has 2 resource instances"
        );
        assert_eq!(by("NamespaceFinalizersRemaining")["status"], "True");
        let done = conditions(&BTreeMap::new(), &BTreeMap::new(), "t");
        assert!(done.iter().all(|x| x["status"] == "False"));
    }
}
