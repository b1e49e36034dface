//! Pure planning logic of the Job controller, after kube-controller-manager's
//! `pkg/controller/job`: [`plan`] takes a Job, the pods it controls and the
//! current time, and returns the next step as data ([`Plan`]): pods to
//! create (with their completion index), pods to delete, counted pods whose
//! tracking finalizer can go, and the status to write. No I/O.
//!
//! Counting follows upstream's finalizer tracking: every pod is created
//! with the `batch.kubernetes.io/job-tracking` finalizer. A pod that
//! finishes (Succeeded, Failed, or deleted by someone else while not
//! Succeeded) while it still has the finalizer is counted once: its uid
//! goes into `status.uncountedTerminatedPods` in the same status write that
//! raises `succeeded`/`failed`; the finalizer is then removed; a later plan
//! drops the uid once no pod with the finalizer carries it. A pod the
//! controller deletes itself (surplus, suspension, a finished Job) loses
//! the finalizer first and is never counted, as upstream.
//!
//! Upstream behaviour kept: parallelism and completions (a nil completions
//! is a work queue: the first success stops new pods), the Indexed mode
//! (`batch.kubernetes.io/job-completion-index` annotation and label, the
//! `JOB_COMPLETION_INDEX` variable, hostname `<job>-<index>`,
//! `status.completedIndexes` as ranges), `backoffLimit` with the pod
//! failure back-off (10 s doubling to 10 min, counted from the last failure
//! after the last success), OnFailure restarts counted against the limit,
//! `podFailurePolicy` (FailJob, Ignore, Count on exit codes and pod
//! conditions), `activeDeadlineSeconds`, `suspend`, and the 1.31 terminal
//! conditions: `FailureTarget`/`SuccessCriteriaMet` at once, then `Failed`
//! /`Complete` when no pod of the Job is still running.
//!
//! Left out: `backoffLimitPerIndex` and the FailIndex action (refused by
//! validation), `successPolicy`, `podReplacementPolicy: Failed`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

/// The finalizer that keeps a finished pod until it is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// A pod's completion index (annotation and label).
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// The variable each container of an Indexed Job's pod gets.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's pod failure back-off: 10 s, doubling, at most 10 min.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What the controller does next for one Job.
#[derive(Debug, Default)]
pub struct Plan {
    /// One entry per pod to create: its completion index (Indexed mode).
    pub create: Vec<Option<i64>>,
    /// Pods to delete, their finalizer removed first (never counted).
    pub delete: Vec<Arc<Value>>,
    /// Counted pods whose tracking finalizer goes, after the status write.
    pub unfinalize: Vec<Arc<Value>>,
    /// The status to write.
    pub status: Value,
    /// Look again after this long (back-off, deadline, TTL).
    pub requeue_after: Option<Duration>,
    /// ttlSecondsAfterFinished has passed: delete the Job.
    pub expired: bool,
    /// Events to record: (warning, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
}

/// A pod's completion index, if it has a valid one.
pub fn index_of(pod: &Value) -> Option<i64> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(INDEX_KEY))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .filter(|i: &i64| *i >= 0)
}

fn has_tracking(pod: &Value) -> bool {
    shoal_model::objects::finalizers(pod)
        .iter()
        .any(|f| f == TRACKING_FINALIZER)
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn uid(v: &Value) -> &str {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn int(job: &Value, path: &str) -> Option<i64> {
    job.pointer(path).and_then(Value::as_i64)
}

fn ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

fn fmt(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// When a pod finished: its containers' latest finishedAt, else its
/// deletion time, else None.
fn finished_at(pod: &Value) -> Option<jiff::Timestamp> {
    let containers = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/status/{k}"))?.as_array())
        .flatten()
        .filter_map(|c| c.pointer("/state/terminated/finishedAt")?.as_str())
        .filter_map(ts)
        .max();
    containers.or_else(|| {
        pod.pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(ts)
    })
}

/// `completedIndexes` text ("1,3-5,7") of a set, and back.
pub fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
            // Bounded: an index range never exceeds upstream's completions limit.
            out.extend(a.max(0)..=b.min(a.max(0) + 100_000));
        }
    }
    out
}

/// Upstream's pod failure back-off after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

/// The terminal condition a Job carries, if any: ("Complete"|"Failed", time).
pub fn finished(job: &Value) -> Option<(String, Option<jiff::Timestamp>)> {
    conditions(job).iter().find_map(|c| {
        let ty = c.get("type")?.as_str()?;
        if (ty == "Complete" || ty == "Failed") && c.get("status")? == "True" {
            let at = c
                .get("lastTransitionTime")
                .and_then(Value::as_str)
                .and_then(ts);
            Some((ty.to_string(), at))
        } else {
            None
        }
    })
}

fn conditions(job: &Value) -> Vec<Value> {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn condition<'a>(conds: &'a [Value], ty: &str) -> Option<&'a Value> {
    conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
}

fn is_true(conds: &[Value], ty: &str) -> bool {
    condition(conds, ty).is_some_and(|c| c.get("status") == Some(&json!("True")))
}

/// Sets condition `ty` to `status` (its transition time moves only when
/// the status changes).
fn set_condition(
    conds: &mut Vec<Value>,
    ty: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    let same = condition(conds, ty).is_some_and(|c| {
        c.get("status") == Some(&json!(status)) && c.get("reason") == Some(&json!(reason))
    });
    if same {
        return;
    }
    conds.retain(|c| c.get("type").and_then(Value::as_str) != Some(ty));
    conds.push(
        json!({"type": ty, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now}),
    );
}

/// The first podFailurePolicy rule a failed pod matches: (index, action,
/// message of a FailJob).
fn failure_rule(job: &Value, pod: &Value) -> Option<(usize, String, String)> {
    let rules = job.pointer("/spec/podFailurePolicy/rules")?.as_array()?;
    let statuses: Vec<&Value> = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let action = rule.get("action").and_then(Value::as_str).unwrap_or("");
        if let Some(on) = rule.get("onExitCodes") {
            let container = on.get("containerName").and_then(Value::as_str);
            let values: Vec<i64> = on
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let op_in = on.get("operator").and_then(Value::as_str) == Some("In");
            let hit = statuses.iter().find_map(|c| {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if container.is_some_and(|n| n != name) {
                    return None;
                }
                let code = c.pointer("/state/terminated/exitCode")?.as_i64()?;
                // NotIn never matches a success (upstream).
                let matches = if op_in {
                    values.contains(&code)
                } else {
                    code != 0 && !values.contains(&code)
                };
                matches.then(|| (name.to_string(), code))
            });
            if let Some((name, code)) = hit {
                let msg = format!(
                    "Container {name} for pod {}/{} failed with exit code {code} matching {action} rule at index {i}",
                    shoal_model::objects::namespace_of(pod),
                    shoal_model::objects::name_of(pod)
                );
                return Some((i, action.to_string(), msg));
            }
        }
        if let Some(on) = rule.get("onPodConditions").and_then(Value::as_array) {
            let pod_conds = pod
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let hit = on.iter().find_map(|want| {
                let ty = want.get("type").and_then(Value::as_str)?;
                let st = want.get("status").and_then(Value::as_str).unwrap_or("True");
                pod_conds
                    .iter()
                    .any(|c| {
                        c.get("type") == Some(&json!(ty)) && c.get("status") == Some(&json!(st))
                    })
                    .then(|| ty.to_string())
            });
            if let Some(ty) = hit {
                let msg = format!(
                    "Pod {}/{} has condition {ty} matching {action} rule at index {i}",
                    shoal_model::objects::namespace_of(pod),
                    shoal_model::objects::name_of(pod)
                );
                return Some((i, action.to_string(), msg));
            }
        }
    }
    None
}

/// Ranks pods for deletion as upstream's `activePodsForRemoval`: not
/// scheduled, then pending, then not ready, then the newest first.
fn removal_rank(p: &Value) -> (bool, bool, bool, std::cmp::Reverse<String>) {
    let scheduled = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let created = p
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (
        scheduled,
        phase(p) == "Running",
        super::is_ready(p),
        std::cmp::Reverse(created),
    )
}

/// The next step for `job`, whose controlled pods are `pods`, at `now`.
pub fn plan(job: &Value, pods: &[Arc<Value>], now: jiff::Timestamp) -> Plan {
    let mut out = Plan::default();
    let now_s = fmt(now);
    let status = job.get("status").cloned().unwrap_or(json!({}));
    let mut conds = conditions(job);
    let indexed = job.pointer("/spec/completionMode") == Some(&json!("Indexed"));
    let completions = int(job, "/spec/completions");
    let parallelism = int(job, "/spec/parallelism").unwrap_or(1).max(0);
    let backoff_limit = int(job, "/spec/backoffLimit").unwrap_or(6).max(0);
    let suspended = job.pointer("/spec/suspend") == Some(&json!(true));
    let on_failure = job.pointer("/spec/template/spec/restartPolicy") == Some(&json!("OnFailure"));

    // --- counting ------------------------------------------------------
    let uncounted = |k: &str| -> BTreeSet<String> {
        status
            .pointer(&format!("/uncountedTerminatedPods/{k}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mut unc_ok, mut unc_fail) = (uncounted("succeeded"), uncounted("failed"));
    let mut succeeded = int(&status, "/succeeded").unwrap_or(0);
    let mut failed = int(&status, "/failed").unwrap_or(0);
    let mut completed = parse_indexes(
        status
            .get("completedIndexes")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let mut fail_job: Option<(&'static str, String)> = None;
    for p in pods {
        let u = uid(p).to_string();
        if !has_tracking(p) || unc_ok.contains(&u) || unc_fail.contains(&u) {
            continue;
        }
        if phase(p) == "Succeeded" {
            succeeded += 1;
            unc_ok.insert(u);
            if let Some(i) = index_of(p).filter(|_| indexed) {
                if completions.is_none_or(|c| i < c) {
                    completed.insert(i);
                }
            }
        } else if phase(p) == "Failed" || deleting(p) {
            unc_fail.insert(u);
            match failure_rule(job, p) {
                Some((_, action, _)) if action == "Ignore" => {}
                Some((_, action, msg)) if action == "FailJob" => {
                    failed += 1;
                    fail_job.get_or_insert(("PodFailurePolicy", msg));
                }
                _ => failed += 1,
            }
        }
    }
    // The finalizers of counted pods go; uids no pod needs any more leave
    // the uncounted lists.
    let mut still = BTreeSet::new();
    for p in pods {
        let u = uid(p);
        if has_tracking(p) && (unc_ok.contains(u) || unc_fail.contains(u)) {
            out.unfinalize.push(p.clone());
            still.insert(u.to_string());
        }
    }
    // A uid stays until its pod's finalizer is gone (then the pod can never
    // be counted again).
    unc_ok.retain(|u| still.contains(u));
    unc_fail.retain(|u| still.contains(u));

    // --- the pods now ---------------------------------------------------
    let active: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| !deleting(p) && phase(p) != "Succeeded" && phase(p) != "Failed")
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| deleting(p) && phase(p) != "Succeeded" && phase(p) != "Failed")
        .count() as i64;
    let ready = active.iter().filter(|p| super::is_ready(p)).count() as i64;

    // --- start time, suspension -----------------------------------------
    let mut start = status
        .get("startTime")
        .and_then(Value::as_str)
        .map(String::from);
    let was_suspended = is_true(&conds, "Suspended");
    let done_before = finished(job);
    if done_before.is_none() {
        if suspended {
            if !was_suspended {
                set_condition(
                    &mut conds,
                    "Suspended",
                    true,
                    "JobSuspended",
                    "Job suspended",
                    &now_s,
                );
                out.events
                    .push((false, "Suspended", "Job suspended".into()));
            }
        } else {
            if was_suspended {
                set_condition(
                    &mut conds,
                    "Suspended",
                    false,
                    "JobResumed",
                    "Job resumed",
                    &now_s,
                );
                out.events.push((false, "Resumed", "Job resumed".into()));
                // The deadline counts from the resumption (upstream).
                start = Some(now_s.clone());
            }
            start.get_or_insert_with(|| now_s.clone());
        }
    }

    // --- terminal decisions ---------------------------------------------
    let complete = if indexed {
        completions.is_some_and(|c| completed.len() as i64 >= c)
    } else {
        match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        }
    };
    let restarts: i64 = if on_failure {
        active
            .iter()
            .flat_map(|p| {
                ["initContainerStatuses", "containerStatuses"]
                    .iter()
                    .filter_map(|k| p.pointer(&format!("/status/{k}"))?.as_array())
                    .flatten()
                    .filter_map(|c| c.get("restartCount")?.as_i64())
                    .collect::<Vec<_>>()
            })
            .sum()
    } else {
        0
    };
    let past_restarts = on_failure
        && if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= backoff_limit
        };
    if fail_job.is_none() && (failed > backoff_limit || past_restarts) {
        fail_job = Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        ));
    }
    let deadline = int(job, "/spec/activeDeadlineSeconds");
    let started = start.as_deref().and_then(ts);
    if fail_job.is_none() && !suspended {
        if let (Some(d), Some(t0)) = (deadline, started) {
            let end = t0
                .checked_add(jiff::SignedDuration::from_secs(d))
                .unwrap_or(t0);
            if now >= end {
                fail_job = Some((
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline".into(),
                ));
            } else {
                let left = end.duration_since(now).unsigned_abs();
                out.requeue_after = Some(left);
            }
        }
    }
    let target = if done_before.is_some() {
        None
    } else if let Some((reason, message)) = &fail_job.clone().filter(|_| !complete) {
        if !is_true(&conds, "FailureTarget") {
            set_condition(&mut conds, "FailureTarget", true, reason, message, &now_s);
            out.events.push((true, reason, message.clone()));
        }
        Some(false)
    } else if is_true(&conds, "FailureTarget") {
        Some(false)
    } else if complete || is_true(&conds, "SuccessCriteriaMet") {
        set_condition(
            &mut conds,
            "SuccessCriteriaMet",
            true,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            &now_s,
        );
        Some(true)
    } else {
        None
    };

    // --- pods to delete and create ---------------------------------------
    let mut keep: Vec<&Arc<Value>> = active.clone();
    if done_before.is_some() || target.is_some() || suspended {
        out.delete = keep.drain(..).cloned().collect();
    } else if indexed {
        // Out-of-range and duplicate indexes go; the pending lowest start.
        let mut by_index: BTreeMap<i64, Vec<&Arc<Value>>> = BTreeMap::new();
        let mut stay = Vec::new();
        for p in keep.drain(..) {
            match index_of(p) {
                Some(i) if completions.is_none_or(|c| i < c) && !completed.contains(&i) => {
                    by_index.entry(i).or_default().push(p)
                }
                _ => out.delete.push(p.clone()),
            }
        }
        for (_, mut ps) in by_index {
            ps.sort_by_key(|p| removal_rank(p));
            let best = ps.pop();
            out.delete.extend(ps.into_iter().cloned());
            stay.extend(best);
        }
        keep = stay;
        let mut surplus = keep.len() as i64 - parallelism;
        if surplus > 0 {
            keep.sort_by_key(|p| removal_rank(p));
            while surplus > 0 {
                out.delete.push(keep.remove(0).clone());
                surplus -= 1;
            }
        }
        let busy: BTreeSet<i64> = keep.iter().filter_map(|p| index_of(p)).collect();
        let room = (parallelism - keep.len() as i64).max(0);
        out.create = (0..completions.unwrap_or(0))
            .filter(|i| !completed.contains(i) && !busy.contains(i))
            .take(room as usize)
            .map(Some)
            .collect();
    } else {
        let want = match completions {
            Some(c) => parallelism.min((c - succeeded).max(0)),
            // A work queue after its first success: no new pods, the
            // running ones finish on their own (upstream).
            None if succeeded > 0 => keep.len() as i64,
            None => parallelism,
        };
        let have = keep.len() as i64;
        if have > want {
            keep.sort_by_key(|p| removal_rank(p));
            out.delete = keep.drain(..(have - want) as usize).cloned().collect();
        } else {
            out.create = vec![None; (want - have) as usize];
        }
    }
    // The pod failure back-off: replacements wait after failures in a row.
    if !out.create.is_empty() {
        let last_success = pods
            .iter()
            .filter(|p| phase(p) == "Succeeded")
            .filter_map(|p| finished_at(p))
            .max();
        let fails: Vec<jiff::Timestamp> = pods
            .iter()
            .filter(|p| phase(p) == "Failed" || (deleting(p) && phase(p) != "Succeeded"))
            .filter_map(|p| finished_at(p))
            .filter(|t| last_success.is_none_or(|s| *t > s))
            .collect();
        if let Some(last) = fails.iter().max() {
            let wait = backoff(fails.len() as u32);
            let until = last
                .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
                .unwrap_or(*last);
            if until > now {
                out.create.clear();
                let left = until.duration_since(now).unsigned_abs();
                out.requeue_after = Some(out.requeue_after.map_or(left, |r| r.min(left)));
            }
        }
    }

    // --- terminal conditions once nothing runs ---------------------------
    let running_after = keep.len() as i64 + out.create.len() as i64;
    let mut completion_time = status.get("completionTime").cloned();
    if done_before.is_none() && running_after == 0 && terminating == 0 && out.delete.is_empty() {
        match target {
            Some(true) => {
                set_condition(
                    &mut conds,
                    "Complete",
                    true,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    &now_s,
                );
                completion_time = Some(json!(now_s));
                out.events
                    .push((false, "Completed", "Job completed".into()));
            }
            Some(false) => {
                if let Some(c) = condition(&conds, "FailureTarget").cloned() {
                    let reason = c.get("reason").and_then(Value::as_str).unwrap_or("");
                    let message = c.get("message").and_then(Value::as_str).unwrap_or("");
                    set_condition(&mut conds, "Failed", true, reason, message, &now_s);
                }
            }
            None => {}
        }
    }

    // --- time to live after finishing ------------------------------------
    let done_now = done_before.clone().or_else(|| {
        let ty = if is_true(&conds, "Complete") {
            "Complete"
        } else if is_true(&conds, "Failed") {
            "Failed"
        } else {
            return None;
        };
        Some((ty.to_string(), Some(now)))
    });
    if let (Some((_, Some(at))), Some(ttl)) = (&done_now, int(job, "/spec/ttlSecondsAfterFinished"))
    {
        let expiry = at
            .checked_add(jiff::SignedDuration::from_secs(ttl.max(0)))
            .unwrap_or(*at);
        if now >= expiry {
            out.expired = true;
        } else {
            out.requeue_after = Some(expiry.duration_since(now).unsigned_abs());
        }
    } else if done_now.is_some() {
        out.requeue_after = None;
    }

    // --- status ----------------------------------------------------------
    let mut st = json!({
        "active": running_after,
        "succeeded": succeeded,
        "failed": failed,
        "ready": ready,
        "terminating": terminating + out.delete.len() as i64,
        "uncountedTerminatedPods": {},
    });
    let unc = |s: &BTreeSet<String>| json!(s.iter().collect::<Vec<_>>());
    if !unc_ok.is_empty() {
        st["uncountedTerminatedPods"]["succeeded"] = unc(&unc_ok);
    }
    if !unc_fail.is_empty() {
        st["uncountedTerminatedPods"]["failed"] = unc(&unc_fail);
    }
    if indexed {
        st["completedIndexes"] = json!(format_indexes(&completed));
    }
    if let Some(s) = &start {
        st["startTime"] = json!(s);
    }
    if let Some(c) = completion_time {
        st["completionTime"] = c;
    }
    if !conds.is_empty() {
        st["conditions"] = json!(conds);
    }
    out.status = st;
    out
}

#[cfg(test)]
#[path = "job_plan/tests.rs"]
mod tests;
