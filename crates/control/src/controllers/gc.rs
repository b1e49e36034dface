//! The garbage collector: dependents go with their owners
//! (`metadata.ownerReferences`), as the three propagation policies say.
//!
//! - **Background** (the default): the owner is deleted at once; every
//!   dependent whose owners are all gone is then deleted.
//! - **Foreground**: the owner carries the `foregroundDeletion` finalizer;
//!   its dependents are deleted first, then the finalizer goes (and with
//!   it the owner).
//! - **Orphan**: the owner carries the `orphan` finalizer; the references
//!   to it are removed from its dependents, then the finalizer goes.
//!
//! Keys are `owner:{plural}/{ns}/{name}/{uid}` (an owner changed or went)
//! and `dep:{plural}/{ns}/{name}` (a dependent that may have lost its
//! owners). Pods bound to a node are deleted gracefully (their kubelet
//! finishes), like any delete.

use crate::errors::ReconcileError;
use shoal_model::registry::Registry;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::runtime::{Action, KeyFn, Reconciler};
use super::{delete_object, update_object};
use shoal_model::cache::{Cache, Kind};
use shoal_model::objects;
use shoal_model::resources::{self, Resource, REGISTRY};

pub use shoal_model::objects::{FOREGROUND, ORPHAN};

pub struct GarbageCollector {
    pub cache: Cache,
    pub registry: Registry,
}

fn uid_of(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn owner_refs(o: &Value) -> Vec<Value> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `{plural}/{ns}/{name}` of a stored object.
fn path_of(res: &Resource, o: &Value) -> String {
    format!(
        "{}/{}/{}",
        res.plural,
        objects::namespace_of(o),
        objects::name_of(o)
    )
}

fn resource_of(o: &Value) -> Option<&'static Resource> {
    let av = o.get("apiVersion").and_then(Value::as_str)?;
    let kind = o.get("kind").and_then(Value::as_str)?;
    resources::by_kind(av, kind)
}

impl GarbageCollector {
    /// Does the owner a reference names exist (same uid)?
    fn owner_exists(&self, ns: &str, r: &Value) -> bool {
        let (Some(av), Some(kind), Some(name), Some(uid)) = (
            r.get("apiVersion").and_then(Value::as_str),
            r.get("kind").and_then(Value::as_str),
            r.get("name").and_then(Value::as_str),
            r.get("uid").and_then(Value::as_str),
        ) else {
            return false;
        };
        // An owner of a kind this server does not serve is left alone.
        let Some(res) = resources::by_kind(av, kind) else {
            return true;
        };
        self.cache
            .get(&res.key(ns, name))
            .is_some_and(|o| uid_of(&o) == uid)
    }

    /// The objects that name `uid` as an owner.
    fn dependents(&self, uid: &str) -> Vec<Arc<Value>> {
        self.cache.dependents(uid, REGISTRY.as_bytes()).0
    }

    async fn delete(&self, o: &Value) -> Result<(), ReconcileError> {
        let res = resource_of(o).ok_or_else(|| {
            ReconcileError::invalid(
                Some(shoal_model::events::ObjectRef::of(o)),
                "UnknownKind",
                "the garbage collector does not serve this kind",
            )
        })?;
        // The registry's delete: a bound pod is marked for its kubelet,
        // an object with finalizers is marked for their owners, the rest
        // goes at once (guarded by uid and resourceVersion).
        delete_object(&self.registry, res, o, None).await?;
        Ok(())
    }

    /// Writes `o` without `finalizer`; deletes it if that was the last.
    async fn drop_finalizer(
        &self,
        res: &Resource,
        o: &Value,
        finalizer: &str,
    ) -> Result<(), ReconcileError> {
        let left: Vec<String> = objects::finalizers(o)
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        // Through the registry's update: once the last finalizer of a
        // deleting object goes, so does the object (and what it claimed).
        let mut n = o.clone();
        objects::meta_mut(&mut n).insert("finalizers".into(), json!(left));
        update_object(&self.registry, res, &n).await?;
        Ok(())
    }

    async fn sync_owner(&self, path: &str) -> Result<Action, ReconcileError> {
        let mut parts = path.splitn(4, '/');
        let (Some(plural), Some(ns), Some(name), Some(uid)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(Action::Done);
        };
        let Some(res) = resources::RESOURCES.iter().find(|r| r.plural == plural) else {
            return Ok(Action::Done);
        };
        let owner = self
            .cache
            .get(&res.key(ns, name))
            .filter(|o| uid_of(o) == uid);
        let deps = self.dependents(uid);
        match owner {
            Some(o) if o.pointer("/metadata/deletionTimestamp").is_some() => {
                let fins = objects::finalizers(&o);
                if fins.iter().any(|f| f == ORPHAN) {
                    for d in &deps {
                        let Some(dres) = resource_of(d) else { continue };
                        let mut n = (**d).clone();
                        let kept: Vec<Value> = owner_refs(d)
                            .into_iter()
                            .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                            .collect();
                        objects::meta_mut(&mut n).insert("ownerReferences".into(), json!(kept));
                        update_object(&self.registry, dres, &n).await?;
                    }
                    self.drop_finalizer(res, &o, ORPHAN).await?;
                } else if fins.iter().any(|f| f == FOREGROUND) {
                    if deps.is_empty() {
                        self.drop_finalizer(res, &o, FOREGROUND).await?;
                    } else {
                        for d in &deps {
                            self.delete(d).await?;
                        }
                    }
                }
            }
            Some(_) => {}
            None => {
                // Background: dependents whose owners are all gone go too.
                for d in deps {
                    let ns = objects::namespace_of(&d).to_string();
                    if !owner_refs(&d).iter().any(|r| self.owner_exists(&ns, r)) {
                        self.delete(&d).await?;
                    }
                }
            }
        }
        Ok(Action::Done)
    }

    async fn sync_dependent(&self, path: &str) -> Result<Action, ReconcileError> {
        let mut parts = path.splitn(3, '/');
        let (Some(plural), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(Action::Done);
        };
        let Some(res) = resources::RESOURCES.iter().find(|r| r.plural == plural) else {
            return Ok(Action::Done);
        };
        let Some(d) = self.cache.get(&res.key(ns, name)) else {
            return Ok(Action::Done);
        };
        let refs = owner_refs(&d);
        if refs.is_empty() || refs.iter().any(|r| self.owner_exists(ns, r)) {
            return Ok(Action::Done);
        }
        self.delete(&d).await?;
        Ok(Action::Done)
    }
}

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let keys: KeyFn = Arc::new(|e| {
            let Some(res) = resource_of(&e.object) else {
                return vec![];
            };
            let mut out = Vec::new();
            let going = e.kind == Kind::Deleted
                || e.object.pointer("/metadata/deletionTimestamp").is_some();
            if going {
                out.push(format!(
                    "owner:{}/{}",
                    path_of(res, &e.object),
                    uid_of(&e.object)
                ));
            }
            if e.kind != Kind::Deleted && !owner_refs(&e.object).is_empty() {
                out.push(format!("dep:{}", path_of(res, &e.object)));
            }
            // A dependent that went may be what a foreground deletion of
            // its owners waits for.
            if e.kind == Kind::Deleted {
                let ns = objects::namespace_of(&e.object);
                for r in owner_refs(&e.object) {
                    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
                    if let Some(owner) = resources::by_kind(s("apiVersion"), s("kind")) {
                        let ns = if owner.namespaced { ns } else { "" };
                        out.push(format!(
                            "owner:{}/{ns}/{}/{}",
                            owner.plural,
                            s("name"),
                            s("uid")
                        ));
                    }
                }
            }
            out
        });
        vec![(REGISTRY.as_bytes().to_vec(), keys)]
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move {
            if let Some(p) = key.strip_prefix("owner:") {
                self.sync_owner(p).await
            } else if let Some(p) = key.strip_prefix("dep:") {
                self.sync_dependent(p).await
            } else {
                Ok(Action::Done)
            }
        })
    }
}
