//! Writes of the control plane under the leadership's fence token: the
//! [`Fenced`] writer, and the object writes the scheduler and the
//! controllers share (create, update, status, delete), each through the
//! registry over that writer, so the API's rules apply to them too. A write
//! proposed by a component left running on a deposed leader gets
//! `Fenced`, never an applied write. Both the scheduler and the
//! controllers use this module, so neither imports the other for it.

use serde_json::Value;

use crate::errors::ReconcileError;
use shoal_model::objects;
use shoal_model::registry::{DeleteOptions, Propagation, Registry};
use shoal_model::resources::Resource;
use shoal_store::command::{FenceToken, Txn, TxnResult};
use shoal_store::{ClientError, ReadRequest, ReadResult, Store};

use futures::future::BoxFuture;
use shoal_model::writer::Writer;

/// Writes of a leader-follow component, under its fence token.
#[derive(Clone)]
pub struct Fenced {
    pub store: Store,
    pub token: FenceToken,
}

impl Fenced {
    /// Commits `txn` under the token; returns its result (check
    /// `succeeded` for the compares).
    pub async fn write(&self, txn: Txn) -> Result<TxnResult, ClientError> {
        self.store.propose_fenced(self.token, txn).await
    }
}

impl Writer for Fenced {
    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, ClientError>> {
        Box::pin(self.store.read(req))
    }

    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, ClientError>> {
        Box::pin(Fenced::write(self, txn))
    }
}

/// Creates `obj` in `ns` through the registry (namespace check, server
/// metadata, defaults, validation, allocated addresses), as the API would.
/// Returns the revision.
pub async fn create_object(
    reg: &Registry,
    res: &Resource,
    ns: &str,
    obj: Value,
) -> Result<u64, ReconcileError> {
    let made = reg
        .create(res, ns, obj.clone(), false)
        .await
        .map_err(|e| ReconcileError::from(e).about(&obj))?;
    Ok(objects::rv_of(&made).ok().flatten().unwrap_or(0))
}

/// Writes `status` into `obj` (as read from the cache, with its
/// resourceVersion) unless it is already there. `Ok(None)`: unchanged.
pub async fn update_status(
    reg: &Registry,
    res: &Resource,
    obj: &Value,
    status: Value,
) -> Result<Option<u64>, ReconcileError> {
    if obj.get("status") == Some(&status) {
        return Ok(None);
    }
    let mut new = obj.clone();
    new["status"] = status;
    write(reg, res, Some("status"), obj, new)
        .await
        .map(|stored| Some(rv_or_zero(&stored)))
}

/// Writes `obj` guarded by the resourceVersion it carries; a conflict is an
/// error (the reconcile runs again on the newer object).
pub async fn update_object(
    reg: &Registry,
    res: &Resource,
    obj: &Value,
) -> Result<u64, ReconcileError> {
    let base = base_of(reg, res, obj).await?;
    write(reg, res, None, &base, obj.clone())
        .await
        .map(|stored| rv_or_zero(&stored))
}

/// Writes `obj`'s spec and metadata, then its status (two writes, as
/// upstream's controllers do an update then an UpdateStatus; the status
/// write is guarded by the first one's revision). Returns the last revision.
pub async fn update_object_and_status(
    reg: &Registry,
    res: &Resource,
    obj: &Value,
) -> Result<u64, ReconcileError> {
    let base = base_of(reg, res, obj).await?;
    let stored = write(reg, res, None, &base, obj.clone()).await?;
    let stored = write(reg, res, Some("status"), &stored, obj.clone()).await?;
    Ok(rv_or_zero(&stored))
}

/// The stored object `obj` is a changed copy of (see `Registry::current_of`).
async fn base_of(reg: &Registry, res: &Resource, obj: &Value) -> Result<Value, ReconcileError> {
    reg.current_of(res, obj)
        .await
        .map_err(|e| ReconcileError::from(e).about(obj))
}

/// One guarded write of `body` over `base` (the object as the caller read
/// it, from the cache, with its resourceVersion). Returns the stored object.
async fn write(
    reg: &Registry,
    res: &Resource,
    sub: Option<&str>,
    base: &Value,
    body: Value,
) -> Result<Value, ReconcileError> {
    resource_version(base)?;
    reg.update_at(res, sub, base, body)
        .await
        .map_err(|e| ReconcileError::from(e).about(base))
}

fn rv_or_zero(obj: &Value) -> u64 {
    objects::rv_of(obj).ok().flatten().unwrap_or(0)
}

/// The resourceVersion `obj` was read at (objects from the cache have one).
pub fn resource_version(obj: &Value) -> Result<u64, ReconcileError> {
    objects::rv_of(obj)
        .map_err(|e| ReconcileError::from(e).about(obj))?
        .ok_or_else(|| {
            ReconcileError::invalid(
                Some(shoal_model::events::ObjectRef::of(obj)),
                "NoResourceVersion",
                "the object has no resourceVersion",
            )
        })
}

/// Deletes `obj` through the registry as the API would (a pod bound to a
/// node is marked and its kubelet stops and removes it; finalizers and
/// propagation as asked), guarded by its uid and the resourceVersion it was
/// read at. `Ok(None)`: it was already being deleted.
pub async fn delete_object(
    reg: &Registry,
    res: &Resource,
    obj: &Value,
    propagation: Option<Propagation>,
) -> Result<Option<u64>, ReconcileError> {
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(None);
    }
    let rv = resource_version(obj)?;
    let opts = DeleteOptions {
        uid: obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: Some(rv.to_string()),
        propagation,
        ..DeleteOptions::default()
    };
    let (ns, name) = (objects::namespace_of(obj), objects::name_of(obj));
    let after = reg
        .delete(res, ns, name, &opts)
        .await
        .map_err(|e| match e.code {
            // Gone already, or changed since it was read: the reconcile runs
            // again on what is there now.
            404 => ReconcileError::Conflict(format!("{ns}/{name} is gone")),
            _ => ReconcileError::from(e).about(obj),
        })?;
    Ok(Some(objects::rv_of(&after).ok().flatten().unwrap_or(rv)))
}

/// Evicts a pod of a lost node through the eviction path
/// (`Registry::evict` with `Budget::Charge`: charged to its disruption
/// budget, never refused), guarded by its uid. `Ok(None)`: it was
/// already being deleted.
pub async fn evict_lost_pod(reg: &Registry, pod: &Value) -> Result<Option<u64>, ReconcileError> {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(None);
    }
    let opts = DeleteOptions {
        uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..DeleteOptions::default()
    };
    let (ns, name) = (objects::namespace_of(pod), objects::name_of(pod));
    let budget = shoal_model::registry::Budget::Charge;
    let after = reg
        .evict(ns, name, &opts, budget)
        .await
        .map_err(|e| match e.code {
            404 => ReconcileError::Conflict(format!("{ns}/{name} is gone")),
            _ => ReconcileError::from(e).about(pod),
        })?;
    Ok(objects::rv_of(&after).ok().flatten())
}

/// Deletes a pod as the API would (see [`delete_object`]).
pub async fn delete_pod(reg: &Registry, pod: &Value) -> Result<Option<u64>, ReconcileError> {
    let pods = &shoal_model::resources::PODS;
    delete_object(reg, pods, pod, None).await
}
