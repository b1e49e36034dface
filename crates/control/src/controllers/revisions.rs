//! ControllerRevisions of a workload's pod templates, shared by the
//! DaemonSet and StatefulSet controllers as upstream's history package:
//! one revision per template (upstream's data, `{"spec": {"template":
//! {…, "$patch": "replace"}}}`, what `kubectl rollout undo` applies), the
//! current one holding the highest revision number, a collision bumping
//! the owner's `status.collisionCount`, and old revisions no pod uses
//! pruned to `revisionHistoryLimit`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{json, Value};

use super::daemonset_plan::REVISION_LABEL;
use super::deployment_plan::{equal_ignore_hash, pod_template_hash};
use super::{delete_object, update_object, update_status};
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::registry::Registry;
use shoal_model::resources::Resource;

fn revisions() -> &'static Resource {
    &shoal_model::resources::CONTROLLERREVISIONS
}

fn bump(last: &mut u64, rev: Option<u64>) {
    if let Some(r) = rev {
        *last = (*last).max(r);
    }
}

pub fn number(v: &Value) -> i64 {
    v.get("revision").and_then(Value::as_i64).unwrap_or(0)
}

/// The template a ControllerRevision holds (its data is upstream's patch
/// `{"spec": {"template": {…, "$patch": "replace"}}}`).
pub fn template_of(rev: &Value) -> Option<PodTemplateSpec> {
    let mut t = rev.pointer("/data/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The hash of the current template's ControllerRevision, made (or
/// moved to the newest revision number, after a rollback) as needed;
/// revisions no pod uses beyond `revisionHistoryLimit` are deleted.
pub async fn sync(
    cache: &Cache,
    registry: &Registry,
    owner_res: &'static Resource,
    ds: &Value,
    pods: &[Arc<Value>],
    last: &mut u64,
) -> Result<String, ReconcileError> {
    let ns = objects::namespace_of(ds);
    let name = objects::name_of(ds);
    let uid = ds
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let revs = super::claim::controlled(cache, ds, revisions());
    let raw = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let template: PodTemplateSpec = serde_json::from_value(raw.clone())?;
    let max = revs.iter().map(|r| number(r)).max().unwrap_or(0);
    let current = revs
        .iter()
        .find(|r| template_of(r).is_some_and(|t| equal_ignore_hash(&t, &template)))
        .cloned();
    let hash = match &current {
        Some(r) => {
            if number(r) < max {
                let mut newer = (**r).clone();
                newer["revision"] = json!(max + 1);
                *last = (*last).max(update_object(registry, revisions(), &newer).await?);
            }
            r.pointer("/metadata/labels")
                .and_then(|l| l.get(REVISION_LABEL))
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| pod_template_hash(&template, None))
        }
        None => {
            let collisions = ds
                .pointer("/status/collisionCount")
                .and_then(Value::as_i64)
                .map(|c| c as i32);
            let hash = pod_template_hash(&template, collisions);
            let mut labels = raw
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels[REVISION_LABEL] = json!(hash);
            let mut data_template = raw.clone();
            data_template["$patch"] = json!("replace");
            let rev = json!({
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "labels": labels,
                    "annotations": ds.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": owner_res.kind, "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "data": {"spec": {"template": data_template}},
                "revision": max + 1,
            });
            match registry.create(revisions(), ns, rev, false).await {
                Ok(made) => {
                    *last = (*last).max(objects::rv_of(&made).ok().flatten().unwrap_or(0));
                }
                Err(e) if e.code == 409 => {
                    // Another template holds the name: upstream's
                    // collision count picks the next hash.
                    let mut status = ds.get("status").cloned().unwrap_or(json!({}));
                    status["collisionCount"] = json!(collisions.unwrap_or(0) + 1);
                    update_status(registry, owner_res, ds, status).await?;
                    return Err(ReconcileError::Conflict(format!(
                        "ControllerRevision {name}-{hash} exists"
                    )));
                }
                Err(e) => return Err(ReconcileError::from(e)),
            }
            hash
        }
    };
    // History beyond the limit, oldest first, unless a pod still runs it.
    let limit = ds
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .max(0) as usize;
    let live: std::collections::BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.pointer("/metadata/labels")?.get(REVISION_LABEL)?.as_str())
        .collect();
    let mut old: Vec<&Arc<Value>> = revs
        .iter()
        .filter(|r| {
            current
                .as_ref()
                .is_none_or(|c| objects::name_of(c) != objects::name_of(r))
        })
        .filter(|r| {
            let h = r
                .pointer("/metadata/labels")
                .and_then(|l| l.get(REVISION_LABEL))
                .and_then(Value::as_str)
                .unwrap_or("");
            // A DaemonSet's pods carry the hash, a StatefulSet's the
            // revision's name.
            !live.contains(h) && !live.contains(format!("{name}-{h}").as_str())
        })
        .collect();
    old.sort_by_key(|r| number(r));
    let excess = old.len().saturating_sub(limit);
    for r in old.into_iter().take(excess) {
        bump(last, delete_object(registry, revisions(), r, None).await?);
    }
    Ok(hash)
}
