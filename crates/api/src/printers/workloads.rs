//! Printers of workloads: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, and their PodDisruptionBudgets.

use super::columns::Ty::{Int, Str};
use super::*;

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// `spec.replicas`, defaulted to 1 as the API server does.
pub(super) fn desired_replicas(obj: &Value) -> i64 {
    int_at(obj, "/spec/replicas").unwrap_or(1)
}

pub(super) fn deployment_row(ctx: &Ctx) -> Vec<Value> {
    let d = ctx.obj;
    let selector = selector_string(at(d, "/spec/selector")).unwrap_or_else(|()| "<invalid>".into());
    let [names, images] = container_cells(d, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(format!(
            "{}/{}",
            int0(d, "/status/readyReplicas"),
            desired_replicas(d)
        )),
        json!(int0(d, "/status/updatedReplicas")),
        json!(int0(d, "/status/availableReplicas")),
        ctx.age(),
        names,
        images,
        json!(selector),
    ]
}

pub(super) fn replica_set_row(ctx: &Ctx) -> Vec<Value> {
    let rs = ctx.obj;
    let [names, images] = container_cells(rs, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(desired_replicas(rs)),
        json!(int0(rs, "/status/replicas")),
        json!(int0(rs, "/status/readyReplicas")),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(rs, "/spec/selector")),
    ]
}

pub(super) fn daemon_set_row(ctx: &Ctx) -> Vec<Value> {
    let ds = ctx.obj;
    let [names, images] = container_cells(ds, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(int0(ds, "/status/desiredNumberScheduled")),
        json!(int0(ds, "/status/currentNumberScheduled")),
        json!(int0(ds, "/status/numberReady")),
        json!(int0(ds, "/status/updatedNumberScheduled")),
        json!(int0(ds, "/status/numberAvailable")),
        json!(format_labels(ds, "/spec/template/spec/nodeSelector")),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(ds, "/spec/selector")),
    ]
}

pub(super) fn stateful_set_row(ctx: &Ctx) -> Vec<Value> {
    let sts = ctx.obj;
    let [names, images] = container_cells(sts, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(format!(
            "{}/{}",
            int0(sts, "/status/readyReplicas"),
            desired_replicas(sts)
        )),
        ctx.age(),
        names,
        images,
    ]
}

/// NAME, CONTROLLER (`daemonset.apps/x`, or `<none>`), REVISION, AGE.
pub(super) fn controller_revision_row(ctx: &Ctx) -> Vec<Value> {
    let owner = ctx
        .obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let group = s("apiVersion").split_once('/').map_or("", |(g, _)| g);
            let resource = s("kind").to_lowercase();
            let qualified = if group.is_empty() {
                resource
            } else {
                format!("{resource}.{group}")
            };
            format!("{qualified}/{}", s("name"))
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        ctx.name(),
        json!(owner),
        ctx.obj.get("revision").cloned().unwrap_or(json!(0)),
        ctx.age(),
    ]
}

pub(super) fn job_row(ctx: &Ctx) -> Vec<Value> {
    let job = ctx.obj;
    let [names, images] = container_cells(job, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(job_status(job)),
        json!(job_completions(job)),
        json!(job_duration(job, ctx.now)),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(job, "/spec/selector")),
    ]
}

/// "Complete", "Failed", "Terminating", "Suspended", "FailureTarget" or "Running".
pub(super) fn job_status(job: &Value) -> &'static str {
    let has = |kind: &str| first_condition_true(job, "/status/conditions", kind);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// "succeeded/completions", or "succeeded/1 of parallelism" for a work queue.
pub(super) fn job_completions(job: &Value) -> String {
    let succeeded = int0(job, "/status/succeeded");
    if let Some(completions) = int_at(job, "/spec/completions") {
        return format!("{succeeded}/{completions}");
    }
    match int0(job, "/spec/parallelism") {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

/// Time from start to completion (or to now while running), "" before it starts.
pub(super) fn job_duration(job: &Value, now: Timestamp) -> String {
    let Some(start) = time_at(job, "/status/startTime") else {
        return String::new();
    };
    let end = time_at(job, "/status/completionTime").unwrap_or(now);
    human_between(start, end)
}

pub(super) fn cron_job_row(ctx: &Ctx) -> Vec<Value> {
    let cj = ctx.obj;
    let last_schedule = match at(cj, "/status/lastScheduleTime") {
        None => "<none>".to_string(),
        Some(_) => ctx.since(time_at(cj, "/status/lastScheduleTime")),
    };
    let suspend = if bool_at(cj, "/spec/suspend").unwrap_or(false) {
        "True"
    } else {
        "False"
    };
    let template = "/spec/jobTemplate/spec";
    let [names, images] = container_cells(cj, &format!("{template}/template/spec/containers"));
    vec![
        ctx.name(),
        json!(ctx.str("/spec/schedule")),
        json!(or_placeholder(ctx.str("/spec/timeZone"), "<none>")),
        json!(suspend),
        json!(list_at(cj, "/status/active").len()),
        json!(last_schedule),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(cj, &format!("{template}/selector"))),
    ]
}

pub(super) const POD_DISRUPTION_BUDGET_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Min Available",
        Str,
        "minAvailable is the minimum number of pods that must be available after an eviction.",
    ),
    col(
        "Max Unavailable",
        Str,
        "maxUnavailable is the maximum number of pods that may be unavailable after an eviction.",
    ),
    col(
        "Allowed Disruptions",
        Int,
        "disruptionsAllowed is the number of pod disruptions that are currently allowed.",
    ),
    AGE,
];

pub(super) fn pod_disruption_budget_row(ctx: &Ctx) -> Vec<Value> {
    // An IntOrString as upstream prints it; N/A when unset.
    let int_or_string = |pointer: &str| match ctx.obj.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".to_string(),
    };
    vec![
        ctx.name(),
        json!(int_or_string("/spec/minAvailable")),
        json!(int_or_string("/spec/maxUnavailable")),
        json!(int0(ctx.obj, "/status/disruptionsAllowed")),
        ctx.age(),
    ]
}
