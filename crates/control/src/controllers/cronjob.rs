//! The CronJob controller: Jobs on a schedule. A reconcile reads the
//! CronJob and the Jobs it controls from the watch cache, asks
//! `cronjob_plan::plan` (at the control plane's injectable clock's time)
//! for the next step, and writes it under the fence token: Jobs to delete
//! (Replace, history limits) first, then the due Job (created only if
//! absent: its name is the scheduled time's, so a leader failover at that
//! instant gives one run, never two and never none), then the status. The
//! key is looked at again when the next scheduled time comes, and
//! whenever the CronJob or one of its Jobs changes.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::cronjob_plan::{self, active_ref};
use super::runtime::{Action, KeyFn, Reconciler};
use super::{delete_object, update_status};
use crate::clock::Clock;
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::{Propagation, Registry};
use shoal_model::resources::Resource;

pub struct CronJobController {
    pub cache: Cache,
    pub registry: Registry,
    pub events: EventRecorder,
    pub clock: Clock,
}

fn cronjobs() -> &'static Resource {
    &shoal_model::resources::CRONJOBS
}

fn jobs() -> &'static Resource {
    &shoal_model::resources::JOBS
}

impl CronJobController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, last: &mut u64) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(cj) = self.cache.get(&cronjobs().key(ns, name)) else {
            return Ok(Action::Done);
        };
        let uid = cj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mine = super::claim::controlled(&self.cache, &cj, jobs());
        let mut plan = cronjob_plan::plan(&cj, &mine, self.clock.now());
        let me = ObjectRef::of(&cj);
        for (warning, reason, message) in &plan.events {
            let ty = if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.events.emit(&me, ty, reason, message);
        }
        for (job, _) in &plan.delete {
            let gone =
                delete_object(&self.registry, jobs(), job, Some(Propagation::Background)).await;
            match gone {
                Ok(rev) => {
                    if let Some(r) = rev {
                        *last = (*last).max(r);
                    }
                    let msg = format!("Deleted job {}", objects::name_of(job));
                    self.events
                        .emit(&me, EventType::Normal, "SuccessfulDelete", &msg);
                }
                // Gone already.
                Err(ReconcileError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(job) = plan.create.take() {
            let run = objects::name_of(&job).to_string();
            let made = match self.registry.create(jobs(), ns, job, false).await {
                Ok(made) => {
                    *last = (*last).max(objects::rv_of(&made).ok().flatten().unwrap_or(0));
                    let msg = format!("Created job {run}");
                    self.events
                        .emit(&me, EventType::Normal, "SuccessfulCreate", &msg);
                    made
                }
                // Made already (by a leader that died before its status
                // write, say): that Job is the run.
                Err(e) if e.reason == "AlreadyExists" => {
                    match self.registry.current(jobs(), ns, &run).await {
                        Ok((j, rev)) if super::claim::controlled_by(&j, &uid) => {
                            objects::with_rv(j, rev)
                        }
                        Ok(_) => {
                            return Err(ReconcileError::invalid(
                                Some(me),
                                "FailedCreate",
                                format!("Error creating job: a Job {run} not controlled by this CronJob exists"),
                            ))
                        }
                        Err(e) => return Err(ReconcileError::from(e)),
                    }
                }
                Err(e) => {
                    let err = ReconcileError::from(e);
                    return Err(match err {
                        ReconcileError::Invalid { message, .. } => ReconcileError::invalid(
                            Some(me),
                            "FailedCreate",
                            format!("Error creating job: {message}"),
                        ),
                        other => other,
                    });
                }
            };
            let mut active = plan
                .status
                .get("active")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !active.iter().any(|r| r.get("name") == Some(&json!(run))) {
                active.push(active_ref(&made));
            }
            plan.status["active"] = json!(active);
        }
        if let Some(rev) = update_status(&self.registry, cronjobs(), &cj, plan.status).await? {
            *last = (*last).max(rev);
        }
        Ok(plan.requeue_after.map_or(Action::Done, Action::After))
    }
}

impl Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        super::runtime::owner_watches(cronjobs().prefix(None), jobs().prefix(None), "CronJob")
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move { self.sync(&key).await })
    }
}
