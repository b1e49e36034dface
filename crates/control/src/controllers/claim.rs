//! Adoption and release, as upstream's `ClaimPods`/`ClaimReplicaSets`: a
//! controller takes the orphans (no controller reference) in its
//! namespace that its selector matches, and lets go of the objects it
//! controls that its selector no longer matches. Neither happens while the
//! controller is being deleted. The writes are fenced; a conflict fails
//! the reconcile, which runs again on the newer objects.

use crate::errors::ReconcileError;
use shoal_model::registry::Registry;
use std::sync::Arc;

use serde_json::{json, Value};

use super::update_object;
use shoal_model::cache::Cache;
use shoal_model::resources::Resource;

/// Who claims: the controller object and the resource of its dependents.
pub struct Claimer<'a> {
    pub owner: &'a Value,
    pub kind: &'a str,
    pub api_version: &'a str,
    pub dependents: &'static Resource,
}

fn uid_of(v: &Value) -> &str {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether `obj` names `uid` as its controller.
pub fn controlled_by(obj: &Value, uid: &str) -> bool {
    // Field by field, not a JSON pointer: this runs over every pod of a
    // ReplicaSet on each of its reconciles.
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("uid").and_then(Value::as_str) == Some(uid)
                    && r.get("controller").and_then(Value::as_bool) == Some(true)
            })
        })
}

/// The objects under `dependents` in `owner`'s namespace that name it as
/// their controller, from the cache's owner index (no scan).
pub fn controlled(cache: &Cache, owner: &Value, dependents: &Resource) -> Vec<Arc<Value>> {
    let uid = uid_of(owner);
    let ns = shoal_model::objects::namespace_of(owner);
    let (found, _) = cache.dependents(uid, &dependents.prefix(Some(ns)));
    found
        .into_iter()
        .filter(|o| controlled_by(o, uid))
        .collect()
}

fn selects(selector: &Value, obj: &Value) -> bool {
    // An empty selector claims nothing (upstream's labels.Nothing here).
    let empty = selector.as_object().is_none_or(|m| {
        m.values().all(|v| {
            v.as_object().is_some_and(|o| o.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty())
        })
    });
    !empty && shoal_model::selectors::selector_matches_object(selector, obj)
}

impl Claimer<'_> {
    /// The dependents the owner controls (from the cache's owner index),
    /// after adopting and releasing; and the highest revision written.
    pub async fn owned(
        &self,
        cache: &Cache,
        fenced: &Registry,
    ) -> Result<(Vec<Arc<Value>>, u64), ReconcileError> {
        let mine = controlled(cache, self.owner, self.dependents);
        self.claim(cache, fenced, mine).await
    }

    /// The dependents the owner controls after adopting and releasing, and
    /// the highest revision written (0: nothing written).
    pub async fn claim(
        &self,
        cache: &Cache,
        fenced: &Registry,
        owned: Vec<Arc<Value>>,
    ) -> Result<(Vec<Arc<Value>>, u64), ReconcileError> {
        let deleting = self.owner.pointer("/metadata/deletionTimestamp").is_some();
        if deleting {
            return Ok((owned, 0));
        }
        let selector = self
            .owner
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(json!({}));
        let uid = uid_of(self.owner);
        let ns = shoal_model::objects::namespace_of(self.owner);
        let mut last = 0;
        let mut kept = Vec::with_capacity(owned.len());
        for o in owned {
            if selects(&selector, &o) || o.pointer("/metadata/deletionTimestamp").is_some() {
                kept.push(o);
                continue;
            }
            // Release: drop this owner's reference.
            let mut released = (*o).clone();
            if let Some(refs) = released
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            last = last.max(update_object(fenced, self.dependents, &released).await?);
        }
        let (orphans, _) = cache.orphans(&self.dependents.prefix(Some(ns)));
        for o in orphans {
            if o.pointer("/metadata/deletionTimestamp").is_some() || !selects(&selector, &o) {
                continue;
            }
            let mut adopted = (*o).clone();
            let reference = json!({
                "apiVersion": self.api_version, "kind": self.kind,
                "name": shoal_model::objects::name_of(self.owner), "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            });
            let meta = shoal_model::objects::meta_mut(&mut adopted);
            match meta
                .get_mut("ownerReferences")
                .and_then(Value::as_array_mut)
            {
                Some(refs) => refs.push(reference),
                None => {
                    meta.insert("ownerReferences".into(), json!([reference]));
                }
            }
            let rev = update_object(fenced, self.dependents, &adopted).await?;
            last = last.max(rev);
            tracing::info!(
                owner = shoal_model::objects::name_of(self.owner),
                adopted = shoal_model::objects::name_of(&adopted),
                "adopted an orphan"
            );
            kept.push(Arc::new(shoal_model::objects::with_rv(adopted, rev)));
        }
        Ok((kept, last))
    }
}

/// The watches of a controller of `kind` (objects under `owners`) that
/// claims dependents under `children`: its own objects, each dependent's
/// controller, and for an orphan the controllers that may adopt it, in
/// one watch of the dependents.
pub fn claiming_watches(
    cache: &Cache,
    owners: &'static Resource,
    children: &'static Resource,
    kind: &'static str,
) -> Vec<(Vec<u8>, super::runtime::KeyFn)> {
    let mut w = super::runtime::owner_watches(owners.prefix(None), children.prefix(None), kind);
    if let Some((_, by_owner)) = w.pop() {
        let orphans = orphan_keys(cache.clone(), owners);
        let both: super::runtime::KeyFn = Arc::new(move |e| {
            let mut keys = by_owner(e);
            keys.extend(orphans(e));
            keys
        });
        w.push((children.prefix(None), both));
    }
    w
}

/// A watch's key function for a controller's dependents: an orphan (no
/// controller, before or after the change) enqueues the controllers of
/// `owners` in its namespace whose selector matches it, so an orphan that
/// appears is adopted without waiting for another change.
pub fn orphan_keys(cache: Cache, owners: &'static Resource) -> super::runtime::KeyFn {
    Arc::new(move |e| {
        let has_controller = |o: &Value| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                })
        };
        if e.kind == shoal_model::cache::Kind::Deleted
            || has_controller(&e.object)
            || e.prev.as_deref().is_some_and(has_controller)
        {
            return Vec::new();
        }
        let ns = shoal_model::objects::namespace_of(&e.object);
        let (matching, _) = cache.list(&owners.prefix(Some(ns)), |c| {
            selects(
                c.pointer("/spec/selector").unwrap_or(&Value::Null),
                &e.object,
            )
        });
        matching.iter().map(|c| super::runtime::key_of(c)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_selector_claims_nothing() {
        let pod = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), &pod));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), &pod));
        assert!(!selects(&json!({}), &pod));
        assert!(!selects(&json!({"matchLabels": {}}), &pod));
    }
}
