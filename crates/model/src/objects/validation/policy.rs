//! Validation of PodDisruptionBudgets (policy/v1), as upstream's: at most
//! one of `minAvailable` and `maxUnavailable`, each a count or a
//! percentage of at most 100 %, a well-formed selector, and one of the
//! two unhealthy-pod eviction policies.

use super::*;

/// Upstream's `unhealthyPodEvictionPolicy` values; unset means the first.
pub const UNHEALTHY_POLICIES: &[&str] = &["IfHealthyBudget", "AlwaysAllow"];

const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

/// A count (≥ 0) or a percentage (`"0%"` to `"100%"`).
fn int_or_percent(v: &Value, field: &str, causes: &mut Vec<Cause>) {
    match v {
        Value::Number(n) => {
            if n.as_i64().is_none_or(|n| n < 0) {
                causes.push(Cause::invalid(
                    field,
                    &n.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        Value::String(s) => {
            let pct = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok());
            match pct {
                None => causes.push(Cause::invalid(
                    field,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
                Some(p) if p > 100 => causes.push(Cause::invalid(
                    field,
                    s,
                    "must not be greater than 100%",
                )),
                Some(_) => {}
            }
        }
        other => causes.push(Cause::invalid(
            field,
            &other.to_string(),
            "must be an integer or percentage (e.g '5%')",
        )),
    }
}

/// A metav1.LabelSelector's keys, values and operators.
fn selector(sel: &Value, field: &str, causes: &mut Vec<Cause>) {
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !is_qualified_name(k) {
            causes.push(Cause::invalid(
                format!("{field}.matchLabels"),
                k,
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        if !is_label_value(v.as_str().unwrap_or("")) {
            causes.push(Cause::invalid(
                format!("{field}.matchLabels"),
                &v.to_string(),
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
    }
    let exprs = sel.get("matchExpressions").and_then(Value::as_array);
    for (i, e) in exprs.into_iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if !OPERATORS.contains(&op) {
            causes.push(Cause::not_supported(
                format!("{at}.operator"),
                op,
                OPERATORS,
            ));
        } else if matches!(op, "In" | "NotIn") && values == 0 {
            causes.push(Cause::required(format!("{at}.values")));
        } else if matches!(op, "Exists" | "DoesNotExist") && values > 0 {
            causes.push(Cause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ));
        }
    }
}

pub(in crate::objects) fn validate_budget(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        causes.push(Cause::invalid(
            "spec",
            &spec.to_string(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(v) = min {
        int_or_percent(v, "spec.minAvailable", causes);
    }
    if let Some(v) = max {
        int_or_percent(v, "spec.maxUnavailable", causes);
    }
    if let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) {
        selector(sel, "spec.selector", causes);
    }
    if let Some(p) = spec
        .get("unhealthyPodEvictionPolicy")
        .filter(|v| !v.is_null())
    {
        let p = p.as_str().unwrap_or("");
        if !UNHEALTHY_POLICIES.contains(&p) {
            causes.push(Cause::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                p,
                UNHEALTHY_POLICIES,
            ));
        }
    }
}
