//! Validation as Kubernetes applies it to the fields kubectl shows: DNS-1123 and DNS-1035 names, label keys and values, pod specs, workloads and Services, with field-named causes.

use super::*;
use crate::quantity::Quantity;
use std::collections::BTreeMap;

pub use shoal_fabric::config::{is_dns1123_label, is_dns1123_subdomain};

pub mod policy;
pub mod storage;

/// Is `s` a DNS-1035 label (a DNS-1123 label starting with a letter)?
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

pub(super) const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub(super) const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub(super) const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Is `s` a valid label value (≤ 63, alphanumerics with `-_.` inside)?
pub(super) fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// Is `s` a qualified name (`[prefix/]name`, as label and annotation
/// keys are)?
pub(super) fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Validation common to every kind, then the kind's own.
pub fn validate(res: &Resource, obj: &Value) -> ApiResult<()> {
    let name = name_of(obj);
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else {
        let (ok, msg) = match res.kind {
            "Namespace" => (is_dns1123_label(name), LABEL_MSG),
            "Service" => (is_dns1035_label(name), DNS1035_MSG),
            _ => (is_dns1123_subdomain(name), SUBDOMAIN_MSG),
        };
        if !ok {
            causes.push(Cause::invalid("metadata.name", name, msg));
        }
    }
    for (k, v) in labels_of(obj) {
        if !is_qualified_name(&k) {
            causes.push(Cause::invalid(
                "metadata.labels",
                &k,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        if !is_label_value(&v) {
            causes.push(Cause::invalid(
                "metadata.labels",
                &v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
    }
    if let Some(a) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for k in a.keys() {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    k,
                    "must be a qualified name",
                ));
            }
        }
    }
    validate_kind(res.kind, obj, &mut causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, name, causes))
    }
}

pub(super) fn validate_kind(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    match kind {
        "Pod" => validate_pod_spec(obj.get("spec"), "spec", causes),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" => {
            validate_workload(kind, obj, causes)
        }
        "Job" => {
            validate_workload(kind, obj, causes);
            validate_job(obj, causes);
        }
        "CronJob" => validate_cron_job(obj, causes),
        "Service" => validate_service(obj, causes),
        "RuntimeClass" => validate_runtime_class(obj, causes),
        "PersistentVolume" => storage::validate_persistent_volume(obj, causes),
        "PersistentVolumeClaim" => storage::validate_claim(obj, causes),
        "StorageClass" => storage::validate_storage_class(obj, causes),
        "PodDisruptionBudget" => policy::validate_budget(obj, causes),
        _ => {}
    }
}

/// A Job's counts and policies, as upstream; the fields the Job
/// controller does not act on (per-index back-off limits, success
/// policies) are refused rather than ignored.
pub(super) fn validate_job(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = spec.get(f).and_then(Value::as_i64) {
            let floor = if f == "activeDeadlineSeconds" { 1 } else { 0 };
            if n < floor {
                let why = if floor == 1 {
                    "must be greater than 0"
                } else {
                    "must be greater than or equal to 0"
                };
                causes.push(Cause::invalid(format!("spec.{f}"), &n.to_string(), why));
            }
        }
    }
    match spec.get("completionMode").and_then(Value::as_str) {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.get("completions").and_then(Value::as_i64).is_none() {
                causes.push(Cause::required("spec.completions"));
            }
        }
        Some(m) => causes.push(Cause::not_supported(
            "spec.completionMode",
            m,
            &["NonIndexed", "Indexed"],
        )),
    }
    for f in ["backoffLimitPerIndex", "maxFailedIndexes", "successPolicy"] {
        if spec.get(f).is_some_and(|v| !v.is_null()) {
            causes.push(Cause::invalid(
                format!("spec.{f}"),
                &spec[f].to_string(),
                "not supported by shoal's Job controller",
            ));
        }
    }
    if let Some(rules) = spec
        .pointer("/podFailurePolicy/rules")
        .and_then(Value::as_array)
    {
        if spec.pointer("/template/spec/restartPolicy") != Some(&Value::from("Never")) {
            causes.push(Cause::invalid(
                "spec.template.spec.restartPolicy",
                spec.pointer("/template/spec/restartPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
        for (i, r) in rules.iter().enumerate() {
            let action = r.get("action").and_then(Value::as_str).unwrap_or("");
            if !["FailJob", "Ignore", "Count"].contains(&action) {
                causes.push(Cause::not_supported(
                    format!("spec.podFailurePolicy.rules[{i}].action"),
                    action,
                    &["Count", "FailJob", "Ignore"],
                ));
            }
            if r.get("onExitCodes").is_none() && r.get("onPodConditions").is_none() {
                causes.push(Cause::required(format!("spec.podFailurePolicy.rules[{i}]")));
            }
        }
    }
}

/// A CronJob's schedule and time zone parse, its policies are upstream's,
/// and its job template is a valid Job's (causes under
/// `spec.jobTemplate.spec`).
pub(super) fn validate_cron_job(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let zone = spec.get("timeZone").and_then(Value::as_str);
    match spec.get("schedule").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.schedule")),
        Some(s) => {
            if let Err(why) = crate::cron::parse(s, zone) {
                let field = if why.starts_with("unknown time zone") {
                    "spec.timeZone"
                } else {
                    "spec.schedule"
                };
                let value = if field == "spec.timeZone" {
                    zone.unwrap_or("")
                } else {
                    s
                };
                causes.push(Cause::invalid(field, value, &why));
            }
        }
    }
    if let Some(p) = spec.get("concurrencyPolicy").and_then(Value::as_str) {
        if !["Allow", "Forbid", "Replace"].contains(&p) {
            causes.push(Cause::not_supported(
                "spec.concurrencyPolicy",
                p,
                &["Allow", "Forbid", "Replace"],
            ));
        }
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        if let Some(n) = spec.get(f).and_then(Value::as_i64).filter(|n| *n < 0) {
            causes.push(Cause::invalid(
                format!("spec.{f}"),
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    let job = serde_json::json!({"spec": spec.pointer("/jobTemplate/spec").cloned().unwrap_or(Value::Null)});
    let mut inner = Vec::new();
    validate_workload("Job", &job, &mut inner);
    validate_job(&job, &mut inner);
    for mut c in inner {
        if let Some(rest) = c.field.strip_prefix("spec.") {
            c.field = format!("spec.jobTemplate.spec.{rest}");
        }
        causes.push(c);
    }
}

/// A RuntimeClass names its handler with a DNS-1123 label (upstream's
/// rule: the handler is what the node's runtime is asked for).
pub(super) fn validate_runtime_class(obj: &Value, causes: &mut Vec<Cause>) {
    match obj.get("handler").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("handler")),
        Some(h) if !is_dns1123_label(h) => causes.push(Cause::invalid("handler", h, LABEL_MSG)),
        Some(_) => {}
    }
}

/// The rules an update adds to those of the new object alone: fields
/// that never change once set.
pub(super) fn validate_update(kind: &str, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    storage::validate_storage_update(kind, old, new, causes);
    if kind == "RuntimeClass" && old.get("handler") != new.get("handler") {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "handler".into(),
            message: format!(
                "Invalid value: {}: field is immutable",
                new.get("handler").unwrap_or(&Value::Null)
            ),
        });
    }
}

pub(super) fn validate_workload(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64) {
        if r < 0 {
            causes.push(Cause::invalid(
                "spec.replicas",
                &r.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    let template = spec.and_then(|s| s.get("template"));
    let selector = spec.and_then(|s| s.get("selector"));
    match selector {
        None | Some(Value::Null) if kind != "Job" => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let empty = sel.as_object().is_none_or(|m| {
                m.get("matchLabels")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                    && m.get("matchExpressions")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty)
            });
            if empty && kind != "Job" {
                causes.push(Cause::invalid(
                    "spec.selector",
                    "{}",
                    "empty selector is invalid for deployment",
                ));
            } else if let Some(t) = template {
                if !label_selector_matches(sel, &labels_of(t)) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &serde_json::to_string(&labels_of(t)).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        _ => {}
    }
    match template {
        None | Some(Value::Null) => causes.push(Cause::required("spec.template")),
        Some(t) => {
            // A StatefulSet's claim templates are its pods' volumes too.
            let mut spec = t.get("spec").cloned();
            let claims = obj
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array);
            if let (Some(Value::Object(m)), Some(claims)) = (spec.as_mut(), claims) {
                let vols = m.entry("volumes").or_insert_with(|| json!([]));
                if let Some(vols) = vols.as_array_mut() {
                    for c in claims {
                        let name = c.pointer("/metadata/name").cloned().unwrap_or(json!(""));
                        vols.retain(|v| v.get("name") != Some(&name));
                        vols.push(
                            json!({"name": name, "persistentVolumeClaim": {"claimName": name}}),
                        );
                    }
                }
            }
            validate_pod_spec(spec.as_ref(), "spec.template.spec", causes);
            let policy = t.pointer("/spec/restartPolicy").and_then(Value::as_str);
            let allowed: &[&str] = if kind == "Job" {
                &["OnFailure", "Never"]
            } else {
                &["Always"]
            };
            if let Some(p) = policy {
                if !allowed.contains(&p) {
                    causes.push(Cause::not_supported(
                        "spec.template.spec.restartPolicy",
                        p,
                        allowed,
                    ));
                }
            }
        }
    }
}

pub(super) fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(at));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        causes.push(Cause::required(format!("{at}.containers")));
    }
    // Volume names become directory names on the node: DNS-1123 labels
    // only (a volume named "/" must never reach a kubelet).
    let mut volumes = std::collections::BTreeSet::new();
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{at}.volumes[{i}].name");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(p));
        } else if !is_dns1123_label(name) {
            causes.push(Cause::invalid(p, name, LABEL_MSG));
        } else if !volumes.insert(name.to_string()) {
            causes.push(Cause::duplicate(p, name));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let p = format!("{at}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                causes.push(Cause::required(format!("{p}.name")));
            } else if !is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{p}.name"), name, LABEL_MSG));
            } else if !seen.insert(name.to_string()) {
                causes.push(Cause::duplicate(format!("{p}.name"), name));
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                causes.push(Cause::required(format!("{p}.image")));
            }
            validate_resources(c.get("resources"), &format!("{p}.resources"), causes);
            for (j, m) in c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                if !volumes.contains(name) {
                    causes.push(Cause::not_found(
                        format!("{p}.volumeMounts[{j}].name"),
                        name,
                    ));
                }
            }
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for (j, port) in ports.iter().enumerate() {
                    let n = port
                        .get("containerPort")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if !(1..=65535).contains(&n) {
                        causes.push(Cause::invalid(
                            format!("{p}.ports[{j}].containerPort"),
                            &n.to_string(),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                    check_protocol(port, &format!("{p}.ports[{j}].protocol"), causes);
                }
            }
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        const POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
        if !POLICIES.contains(&p) {
            causes.push(Cause::not_supported(
                format!("{at}.restartPolicy"),
                p,
                POLICIES,
            ));
        }
    }
}

/// A container's `resources`: every amount a quantity, none negative, and
/// no request above its limit (upstream's messages).
fn validate_resources(r: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let Some(r) = r else {
        return;
    };
    let mut amounts = [BTreeMap::new(), BTreeMap::new()];
    for (list, out) in ["limits", "requests"].iter().zip(amounts.iter_mut()) {
        let Some(map) = r.get(*list).and_then(Value::as_object) else {
            continue;
        };
        for (name, v) in map {
            let field = format!("{at}.{list}[{name}]");
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            match Quantity::parse(&text) {
                Err(e) => causes.push(Cause::invalid(field, &text, &e.to_string())),
                Ok(q) if q < Quantity::zero(q.format()) => causes.push(Cause::invalid(
                    field,
                    &text,
                    "must be greater than or equal to 0",
                )),
                Ok(q) => {
                    out.insert(name.clone(), (q, text));
                }
            }
        }
    }
    let [limits, requests] = amounts;
    for (name, (request, text)) in &requests {
        if let Some((limit, limit_text)) = limits.get(name) {
            if request > limit {
                causes.push(Cause::invalid(
                    format!("{at}.requests[{name}]"),
                    text,
                    &format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
}

pub(super) fn check_protocol(port: &Value, field: &str, causes: &mut Vec<Cause>) {
    const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
    if let Some(p) = port.get("protocol").and_then(Value::as_str) {
        if !PROTOCOLS.contains(&p) {
            causes.push(Cause::not_supported(field, p, PROTOCOLS));
        }
    }
}

pub(super) fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !TYPES.contains(&ty) {
        causes.push(Cause::not_supported("spec.type", ty, TYPES));
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    if ty != "ExternalName" && ports.is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.ports"));
    }
    let ports = ports.cloned().unwrap_or_default();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let n = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&n) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &n.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        check_protocol(p, &format!("spec.ports[{i}].protocol"), causes);
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        } else if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), name));
        }
    }
}
