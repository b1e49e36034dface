//! The Deployment controller: reads a Deployment and the ReplicaSets it
//! controls from the watch cache, asks `deployment_plan::plan` for the
//! next step (new ReplicaSet, scaling for RollingUpdate or Recreate,
//! history cleanup, revision annotations, status), and writes it under the
//! fence token. Each ReplicaSet change enqueues its Deployment again, so a
//! rollout advances one step per change.

use crate::errors::ReconcileError;
use shoal_model::events::ObjectRef;
use shoal_model::registry::Registry;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::{json, Value};

use super::deployment_plan;
use super::runtime::{Action, KeyFn, Reconciler};
use super::{create_object, delete_object, update_object, update_object_and_status};
use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::resources::Resource;

pub struct DeploymentController {
    pub cache: Cache,
    pub registry: Registry,
    /// ScalingReplicaSet (fenced, queued).
    pub events: shoal_model::events::EventRecorder,
}

/// Upstream's ScalingReplicaSet message, or None when nothing scaled.
fn scaling(rs: &str, from: i64, to: i64) -> Option<String> {
    let dir = match to.cmp(&from) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => return None,
    };
    Some(format!("Scaled {dir} replica set {rs} from {from} to {to}"))
}

fn deployments() -> &'static Resource {
    &shoal_model::resources::DEPLOYMENTS
}

fn replicasets() -> &'static Resource {
    &shoal_model::resources::REPLICASETS
}

impl DeploymentController {
    /// One reconcile, settled (`runtime::settle`).
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, last_rev: &mut u64) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(dv) = self.cache.get(&deployments().key(ns, name)) else {
            return Ok(Action::Done);
        };
        let claimer = super::claim::Claimer {
            owner: &dv,
            kind: "Deployment",
            api_version: "apps/v1",
            dependents: replicasets(),
        };
        let (owned_v, claimed_rev) = claimer.owned(&self.cache, &self.registry).await?;
        let d: Deployment = serde_json::from_value((*dv).clone())?;
        let owned: Vec<ReplicaSet> = owned_v
            .iter()
            .filter_map(|v| serde_json::from_value((**v).clone()).ok())
            .collect();
        // A Deployment the rules refuse (a bad maxSurge, say) gets a Warning
        // Event and waits for its next change.
        let plan = deployment_plan::plan(&d, &owned, jiff::Timestamp::now()).map_err(|e| {
            ReconcileError::invalid(Some(ObjectRef::of(&dv)), "InvalidDeployment", e.0)
        })?;
        *last_rev = claimed_rev;
        let me = ObjectRef::of(&dv);
        let scaled = |rs: &str, from: i64, to: i64| {
            if let Some(msg) = scaling(rs, from, to) {
                self.events.emit(
                    &me,
                    shoal_model::events::EventType::Normal,
                    "ScalingReplicaSet",
                    &msg,
                );
            }
        };
        if let Some(rs) = &plan.create {
            let v = serde_json::to_value(rs)?;
            *last_rev = (*last_rev).max(create_object(&self.registry, replicasets(), ns, v).await?);
            let to = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            scaled(rs.metadata.name.as_deref().unwrap_or(""), 0, to.into());
        }
        for rs in &plan.update {
            let new = serde_json::to_value(rs)?;
            let rs_name = rs.metadata.name.as_deref().unwrap_or("");
            let Some(old) = owned_v.iter().find(|o| objects::name_of(o) == rs_name) else {
                continue;
            };
            // Through the API's update rules: generation follows the spec,
            // status and server metadata stay.
            let rv = objects::rv_of(old)?;
            let merged = objects::prepare_update(replicasets(), None, old, new.clone())?;
            let merged = objects::with_rv(merged, rv.unwrap_or(0));
            *last_rev =
                (*last_rev).max(update_object(&self.registry, replicasets(), &merged).await?);
            let replicas = |v: &Value| {
                v.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            };
            scaled(rs_name, replicas(old), replicas(&new));
        }
        for rs_name in &plan.delete {
            if let Some(old) = owned_v
                .iter()
                .find(|o| objects::name_of(o) == rs_name.as_str())
            {
                if let Some(rev) = delete_object(&self.registry, replicasets(), old, None).await? {
                    *last_rev = (*last_rev).max(rev);
                }
            }
        }
        // Annotations and status of the Deployment in one write.
        let mut dnew = (*dv).clone();
        if let Some(a) = &plan.deployment_annotations {
            objects::meta_mut(&mut dnew).insert("annotations".into(), json!(a));
        }
        dnew["status"] = serde_json::to_value(&plan.status)?;
        if dnew != *dv {
            *last_rev = (*last_rev)
                .max(update_object_and_status(&self.registry, deployments(), &dnew).await?);
        }
        Ok(plan.requeue_after.map_or(Action::Done, Action::After))
    }
}

impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        super::claim::claiming_watches(&self.cache, deployments(), replicasets(), "Deployment")
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
    #[test]
    fn scaling_messages_are_upstreams() {
        assert_eq!(
            super::scaling("web-5d4f", 0, 3).as_deref(),
            Some("Scaled up replica set web-5d4f from 0 to 3")
        );
        assert_eq!(
            super::scaling("web-5d4f", 3, 1).as_deref(),
            Some("Scaled down replica set web-5d4f from 3 to 1")
        );
        assert_eq!(super::scaling("web-5d4f", 2, 2), None);
    }
}
