//! The registry: the one write path of Kubernetes objects. The REST
//! handlers, the controllers, the scheduler's bindings, the garbage
//! collector and the kubelets all create, update, patch and delete through
//! it, so the same rules apply whoever writes:
//!
//! - create: the namespace must exist (upstream's NamespaceLifecycle),
//!   server metadata, defaulting and validation (`objects::prepare_create`),
//!   a Service's cluster IP and node ports and a Node's pod CIDR claimed in
//!   the same transaction, create-if-absent;
//! - update and patch: read-modify-write on the stored object guarded by
//!   its resourceVersion (a precondition, when given, must match), the
//!   update rules of `objects::prepare_update` (generation, status or not),
//!   allocated addresses kept; an object whose deletion is pending goes once
//!   its last finalizer does, releasing its claims;
//! - delete: uid and resourceVersion preconditions, propagation finalizers,
//!   graceful deletion of pods bound to a node (marked with a
//!   deletionTimestamp; the kubelet stops them, then removes them through
//!   [`Registry::remove_txn`]), system namespaces refused.
//!
//! The registry is generic over its [`Writer`]: the plain store (the API
//! server, the kubelets) or the control plane's fenced writer, whose writes
//! from a deposed leader are refused.

use std::sync::Arc;

use serde_json::{json, Value};
use shoal_store::command::{Op, Txn};
use shoal_store::ReadRequest;

use crate::alloc::Ranges;
use crate::cache::Cache;
use crate::errors::{ApiError, ApiResult};
use crate::objects;
use crate::podcidr::PodCidrs;
use crate::resources::Resource;
use crate::writer::Writer;

mod admission;
mod eviction;
pub use admission::{DEFAULT_CLASS, PVC_PROTECTION};
pub use eviction::Budget;
#[cfg(test)]
mod tests;

/// Attempts of a read-modify-write racing other writers.
const RETRIES: usize = 8;

/// Whether a Namespace still has finalizers in its spec.
fn namespace_finalizing(ns: &Value) -> bool {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Namespaces every cluster has; they cannot be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The cluster's address ranges the registry allocates from.
#[derive(Debug, Clone)]
pub struct Allocators {
    /// Service cluster IPs and node ports.
    pub services: Ranges,
    /// Node pod CIDRs.
    pub pod_cidrs: PodCidrs,
}

/// How a delete propagates to dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What a delete asks for (upstream's DeleteOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From a DeleteOptions body (`{}` when empty).
    pub fn from_json(opts: &Value) -> ApiResult<DeleteOptions> {
        let orphan = opts.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        let propagation = match (
            opts.get("propagationPolicy").and_then(Value::as_str),
            orphan,
        ) {
            (Some("Orphan"), _) | (None, true) => Some(Propagation::Orphan),
            (Some("Foreground"), _) => Some(Propagation::Foreground),
            (Some("Background"), _) => Some(Propagation::Background),
            (None, false) => None,
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy must be Orphan, Background or Foreground, not {other:?}"
                )))
            }
        };
        Ok(DeleteOptions {
            uid: opts
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            grace_period_seconds: opts.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation,
            dry_run: opts
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()),
        })
    }
}

/// Where the base of a commit came from, which decides what an unchanged
/// object costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Read from the store just now: unchanged means nothing to do.
    Stored,
    /// The writer's own copy (its cache): unchanged is still checked.
    Held,
    /// Nothing is written.
    DryRun,
}

/// How an update is made: through a subresource (`status`), pinned to
/// the resourceVersion it was based on, or only tried (`dry_run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOptions<'a> {
    pub sub: Option<&'a str>,
    pub precondition: Option<u64>,
    pub dry_run: bool,
}

/// The one write path (see the module note), over one writer.
#[derive(Clone)]
pub struct Registry {
    writer: Arc<dyn Writer>,
    cache: Option<Cache>,
    alloc: Arc<Allocators>,
}

impl Registry {
    /// A registry writing through `writer`; `cache` (when the writer has
    /// one) answers namespace checks before the store is asked.
    pub fn new(writer: Arc<dyn Writer>, cache: Option<Cache>, alloc: Arc<Allocators>) -> Registry {
        Registry {
            writer,
            cache,
            alloc,
        }
    }

    /// The same rules over another writer.
    pub fn with_writer(&self, writer: Arc<dyn Writer>) -> Registry {
        Registry {
            writer,
            ..self.clone()
        }
    }

    pub fn writer(&self) -> &Arc<dyn Writer> {
        &self.writer
    }

    pub fn allocators(&self) -> &Allocators {
        &self.alloc
    }

    /// The stored object (a linearizable read) with its mod_rev.
    pub async fn current(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<(Value, u64)> {
        let r = self
            .writer
            .read(ReadRequest::key(res.key(ns, name)))
            .await?;
        let kv = r
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        let obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            ApiError::new(
                500,
                "InternalError",
                format!("stored object is not JSON: {e}"),
            )
        })?;
        Ok((objects::with_rv(obj, kv.mod_rev), kv.mod_rev))
    }

    /// The stored object `obj` is a changed copy of (the one at `obj`'s
    /// resourceVersion): from the cache when it holds that version, else
    /// from the store. A newer stored object is a conflict.
    pub async fn current_of(&self, res: &Resource, obj: &Value) -> ApiResult<Value> {
        let (ns, name) = (objects::namespace_of(obj), objects::name_of(obj));
        let rv = objects::rv_of(obj)?;
        if let (Some(cache), Some(rv)) = (&self.cache, rv) {
            if let Some(c) = cache.get(&res.key(ns, name)) {
                if objects::rv_of(&c).ok().flatten() == Some(rv) {
                    return Ok((*c).clone());
                }
            }
        }
        let (current, mod_rev) = self.current(res, ns, name).await?;
        if rv.is_some_and(|rv| rv != mod_rev) {
            return Err(ApiError::conflict(res, name));
        }
        Ok(current)
    }

    /// Creates `body` in `ns` (see the module note); returns the stored
    /// object (with `dry_run`, what would be stored).
    pub async fn create(
        &self,
        res: &Resource,
        ns: &str,
        body: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let named = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.check_namespace(res, ns, named).await?;
        for _ in 0..RETRIES {
            let mut obj = objects::prepare_create(res, ns, body.clone())?;
            let name = objects::name_of(&obj).to_string();
            let key = res.key(ns, &name);
            let mut txn = Txn::create(key.clone(), Vec::new());
            self.allocate(res, &mut obj, &mut txn).await?;
            if dry_run {
                return Ok(obj);
            }
            if let Some(Op::Put { value, .. }) = txn.success.first_mut() {
                *value = objects::stored_bytes(&obj);
            }
            let r = self.writer.write(txn).await?;
            if r.succeeded {
                return Ok(objects::with_rv(obj, r.revision));
            }
            // Either the name is taken, an address asked for by name is
            // held, or a random allocation raced another create.
            // A generated name that is taken is generated again, as
            // upstream retries (KEP 4420): one ReplicaSet's 30,000 pods
            // meet about 30 collisions among 27^5 suffixes.
            let taken = self.writer.read(ReadRequest::key(key)).await?;
            if !taken.kvs.is_empty() && named.is_empty() {
                continue;
            } else if !taken.kvs.is_empty() {
                return Err(ApiError::already_exists(res, &name));
            }
            if res == &crate::resources::SERVICES {
                for (claim, held) in crate::alloc::Ranges::requested(&body) {
                    if !self
                        .writer
                        .read(ReadRequest::key(claim))
                        .await?
                        .kvs
                        .is_empty()
                    {
                        return Err(held);
                    }
                }
            }
        }
        Err(ApiError::new(
            409,
            "Conflict",
            "could not allocate after several attempts",
        ))
    }

    /// The claims a new object takes (Service addresses, a Node's /24).
    async fn allocate(&self, res: &Resource, obj: &mut Value, txn: &mut Txn) -> ApiResult<()> {
        match res.kind {
            "Service" => {
                let key = match txn.success.first() {
                    Some(op) => op.key().to_vec(),
                    None => Vec::new(),
                };
                for claim in self.alloc.services.allocate(obj, None)? {
                    txn.compare.push(shoal_store::command::Compare {
                        key: claim.clone(),
                        mod_rev: 0,
                    });
                    txn.success.push(Op::Put {
                        key: claim,
                        value: key.clone(),
                    });
                }
            }
            "Pod" => {
                self.admit_runtime_class(obj).await?;
                self.admit_pull_secrets(obj).await?;
            }
            "PersistentVolumeClaim" => self.admit_claim(obj).await?,
            "Node" => {
                let read = self
                    .writer
                    .read(ReadRequest::prefix(crate::podcidr::CLAIMS))
                    .await?;
                let mut claims = self.alloc.pod_cidrs.claims(&read.kvs);
                self.alloc.pod_cidrs.assign_from(&mut claims, obj, txn)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// An update keeps what the object was allocated (a Service's
    /// addresses, a Node's pod CIDR).
    fn keep_allocations(
        &self,
        res: &Resource,
        sub: Option<&str>,
        old: &Value,
        new: &mut Value,
    ) -> ApiResult<()> {
        match res.kind {
            "Service" if sub.is_none() => self.alloc.services.keep(old, new),
            "Node" => PodCidrs::keep(old, new),
            _ => Ok(()),
        }
    }

    /// Releases what `obj` claimed, in the transaction that removes it.
    fn release(&self, res: &Resource, obj: &Value, txn: &mut Txn) {
        match res.kind {
            "Service" => self.alloc.services.release(obj, txn),
            "Node" => PodCidrs::release(obj, txn),
            _ => {}
        }
    }

    /// Read-modify-write of one object: `make` builds the wanted object
    /// (a PUT body, a patched object, a status) from the stored one; the
    /// update rules apply; `precondition` pins the resourceVersion it was
    /// based on. Returns the stored object.
    pub async fn update(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        opts: UpdateOptions<'_>,
        make: impl Fn(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let UpdateOptions {
            sub,
            precondition,
            dry_run,
        } = opts;
        for _ in 0..RETRIES {
            let (old, mod_rev) = self.current(res, ns, name).await?;
            if precondition.is_some_and(|w| w != mod_rev) {
                return Err(ApiError::conflict(res, name));
            }
            let body = make(&old)?;
            let mut new = objects::prepare_update(res, sub, &old, body)?;
            self.keep_allocations(res, sub, &old, &mut new)?;
            let how = if dry_run {
                Commit::DryRun
            } else {
                Commit::Stored
            };
            match self.commit(res, &old, new, mod_rev, how).await? {
                Some(obj) => return Ok(obj),
                None if precondition.is_some() => return Err(ApiError::conflict(res, name)),
                None => continue,
            }
        }
        Err(ApiError::conflict(res, name))
    }

    /// One guarded write of `body` over `base`, the object as the writer
    /// holds it (with its resourceVersion): the update rules apply, and a
    /// `base` that is no longer the stored object is a conflict. No read:
    /// for writers that hold the object already (the control plane reads
    /// its watch cache), so a controller's write costs one proposal.
    pub async fn update_at(
        &self,
        res: &Resource,
        sub: Option<&str>,
        base: &Value,
        body: Value,
    ) -> ApiResult<Value> {
        let name = objects::name_of(base).to_string();
        let mod_rev = objects::rv_of(base)?.ok_or_else(|| {
            ApiError::bad_request("a guarded update needs the resourceVersion it was read at")
        })?;
        let mut new = objects::prepare_update(res, sub, base, body)?;
        self.keep_allocations(res, sub, base, &mut new)?;
        self.commit(res, base, new, mod_rev, Commit::Held)
            .await?
            .ok_or_else(|| ApiError::conflict(res, &name))
    }

    /// Binds `pod` (as the scheduler holds it, with the resourceVersion its
    /// decision was made on) to `node` (upstream's `pods/binding`): in one
    /// write, `spec.nodeName` and the PodScheduled=True condition. A pod
    /// already bound, being deleted, or changed since is a conflict.
    pub async fn bind(&self, pod: &Value, node: &str) -> ApiResult<Value> {
        let pods = &crate::resources::PODS;
        let name = objects::name_of(pod);
        let mod_rev = objects::rv_of(pod)?.ok_or_else(|| {
            ApiError::bad_request("a binding needs the resourceVersion it was decided on")
        })?;
        let old = pod;
        let bound = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bound.is_empty() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut new = old.clone();
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        new["spec"]["nodeName"] = json!(node);
        set_condition(
            &mut new,
            json!({"type": "PodScheduled", "status": "True",
                   "lastTransitionTime": objects::now(), "lastProbeTime": null}),
        );
        objects::validate(pods, &new)?;
        self.commit(pods, old, new, mod_rev, Commit::Held)
            .await?
            .ok_or_else(|| ApiError::conflict(pods, name))
    }

    /// Writes `new` over `old` (at `mod_rev`), or removes it when a
    /// deleting object's last finalizer went. `Ok(None)`: the key moved on.
    async fn commit(
        &self,
        res: &Resource,
        old: &Value,
        new: Value,
        mod_rev: u64,
        how: Commit,
    ) -> ApiResult<Option<Value>> {
        let key = res.key(objects::namespace_of(old), objects::name_of(old));
        let unchanged = {
            let mut a = old.clone();
            if let Some(m) = a.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            a == new
        };
        if how == Commit::DryRun {
            return Ok(Some(objects::with_rv(new, mod_rev)));
        }
        if unchanged {
            if how == Commit::Stored {
                return Ok(Some(objects::with_rv(new, mod_rev)));
            }
            // Nothing to write, but the writer's copy may be stale: a
            // compare alone says whether it is still the stored object.
            let check = Txn {
                compare: vec![shoal_store::command::Compare { key, mod_rev }],
                ..Txn::default()
            };
            let r = self.writer.write(check).await?;
            return Ok(r.succeeded.then(|| objects::with_rv(new, mod_rev)));
        }
        let finished = new.pointer("/metadata/deletionTimestamp").is_some()
            && objects::finalizers(&new).is_empty()
            && !(res.kind == "Namespace" && namespace_finalizing(&new));
        let mut txn = if finished {
            Txn::delete(key, Some(mod_rev))
        } else {
            Txn::update(key, objects::stored_bytes(&new), mod_rev)
        };
        if finished {
            self.release(res, &new, &mut txn);
        }
        let r = self.writer.write(txn).await?;
        Ok(r.succeeded.then(|| objects::with_rv(new, r.revision)))
    }

    /// Deletes one object (see the module note). Returns the object as it
    /// is after the call: marked for deletion, or as it was when removed.
    pub async fn delete(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        if res.kind == "Namespace" && SYSTEM_NAMESPACES.contains(&name) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("namespaces {name:?} is forbidden: this namespace may not be deleted"),
            ));
        }
        for _ in 0..RETRIES {
            let (old, mod_rev) = self.current(res, ns, name).await?;
            if let Some(uid) = &opts.uid {
                let have = old
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if uid != have {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                    ));
                }
            }
            if let Some(rv) = &opts.resource_version {
                if *rv != mod_rev.to_string() {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {mod_rev}"),
                    ));
                }
            }
            let grace = graceful_seconds(res, &old, opts.grace_period_seconds);
            // Orphan and Foreground hand the dependents to the garbage
            // collector through a finalizer on the owner.
            let extra = match opts.propagation {
                Some(Propagation::Orphan) => Some(objects::ORPHAN),
                Some(Propagation::Foreground) => Some(objects::FOREGROUND),
                Some(Propagation::Background) | None => None,
            };
            // A Namespace with finalizers in its spec (`kubernetes`: the
            // namespace controller's) is Terminating until they are done.
            let namespace_held = res.kind == "Namespace" && namespace_finalizing(&old);
            let pending = !objects::finalizers(&old).is_empty()
                || grace > 0
                || extra.is_some()
                || namespace_held;
            if pending {
                // Marked for deletion: whoever owns the finalizers (or the
                // kubelet, for a bound pod) finishes it.
                if old.pointer("/metadata/deletionTimestamp").is_some() && grace == 0 {
                    return Ok(old);
                }
                let mut new = old.clone();
                let m = objects::meta_mut(&mut new);
                m.remove("resourceVersion");
                if !m.contains_key("deletionTimestamp") {
                    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                }
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if let Some(f) = extra {
                    let mut fins = objects::finalizers(&old);
                    if !fins.iter().any(|x| x == f) {
                        fins.push(f.to_string());
                    }
                    m.insert("finalizers".into(), json!(fins));
                }
                if namespace_held {
                    new["status"]["phase"] = json!("Terminating");
                }
                if opts.dry_run {
                    return Ok(objects::with_rv(new, mod_rev));
                }
                let key = res.key(ns, name);
                let r = self
                    .writer
                    .write(Txn::update(key, objects::stored_bytes(&new), mod_rev))
                    .await?;
                if r.succeeded {
                    return Ok(objects::with_rv(new, r.revision));
                }
                continue;
            }
            if opts.dry_run {
                return Ok(old);
            }
            match self
                .writer
                .write(self.remove_txn(res, &old, mod_rev))
                .await?
            {
                r if r.succeeded => return Ok(old),
                _ => continue,
            }
        }
        Err(ApiError::conflict(res, name))
    }

    /// The kubelet's last word on a pod it stopped: the transaction that
    /// removes it (batched with its status reports). Only a pod marked for
    /// deletion goes this way; one that still has finalizers stays (None)
    /// until whoever holds them lets go, as upstream.
    pub fn finish_pod_txn(pod: &Value, mod_rev: u64) -> ApiResult<Option<Txn>> {
        let pods = &crate::resources::PODS;
        if pod.pointer("/metadata/deletionTimestamp").is_none() {
            return Err(ApiError::bad_request(format!(
                "pod {:?} is not being deleted",
                objects::name_of(pod)
            )));
        }
        if !objects::finalizers(pod).is_empty() {
            return Ok(None);
        }
        let key = pods.key(objects::namespace_of(pod), objects::name_of(pod));
        Ok(Some(Txn::delete(key, Some(mod_rev))))
    }

    /// The transaction that removes `obj` (stored at `mod_rev`) with its
    /// claims: the end of a delete.
    pub fn remove_txn(&self, res: &Resource, obj: &Value, mod_rev: u64) -> Txn {
        let key = res.key(objects::namespace_of(obj), objects::name_of(obj));
        let mut txn = Txn::delete(key, Some(mod_rev));
        self.release(res, obj, &mut txn);
        txn
    }

    /// The transaction that writes `status` into `obj` (stored at
    /// `mod_rev`) by the status rules; `None` if it is unchanged. For
    /// writers that batch (the kubelet's status reports).
    pub fn status_txn(
        res: &Resource,
        obj: &Value,
        mod_rev: u64,
        status: Value,
    ) -> ApiResult<Option<Txn>> {
        if obj.get("status") == Some(&status) {
            return Ok(None);
        }
        if mod_rev == 0 {
            return Err(ApiError::bad_request(
                "a status update needs the resourceVersion it was read at",
            ));
        }
        let rv = mod_rev;
        let mut body = obj.clone();
        body["status"] = status;
        let new = objects::prepare_update(res, Some("status"), obj, body)?;
        let key = res.key(objects::namespace_of(obj), objects::name_of(obj));
        Ok(Some(Txn::update(key, objects::stored_bytes(&new), rv)))
    }
}

/// Sets condition `cond` (by its type) in `obj.status.conditions`.
pub fn set_condition(obj: &mut Value, cond: Value) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let ty = cond.get("type").cloned();
    let mut cs: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    cs.retain(|c| c.get("type") != ty.as_ref());
    cs.push(cond);
    obj["status"]["conditions"] = json!(cs);
}

/// Seconds a delete waits for the object's owner to finish it: a pod
/// bound to a node gets its grace period (the kubelet stops it, then
/// removes it), all else goes at once.
pub fn graceful_seconds(res: &Resource, obj: &Value, asked: Option<i64>) -> i64 {
    if res.kind != "Pod"
        || obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return 0;
    }
    asked
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}
