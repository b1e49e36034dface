//! The ReplicaSet controller: keeps `spec.replicas` active pods owned by
//! each ReplicaSet (creating them from its template, deleting the
//! surplus the way upstream ranks them) and reports the counts in its
//! status.
//!
//! A reconcile reads the ReplicaSet and its pods from the watch cache,
//! writes under the fence token, and waits for the cache to reflect its
//! own writes before it returns, so the next reconcile of the key never
//! counts stale pods (upstream's "expectations", by revision).

use crate::errors::ReconcileError;
use shoal_model::registry::Registry;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::runtime::{Action, KeyFn, Reconciler};
use super::{delete_pod, is_active, is_ready, update_status};
use shoal_model::cache::Cache;
use shoal_model::resources::Resource;

pub struct ReplicaSetController {
    pub cache: Cache,
    pub registry: Registry,
    /// SuccessfulCreate, SuccessfulDelete (fenced, queued).
    pub events: shoal_model::events::EventRecorder,
}

fn replicasets() -> &'static Resource {
    &shoal_model::resources::REPLICASETS
}

fn pods() -> &'static Resource {
    &shoal_model::resources::PODS
}

/// Most pods one reconcile creates or deletes. Upstream's burst is 500;
/// here the slow-start batches bound a failing template's cost instead, so
/// one big ReplicaSet creates at the store's full speed rather than 500
/// pods per round trip of reconcile, cache catch-up and status.
const BURST: usize = 10_000;

/// Upstream's order for deleting surplus pods: unscheduled, then pending,
/// then not ready, then the newest first.
fn deletion_rank(p: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let scheduled = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = p
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let created = p
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (
        scheduled as u8,
        (phase == "Running") as u8,
        is_ready(p) as u8,
        std::cmp::Reverse(created),
    )
}

impl ReplicaSetController {
    /// One reconcile, settled (`runtime::settle`).
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, last_rev: &mut u64) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(rs) = self.cache.get(&replicasets().key(ns, name)) else {
            return Ok(Action::Done);
        };
        let uid = rs
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Orphans the selector matches are adopted, pods it no longer
        // matches released.
        let claimer = super::claim::Claimer {
            owner: &rs,
            kind: "ReplicaSet",
            api_version: "apps/v1",
            dependents: pods(),
        };
        let (mine, claimed_rev) = claimer.owned(&self.cache, &self.registry).await?;
        let active: Vec<&Arc<Value>> = mine.iter().filter(|p| is_active(p)).collect();
        let want = rs
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0) as usize;
        let deleting = rs.pointer("/metadata/deletionTimestamp").is_some();
        *last_rev = claimed_rev;
        if !deleting && active.len() < want {
            let n = (want - active.len()).min(BURST);
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let pod = pod_from_template(&template, name, &uid);
            // Upstream's slow start (a window doubling per round trip),
            // stopping at the first failure; a pod the API refuses is a
            // FailedCreate about the ReplicaSet.
            super::slow_start::create_pods(
                &self.registry,
                &self.events,
                &rs,
                n,
                |_| pod.clone(),
                last_rev,
            )
            .await?;
        } else if active.len() > want {
            let mut surplus = active.clone();
            surplus.sort_by_key(|p| deletion_rank(p));
            for p in surplus.into_iter().take((active.len() - want).min(BURST)) {
                if let Some(rev) = delete_pod(&self.registry, p).await? {
                    *last_rev = (*last_rev).max(rev);
                    self.events.emit(
                        &shoal_model::events::ObjectRef::of(&rs),
                        shoal_model::events::EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", shoal_model::objects::name_of(p)),
                    );
                }
            }
        }
        // Status from what the pods show now.
        let ready = active.iter().filter(|p| is_ready(p)).count();
        // The template's labels as a selector, matched in place.
        let labels = json!({"matchLabels": rs
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or(json!({}))});
        let fully = active
            .iter()
            .filter(|p| shoal_model::selectors::selector_matches_object(&labels, p))
            .count();
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": fully,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        if let Some(rev) = update_status(&self.registry, replicasets(), &rs, status).await? {
            *last_rev = (*last_rev).max(rev);
        }
        Ok(Action::Done)
    }
}

/// A pod of the ReplicaSet `name` (uid `uid`) from its template.
fn pod_from_template(template: &Value, name: &str, uid: &str) -> Value {
    let meta = template.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-"),
            "labels": meta.get("labels").cloned().unwrap_or(json!({})),
            "annotations": meta.get("annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        super::claim::claiming_watches(&self.cache, replicasets(), pods(), "ReplicaSet")
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
    fn surplus_pods_go_unscheduled_first_then_pending_then_unready_then_newest() {
        let pod = |node: &str, phase: &str, ready: bool, created: &str| {
            json!({"metadata": {"creationTimestamp": created},
                   "spec": {"nodeName": node},
                   "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
        };
        let mut pods = [
            pod("n1", "Running", true, "2026-01-01T00:00:01Z"),
            pod("n1", "Running", true, "2026-01-01T00:00:05Z"),
            pod("", "Pending", false, "2026-01-01T00:00:00Z"),
            pod("n1", "Pending", false, "2026-01-01T00:00:00Z"),
            pod("n1", "Running", false, "2026-01-01T00:00:00Z"),
        ];
        pods.sort_by_key(deletion_rank);
        let order: Vec<(String, String)> = pods
            .iter()
            .map(|p| {
                (
                    p["spec"]["nodeName"].as_str().unwrap().to_string(),
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(order[0].0, "");
        assert_eq!(pods[1]["status"]["phase"], "Pending");
        assert!(!is_ready(&pods[2]));
        // Of the two ready ones, the newer goes first.
        assert_eq!(order[3].1, "2026-01-01T00:00:05Z");
    }

    #[test]
    fn pods_carry_the_template_and_a_controller_reference() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let p = pod_from_template(&t, "web-abc", "u1");
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    }
}
