//! The disruption controller's arithmetic (upstream's), pure: from a
//! budget, the pods it covers and the scale of their controllers, its
//! status. `expectedPods` is the pods' count for an integer
//! `minAvailable`, else the sum of their controllers' replicas (so a
//! percentage, or `maxUnavailable`, counts the pods that should exist,
//! not those that happen to); `desiredHealthy` follows from it (a
//! percentage rounds up, as upstream's); `currentHealthy` counts the
//! Ready pods not being deleted and not recently evicted; and
//! `disruptionsAllowed` is what is healthy beyond what is desired. An
//! eviction recorded in `disruptedPods` counts until the pod is seen
//! going or for two minutes, whichever is first.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Map, Value};

use shoal_model::disruption::{self, DELETION_TIMEOUT, DISRUPTION_ALLOWED};

/// What a budget's status should be, and when to compute it again (the
/// first recorded eviction to expire), if ever.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub status: Value,
    pub recheck: Option<Duration>,
}

/// A count or a percentage of `total`, as a budget's fields give it.
fn scaled(v: &Value, total: i64) -> Result<i64, String> {
    let v: IntOrString = serde_json::from_value(v.clone())
        .map_err(|_| format!("{v} is neither a count nor a percentage"))?;
    super::deployment_plan::scaled_value(&v, total, true)
}

/// Does the budget count the pods that should exist (its controllers'
/// scale) rather than those that do?
pub fn needs_scale(pdb: &Value) -> bool {
    let spec = pdb.get("spec").unwrap_or(&Value::Null);
    spec.get("maxUnavailable").is_some_and(|v| !v.is_null())
        || spec.get("minAvailable").is_some_and(Value::is_string)
}

/// `expectedPods` and `desiredHealthy` of budget `pdb` over `pods`, with
/// `scale` the sum of their controllers' replicas (asked only when the
/// budget needs it).
pub fn expected_and_desired(
    pdb: &Value,
    pods: usize,
    scale: impl FnOnce() -> Result<i64, String>,
) -> Result<(i64, i64), String> {
    let spec = pdb.get("spec").unwrap_or(&Value::Null);
    let field = |f: &str| spec.get(f).filter(|v| !v.is_null());
    let pods = i64::try_from(pods).unwrap_or(i64::MAX);
    match (field("maxUnavailable"), field("minAvailable")) {
        (Some(max), _) => {
            let expected = scale()?;
            Ok((expected, (expected - scaled(max, expected)?).max(0)))
        }
        (None, Some(min)) if min.is_number() => Ok((pods, scaled(min, pods)?)),
        (None, Some(min)) => {
            let expected = scale()?;
            Ok((expected, scaled(min, expected)?))
        }
        (None, None) => Ok((0, 0)),
    }
}

/// The status of budget `pdb` over the pods it covers, given its expected
/// and desired counts (`Err`: they could not be known, and no disruption
/// is allowed), at `now`.
pub fn compute(
    pdb: &Value,
    pods: &[&Value],
    counts: Result<(i64, i64), String>,
    now: jiff::Timestamp,
) -> Computed {
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // Recorded evictions that still count: their pod is there, not yet
    // being deleted, and the record is younger than the timeout.
    let mut disrupted = Map::new();
    let mut recheck: Option<Duration> = None;
    let recorded = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object);
    for (name, at) in recorded.into_iter().flatten() {
        let pod = pods
            .iter()
            .find(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(name));
        let Some(pod) = pod else { continue };
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let Some(when) = at.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
            continue;
        };
        let age = now.duration_since(when);
        let left = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default() - age;
        if let Ok(left) = Duration::try_from(left) {
            if !left.is_zero() {
                disrupted.insert(name.clone(), at.clone());
                recheck = Some(recheck.map_or(left, |r| r.min(left)));
            }
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            let name = p.pointer("/metadata/name").and_then(Value::as_str);
            !name.is_some_and(|n| disrupted.contains_key(n))
        })
        .filter(|p| disruption::pod_ready(p))
        .count();
    let healthy = i64::try_from(healthy).unwrap_or(i64::MAX);
    let (expected, desired, allowed, condition) = match counts {
        Ok((expected, desired)) => {
            let allowed = if expected <= 0 {
                0
            } else {
                (healthy - desired).max(0)
            };
            let (status, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            (expected, desired, allowed, (status, reason, String::new()))
        }
        Err(why) => (0, 0, 0, ("False", "SyncFailed", why)),
    };
    let (cond_status, reason, message) = condition;
    // The condition keeps its transition time while it says the same.
    let previous = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(DISRUPTION_ALLOWED))
        });
    let since = previous
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(cond_status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": DISRUPTION_ALLOWED,
            "status": cond_status,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    Computed { status, recheck }
}

#[cfg(test)]
#[path = "disruption_plan/tests.rs"]
mod tests;
