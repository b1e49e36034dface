//! The control plane: the scheduler and the controllers, run as one
//! leader-follow singleton. They read the node's watch cache,
//! are pushed its events (nothing polls), and write under the fence token
//! of the leadership they run under.
//!
//! ```text
//! SingletonHost (leader only) ─► ControlPlane::run
//!                                  ├─ deployment         (ReplicaSets of each Deployment: rollouts)
//!                                  ├─ replicaset         (pods of each ReplicaSet)
//!                                  ├─ scheduler          (binds pending pods)
//!                                  ├─ garbage-collector  (dependents follow their owners)
//!                                  ├─ node-lifecycle     (unreachable nodes: taint, evict)
//!                                  └─ …                  (each: runtime::run with its work queue)
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::resources::Resource;
use shoal_store::command::Txn;
use shoal_store::singleton::{Singleton, SingletonCtx};

pub mod claim;
pub mod deployment;
pub mod deployment_plan;
pub mod gc;
pub mod nodelifecycle;
pub mod replicaset;
pub mod runtime;

use runtime::Fenced;

/// Attempts of a create whose generated name collides.
const NAME_RETRIES: usize = 3;

/// Creates `obj` in `ns` as the API would (server metadata, defaults,
/// validation), under the fence token. Returns the revision.
pub async fn create_object(
    fenced: &Fenced,
    res: &Resource,
    ns: &str,
    obj: Value,
) -> Result<u64, String> {
    for _ in 0..NAME_RETRIES {
        let made = objects::prepare_create(res, ns, obj.clone()).map_err(|e| e.message)?;
        let key = res.key(ns, objects::name_of(&made));
        let r = fenced
            .write(Txn::create(key, objects::stored_bytes(&made)))
            .await
            .map_err(|e| e.to_string())?;
        if r.succeeded {
            return Ok(r.revision);
        }
    }
    Err(format!("{}: name taken {NAME_RETRIES} times", res.plural))
}

/// Writes `status` into `obj` (as read from the cache, with its
/// resourceVersion) unless it is already there. `Ok(None)`: unchanged.
pub async fn update_status(
    fenced: &Fenced,
    res: &Resource,
    obj: &Value,
    status: Value,
) -> Result<Option<u64>, String> {
    if obj.get("status") == Some(&status) {
        return Ok(None);
    }
    let mut new = obj.clone();
    new["status"] = status;
    update_object(fenced, res, &new).await.map(Some)
}

/// Writes `obj` guarded by the resourceVersion it carries; a conflict is an
/// error (the reconcile runs again on the newer object).
pub async fn update_object(fenced: &Fenced, res: &Resource, obj: &Value) -> Result<u64, String> {
    let rv = objects::rv_of(obj)
        .map_err(|e| e.message)?
        .ok_or("the object has no resourceVersion")?;
    let key = res.key(objects::namespace_of(obj), objects::name_of(obj));
    let r = fenced
        .write(Txn::update(key, objects::stored_bytes(obj), rv))
        .await
        .map_err(|e| e.to_string())?;
    if r.succeeded {
        Ok(r.revision)
    } else {
        Err(format!(
            "conflict on {}/{}",
            objects::namespace_of(obj),
            objects::name_of(obj)
        ))
    }
}

/// Deletes a pod as the API would: one bound to a node is marked (its
/// kubelet stops it and removes it), others go at once.
pub async fn delete_pod(fenced: &Fenced, pod: &Value) -> Result<Option<u64>, String> {
    let pods = shoal_model::resources::find("", "v1", "pods").ok_or("pods are not served")?;
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
    let rv = objects::rv_of(pod)
        .map_err(|e| e.message)?
        .ok_or("no resourceVersion")?;
    let key = pods.key(objects::namespace_of(pod), objects::name_of(pod));
    let r = fenced
        .write(Txn::delete(key, Some(rv)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.succeeded.then_some(r.revision))
}

/// A pod that counts toward its owner: not terminating, not finished.
pub fn is_active(p: &Value) -> bool {
    let phase = p
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    p.pointer("/metadata/deletionTimestamp").is_none() && phase != "Succeeded" && phase != "Failed"
}

/// A pod whose Ready condition is True.
pub fn is_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The scheduler and controllers, as one singleton.
pub struct ControlPlane {
    pub cache: Cache,
    pub membership: shoal_fabric::membership::Membership,
    pub actors: shoal_fabric::actor::ActorSystem,
    pub config: crate::config::ControlPlaneConfig,
}

impl Singleton for ControlPlane {
    fn name(&self) -> &str {
        "control-plane"
    }

    fn run(&self, ctx: SingletonCtx) -> BoxFuture<'static, ()> {
        let cache = self.cache.clone();
        let workers = self.config.workers;
        let (membership, actors, config) = (
            self.membership.clone(),
            self.actors.clone(),
            self.config.clone(),
        );
        Box::pin(async move {
            let fenced = Fenced {
                store: ctx.store.clone(),
                token: ctx.token,
            };
            // The cache must have caught up with this leader's log first,
            // or controllers would act on an old view.
            if let Err(e) = cache
                .sync(&ctx.store, std::time::Duration::from_secs(30))
                .await
            {
                tracing::warn!(
                    "control plane: the watch cache did not catch up: {}",
                    e.message
                );
            }
            tracing::info!(node = %ctx.store.node(), "control plane running");
            let rs = Arc::new(replicaset::ReplicaSetController {
                cache: cache.clone(),
                fenced: fenced.clone(),
            });
            let gc = Arc::new(gc::GarbageCollector {
                cache: cache.clone(),
                fenced: fenced.clone(),
            });
            let deploy = Arc::new(deployment::DeploymentController {
                cache: cache.clone(),
                fenced: fenced.clone(),
            });
            let mut tasks = tokio::task::JoinSet::new();
            tasks.spawn(runtime::run(rs, cache.clone(), workers));
            tasks.spawn(runtime::run(deploy, cache.clone(), workers));
            tasks.spawn(runtime::run(gc, cache.clone(), workers));
            let lifecycle = nodelifecycle::NodeLifecycle {
                cache: cache.clone(),
                fenced: fenced.clone(),
                membership,
                actors,
                default_toleration: std::time::Duration::from_millis(config.eviction_toleration_ms),
                evictions_per_second: config.evictions_per_second,
            };
            tasks.spawn(lifecycle.run());
            let scheduler = crate::scheduler::Scheduler {
                cache: cache.clone(),
                fenced: fenced.clone(),
                config: crate::scheduler::framework::Config {
                    strategy: if config.scoring == "MostAllocated" {
                        crate::scheduler::framework::ScoringStrategy::MostAllocated
                    } else {
                        crate::scheduler::framework::ScoringStrategy::LeastAllocated
                    },
                    percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
                },
                events: shoal_model::events::EventRecorder::new(
                    ctx.store.clone(),
                    crate::scheduler::NAME,
                    ctx.store.node(),
                ),
            };
            tasks.spawn(scheduler.run());
            while tasks.join_next().await.is_some() {}
        })
    }
}
