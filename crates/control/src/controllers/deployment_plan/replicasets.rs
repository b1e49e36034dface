//! Template normalisation (for the pod-template hash and rollback equality), ReplicaSet accessors and annotations, and Deployment conditions.

use super::*;

// ---------------------------------------------------------------------------
// Template normalisation

pub(super) fn normalized_template(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    prune(&mut v);
    v
}

/// Drops null, "", [] and {} object members (recursively); returns whether
/// the value itself is empty.
pub(super) fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            a.is_empty()
        }
        Value::Object(m) => {
            m.retain(|_, x| !prune(x));
            m.is_empty()
        }
        _ => false,
    }
}

/// JSON with object keys sorted, independent of serde_json's map features.
pub(super) fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                if let Some(x) = m.get(k) {
                    write_canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

// ---------------------------------------------------------------------------
// ReplicaSet accessors

pub(super) fn rs_name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

pub(super) fn spec_replicas(rs: &ReplicaSet) -> i64 {
    i64::from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

pub(super) fn status_replicas(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().map_or(0, |s| i64::from(s.replicas))
}

pub(super) fn status_ready(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    )
}

pub(super) fn status_available(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    )
}

pub(super) fn status_terminating(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.terminating_replicas)
            .unwrap_or(0),
    )
}

pub(super) fn annotation<'r>(rs: &'r ReplicaSet, key: &str) -> Option<&'r str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub(super) fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i64> {
    annotation(rs, key)?.parse::<i32>().ok().map(i64::from)
}

/// Upstream `Revision`: missing → 0, unparsable → Err.
pub(super) fn revision(rs: &ReplicaSet) -> Result<i64, ()> {
    match annotation(rs, REVISION_ANNOTATION) {
        None => Ok(0),
        Some(s) => s.parse().map_err(|_| ()),
    }
}

pub(super) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb).then_with(|| rs_name(a).cmp(rs_name(b)))
}

pub(super) fn to_i32(v: i64) -> i32 {
    v.clamp(0, i64::from(i32::MAX)) as i32
}

pub(super) fn set_spec_replicas(rs: &mut ReplicaSet, v: i64) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(to_i32(v));
}

pub(super) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i64, max: i64) -> bool {
    annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

pub(super) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i64, max: i64) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut updated = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if ann.get(k) != Some(&v) {
            ann.insert(k.into(), v);
            updated = true;
        }
    }
    updated
}

/// Upstream `SetNewReplicaSetAnnotations`.
pub(super) fn set_new_rs_annotations(
    cx: &Ctx,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in &cx.annotations {
        if ANNOTATIONS_TO_SKIP.contains(&k.as_str()) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old_revision = ann.get(REVISION_ANNOTATION).cloned();
    let old_int = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        ann.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
    }
    if let Some(old) = old_revision.filter(|_| old_int < new_revision) {
        // Reusing an old ReplicaSet (rollback): remember its earlier revisions.
        let history = ann
            .get(REVISION_HISTORY_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let parts: Vec<&str> = history.split(',').collect();
        if parts[0].is_empty() {
            ann.insert(REVISION_HISTORY_ANNOTATION.into(), old);
        } else {
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > MAX_REV_HISTORY_LENGTH_IN_CHARS && start < parts.len() {
                total = total.saturating_sub(parts[start].len() + 1);
                start += 1;
            }
            if total <= MAX_REV_HISTORY_LENGTH_IN_CHARS {
                let mut kept: Vec<&str> = parts[start..].to_vec();
                kept.push(&old);
                ann.insert(REVISION_HISTORY_ANNOTATION.into(), kept.join(","));
            }
        }
    }
    if !exists && set_replicas_annotations(rs, cx.replicas, cx.replicas + cx.max_surge()) {
        changed = true;
    }
    changed
}

// ---------------------------------------------------------------------------
// Conditions

pub(super) fn get_condition<'s>(
    st: &'s DeploymentStatus,
    type_: &str,
) -> Option<&'s DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub(super) fn condition_reason<'s>(st: &'s DeploymentStatus, type_: &str) -> Option<&'s str> {
    get_condition(st, type_).and_then(|c| c.reason.as_deref())
}

/// Upstream `SetDeploymentCondition`: no-op when status and reason are
/// unchanged; keeps lastTransitionTime when only the reason changes.
pub(super) fn set_condition(st: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = get_condition(st, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(st, &cond.type_);
    st.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub(super) fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = st.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
        if c.is_empty() {
            st.conditions = None;
        }
    }
}

pub(super) fn count(v: Option<i32>) -> i64 {
    i64::from(v.unwrap_or(0))
}

pub(super) fn nonzero(v: i64) -> Option<i32> {
    (v != 0).then(|| to_i32(v))
}

pub(super) fn deployment_complete(cx: &Ctx, st: &DeploymentStatus) -> bool {
    count(st.updated_replicas) == cx.replicas
        && count(st.replicas) == cx.replicas
        && count(st.available_replicas) == cx.replicas
        && st.observed_generation.unwrap_or(0) >= cx.generation
}

pub(super) fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Nanoseconds from `now` until the Progressing condition's deadline
/// (lastUpdateTime + progressDeadlineSeconds); a missing time counts as long ago.
pub(super) fn nanos_to_deadline(cx: &Ctx, cond: &DeploymentCondition, deadline_secs: i64) -> i128 {
    match &cond.last_update_time {
        Some(t) => {
            t.0.as_nanosecond() + i128::from(deadline_secs) * 1_000_000_000 - cx.now.as_nanosecond()
        }
        None => i128::MIN / 2,
    }
}
