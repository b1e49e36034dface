//! The DaemonSet controller: one pod of each DaemonSet on every node that
//! admits it. A reconcile reads the DaemonSet, its pods and every Node
//! from the watch cache, keeps the DaemonSet's ControllerRevisions (one
//! per template, the current one holding the highest revision number, old
//! ones pruned to `revisionHistoryLimit`), asks `daemonset_plan::plan` for
//! the pods to create and delete, and writes them and the status under the
//! fence token. Pods are pinned to their node by required node affinity
//! and bound by the scheduler, as upstream. A Node that joins or changes
//! enqueues every DaemonSet (pushed, nothing polls).

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::daemonset_plan::{self, NodeFit};
use super::runtime::{Action, KeyFn, Reconciler};
use super::update_status;
use crate::errors::ReconcileError;
use crate::scheduler::framework::{daemon_fit, NodeInfo};
use shoal_model::cache::Cache;
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::Registry;
use shoal_model::resources::Resource;

pub struct DaemonSetController {
    pub cache: Cache,
    pub registry: Registry,
    pub events: EventRecorder,
}

fn daemonsets() -> &'static Resource {
    &shoal_model::resources::DAEMONSETS
}

fn pods() -> &'static Resource {
    &shoal_model::resources::PODS
}

/// Most pods one reconcile creates, in `slow_start`'s growing window
/// (upstream's burst for DaemonSets is 250).
const BURST: usize = 500;

fn bump(last: &mut u64, rev: Option<u64>) {
    if let Some(r) = rev {
        *last = (*last).max(r);
    }
}

impl DaemonSetController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, last: &mut u64) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(ds) = self.cache.get(&daemonsets().key(ns, name)) else {
            return Ok(Action::Done);
        };
        if ds.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Action::Done);
        }
        let claimer = super::claim::Claimer {
            owner: &ds,
            kind: "DaemonSet",
            api_version: "apps/v1",
            dependents: pods(),
        };
        let (mine, claimed) = claimer.owned(&self.cache, &self.registry).await?;
        *last = (*last).max(claimed);
        let hash =
            super::revisions::sync(&self.cache, &self.registry, daemonsets(), &ds, &mine, last)
                .await?;
        let fits = self.nodes(&ds)?;
        let plan = daemonset_plan::plan(&ds, &mine, &fits, &hash);
        let me = ObjectRef::of(&ds);
        for p in &plan.delete {
            if let Some(rev) = super::delete_pod(&self.registry, p).await? {
                *last = (*last).max(rev);
                let msg = format!("Deleted pod: {}", objects::name_of(p));
                self.events
                    .emit(&me, EventType::Normal, "SuccessfulDelete", &msg);
            }
        }
        let nodes: Vec<&String> = plan.create.iter().take(BURST).collect();
        let make = |i: usize| daemonset_plan::pod_for(&ds, nodes[i], &hash);
        let created = super::slow_start::create_pods(
            &self.registry,
            &self.events,
            &ds,
            nodes.len(),
            make,
            last,
        )
        .await;
        bump(
            last,
            update_status(&self.registry, daemonsets(), &ds, plan.status).await?,
        );
        created.map(|()| Action::Done)
    }

    /// Every Node, with whether the DaemonSet's pod should run there and
    /// whether one there may stay.
    fn nodes(&self, ds: &Value) -> Result<Vec<NodeFit>, ReconcileError> {
        let template = daemonset_plan::template_with_tolerations(ds);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        }))?;
        let (nodes, _) = self
            .cache
            .list(&shoal_model::resources::NODES.prefix(None), |_| true);
        Ok(nodes
            .iter()
            .filter_map(|n| {
                let node: Node = serde_json::from_value((**n).clone()).ok()?;
                let name = node.metadata.name.clone()?;
                let (should_run, may_stay) = daemon_fit(&pod, &NodeInfo::new(node));
                Some(NodeFit {
                    name,
                    should_run,
                    may_stay,
                })
            })
            .collect())
    }
}

impl Reconciler for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let mut w = super::claim::claiming_watches(&self.cache, daemonsets(), pods(), "DaemonSet");
        // A Node that joins, changes (labels, taints) or goes enqueues
        // every DaemonSet.
        let cache = self.cache.clone();
        let all: KeyFn = Arc::new(move |_| {
            let (list, _) = cache.list(&daemonsets().prefix(None), |_| true);
            list.iter().map(|d| super::runtime::key_of(d)).collect()
        });
        w.push((shoal_model::resources::NODES.prefix(None), all));
        w
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move { self.sync(&key).await })
    }
}
