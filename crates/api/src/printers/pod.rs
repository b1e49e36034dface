//! The Pod printer: upstream's STATUS, READY and RESTARTS logic.

use super::*;

// ---------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------

/// Restart count and the latest restart time over a set of container statuses.
#[derive(Default, Clone, Copy)]
pub(super) struct Restarts {
    pub(super) count: i64,
    pub(super) last: Option<Timestamp>,
}

impl Restarts {
    pub(super) fn add(&mut self, status: &Value) {
        self.count = self.count.saturating_add(int0(status, "/restartCount"));
        let finished = time_at(status, "/lastState/terminated/finishedAt");
        self.last = self.last.max(finished);
    }
}

/// The aggregate a pod row shows.
pub(super) struct PodSummary {
    pub(super) reason: String,
    pub(super) ready: usize,
    pub(super) total: usize,
    pub(super) restarts: Restarts,
}

/// What one init container status means for the pod's status.
pub(super) enum InitStep {
    /// Finished successfully: look at the next one.
    Done,
    /// A started sidecar (restartable init container), ready or not: look at the next one.
    Sidecar { ready: bool },
    /// Still initializing here: the pod's status is this reason.
    Blocked(String),
}

pub(super) fn pod_row(ctx: &Ctx) -> Vec<Value> {
    let pod = ctx.obj;
    let summary = summarize_pod(pod);
    let restarts = match summary.restarts {
        Restarts {
            count,
            last: Some(last),
        } if count != 0 => {
            format!("{count} ({} ago)", ctx.since(Some(last)))
        }
        Restarts { count, .. } => count.to_string(),
    };
    vec![
        ctx.name(),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(restarts),
        ctx.age(),
        json!(or_placeholder(pod_ip(pod), "<none>")),
        json!(or_placeholder(ctx.str("/spec/nodeName"), "<none>")),
        json!(or_placeholder(
            ctx.str("/status/nominatedNodeName"),
            "<none>"
        )),
        json!(readiness_gates(pod)),
    ]
}

/// Ready/total containers, status reason and restarts, as upstream's `printPod`.
pub(super) fn summarize_pod(pod: &Value) -> PodSummary {
    let init_specs = list_at(pod, "/spec/initContainers");
    let sidecars: BTreeSet<&str> = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .map(|c| str_at(c, "/name"))
        .collect();
    let sidecar_specs = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .count();
    let mut summary = PodSummary {
        reason: initial_pod_reason(pod),
        ready: 0,
        total: list_at(pod, "/spec/containers").len() + sidecar_specs,
        restarts: Restarts::default(),
    };
    let mut all = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (index, status) in list_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        all.add(status);
        let is_sidecar = sidecars.contains(str_at(status, "/name"));
        if is_sidecar {
            sidecar_restarts.add(status);
        }
        match init_step(status, is_sidecar, index, init_specs.len()) {
            InitStep::Done => {}
            InitStep::Sidecar { ready } => summary.ready += usize::from(ready),
            InitStep::Blocked(reason) => {
                summary.reason = reason;
                initializing = true;
                break;
            }
        }
    }
    summary.restarts = all;
    if !initializing || first_condition_true(pod, "/status/conditions", "Initialized") {
        summary.restarts = sidecar_restarts;
        apply_container_statuses(pod, &mut summary);
    }
    apply_deletion(pod, &mut summary.reason);
    summary
}

/// The pod's phase, or its status reason, or "SchedulingGated".
pub(super) fn initial_pod_reason(pod: &Value) -> String {
    let gated = list_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated");
    if gated {
        return "SchedulingGated".to_string();
    }
    first_str(pod, &["/status/reason", "/status/phase"]).to_string()
}

/// Classifies the init container status at `index` of `total` init containers.
pub(super) fn init_step(status: &Value, is_sidecar: bool, index: usize, total: usize) -> InitStep {
    let terminated = set_at(status, "/state/terminated");
    if terminated.is_some_and(|t| int0(t, "/exitCode") == 0) {
        return InitStep::Done;
    }
    if is_sidecar && bool_at(status, "/started") == Some(true) {
        return InitStep::Sidecar {
            ready: bool_at(status, "/ready") == Some(true),
        };
    }
    if let Some(terminated) = terminated {
        return InitStep::Blocked(format!("Init:{}", terminated_reason(terminated)));
    }
    let waiting = str_at(status, "/state/waiting/reason");
    if !waiting.is_empty() && waiting != "PodInitializing" {
        return InitStep::Blocked(format!("Init:{waiting}"));
    }
    InitStep::Blocked(format!("Init:{index}/{total}"))
}

/// A terminated state's reason, else "Signal:N", else "ExitCode:N".
pub(super) fn terminated_reason(terminated: &Value) -> String {
    let reason = str_at(terminated, "/reason");
    if !reason.is_empty() {
        return reason.to_string();
    }
    match int0(terminated, "/signal") {
        0 => format!("ExitCode:{}", int0(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

/// Folds the regular container statuses (last to first, as upstream) into the summary.
pub(super) fn apply_container_statuses(pod: &Value, summary: &mut PodSummary) {
    let mut has_running = false;
    for status in list_at(pod, "/status/containerStatuses").iter().rev() {
        summary.restarts.add(status);
        if let Some(reason) = container_reason(status) {
            summary.reason = reason;
        } else if bool_at(status, "/ready") == Some(true)
            && set_at(status, "/state/running").is_some()
        {
            has_running = true;
            summary.ready += 1;
        }
    }
    if summary.reason == "Completed" && has_running {
        let ready = any_condition_true(pod, "/status/conditions", "Ready");
        summary.reason = if ready { "Running" } else { "NotReady" }.to_string();
    }
}

/// A container's waiting or terminated reason, `None` when it has neither.
pub(super) fn container_reason(status: &Value) -> Option<String> {
    let waiting = str_at(status, "/state/waiting/reason");
    if !waiting.is_empty() {
        return Some(waiting.to_string());
    }
    set_at(status, "/state/terminated").map(terminated_reason)
}

/// "Terminating" (or "Unknown" on a lost node) once the pod is being deleted.
pub(super) fn apply_deletion(pod: &Value, reason: &mut String) {
    if !is_deleting(pod) {
        return;
    }
    if str_at(pod, "/status/reason") == "NodeLost" {
        *reason = "Unknown".to_string();
    } else if !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        *reason = "Terminating".to_string();
    }
}

/// The pod's first IP (`podIPs[0]`, else `podIP`), "" when none.
pub(super) fn pod_ip(pod: &Value) -> &str {
    match list_at(pod, "/status/podIPs").first() {
        Some(first) => str_at(first, "/ip"),
        None => str_at(pod, "/status/podIP"),
    }
}

/// "true/total" readiness gates, "<none>" without any.
pub(super) fn readiness_gates(pod: &Value) -> String {
    let gates = list_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list_at(pod, "/status/conditions");
    let passing = gates
        .iter()
        .filter(|gate| {
            let kind = str_at(gate, "/conditionType");
            conditions
                .iter()
                .find(|c| str_at(c, "/type") == kind)
                .is_some_and(|c| str_at(c, "/status") == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}
