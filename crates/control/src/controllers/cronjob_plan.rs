//! Pure planning logic of the CronJob controller, after upstream's
//! `cronjob_controllerv2.go`: [`plan`] takes a CronJob, the Jobs it
//! controls and the time, and returns the Job to create (if one is due),
//! the Jobs to delete (Replace, history limits) and the status. No I/O,
//! no clock of its own: the caller passes `now` (its injectable clock).
//!
//! - The most recent scheduled time after `lastScheduleTime` (else the
//!   CronJob's creation), and no older than `startingDeadlineSeconds`, is
//!   the one to run: missed starts run once, not once each; a schedule
//!   missed by more than the deadline gets a `MissSchedule` Event; more
//!   than 100 missed gets `TooManyMissedTimes`.
//! - The Job's name is `<cronjob>-<scheduled time in minutes>`, upstream's
//!   hash: a Job that already exists for that time (a leader that wrote it
//!   and died before its status) is the run, never a second one.
//! - `concurrencyPolicy`: Allow runs beside the active Jobs, Forbid skips
//!   the run while one is active, Replace deletes the active ones first.
//! - Finished Jobs leave `status.active` (`SawCompletedJob`); the oldest
//!   beyond `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` go.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::job_plan::finished;
use shoal_model::objects;

/// Upstream's annotation of the time a Job was scheduled for.
pub const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this get a warning.
const TOO_MANY_MISSED: usize = 100;

#[derive(Debug, Default)]
pub struct Plan {
    /// The Job to create (the caller adds it to `status.active`).
    pub create: Option<Value>,
    /// Jobs to delete (background propagation), with why: true = Replace.
    pub delete: Vec<(Arc<Value>, bool)>,
    pub status: Value,
    pub requeue_after: Option<Duration>,
    /// (warning, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
}

fn ts(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

fn fmt(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn uid(v: &Value) -> &str {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The deterministic name of the run scheduled at `at`.
pub fn job_name(cron_job: &str, at: jiff::Timestamp) -> String {
    format!("{cron_job}-{}", at.as_second().div_euclid(60))
}

/// The reference `status.active` holds for a Job.
pub fn active_ref(job: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
           "namespace": objects::namespace_of(job), "name": objects::name_of(job),
           "uid": uid(job),
           "resourceVersion": job.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))})
}

/// The next step for `cj`, whose Jobs are `jobs`, at `now`.
pub fn plan(cj: &Value, jobs: &[Arc<Value>], now: jiff::Timestamp) -> Plan {
    let mut out = Plan::default();
    let name = objects::name_of(cj);
    let mut status = cj.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    // --- the active list ---------------------------------------------
    let listed: Vec<String> = status
        .get("active")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut active: Vec<&Arc<Value>> = Vec::new();
    for j in jobs {
        match finished(j) {
            Some((how, _)) if listed.iter().any(|u| u == uid(j)) => {
                out.events.push((
                    false,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {how}",
                        objects::name_of(j)
                    ),
                ));
                if how == "Complete" {
                    if let Some(t) = j.pointer("/status/completionTime") {
                        status["lastSuccessfulTime"] = t.clone();
                    }
                }
            }
            Some(_) => {}
            None if j.pointer("/metadata/deletionTimestamp").is_none() => active.push(j),
            None => {}
        }
    }
    // --- the history limits -----------------------------------------------
    let limit = |f: &str, d: i64| {
        cj.pointer(&format!("/spec/{f}"))
            .and_then(Value::as_i64)
            .unwrap_or(d)
            .max(0) as usize
    };
    for (how, keep) in [
        ("Complete", limit("successfulJobsHistoryLimit", 3)),
        ("Failed", limit("failedJobsHistoryLimit", 1)),
    ] {
        let mut done: Vec<&Arc<Value>> = jobs
            .iter()
            .filter(|j| j.pointer("/metadata/deletionTimestamp").is_none())
            .filter(|j| finished(j).is_some_and(|(h, _)| h == how))
            .collect();
        let started = |j: &Value| {
            ts(j.pointer("/status/startTime"))
                .or_else(|| ts(j.pointer("/metadata/creationTimestamp")))
                .map(|t| t.as_second())
                .unwrap_or(0)
        };
        done.sort_by_key(|j| started(j));
        let excess = done.len().saturating_sub(keep);
        out.delete
            .extend(done.into_iter().take(excess).map(|j| (j.clone(), false)));
    }
    let write_active = |status: &mut Value, active: &[&Arc<Value>]| {
        let refs: Vec<Value> = active.iter().map(|j| active_ref(j)).collect();
        if refs.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("active");
            }
        } else {
            status["active"] = json!(refs);
        }
    };
    write_active(&mut status, &active);
    out.status = status.clone();

    if cj.pointer("/metadata/deletionTimestamp").is_some() {
        return out;
    }
    // --- the schedule -------------------------------------------------------
    let zone = cj.pointer("/spec/timeZone").and_then(Value::as_str);
    let schedule_text = cj
        .pointer("/spec/schedule")
        .and_then(Value::as_str)
        .unwrap_or("");
    let schedule = match shoal_model::cron::parse(schedule_text, zone) {
        Ok(s) => s,
        Err(why) => {
            let reason = if why.starts_with("unknown time zone") {
                "UnknownTimeZone"
            } else {
                "UnparseableSchedule"
            };
            out.events.push((
                true,
                reason,
                format!("unparseable schedule: {schedule_text:?} : {why}"),
            ));
            return out;
        }
    };
    let next = schedule.next_after(now);
    out.requeue_after =
        next.map(|n| n.duration_since(now).unsigned_abs() + Duration::from_millis(100));
    if cj.pointer("/spec/suspend") == Some(&json!(true)) {
        return out;
    }
    let since = ts(status.get("lastScheduleTime"))
        .or_else(|| ts(cj.pointer("/metadata/creationTimestamp")))
        .unwrap_or(now);
    let deadline = cj
        .pointer("/spec/startingDeadlineSeconds")
        .and_then(Value::as_i64);
    let earliest = match deadline {
        Some(d) => since.max(now - jiff::SignedDuration::from_secs(d)),
        None => since,
    };
    let most_recent = schedule.last_at_or_before(now).filter(|s| *s > since);
    let Some(scheduled) = most_recent else {
        return out;
    };
    if scheduled <= earliest {
        // Due, but later than the starting deadline allows.
        out.events.push((
            true,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                schedule.local(scheduled)
            ),
        ));
        return out;
    }
    let mut missed = 0;
    let mut t = since;
    while let Some(n) = schedule.next_after(t).filter(|n| *n <= now) {
        missed += 1;
        if missed > TOO_MANY_MISSED {
            out.events.push((
                true,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            ));
            break;
        }
        t = n;
    }
    let run = job_name(name, scheduled);
    let exists = jobs.iter().any(|j| objects::name_of(j) == run);
    if !exists {
        let policy = cj
            .pointer("/spec/concurrencyPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Allow");
        match policy {
            "Forbid" if !active.is_empty() => {
                out.events.push((
                    false,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                ));
                return out;
            }
            "Replace" => {
                out.delete
                    .extend(active.iter().map(|j| ((*j).clone(), true)));
                active.clear();
                write_active(&mut status, &active);
            }
            _ => {}
        }
        let template = cj
            .pointer("/spec/jobTemplate")
            .cloned()
            .unwrap_or(json!({}));
        let mut annotations = template
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(json!({}));
        annotations[SCHEDULED_AT] = json!(schedule.local(scheduled));
        out.create = Some(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": run,
                "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                "annotations": annotations,
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": uid(cj),
                    "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        }));
    }
    status["lastScheduleTime"] = json!(fmt(scheduled));
    out.status = status;
    out
}

#[cfg(test)]
#[path = "cronjob_plan/tests.rs"]
mod tests;
