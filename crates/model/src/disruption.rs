//! PodDisruptionBudget rules shared by the eviction subresource (which
//! spends a budget) and the disruption controller (which computes it):
//! which pods a budget covers, which of them are healthy, and the
//! upstream constants. Pure functions over JSON objects.

use serde_json::Value;

use crate::selectors::selector_matches_object;

/// An eviction the disruption controller has not seen the pod go for
/// after this long no longer counts against the budget (upstream's
/// DeletionTimeout).
pub const DELETION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// At most this many evictions may wait for the controller to confirm
/// them (upstream's MaxDisruptedPodSize).
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// The condition a budget's status carries (upstream's
/// `DisruptionAllowed`), with reasons `SufficientPods`,
/// `InsufficientPods` and `SyncFailed`.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// Does budget `pdb` cover `pod`? Same namespace, and its selector
/// selects the pod: in policy/v1 a null selector selects no pods and an
/// empty one every pod of the namespace.
pub fn covers(pdb: &Value, pod: &Value) -> bool {
    let ns = |o: &Value| {
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match pdb.pointer("/spec/selector") {
        None | Some(Value::Null) => false,
        Some(sel) => ns(pdb) == ns(pod) && selector_matches_object(sel, pod),
    }
}

/// A pod whose Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// A pod an eviction may delete without asking any budget (upstream's
/// canIgnorePDB): finished, never started, or already being deleted.
pub fn ignores_budgets(pod: &Value) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    matches!(phase, "Succeeded" | "Failed" | "Pending")
        || pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// A budget's `status.<field>` as a number (0 when unset).
pub fn status_count(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Does the budget let an unhealthy (not Ready) pod go without spending
/// a disruption? `AlwaysAllow` always; `IfHealthyBudget` (the default)
/// while the budget has the healthy pods it wants.
pub fn unhealthy_may_go(pdb: &Value) -> bool {
    let policy = pdb
        .pointer("/spec/unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        .unwrap_or("IfHealthyBudget");
    let desired = status_count(pdb, "desiredHealthy");
    policy == "AlwaysAllow" || (status_count(pdb, "currentHealthy") >= desired && desired > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, ready: bool, phase: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "a", "labels": labels},
               "status": {"phase": phase, "conditions": [
                   {"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn a_null_selector_covers_no_pod_and_an_empty_one_every_pod_of_its_namespace() {
        let p = pod(json!({"app": "web"}), true, "Running");
        let pdb = |sel: Value, ns: &str| json!({"metadata": {"namespace": ns}, "spec": {"selector": sel}});
        assert!(!covers(&pdb(Value::Null, "a"), &p));
        assert!(!covers(
            &json!({"metadata": {"namespace": "a"}, "spec": {}}),
            &p
        ));
        assert!(covers(&pdb(json!({}), "a"), &p));
        assert!(!covers(&pdb(json!({}), "b"), &p));
        assert!(covers(
            &pdb(json!({"matchLabels": {"app": "web"}}), "a"),
            &p
        ));
        assert!(!covers(
            &pdb(json!({"matchLabels": {"app": "db"}}), "a"),
            &p
        ));
    }

    #[test]
    fn finished_pending_and_deleting_pods_ignore_budgets() {
        assert!(ignores_budgets(&pod(json!({}), false, "Pending")));
        assert!(ignores_budgets(&pod(json!({}), false, "Succeeded")));
        assert!(ignores_budgets(&pod(json!({}), false, "Failed")));
        assert!(!ignores_budgets(&pod(json!({}), true, "Running")));
        let mut deleting = pod(json!({}), true, "Running");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(ignores_budgets(&deleting));
    }

    #[test]
    fn unhealthy_pods_go_under_a_healthy_budget_or_always_allow() {
        let pdb = |policy: Option<&str>, current: i64, desired: i64| {
            let mut b = json!({"spec": {}, "status": {"currentHealthy": current, "desiredHealthy": desired}});
            if let Some(p) = policy {
                b["spec"]["unhealthyPodEvictionPolicy"] = json!(p);
            }
            b
        };
        assert!(unhealthy_may_go(&pdb(None, 2, 2)));
        assert!(!unhealthy_may_go(&pdb(None, 1, 2)));
        assert!(!unhealthy_may_go(&pdb(Some("IfHealthyBudget"), 0, 0)));
        assert!(unhealthy_may_go(&pdb(Some("AlwaysAllow"), 0, 2)));
    }
}
