//! The Job controller: runs each Job's pods to completion. A reconcile
//! reads the Job and the pods it controls from the watch cache, asks
//! `job_plan::plan` for the next step, and writes it under the fence
//! token in upstream's order: the status first (counting finished pods and
//! recording their uids as uncounted), then the counted pods' tracking
//! finalizers, then deletions (finalizer removed first, so they are never
//! counted), then creations. A Job past its `ttlSecondsAfterFinished` is
//! deleted with its pods (foreground), as upstream's TTL controller does.
//! Like the ReplicaSet controller it waits for the cache to reflect its
//! own writes before the key runs again.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::job_plan::{self, INDEX_ENV, INDEX_KEY, TRACKING_FINALIZER};
use super::runtime::{Action, KeyFn, Reconciler};
use super::{delete_object, update_object, update_status};
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::{Propagation, Registry};
use shoal_model::resources::Resource;

pub struct JobController {
    pub cache: Cache,
    pub registry: Registry,
    pub events: EventRecorder,
}

fn jobs() -> &'static Resource {
    &shoal_model::resources::JOBS
}

fn pods() -> &'static Resource {
    &shoal_model::resources::PODS
}

/// Most pods one reconcile creates (upstream's burst), in `slow_start`'s
/// growing window.
const BURST: usize = 500;

impl JobController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, last: &mut u64) -> Result<Action, ReconcileError> {
        // A pod whose Job is gone (deleted in the background, or made again
        // under the same name) loses the tracking finalizer, or it would
        // never finish deleting.
        if let Some(pod) = key.strip_prefix(ORPHAN_KEY) {
            let (ns, name) = super::runtime::split_key(pod)?;
            if let Some(p) = self.cache.get(&pods().key(ns, name)) {
                if orphaned(&self.cache, &p) {
                    bump(last, self.unfinalize(&p).await?);
                }
            }
            return Ok(Action::Done);
        }
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(job) = self.cache.get(&jobs().key(ns, name)) else {
            return Ok(Action::Done);
        };
        let uid = job
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mine = super::claim::controlled(&self.cache, &job, pods());
        // A Job being deleted lets its pods go (their finalizers), so the
        // garbage collector can remove them.
        if job.pointer("/metadata/deletionTimestamp").is_some() {
            for p in &mine {
                bump(last, self.unfinalize(p).await?);
            }
            return Ok(Action::Done);
        }
        let claimer = super::claim::Claimer {
            owner: &job,
            kind: "Job",
            api_version: "batch/v1",
            dependents: pods(),
        };
        let (mine, claimed) = claimer.claim(&self.cache, &self.registry, mine).await?;
        *last = (*last).max(claimed);
        let plan = job_plan::plan(&job, &mine, jiff::Timestamp::now());
        let me = ObjectRef::of(&job);
        for (warning, reason, message) in &plan.events {
            let ty = if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.events.emit(&me, ty, reason, message);
        }
        if plan.expired {
            let gone =
                delete_object(&self.registry, jobs(), &job, Some(Propagation::Foreground)).await?;
            bump(last, gone);
            return Ok(Action::Done);
        }
        bump(
            last,
            update_status(&self.registry, jobs(), &job, plan.status.clone()).await?,
        );
        for p in &plan.unfinalize {
            bump(last, self.unfinalize(p).await?);
        }
        for p in &plan.delete {
            bump(last, self.unfinalize(p).await?);
            let fresh = self
                .cache
                .get(&pods().key(ns, objects::name_of(p)))
                .unwrap_or_else(|| p.clone());
            if let Some(rev) = super::delete_pod(&self.registry, &fresh).await? {
                *last = (*last).max(rev);
                self.events.emit(
                    &me,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", objects::name_of(p)),
                );
            }
        }
        let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let creates: Vec<Option<i64>> = plan.create.iter().take(BURST).copied().collect();
        let make = |i: usize| pod_from_template(&template, name, &uid, creates[i]);
        super::slow_start::create_pods(
            &self.registry,
            &self.events,
            &job,
            creates.len(),
            make,
            last,
        )
        .await?;
        Ok(plan.requeue_after.map_or(Action::Done, Action::After))
    }

    /// Removes the tracking finalizer from `pod` (as read from the cache
    /// now); None if it has none.
    async fn unfinalize(&self, pod: &Value) -> Result<Option<u64>, ReconcileError> {
        let key = pods().key(objects::namespace_of(pod), objects::name_of(pod));
        let Some(now) = self.cache.get(&key) else {
            return Ok(None);
        };
        let fins = objects::finalizers(&now);
        if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
            return Ok(None);
        }
        let mut new = (*now).clone();
        let kept: Vec<&String> = fins.iter().filter(|f| *f != TRACKING_FINALIZER).collect();
        objects::meta_mut(&mut new).insert("finalizers".into(), json!(kept));
        update_object(&self.registry, pods(), &new).await.map(Some)
    }
}

/// The key of a pod whose tracking finalizer may have to go.
const ORPHAN_KEY: &str = "orphan:";

/// Whether `pod` holds the tracking finalizer while the Job it names as
/// its controller is gone (none by that name, or one with another uid).
fn orphaned(cache: &Cache, pod: &Value) -> bool {
    // Read in place: this runs on every pod change in the cluster.
    let tracked = pod
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|fs| fs.iter().any(|f| f.as_str() == Some(TRACKING_FINALIZER)));
    let owner = pod
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter().find(|r| {
                r.get("kind").and_then(Value::as_str) == Some("Job")
                    && r.get("controller").and_then(Value::as_bool) == Some(true)
            })
        });
    let Some(owner) = owner.filter(|_| tracked) else {
        return false;
    };
    let name = owner.get("name").and_then(Value::as_str).unwrap_or("");
    let uid = owner.get("uid").and_then(Value::as_str);
    let job = cache.get(&jobs().key(objects::namespace_of(pod), name));
    job.is_none_or(|j| j.pointer("/metadata/uid").and_then(Value::as_str) != uid)
}

fn bump(last: &mut u64, rev: Option<u64>) {
    if let Some(r) = rev {
        *last = (*last).max(r);
    }
}

/// A pod of Job `name` (uid `uid`) from its template; Indexed pods carry
/// their index as upstream: annotation and label, `JOB_COMPLETION_INDEX`
/// in every container, hostname `<job>-<index>`, name `<job>-<index>-…`.
pub fn pod_from_template(template: &Value, name: &str, uid: &str, index: Option<i64>) -> Value {
    let meta = template.get("metadata").cloned().unwrap_or(json!({}));
    let mut labels = meta.get("labels").cloned().unwrap_or(json!({}));
    let mut annotations = meta.get("annotations").cloned().unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    let mut generate = format!("{name}-");
    if let Some(i) = index {
        labels[INDEX_KEY] = json!(i.to_string());
        annotations[INDEX_KEY] = json!(i.to_string());
        generate = format!("{name}-{i}-");
        if spec
            .get("hostname")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            spec["hostname"] = json!(format!("{name}-{i}"));
        }
        let var = json!({"name": INDEX_ENV, "valueFrom": {"fieldRef":
            {"fieldPath": format!("metadata.annotations['{INDEX_KEY}']")}}});
        for list in ["initContainers", "containers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    let env = c
                        .as_object_mut()
                        .map(|o| o.entry("env").or_insert(json!([])));
                    if let Some(Value::Array(env)) = env {
                        if !env.iter().any(|e| e.get("name") == Some(&json!(INDEX_ENV))) {
                            env.push(var.clone());
                        }
                    }
                }
            }
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": generate,
            "labels": labels,
            "annotations": annotations,
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}

impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        "job"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let mut w = super::claim::claiming_watches(&self.cache, jobs(), pods(), "Job");
        // A tracked pod whose Job is gone is keyed by itself.
        let cache = self.cache.clone();
        let orphans: KeyFn = Arc::new(move |e| {
            if e.kind != shoal_model::cache::Kind::Deleted && orphaned(&cache, &e.object) {
                vec![format!("{ORPHAN_KEY}{}", super::runtime::key_of(&e.object))]
            } else {
                Vec::new()
            }
        });
        w.push((pods().prefix(None), orphans));
        w
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
    fn indexed_pods_carry_their_index_everywhere_upstream_puts_it() {
        let t = json!({"metadata": {"labels": {"job-name": "j"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x",
                "env": [{"name": "A", "value": "1"}]}]}});
        let p = pod_from_template(&t, "j", "u", Some(3));
        assert_eq!(p["metadata"]["generateName"], "j-3-");
        assert_eq!(p["metadata"]["annotations"][INDEX_KEY], "3");
        assert_eq!(p["metadata"]["labels"][INDEX_KEY], "3");
        assert_eq!(p["spec"]["hostname"], "j-3");
        let env = p["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(
            env[1]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert_eq!(p["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        let plain = pod_from_template(&t, "j", "u", None);
        assert_eq!(plain["metadata"]["generateName"], "j-");
        assert!(plain["spec"].get("hostname").is_none());
    }
}
