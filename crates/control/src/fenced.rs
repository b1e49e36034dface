//! Writes of the control plane under the leadership's fence token: the
//! [`Fenced`] writer and the object writes the scheduler and the
//! controllers share (create, update, status, a pod's deletion). A write
//! proposed by a component left running on a deposed leader gets
//! `Fenced`, never an applied write. Both the scheduler and the
//! controllers use this module, so neither imports the other for it.

use serde_json::{json, Value};

use crate::errors::ReconcileError;
use shoal_model::objects;
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

/// Attempts of a create whose generated name collides.
const NAME_RETRIES: usize = 3;

/// Creates `obj` in `ns` as the API would (server metadata, defaults,
/// validation), under the fence token. Returns the revision.
pub async fn create_object(
    fenced: &Fenced,
    res: &Resource,
    ns: &str,
    obj: Value,
) -> Result<u64, ReconcileError> {
    for _ in 0..NAME_RETRIES {
        let made = objects::prepare_create(res, ns, obj.clone())
            .map_err(|e| ReconcileError::from(e).about(&obj))?;
        let key = res.key(ns, objects::name_of(&made));
        let r = fenced
            .write(Txn::create(key, objects::stored_bytes(&made)))
            .await?;
        if r.succeeded {
            return Ok(r.revision);
        }
    }
    Err(ReconcileError::Conflict(format!(
        "{}: name taken {NAME_RETRIES} times",
        res.plural
    )))
}

/// Writes `status` into `obj` (as read from the cache, with its
/// resourceVersion) unless it is already there. `Ok(None)`: unchanged.
pub async fn update_status(
    fenced: &Fenced,
    res: &Resource,
    obj: &Value,
    status: Value,
) -> Result<Option<u64>, ReconcileError> {
    if obj.get("status") == Some(&status) {
        return Ok(None);
    }
    let mut new = obj.clone();
    new["status"] = status;
    update_object(fenced, res, &new).await.map(Some)
}

/// Writes `obj` guarded by the resourceVersion it carries; a conflict is an
/// error (the reconcile runs again on the newer object).
pub async fn update_object(
    fenced: &Fenced,
    res: &Resource,
    obj: &Value,
) -> Result<u64, ReconcileError> {
    let rv = resource_version(obj)?;
    let key = res.key(objects::namespace_of(obj), objects::name_of(obj));
    let r = fenced
        .write(Txn::update(key, objects::stored_bytes(obj), rv))
        .await?;
    if r.succeeded {
        Ok(r.revision)
    } else {
        Err(ReconcileError::Conflict(format!(
            "{}/{} changed",
            objects::namespace_of(obj),
            objects::name_of(obj)
        )))
    }
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

/// Deletes a pod as the API would: one bound to a node is marked (its
/// kubelet stops it and removes it), others go at once.
pub async fn delete_pod(fenced: &Fenced, pod: &Value) -> Result<Option<u64>, ReconcileError> {
    let pods = shoal_model::resources::find("", "v1", "pods").expect("pods are in the table");
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(None);
    }
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if bound {
        let grace = pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
            .max(0);
        let mut marked = pod.clone();
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
        let m = objects::meta_mut(&mut marked);
        m.insert(
            "deletionTimestamp".into(),
            json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        return update_object(fenced, pods, &marked).await.map(Some);
    }
    let rv = resource_version(pod)?;
    let key = pods.key(objects::namespace_of(pod), objects::name_of(pod));
    let r = fenced.write(Txn::delete(key, Some(rv))).await?;
    Ok(r.succeeded.then_some(r.revision))
}
