//! Pure planning logic of the Deployment controller, modelled on
//! kube-controller-manager's `pkg/controller/deployment` (sync.go, rolling.go,
//! recreate.go, progress.go, util/deployment_util.go). [`plan`] takes a
//! Deployment, the ReplicaSets it controls and the current time, and returns
//! the next step as data ([`Plan`]): a ReplicaSet to create, ReplicaSets to
//! update or delete, Deployment annotations and the status to write. It does
//! no I/O; the caller writes the plan (ReplicaSet updates guarded by their
//! resourceVersion) and calls [`plan`] again whenever the Deployment or one of
//! its ReplicaSets changes, or after [`Plan::requeue_after`].
//!
//! Differences from upstream, all deliberate:
//! - There is no pod list: Recreate waits for old ReplicaSets'
//!   `status.replicas` (and `status.terminatingReplicas`) to reach 0 instead of
//!   inspecting pods.
//! - Adoption/orphaning by selector is the caller's job; ReplicaSets whose
//!   controller ownerReference is not this Deployment's uid are ignored (their
//!   names still count for hash-collision detection).
//! - A pod-template-hash collision with a ReplicaSet we were given bumps
//!   `status.collisionCount` and picks the next hash within the same plan. A
//!   collision only seen at create time (AlreadyExists on an unlisted
//!   ReplicaSet) must be handled by the caller by incrementing
//!   `status.collisionCount` and planning again.
//! - Template equality ignores the pod-template-hash label and treats null,
//!   empty strings, empty lists and empty maps as absent (upstream's semantic
//!   equality treats nil and empty slices/maps alike); quantities are compared
//!   textually.
//! - apps/v1 defaults are applied to missing fields (replicas 1, RollingUpdate
//!   25%/25%, revisionHistoryLimit 10, progressDeadlineSeconds 600).
//! - Where upstream's rolling-update cleanup hits an old ReplicaSet reporting
//!   more available pods than its spec (a scale-down still in flight) it
//!   returns an error and retries; here the plan just stops scaling for this
//!   round (status is still computed).
//! - The deprecated `deprecated.deployment.rollback.to` annotation is not
//!   supported (`kubectl rollout undo` patches the template instead).
//! - Status is computed from the ReplicaSets as updated by this plan (upstream
//!   uses the objects from before its writes; only `unavailableReplicas` can
//!   differ, and upstream converges to the same value on the next sync).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// Revision of a ReplicaSet (and, mirrored, of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a reused (rolled-back-to) ReplicaSet had, comma separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// Deployment replicas when the ReplicaSet was last scaled by the controller.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// Deployment replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// Label added to a ReplicaSet's labels, selector and pod template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Progressing reason: a new ReplicaSet was created.
pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Progressing reason: an existing ReplicaSet was adopted as the new one.
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Progressing reason: the rollout made progress.
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing reason: the rollout completed.
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing reason (status False): no progress within progressDeadlineSeconds.
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing reason (status Unknown): the Deployment is paused.
pub const REASON_PAUSED: &str = "DeploymentPaused";
/// Progressing reason (status Unknown): the Deployment was resumed.
pub const REASON_RESUMED: &str = "DeploymentResumed";
/// Available reason (status True).
pub const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
/// Available reason (status False).
pub const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

const COND_AVAILABLE: &str = "Available";
const COND_PROGRESSING: &str = "Progressing";
const COND_REPLICA_FAILURE: &str = "ReplicaFailure";
const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;
const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Deployment annotations never copied onto ReplicaSets.
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// What the controller should do next for one Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// A new ReplicaSet to create: name `<deployment>-<pod-template-hash>`,
    /// hash label on labels/selector/template, controller ownerReference,
    /// revision/desired-replicas/max-replicas annotations.
    pub create: Option<ReplicaSet>,
    /// Existing ReplicaSets whose spec.replicas, spec.minReadySeconds and/or
    /// annotations change: full updated objects (write them guarded by their
    /// resourceVersion).
    pub update: Vec<ReplicaSet>,
    /// Names of old ReplicaSets to delete (revisionHistoryLimit cleanup).
    pub delete: Vec<String>,
    /// The Deployment's complete new `metadata.annotations`, when they change
    /// (keeps `deployment.kubernetes.io/revision` equal to the new ReplicaSet's).
    pub deployment_annotations: Option<BTreeMap<String, String>>,
    /// The status the Deployment should have; write it when it differs from
    /// the current one. Zero counts are `None`, as the API omits them.
    pub status: DeploymentStatus,
    /// Plan again after this long even if nothing changes (progress-deadline
    /// check of a rollout that is not progressing).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// True when the plan asks for any write against the given Deployment.
    pub fn has_changes(&self, d: &Deployment) -> bool {
        self.create.is_some()
            || !self.update.is_empty()
            || !self.delete.is_empty()
            || self.deployment_annotations.is_some()
            || d.status.as_ref() != Some(&self.status)
    }
}

/// Pod-template hash, as upstream's `ComputeHash`: FNV-32a over a canonical
/// JSON rendering of the template (pod-template-hash label removed, empty
/// values dropped), followed by the collision count as 8 little-endian bytes
/// when present; the decimal value is then mapped onto the safe-encoding
/// alphabet. Stable across runs; templates equal per [`equal_ignore_hash`]
/// get equal hashes. (Not byte-identical to upstream's Go value.)
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut text = String::new();
    write_canonical(&normalized_template(template), &mut text);
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(text.as_bytes());
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        feed(&bytes);
    }
    h.to_string()
        .bytes()
        .map(|b| char::from(HASH_ALPHABET[usize::from(b) % HASH_ALPHABET.len()]))
        .collect()
}

/// Templates equal ignoring the pod-template-hash label (and null/empty
/// values): how the controller recognises the ReplicaSet of the current
/// template, e.g. after `kubectl rollout undo` restored an old template.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized_template(a) == normalized_template(b)
}

/// What `kubectl rollout status` would say: `Ok((message, done))`, or `Err`
/// when the Progressing condition says ProgressDeadlineExceeded.
pub fn rollout_status(d: &Deployment) -> Result<(String, bool), String> {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    if d.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0) {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    if get_condition(&st, COND_PROGRESSING).and_then(|c| c.reason.as_deref())
        == Some(REASON_TIMED_OUT)
    {
        return Err(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        ));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let replicas = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if let Some(want) = d.spec.as_ref().and_then(|s| s.replicas) {
        if updated < want {
            return Ok((
                format!(
                    "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated..."
                ),
                false,
            ));
        }
    }
    if replicas > updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
            false,
        ));
    }
    if available < updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
            ),
            false,
        ));
    }
    Ok((
        format!("deployment \"{name}\" successfully rolled out"),
        true,
    ))
}

/// Plans the next step for `d`, given the ReplicaSets it controls (with
/// their current spec and status) and the current time. `Err` only for
/// malformed input (missing name/uid/spec, empty or non-matching selector,
/// template without spec, invalid maxSurge/maxUnavailable, ...).
pub fn plan(d: &Deployment, owned: &[ReplicaSet], now: jiff::Timestamp) -> Result<Plan, String> {
    let cx = Ctx::new(d, now)?;
    let mut st = State::new(&cx, d, owned)?;
    if d.metadata.deletion_timestamp.is_some() {
        // syncStatusOnly
        st.get_new_rs(&cx, false)?;
        st.sync_deployment_status(&cx);
        return Ok(st.into_plan(d));
    }
    st.check_paused_conditions(&cx);
    if cx.paused {
        st.get_new_rs(&cx, false)?;
        st.scale(&cx);
        st.cleanup_deployment(&cx);
        st.sync_deployment_status(&cx);
        return Ok(st.into_plan(d));
    }
    st.get_new_rs(&cx, false)?;
    if st.is_scaling_event(&cx) {
        st.scale(&cx);
        st.sync_deployment_status(&cx);
        return Ok(st.into_plan(d));
    }
    match cx.strategy {
        Strategy::Recreate => st.rollout_recreate(&cx)?,
        Strategy::Rolling { .. } => st.rollout_rolling(&cx)?,
    }
    Ok(st.into_plan(d))
}

// ---------------------------------------------------------------------------
// Deployment context (validated spec with defaults applied)

#[derive(Clone, Copy, Debug, PartialEq)]
enum Strategy {
    Recreate,
    Rolling {
        max_surge: i64,
        max_unavailable: i64,
    },
}

struct Ctx<'a> {
    name: &'a str,
    namespace: Option<&'a str>,
    uid: &'a str,
    generation: i64,
    replicas: i64,
    paused: bool,
    strategy: Strategy,
    history_limit: Option<i64>,
    progress_deadline: Option<i64>,
    min_ready_seconds: Option<i32>,
    template: &'a PodTemplateSpec,
    template_key: Value,
    selector: &'a LabelSelector,
    annotations: BTreeMap<String, String>,
    now: jiff::Timestamp,
}

impl<'a> Ctx<'a> {
    fn new(d: &'a Deployment, now: jiff::Timestamp) -> Result<Self, String> {
        let name = d
            .metadata
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or("deployment has no metadata.name")?;
        let uid = d
            .metadata
            .uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("deployment {name:?} has no metadata.uid"))?;
        let spec = d
            .spec
            .as_ref()
            .ok_or_else(|| format!("deployment {name:?} has no spec"))?;
        let replicas = i64::from(spec.replicas.unwrap_or(1));
        if replicas < 0 {
            return Err(format!("deployment {name:?}: spec.replicas must be >= 0"));
        }
        let selector = &spec.selector;
        let no_labels = selector.match_labels.as_ref().is_none_or(|m| m.is_empty());
        let no_exprs = selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
        if no_labels && no_exprs {
            return Err(format!(
                "deployment {name:?}: spec.selector is missing or empty"
            ));
        }
        let template = &spec.template;
        if template.spec.is_none() {
            return Err(format!(
                "deployment {name:?}: spec.template.spec is missing"
            ));
        }
        let empty = BTreeMap::new();
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .unwrap_or(&empty);
        if !selector_matches(selector, labels)? {
            return Err(format!(
                "deployment {name:?}: spec.selector does not match spec.template.metadata.labels"
            ));
        }
        let strategy = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Strategy::Recreate,
            None | Some("RollingUpdate") => {
                let ru = spec
                    .strategy
                    .as_ref()
                    .and_then(|s| s.rolling_update.as_ref());
                let pct = IntOrString::String("25%".into());
                let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&pct);
                let unavail = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&pct);
                let (max_surge, max_unavailable) = resolve_fenceposts(surge, unavail, replicas)?;
                Strategy::Rolling {
                    max_surge,
                    max_unavailable,
                }
            }
            Some(other) => {
                return Err(format!(
                    "deployment {name:?}: unsupported strategy type {other:?}"
                ));
            }
        };
        let history_limit = match spec.revision_history_limit {
            None => Some(10),
            Some(i32::MAX) => None,
            Some(n) if n < 0 => {
                return Err(format!(
                    "deployment {name:?}: spec.revisionHistoryLimit must be >= 0"
                ));
            }
            Some(n) => Some(i64::from(n)),
        };
        let progress_deadline = match spec.progress_deadline_seconds {
            None => Some(600),
            Some(i32::MAX) => None,
            Some(n) => Some(i64::from(n)),
        };
        Ok(Ctx {
            name,
            namespace: d.metadata.namespace.as_deref(),
            uid,
            generation: d.metadata.generation.unwrap_or(0),
            replicas,
            paused: spec.paused.unwrap_or(false),
            strategy,
            history_limit,
            progress_deadline,
            min_ready_seconds: spec.min_ready_seconds,
            template,
            template_key: normalized_template(template),
            selector,
            annotations: d.metadata.annotations.clone().unwrap_or_default(),
            now,
        })
    }

    fn max_surge(&self) -> i64 {
        match self.strategy {
            Strategy::Rolling { max_surge, .. } => max_surge,
            Strategy::Recreate => 0,
        }
    }

    fn max_unavailable(&self) -> i64 {
        match self.strategy {
            Strategy::Rolling { .. } if self.replicas == 0 => 0,
            Strategy::Rolling {
                max_unavailable, ..
            } => max_unavailable.min(self.replicas),
            Strategy::Recreate => 0,
        }
    }

    fn condition(
        &self,
        type_: &str,
        status: &str,
        reason: &str,
        msg: String,
    ) -> DeploymentCondition {
        DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(msg),
            last_update_time: Some(Time(self.now)),
            last_transition_time: Some(Time(self.now)),
        }
    }

    fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.name.into(),
            uid: self.uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// Upstream's `ResolveFenceposts`: surge rounds up, unavailable rounds down,
/// both zero → maxUnavailable 1.
fn resolve_fenceposts(
    surge: &IntOrString,
    unavailable: &IntOrString,
    desired: i64,
) -> Result<(i64, i64), String> {
    let s = scaled_value(surge, desired, true)?;
    let mut u = scaled_value(unavailable, desired, false)?;
    if s == 0 && u == 0 {
        u = 1;
    }
    Ok((s, u))
}

fn scaled_value(v: &IntOrString, total: i64, round_up: bool) -> Result<i64, String> {
    let n = match v {
        IntOrString::Int(i) => i64::from(*i),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: {s:?} is not a percentage")
                })?;
            if p < 0 {
                return Err(format!("invalid percentage {s:?}: must be >= 0"));
            }
            let prod = p.saturating_mul(total);
            if round_up {
                (prod + 99) / 100
            } else {
                prod / 100
            }
        }
    };
    if n < 0 {
        return Err(format!("invalid value {n}: must be >= 0"));
    }
    Ok(n)
}

fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let val = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => val.is_some_and(|v| values.contains(v)),
            "NotIn" => val.is_none_or(|v| !values.contains(v)),
            "Exists" => val.is_some(),
            "DoesNotExist" => val.is_none(),
            op => return Err(format!("invalid label selector operator {op:?}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------
// Template normalisation

fn normalized_template(t: &PodTemplateSpec) -> Value {
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
fn prune(v: &mut Value) -> bool {
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
fn write_canonical(v: &Value, out: &mut String) {
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

fn rs_name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

fn spec_replicas(rs: &ReplicaSet) -> i64 {
    i64::from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

fn status_replicas(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().map_or(0, |s| i64::from(s.replicas))
}

fn status_ready(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    )
}

fn status_available(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    )
}

fn status_terminating(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.terminating_replicas)
            .unwrap_or(0),
    )
}

fn annotation<'r>(rs: &'r ReplicaSet, key: &str) -> Option<&'r str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i64> {
    annotation(rs, key)?.parse::<i32>().ok().map(i64::from)
}

/// Upstream `Revision`: missing → 0, unparsable → Err.
fn revision(rs: &ReplicaSet) -> Result<i64, ()> {
    match annotation(rs, REVISION_ANNOTATION) {
        None => Ok(0),
        Some(s) => s.parse().map_err(|_| ()),
    }
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb).then_with(|| rs_name(a).cmp(rs_name(b)))
}

fn to_i32(v: i64) -> i32 {
    v.clamp(0, i64::from(i32::MAX)) as i32
}

fn set_spec_replicas(rs: &mut ReplicaSet, v: i64) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(to_i32(v));
}

fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i64, max: i64) -> bool {
    annotation(rs, DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i64, max: i64) -> bool {
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
fn set_new_rs_annotations(cx: &Ctx, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
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

fn get_condition<'s>(st: &'s DeploymentStatus, type_: &str) -> Option<&'s DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn condition_reason<'s>(st: &'s DeploymentStatus, type_: &str) -> Option<&'s str> {
    get_condition(st, type_).and_then(|c| c.reason.as_deref())
}

/// Upstream `SetDeploymentCondition`: no-op when status and reason are
/// unchanged; keeps lastTransitionTime when only the reason changes.
fn set_condition(st: &mut DeploymentStatus, mut cond: DeploymentCondition) {
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

fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = st.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
        if c.is_empty() {
            st.conditions = None;
        }
    }
}

fn count(v: Option<i32>) -> i64 {
    i64::from(v.unwrap_or(0))
}

fn nonzero(v: i64) -> Option<i32> {
    (v != 0).then(|| to_i32(v))
}

fn deployment_complete(cx: &Ctx, st: &DeploymentStatus) -> bool {
    count(st.updated_replicas) == cx.replicas
        && count(st.replicas) == cx.replicas
        && count(st.available_replicas) == cx.replicas
        && st.observed_generation.unwrap_or(0) >= cx.generation
}

fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Nanoseconds from `now` until the Progressing condition's deadline
/// (lastUpdateTime + progressDeadlineSeconds); a missing time counts as long ago.
fn nanos_to_deadline(cx: &Ctx, cond: &DeploymentCondition, deadline_secs: i64) -> i128 {
    match &cond.last_update_time {
        Some(t) => {
            t.0.as_nanosecond() + i128::from(deadline_secs) * 1_000_000_000 - cx.now.as_nanosecond()
        }
        None => i128::MIN / 2,
    }
}

// ---------------------------------------------------------------------------
// Working state of one sync

struct State {
    rss: Vec<ReplicaSet>,
    keys: Vec<Value>,
    dirty: BTreeSet<usize>,
    created: Option<usize>,
    new: Option<usize>,
    /// The Deployment's status as read (for progress comparisons).
    orig_status: DeploymentStatus,
    /// The Deployment's status as mutated during the sync.
    status: DeploymentStatus,
    annotations: BTreeMap<String, String>,
    all_names: BTreeSet<String>,
    deletes: Vec<String>,
    requeue: Option<Duration>,
}

impl State {
    fn new(cx: &Ctx, d: &Deployment, given: &[ReplicaSet]) -> Result<Self, String> {
        let mut rss = Vec::new();
        let mut all_names = BTreeSet::new();
        for rs in given {
            let name = rs_name(rs);
            if name.is_empty() {
                return Err("ReplicaSet without metadata.name".into());
            }
            let controlled = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == cx.uid);
            if !all_names.insert(name.to_string()) && controlled {
                return Err(format!("ReplicaSet {name:?} given twice"));
            }
            if !controlled {
                continue;
            }
            if rs.spec.is_none() {
                return Err(format!("ReplicaSet {name:?} has no spec"));
            }
            rss.push(rs.clone());
        }
        let keys = rss
            .iter()
            .map(
                |rs| match rs.spec.as_ref().and_then(|s| s.template.as_ref()) {
                    Some(t) => normalized_template(t),
                    None => Value::Null,
                },
            )
            .collect();
        let status = d.status.clone().unwrap_or_default();
        let mut st = State {
            rss,
            keys,
            dirty: BTreeSet::new(),
            created: None,
            new: None,
            orig_status: status.clone(),
            status,
            annotations: cx.annotations.clone(),
            all_names,
            deletes: Vec::new(),
            requeue: None,
        };
        // FindNewReplicaSet: oldest ReplicaSet whose template matches.
        let mut order: Vec<usize> = (0..st.rss.len()).collect();
        order.sort_by(|&a, &b| by_creation(&st.rss[a], &st.rss[b]));
        st.new = order.into_iter().find(|&i| st.keys[i] == cx.template_key);
        Ok(st)
    }

    fn into_plan(self, d: &Deployment) -> Plan {
        let orig = d.metadata.annotations.clone().unwrap_or_default();
        Plan {
            create: self.created.map(|i| self.rss[i].clone()),
            update: self.dirty.iter().map(|&i| self.rss[i].clone()).collect(),
            delete: self.deletes,
            deployment_annotations: (self.annotations != orig).then_some(self.annotations),
            status: self.status,
            requeue_after: self.requeue,
        }
    }

    fn mark(&mut self, i: usize) {
        if self.created != Some(i) {
            self.dirty.insert(i);
        }
    }

    fn all(&self) -> Vec<usize> {
        (0..self.rss.len()).collect()
    }

    fn olds(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|&i| Some(i) != self.new)
            .collect()
    }

    fn active_olds_by_creation(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|&i| spec_replicas(&self.rss[i]) > 0)
            .collect();
        v.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        v
    }

    fn sum(&self, idx: &[usize], f: fn(&ReplicaSet) -> i64) -> i64 {
        idx.iter().map(|&i| f(&self.rss[i])).sum()
    }

    fn set_deployment_revision(&mut self, rev: &str) {
        if self
            .annotations
            .get(REVISION_ANNOTATION)
            .map_or("", String::as_str)
            != rev
        {
            self.annotations
                .insert(REVISION_ANNOTATION.into(), rev.into());
        }
    }

    /// Upstream `getNewReplicaSet` (+ revision sync of the existing one).
    fn get_new_rs(&mut self, cx: &Ctx, create: bool) -> Result<(), String> {
        let max_old = self
            .olds()
            .iter()
            .filter_map(|&i| revision(&self.rss[i]).ok())
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(n) = self.new {
            let mut rs = self.rss[n].clone();
            let mut changed = set_new_rs_annotations(cx, &mut rs, new_revision, true);
            let spec = rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds.unwrap_or(0) != cx.min_ready_seconds.unwrap_or(0) {
                spec.min_ready_seconds = cx.min_ready_seconds;
                changed = true;
            }
            if changed {
                self.rss[n] = rs;
                self.mark(n);
            }
            let rev = annotation(&self.rss[n], REVISION_ANNOTATION)
                .unwrap_or_default()
                .to_string();
            self.set_deployment_revision(&rev);
            if cx.progress_deadline.is_some()
                && get_condition(&self.status, COND_PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set \"{}\"", rs_name(&self.rss[n]));
                set_condition(
                    &mut self.status,
                    cx.condition(COND_PROGRESSING, "True", REASON_FOUND_NEW_RS, msg),
                );
            }
            return Ok(());
        }
        if !create {
            return Ok(());
        }
        let mut collision = self.status.collision_count;
        let mut hash = pod_template_hash(cx.template, collision);
        let mut name = format!("{}-{}", cx.name, hash);
        let mut tries = 0;
        while self.all_names.contains(&name) {
            // Same name, different template: a hash collision.
            tries += 1;
            if tries > 100 {
                return Err(format!(
                    "cannot find a free ReplicaSet name for {:?}",
                    cx.name
                ));
            }
            collision = Some(
                collision
                    .unwrap_or(0)
                    .checked_add(1)
                    .ok_or("status.collisionCount overflow")?,
            );
            hash = pod_template_hash(cx.template, collision);
            name = format!("{}-{}", cx.name, hash);
        }
        self.status.collision_count = collision;

        let mut template = cx.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = cx.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: cx.namespace.map(String::from),
                labels,
                owner_references: Some(vec![cx.controller_ref()]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: cx.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all_spec = self.sum(&self.all(), spec_replicas);
        set_spec_replicas(&mut rs, new_rs_new_replicas(cx, all_spec, 0));
        set_new_rs_annotations(cx, &mut rs, new_revision, false);
        self.rss.push(rs);
        self.keys.push(cx.template_key.clone());
        let idx = self.rss.len() - 1;
        self.new = Some(idx);
        self.created = Some(idx);
        self.all_names.insert(name.clone());
        self.set_deployment_revision(&new_revision.to_string());
        if cx.progress_deadline.is_some() {
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut self.status,
                cx.condition(COND_PROGRESSING, "True", REASON_NEW_RS_CREATED, msg),
            );
        }
        Ok(())
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`.
    fn scale_and_record(&mut self, cx: &Ctx, i: usize, new_scale: i64) -> bool {
        if spec_replicas(&self.rss[i]) == new_scale {
            return false;
        }
        self.scale_replica_set(cx, i, new_scale)
    }

    /// Upstream `scaleReplicaSet`: also refreshes desired/max-replicas
    /// annotations; returns whether the size changed.
    fn scale_replica_set(&mut self, cx: &Ctx, i: usize, new_scale: i64) -> bool {
        let desired = cx.replicas;
        let max = cx.replicas + cx.max_surge();
        let size_needs = spec_replicas(&self.rss[i]) != new_scale;
        if size_needs || replicas_annotations_need_update(&self.rss[i], desired, max) {
            set_spec_replicas(&mut self.rss[i], new_scale);
            set_replicas_annotations(&mut self.rss[i], desired, max);
            self.mark(i);
        }
        size_needs
    }

    fn is_scaling_event(&self, cx: &Ctx) -> bool {
        self.all().into_iter().any(|i| {
            let rs = &self.rss[i];
            spec_replicas(rs) > 0
                && int_annotation(rs, DESIRED_REPLICAS_ANNOTATION).is_some_and(|d| d != cx.replicas)
        })
    }

    fn find_active_or_latest(&self) -> Option<usize> {
        let mut olds = self.olds();
        if self.new.is_none() && olds.is_empty() {
            return None;
        }
        olds.sort_by(|&a, &b| by_creation(&self.rss[b], &self.rss[a]));
        let mut all = olds.clone();
        all.extend(self.new);
        let active: Vec<usize> = all
            .into_iter()
            .filter(|&i| spec_replicas(&self.rss[i]) > 0)
            .collect();
        match active.len() {
            0 => self.new.or(olds.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    fn is_saturated(&self, cx: &Ctx) -> bool {
        let Some(n) = self.new else { return false };
        let rs = &self.rss[n];
        int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == Some(cx.replicas)
            && spec_replicas(rs) == cx.replicas
            && status_available(rs) == cx.replicas
    }

    /// Upstream `scale`: scaling event or paused deployment, including
    /// proportional scaling of several active ReplicaSets.
    fn scale(&mut self, cx: &Ctx) {
        if let Some(i) = self.find_active_or_latest() {
            if spec_replicas(&self.rss[i]) != cx.replicas {
                self.scale_and_record(cx, i, cx.replicas);
            }
            return;
        }
        if self.is_saturated(cx) {
            for i in self.active_olds_by_creation() {
                self.scale_and_record(cx, i, 0);
            }
            return;
        }
        if !matches!(cx.strategy, Strategy::Rolling { .. }) {
            return;
        }
        let mut active: Vec<usize> = self
            .all()
            .into_iter()
            .filter(|&i| spec_replicas(&self.rss[i]) > 0)
            .collect();
        let current = self.sum(&active, spec_replicas);
        let allowed = if cx.replicas > 0 {
            cx.replicas + cx.max_surge()
        } else {
            0
        };
        let to_add = allowed - current;
        let rss = &self.rss;
        match to_add.cmp(&0) {
            // Larger first; on ties newer first when scaling up, older first when down.
            Ordering::Greater => active.sort_by(|&a, &b| {
                spec_replicas(&rss[b])
                    .cmp(&spec_replicas(&rss[a]))
                    .then_with(|| by_creation(&rss[b], &rss[a]))
            }),
            Ordering::Less => active.sort_by(|&a, &b| {
                spec_replicas(&rss[b])
                    .cmp(&spec_replicas(&rss[a]))
                    .then_with(|| by_creation(&rss[a], &rss[b]))
            }),
            Ordering::Equal => {}
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for &i in &active {
            let size = spec_replicas(&self.rss[i]);
            if to_add != 0 {
                let p = self.proportion(cx, i, to_add, added);
                sizes.push(size + p);
                added += p;
            } else {
                sizes.push(size);
            }
        }
        for (k, &i) in active.iter().enumerate() {
            if k == 0 && to_add != 0 {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_replica_set(cx, i, sizes[k]);
        }
    }

    /// Upstream `GetReplicaSetProportion`.
    fn proportion(&self, cx: &Ctx, i: usize, to_add: i64, added: i64) -> i64 {
        let rs = &self.rss[i];
        let size = spec_replicas(rs);
        if size == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = if cx.replicas == 0 {
            -size
        } else {
            let max_now = cx.replicas + cx.max_surge();
            let before = match int_annotation(rs, MAX_REPLICAS_ANNOTATION) {
                Some(v) if v != 0 => v,
                _ => count(self.orig_status.replicas),
            };
            if before == 0 {
                0
            } else {
                ((size * max_now) as f64 / before as f64).round() as i64 - size
            }
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn rollout_rolling(&mut self, cx: &Ctx) -> Result<(), String> {
        self.get_new_rs(cx, true)?;
        if self.reconcile_new_rs(cx) || self.reconcile_old_rss(cx) {
            self.sync_rollout_status(cx);
            return Ok(());
        }
        if deployment_complete(cx, &self.status) {
            self.cleanup_deployment(cx);
        }
        self.sync_rollout_status(cx);
        Ok(())
    }

    fn reconcile_new_rs(&mut self, cx: &Ctx) -> bool {
        let Some(n) = self.new else { return false };
        let size = spec_replicas(&self.rss[n]);
        match size.cmp(&cx.replicas) {
            Ordering::Equal => false,
            Ordering::Greater => self.scale_and_record(cx, n, cx.replicas),
            Ordering::Less => {
                let all = self.sum(&self.all(), spec_replicas);
                let target = new_rs_new_replicas(cx, all, size);
                self.scale_and_record(cx, n, target)
            }
        }
    }

    fn reconcile_old_rss(&mut self, cx: &Ctx) -> bool {
        let Some(n) = self.new else { return false };
        let olds = self.active_olds_by_creation();
        if self.sum(&olds, spec_replicas) == 0 {
            return false;
        }
        let all_pods = self.sum(&self.all(), spec_replicas);
        let min_available = cx.replicas - cx.max_unavailable();
        let new_unavailable = spec_replicas(&self.rss[n]) - status_available(&self.rss[n]);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // Unhealthy replicas first, otherwise they would block the rollout.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let size = spec_replicas(&self.rss[i]);
            let available = status_available(&self.rss[i]);
            if size == 0 || size == available {
                continue;
            }
            if available > size {
                // Scale-down in flight; upstream errors out and retries.
                return cleaned > 0;
            }
            let c = (max_scaled_down - cleaned).min(size - available);
            self.scale_and_record(cx, i, size - c);
            cleaned += c;
        }
        // Then by availability.
        let available = self.sum(&self.all(), status_available);
        let mut scaled = 0;
        if available > min_available {
            let target = available - min_available;
            for &i in &olds {
                if scaled >= target {
                    break;
                }
                let size = spec_replicas(&self.rss[i]);
                if size == 0 {
                    continue;
                }
                let c = size.min(target - scaled);
                self.scale_and_record(cx, i, size - c);
                scaled += c;
            }
        }
        cleaned + scaled > 0
    }

    fn rollout_recreate(&mut self, cx: &Ctx) -> Result<(), String> {
        self.get_new_rs(cx, false)?;
        let mut scaled_down = false;
        for i in self.active_olds_by_creation() {
            scaled_down |= self.scale_and_record(cx, i, 0);
        }
        let olds = self.olds();
        let old_running =
            self.sum(&olds, status_replicas) + self.sum(&olds, status_terminating) > 0;
        if scaled_down || old_running {
            self.sync_rollout_status(cx);
            return Ok(());
        }
        if self.new.is_none() {
            self.get_new_rs(cx, true)?;
        }
        if let Some(n) = self.new {
            self.scale_and_record(cx, n, cx.replicas);
        }
        if deployment_complete(cx, &self.status) {
            self.cleanup_deployment(cx);
        }
        self.sync_rollout_status(cx);
        Ok(())
    }

    /// Upstream `checkPausedConditions`.
    fn check_paused_conditions(&mut self, cx: &Ctx) {
        if cx.progress_deadline.is_none() {
            return;
        }
        let reason = condition_reason(&self.status, COND_PROGRESSING);
        if reason == Some(REASON_TIMED_OUT) {
            return;
        }
        let paused_exists = reason == Some(REASON_PAUSED);
        if cx.paused && !paused_exists {
            let c = cx.condition(
                COND_PROGRESSING,
                "Unknown",
                REASON_PAUSED,
                "Deployment is paused".into(),
            );
            set_condition(&mut self.status, c);
        } else if !cx.paused && paused_exists {
            let c = cx.condition(
                COND_PROGRESSING,
                "Unknown",
                REASON_RESUMED,
                "Deployment is resumed".into(),
            );
            set_condition(&mut self.status, c);
        }
    }

    /// Upstream `cleanupDeployment`: delete the oldest revisions beyond
    /// revisionHistoryLimit, only if fully scaled down.
    fn cleanup_deployment(&mut self, cx: &Ctx) {
        let Some(limit) = cx.history_limit else {
            return;
        };
        let mut cleanable: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|&i| self.rss[i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - limit;
        if diff <= 0 {
            return;
        }
        cleanable.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rss[a], &self.rss[b]);
            revision(ra)
                .unwrap_or(0)
                .cmp(&revision(rb).unwrap_or(0))
                .then_with(|| by_creation(ra, rb))
        });
        for &i in cleanable.iter().take(diff as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || self.dirty.contains(&i)
            {
                continue;
            }
            self.deletes.push(rs_name(rs).to_string());
        }
    }

    /// Upstream `calculateStatus`.
    fn calculate_status(&self, cx: &Ctx) -> DeploymentStatus {
        let all = self.all();
        let available = self.sum(&all, status_available);
        let total = self.sum(&all, spec_replicas);
        let updated = self.new.map_or(0, |n| status_replicas(&self.rss[n]));
        let mut st = DeploymentStatus {
            observed_generation: (cx.generation != 0).then_some(cx.generation),
            replicas: nonzero(self.sum(&all, status_replicas)),
            updated_replicas: nonzero(updated),
            ready_replicas: nonzero(self.sum(&all, status_ready)),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone().filter(|c| !c.is_empty()),
            terminating_replicas: None,
        };
        let cond = if available >= cx.replicas - cx.max_unavailable() {
            cx.condition(
                COND_AVAILABLE,
                "True",
                REASON_MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
            )
        } else {
            cx.condition(
                COND_AVAILABLE,
                "False",
                REASON_MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut st, cond);
        st
    }

    fn sync_deployment_status(&mut self, cx: &Ctx) {
        self.status = self.calculate_status(cx);
    }

    /// Upstream `syncRolloutStatus` (+ `requeueStuckDeployment`).
    fn sync_rollout_status(&mut self, cx: &Ctx) {
        let mut st = self.calculate_status(cx);
        if cx.progress_deadline.is_none() {
            remove_condition(&mut st, COND_PROGRESSING);
        }
        let current = get_condition(&self.status, COND_PROGRESSING).cloned();
        let complete_before = count(st.replicas) == count(st.updated_replicas)
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(REASON_NEW_RS_AVAILABLE);
        let rs_name_msg = self.new.map(|n| rs_name(&self.rss[n]).to_string());
        let subject = match &rs_name_msg {
            Some(n) => format!("ReplicaSet \"{n}\""),
            None => format!("Deployment \"{}\"", cx.name),
        };
        if let Some(deadline) = cx.progress_deadline.filter(|_| !complete_before) {
            if deployment_complete(cx, &st) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut st,
                    cx.condition(COND_PROGRESSING, "True", REASON_NEW_RS_AVAILABLE, msg),
                );
            } else if deployment_progressing(&self.orig_status, &st) {
                let msg = format!("{subject} is progressing.");
                let mut c = cx.condition(COND_PROGRESSING, "True", REASON_RS_UPDATED, msg);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut st, COND_PROGRESSING);
                }
                set_condition(&mut st, c);
            } else if let Some(cond) = get_condition(&st, COND_PROGRESSING) {
                let reason = cond.reason.as_deref();
                let timed_out = reason == Some(REASON_TIMED_OUT)
                    || (reason != Some(REASON_NEW_RS_AVAILABLE)
                        && nanos_to_deadline(cx, cond, deadline) < 0);
                if timed_out {
                    let msg = format!("{subject} has timed out progressing.");
                    set_condition(
                        &mut st,
                        cx.condition(COND_PROGRESSING, "False", REASON_TIMED_OUT, msg),
                    );
                }
            }
        }
        // ReplicaFailure: the new ReplicaSet's failures win over old ones'.
        let mut order: Vec<usize> = self.new.into_iter().collect();
        order.extend(self.olds());
        let failure = order.iter().find_map(|&i| {
            self.rss[i]
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == COND_REPLICA_FAILURE)
        });
        match failure {
            Some(f) => set_condition(
                &mut st,
                DeploymentCondition {
                    type_: f.type_.clone(),
                    status: f.status.clone(),
                    reason: f.reason.clone(),
                    message: f.message.clone(),
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time.clone(),
                },
            ),
            None => remove_condition(&mut st, COND_REPLICA_FAILURE),
        }
        self.requeue = None;
        if let (Some(deadline), Some(cond)) =
            (cx.progress_deadline, get_condition(&st, COND_PROGRESSING))
        {
            if !deployment_complete(cx, &st) && cond.reason.as_deref() != Some(REASON_TIMED_OUT) {
                let after = nanos_to_deadline(cx, cond, deadline);
                self.requeue = Some(if after < 1_000_000_000 {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(u64::try_from(after + 1_000_000_000).unwrap_or(u64::MAX))
                });
            }
        }
        self.status = st;
    }
}

/// Upstream `NewRSNewReplicas`, given the sum of all ReplicaSets' spec.replicas.
fn new_rs_new_replicas(cx: &Ctx, all_spec: i64, new_spec: i64) -> i64 {
    match cx.strategy {
        Strategy::Recreate => cx.replicas,
        Strategy::Rolling { max_surge, .. } => {
            let max_total = cx.replicas + max_surge;
            if all_spec >= max_total {
                return new_spec;
            }
            new_spec + (max_total - all_spec).min(cx.replicas - new_spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    // ----- fixtures -----

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn ios(s: &str) -> IntOrString {
        if s.ends_with('%') {
            IntOrString::String(s.into())
        } else {
            IntOrString::Int(s.parse().unwrap())
        }
    }

    fn rolling(surge: &str, unavailable: &str) -> DeploymentStrategy {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(ios(surge)),
                max_unavailable: Some(ios(unavailable)),
            }),
        }
    }

    fn recreate() -> DeploymentStrategy {
        DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        }
    }

    fn deployment(replicas: i32, strategy: DeploymentStrategy) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-web".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                template: template("img:a"),
                strategy: Some(strategy),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn t0() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn image(rs: &ReplicaSet) -> String {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers[0].image.clone())
            .unwrap_or_default()
    }

    fn cond<'a>(d: &'a Deployment, t: &str) -> &'a DeploymentCondition {
        get_condition(d.status.as_ref().unwrap(), t).unwrap_or_else(|| panic!("no {t} condition"))
    }

    // ----- simulation harness: API server + fake RS controller + kubelet -----

    struct Sim {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        now: jiff::Timestamp,
        next_uid: u32,
        creates: usize,
        /// Images whose pods never become available.
        broken: BTreeSet<String>,
        /// Every intermediate state, for failure messages.
        log: Vec<String>,
    }

    impl Sim {
        fn new(d: Deployment) -> Self {
            Sim {
                d,
                rss: vec![],
                now: t0(),
                next_uid: 0,
                creates: 0,
                broken: BTreeSet::new(),
                log: vec![],
            }
        }

        fn spec_mut(&mut self) -> &mut DeploymentSpec {
            self.d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(0) + 1);
            self.d.spec.as_mut().unwrap()
        }

        fn set_template(&mut self, img: &str) {
            self.spec_mut().template = template(img);
        }

        fn rs(&self, img: &str) -> &ReplicaSet {
            self.rss
                .iter()
                .find(|r| image(r) == img)
                .unwrap_or_else(|| panic!("no RS for {img}"))
        }

        /// Calls plan() and applies it like the API server would.
        fn reconcile(&mut self) -> (Plan, bool) {
            let p = plan(&self.d, &self.rss, self.now).expect("plan failed");
            let changed = p.has_changes(&self.d);
            if let Some(c) = &p.create {
                assert!(
                    !self.rss.iter().any(|r| r.metadata.name == c.metadata.name),
                    "create of existing name"
                );
                let mut c = c.clone();
                self.next_uid += 1;
                c.metadata.uid = Some(format!("rs-uid-{}", self.next_uid));
                c.metadata.creation_timestamp = Some(Time(self.now));
                c.metadata.generation = Some(1);
                self.rss.push(c);
                self.creates += 1;
            }
            for u in &p.update {
                let slot = self
                    .rss
                    .iter_mut()
                    .find(|r| r.metadata.name == u.metadata.name)
                    .expect("update of unknown RS");
                let generation = slot.metadata.generation.unwrap_or(0) + 1;
                *slot = u.clone();
                slot.metadata.generation = Some(generation);
            }
            for name in &p.delete {
                let i = self
                    .rss
                    .iter()
                    .position(|r| r.metadata.name.as_ref() == Some(name))
                    .expect("delete of unknown RS");
                assert_eq!(
                    (spec_replicas(&self.rss[i]), status_replicas(&self.rss[i])),
                    (0, 0),
                    "deleting a live RS"
                );
                self.rss.remove(i);
            }
            if let Some(a) = &p.deployment_annotations {
                self.d.metadata.annotations = Some(a.clone());
            }
            self.d.status = Some(p.status.clone());
            self.log.push(format!("plan  {}", self.snapshot()));
            (p, changed)
        }

        /// One pod at a time per RS: the kubelet makes one pending pod
        /// available, then the RS controller creates or deletes one pod
        /// (unavailable ones first).
        fn tick(&mut self) {
            for rs in &mut self.rss {
                let spec = spec_replicas(rs);
                let (mut r, mut a) = (status_replicas(rs), status_available(rs));
                if a < r && !self.broken.contains(&image(rs)) {
                    a += 1;
                }
                if r > spec {
                    if a == r {
                        a -= 1;
                    }
                    r -= 1;
                } else if r < spec {
                    r += 1;
                }
                rs.status = Some(ReplicaSetStatus {
                    replicas: r as i32,
                    ready_replicas: Some(a as i32),
                    available_replicas: Some(a as i32),
                    observed_generation: rs.metadata.generation,
                    ..Default::default()
                });
            }
            self.now = self
                .now
                .checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap();
            self.log.push(format!("tick  {}", self.snapshot()));
        }

        fn snapshot(&self) -> String {
            let rs: Vec<String> = self
                .rss
                .iter()
                .map(|r| {
                    format!(
                        "{}[{}] spec={} pods={} avail={}",
                        image(r),
                        annotation(r, REVISION_ANNOTATION).unwrap_or("?"),
                        spec_replicas(r),
                        status_replicas(r),
                        status_available(r)
                    )
                })
                .collect();
            format!("{} | {:?}", rs.join(", "), rollout_status(&self.d))
        }

        /// (sum spec.replicas, sum status.replicas, sum available)
        fn totals(&self) -> (i64, i64, i64) {
            let a: Vec<usize> = (0..self.rss.len()).collect();
            let f = |g: fn(&ReplicaSet) -> i64| a.iter().map(|&i| g(&self.rss[i])).sum::<i64>();
            (f(spec_replicas), f(status_replicas), f(status_available))
        }

        fn rollout_done(&self) -> bool {
            let img = image(&ReplicaSet {
                spec: Some(ReplicaSetSpec {
                    template: Some(self.d.spec.as_ref().unwrap().template.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            matches!(rollout_status(&self.d), Ok((_, true)))
                && self
                    .rss
                    .iter()
                    .filter(|r| image(r) != img)
                    .all(|r| spec_replicas(r) == 0 && status_replicas(r) == 0)
        }

        /// plan/tick until the rollout is done and a plan changes nothing;
        /// `check` sees every intermediate state. Returns the number of plans.
        fn settle(&mut self, max: usize, check: &mut dyn FnMut(&Sim)) -> usize {
            for step in 1..=max {
                let (_, changed) = self.reconcile();
                check(self);
                if !changed && self.rollout_done() {
                    return step;
                }
                self.tick();
                check(self);
            }
            panic!(
                "did not settle within {max} steps:\n{}",
                self.log.join("\n")
            );
        }
    }

    fn settled(replicas: i32, strategy: DeploymentStrategy) -> Sim {
        let mut sim = Sim::new(deployment(replicas, strategy));
        sim.settle(200, &mut |_| {});
        sim
    }

    // ----- tests -----

    #[test]
    fn hash_is_stable_and_ignores_hash_label_and_empty_values() {
        let a = template("img:a");
        let h = pod_template_hash(&a, None);
        // Golden value: must never change, or every existing ReplicaSet would be replaced.
        assert_eq!(h, "78b9477f6f"); // cross-checked with an independent FNV-1a implementation
        assert!(h.bytes().all(|b| HASH_ALPHABET.contains(&b)));
        let mut b = template("img:a");
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "xyz".into());
        b.spec.as_mut().unwrap().containers[0].env = Some(vec![]);
        b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        assert!(equal_ignore_hash(&a, &b));
        assert_eq!(pod_template_hash(&b, None), h);
        assert!(!equal_ignore_hash(&a, &template("img:b")));
        assert_ne!(pod_template_hash(&template("img:b"), None), h);
        let c1 = pod_template_hash(&a, Some(1));
        assert_ne!(c1, h);
        assert_ne!(c1, pod_template_hash(&a, Some(2)));
        assert_eq!(c1, pod_template_hash(&template("img:a"), Some(1)));
    }

    #[test]
    fn fenceposts_round_like_upstream() {
        let f = |s: &str, u: &str, n| resolve_fenceposts(&ios(s), &ios(u), n).unwrap();
        assert_eq!(f("25%", "25%", 10), (3, 2));
        assert_eq!(f("25%", "25%", 3), (1, 0));
        assert_eq!(f("0", "0", 5), (0, 1));
        assert_eq!(f("0%", "10%", 5), (0, 1)); // 0.5 rounds down to 0, then 1
        assert_eq!(f("50%", "0", 4), (2, 0));
        assert!(resolve_fenceposts(&ios("25%"), &IntOrString::String("abc".into()), 4).is_err());
        assert!(resolve_fenceposts(&IntOrString::Int(-1), &ios("1"), 4).is_err());
    }

    #[test]
    fn first_plan_creates_new_replica_set() {
        let mut d = deployment(3, rolling("25%", "25%"));
        d.metadata.annotations = Some(
            [(
                "kubernetes.io/change-cause".to_string(),
                "initial".to_string(),
            )]
            .into(),
        );
        let p = plan(&d, &[], t0()).unwrap();
        let rs = p.create.expect("creates an RS");
        let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(rs.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        assert_eq!(spec.selector.match_labels.as_ref().unwrap()["app"], "web");
        let tl = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(tl[POD_TEMPLATE_HASH_LABEL], hash);
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Deployment", "web", "uid-web")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let ann = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[REVISION_ANNOTATION], "1");
        assert_eq!(ann[DESIRED_REPLICAS_ANNOTATION], "3");
        assert_eq!(ann[MAX_REPLICAS_ANNOTATION], "4");
        assert_eq!(ann["kubernetes.io/change-cause"], "initial");
        assert!(p.update.is_empty() && p.delete.is_empty());
        assert_eq!(p.deployment_annotations.unwrap()[REVISION_ANNOTATION], "1");
        assert_eq!(p.status.observed_generation, Some(1));
        let mut d2 = d.clone();
        d2.status = Some(p.status);
        let prog = cond(&d2, "Progressing");
        assert_eq!(
            (prog.status.as_str(), prog.reason.as_deref()),
            ("True", Some(REASON_NEW_RS_CREATED))
        );
        assert_eq!(
            prog.message.as_deref(),
            Some(format!("Created new replica set \"web-{hash}\"").as_str())
        );
        let avail = cond(&d2, "Available");
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("False", Some(REASON_MIN_UNAVAILABLE))
        );
    }

    #[test]
    fn settled_deployment_reports_complete_status() {
        let sim = settled(3, rolling("25%", "25%"));
        let st = sim.d.status.as_ref().unwrap();
        assert_eq!(
            (
                st.replicas,
                st.updated_replicas,
                st.ready_replicas,
                st.available_replicas
            ),
            (Some(3), Some(3), Some(3), Some(3))
        );
        assert_eq!(st.unavailable_replicas, None);
        let rs_name = sim.rss[0].metadata.name.clone().unwrap();
        let prog = cond(&sim.d, "Progressing");
        assert_eq!(prog.reason.as_deref(), Some(REASON_NEW_RS_AVAILABLE));
        assert_eq!(
            prog.message.as_deref(),
            Some(format!("ReplicaSet \"{rs_name}\" has successfully progressed.").as_str())
        );
        let avail = cond(&sim.d, "Available");
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("True", Some(REASON_MIN_AVAILABLE))
        );
        assert_eq!(
            rollout_status(&sim.d),
            Ok(("deployment \"web\" successfully rolled out".into(), true))
        );
        // Steady state: planning again changes nothing.
        let p = plan(&sim.d, &sim.rss, sim.now).unwrap();
        assert!(!p.has_changes(&sim.d), "{p:?}");
        assert_eq!(p.requeue_after, None);
    }

    #[test]
    fn rolling_update_table_respects_surge_and_unavailability() {
        // (replicas, maxSurge, maxUnavailable, resolved surge, resolved unavailable)
        let table = [
            (3, "1", "0", 1, 0),
            (3, "0", "1", 0, 1),
            (10, "25%", "25%", 3, 2),
            (5, "2", "2", 2, 2),
            (1, "0", "1", 0, 1),
            (4, "50%", "0", 2, 0),
        ];
        for (r, s, u, surge, unavail) in table {
            let mut sim = settled(r, rolling(s, u));
            assert_eq!(sim.rss.len(), 1);
            sim.set_template("img:b");
            let (max_total, min_avail) = (i64::from(r) + surge, i64::from(r) - unavail);
            let mut violations = Vec::new();
            let mut states = 0;
            let mut last: BTreeMap<String, i64> = BTreeMap::new();
            let bound = 3 * r as usize + 10;
            let steps = sim.settle(bound, &mut |s| {
                states += 1;
                let (spec, pods, avail) = s.totals();
                if spec > max_total || pods > max_total || avail < min_avail {
                    violations.push(format!(
                        "spec={spec} pods={pods} avail={avail}: {}",
                        s.snapshot()
                    ));
                }
                for rs in &s.rss {
                    let (img, now) = (image(rs), spec_replicas(rs));
                    let prev = last.insert(img.clone(), now).unwrap_or(if img == "img:b" {
                        0
                    } else {
                        i64::from(r)
                    });
                    // new RS only grows, old RS only shrinks
                    if (img == "img:b" && now < prev) || (img == "img:a" && now > prev) {
                        violations.push(format!("{img} went {prev} -> {now}"));
                    }
                }
            });
            let ctx = format!(
                "case ({r},{s},{u}) after {steps} steps:\n{}",
                sim.log.join("\n")
            );
            assert!(violations.is_empty(), "{violations:?}\n{ctx}");
            assert!(states >= 2 * steps - 1, "{ctx}");
            assert!(steps <= bound, "{ctx}");
            assert_eq!(sim.creates, 2, "{ctx}");
            assert_eq!(spec_replicas(sim.rs("img:b")), i64::from(r), "{ctx}");
            assert_eq!(spec_replicas(sim.rs("img:a")), 0, "{ctx}");
            assert_eq!(annotation(sim.rs("img:b"), REVISION_ANNOTATION), Some("2"));
            assert_eq!(annotation(sim.rs("img:a"), REVISION_ANNOTATION), Some("1"));
            assert_eq!(
                sim.d.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
                "2"
            );
            assert_eq!(
                cond(&sim.d, "Progressing").reason.as_deref(),
                Some(REASON_NEW_RS_AVAILABLE),
                "{ctx}"
            );
        }
    }

    #[test]
    fn progressing_condition_keeps_transition_time_while_updating() {
        let mut sim = settled(4, rolling("1", "0"));
        sim.set_template("img:b");
        let mut seen = Vec::new();
        sim.settle(60, &mut |s| {
            let c = cond(&s.d, "Progressing").clone();
            if c.reason.as_deref() == Some(REASON_RS_UPDATED) {
                seen.push(c);
            }
        });
        assert!(seen.len() > 3);
        let ltt = &seen[0].last_transition_time;
        assert!(seen
            .iter()
            .all(|c| &c.last_transition_time == ltt && c.status == "True"));
        let first = seen.first().unwrap().last_update_time.clone().unwrap().0;
        let last = seen.last().unwrap().last_update_time.clone().unwrap().0;
        assert!(last > first, "lastUpdateTime advances with progress");
        assert!(seen
            .iter()
            .all(|c| c.message.as_deref().unwrap().ends_with("is progressing.")));
    }

    #[test]
    fn recreate_never_runs_old_and_new_pods_together() {
        let mut sim = settled(3, recreate());
        sim.set_template("img:b");
        let mut overlap = Vec::new();
        sim.settle(40, &mut |s| {
            let old = s
                .rss
                .iter()
                .find(|r| image(r) == "img:a")
                .map_or(0, status_replicas);
            let new = s.rss.iter().find(|r| image(r) == "img:b");
            if old > 0 && new.is_some_and(|n| status_replicas(n) > 0 || spec_replicas(n) > 0) {
                overlap.push(s.snapshot());
            }
        });
        assert!(overlap.is_empty(), "{overlap:?}\n{}", sim.log.join("\n"));
        assert_eq!(spec_replicas(sim.rs("img:b")), 3);
        assert_eq!(spec_replicas(sim.rs("img:a")), 0);
        assert!(sim.rollout_done());
    }

    #[test]
    fn rollback_reuses_old_replica_set_with_new_revision() {
        let mut sim = settled(3, rolling("1", "0"));
        let a_name = sim.rss[0].metadata.name.clone();
        sim.d
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("kubernetes.io/change-cause".into(), "to b".into());
        sim.set_template("img:b");
        sim.settle(60, &mut |_| {});
        assert_eq!(
            annotation(sim.rs("img:b"), "kubernetes.io/change-cause"),
            Some("to b")
        );
        assert_eq!(sim.creates, 2);
        // kubectl rollout undo: template back to A.
        sim.set_template("img:a");
        let (p, _) = sim.reconcile();
        assert!(p.create.is_none(), "rollback must reuse the old RS");
        let a = sim.rs("img:a");
        assert_eq!(a.metadata.name, a_name);
        assert_eq!(annotation(a, REVISION_ANNOTATION), Some("3"));
        assert_eq!(annotation(a, REVISION_HISTORY_ANNOTATION), Some("1"));
        assert_eq!(
            sim.d.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            "3"
        );
        sim.settle(60, &mut |s| assert!(s.totals().0 <= 4));
        assert_eq!(sim.creates, 2);
        assert_eq!(spec_replicas(sim.rs("img:a")), 3);
        assert_eq!(spec_replicas(sim.rs("img:b")), 0);
        assert_eq!(annotation(sim.rs("img:b"), REVISION_ANNOTATION), Some("2"));
        // And forward again: B is reused with revision 4.
        sim.set_template("img:b");
        sim.settle(60, &mut |_| {});
        assert_eq!(sim.creates, 2);
        assert_eq!(annotation(sim.rs("img:b"), REVISION_ANNOTATION), Some("4"));
        assert_eq!(
            annotation(sim.rs("img:b"), REVISION_HISTORY_ANNOTATION),
            Some("2")
        );
    }

    #[test]
    fn revision_history_limit_deletes_oldest_scaled_down_replica_sets() {
        let mut d = deployment(2, rolling("1", "0"));
        d.spec.as_mut().unwrap().revision_history_limit = Some(2);
        let mut sim = Sim::new(d);
        sim.settle(60, &mut |_| {});
        for v in 2..=6 {
            sim.set_template(&format!("img:v{v}"));
            sim.settle(60, &mut |_| {});
            assert!(sim.rss.len() <= 3, "{}", sim.snapshot());
        }
        let mut revs: Vec<String> = sim
            .rss
            .iter()
            .map(|r| annotation(r, REVISION_ANNOTATION).unwrap().to_string())
            .collect();
        revs.sort();
        assert_eq!(revs, ["4", "5", "6"]);
        assert_eq!(
            image(sim.rss.iter().find(|r| spec_replicas(r) == 2).unwrap()),
            "img:v6"
        );
        // Default limit (10) keeps everything here.
        let mut sim = settled(1, rolling("1", "0"));
        for v in 2..=4 {
            sim.set_template(&format!("img:v{v}"));
            sim.settle(60, &mut |_| {});
        }
        assert_eq!(sim.rss.len(), 4);
    }

    #[test]
    fn paused_deployment_scales_but_does_not_roll() {
        let mut sim = settled(3, rolling("25%", "25%"));
        sim.spec_mut().paused = Some(true);
        sim.set_template("img:b");
        for _ in 0..5 {
            let (p, _) = sim.reconcile();
            assert!(p.create.is_none());
            sim.tick();
        }
        assert_eq!(sim.rss.len(), 1);
        let prog = cond(&sim.d, "Progressing");
        assert_eq!(
            (prog.status.as_str(), prog.reason.as_deref()),
            ("Unknown", Some(REASON_PAUSED))
        );
        assert_eq!(
            sim.d.status.as_ref().unwrap().observed_generation,
            sim.d.metadata.generation
        );
        assert_eq!(sim.d.status.as_ref().unwrap().updated_replicas, None);
        assert!(matches!(rollout_status(&sim.d), Ok((_, false))));
        // Scaling still works while paused.
        sim.spec_mut().replicas = Some(5);
        for _ in 0..8 {
            sim.reconcile();
            sim.tick();
        }
        assert_eq!(spec_replicas(sim.rs("img:a")), 5);
        assert_eq!(status_available(sim.rs("img:a")), 5);
        assert_eq!(sim.rss.len(), 1);
        // Resume: the rollout happens.
        sim.spec_mut().paused = Some(false);
        let (_, _) = sim.reconcile();
        assert_eq!(sim.creates, 2);
        sim.settle(60, &mut |s| assert!(s.totals().0 <= 5 + 2));
        assert_eq!(spec_replicas(sim.rs("img:b")), 5);
        assert_eq!(
            cond(&sim.d, "Progressing").reason.as_deref(),
            Some(REASON_NEW_RS_AVAILABLE)
        );
    }

    #[test]
    fn scaling_a_settled_deployment_up_down_and_to_zero() {
        let mut sim = settled(3, rolling("25%", "25%"));
        sim.spec_mut().replicas = Some(5);
        let (p, _) = sim.reconcile();
        assert!(p.create.is_none());
        assert_eq!(p.update.len(), 1);
        let rs = &p.update[0];
        assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(5));
        assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), Some("5"));
        assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), Some("7"));
        sim.settle(30, &mut |_| {});
        assert_eq!(sim.d.status.as_ref().unwrap().available_replicas, Some(5));
        sim.spec_mut().replicas = Some(2);
        sim.settle(30, &mut |_| {});
        assert_eq!(spec_replicas(&sim.rss[0]), 2);
        assert_eq!(sim.d.status.as_ref().unwrap().replicas, Some(2));
        sim.spec_mut().replicas = Some(0);
        sim.settle(30, &mut |_| {});
        assert_eq!(spec_replicas(&sim.rss[0]), 0);
        assert_eq!(sim.d.status.as_ref().unwrap().replicas, None);
        sim.spec_mut().replicas = Some(2);
        sim.settle(30, &mut |_| {});
        assert_eq!(
            (spec_replicas(&sim.rss[0]), sim.rss.len(), sim.creates),
            (2, 1, 1)
        );
    }

    #[test]
    fn proportional_scaling_during_stuck_rollout() {
        // The upstream documentation example: 10 replicas, maxSurge 3,
        // maxUnavailable 2, rollout to an image that never becomes ready.
        let mut sim = settled(10, rolling("3", "2"));
        sim.broken.insert("img:b".into());
        sim.set_template("img:b");
        for _ in 0..20 {
            sim.reconcile();
            sim.tick();
        }
        assert_eq!(
            (
                spec_replicas(sim.rs("img:a")),
                spec_replicas(sim.rs("img:b"))
            ),
            (8, 5),
            "{}",
            sim.log.join("\n")
        );
        sim.spec_mut().replicas = Some(15);
        let (p, _) = sim.reconcile();
        assert!(p.create.is_none());
        assert_eq!(
            (
                spec_replicas(sim.rs("img:a")),
                spec_replicas(sim.rs("img:b"))
            ),
            (11, 7)
        );
        assert_eq!(
            annotation(sim.rs("img:a"), MAX_REPLICAS_ANNOTATION),
            Some("18")
        );
        assert_eq!(
            annotation(sim.rs("img:b"), DESIRED_REPLICAS_ANNOTATION),
            Some("15")
        );
        // Scaling back down removes proportionally too, never below zero.
        sim.spec_mut().replicas = Some(5);
        sim.reconcile();
        let (a, b) = (
            spec_replicas(sim.rs("img:a")),
            spec_replicas(sim.rs("img:b")),
        );
        assert_eq!(a + b, 8);
        assert!(a > b && b > 0, "{a} {b}");
    }

    #[test]
    fn stuck_rollout_exceeds_progress_deadline() {
        let mut d = deployment(3, rolling("1", "0"));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(20);
        let mut sim = Sim::new(d);
        sim.settle(30, &mut |_| {});
        sim.broken.insert("img:b".into());
        sim.set_template("img:b");
        let mut requeues = Vec::new();
        for _ in 0..40 {
            let (p, _) = sim.reconcile();
            requeues.extend(p.requeue_after);
            sim.tick();
        }
        let prog = cond(&sim.d, "Progressing");
        assert_eq!(
            (prog.status.as_str(), prog.reason.as_deref()),
            ("False", Some(REASON_TIMED_OUT))
        );
        assert!(prog
            .message
            .as_deref()
            .unwrap()
            .ends_with("has timed out progressing."));
        assert_eq!(
            rollout_status(&sim.d),
            Err("deployment \"web\" exceeded its progress deadline".into())
        );
        // Old pods keep serving: still available, no old pod was removed.
        assert_eq!(cond(&sim.d, "Available").status, "True");
        assert_eq!(spec_replicas(sim.rs("img:a")), 3);
        assert!(requeues
            .iter()
            .any(|r| *r > Duration::from_secs(1) && *r <= Duration::from_secs(21)));
        // Fixing the template recovers.
        sim.broken.clear();
        sim.set_template("img:c");
        sim.settle(60, &mut |_| {});
        assert_eq!(
            cond(&sim.d, "Progressing").reason.as_deref(),
            Some(REASON_NEW_RS_AVAILABLE)
        );
    }

    #[test]
    fn hash_collision_bumps_collision_count() {
        let d = deployment(2, rolling("1", "0"));
        let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
        // An owned RS that took the name but has another template.
        let mut other = plan(
            &{
                let mut o = d.clone();
                o.spec.as_mut().unwrap().template = template("img:other");
                o
            },
            &[],
            t0(),
        )
        .unwrap()
        .create
        .unwrap();
        other.metadata.name = Some(format!("web-{hash}"));
        other.metadata.creation_timestamp = Some(Time(t0()));
        let p = plan(&d, &[other], t0()).unwrap();
        let created = p.create.unwrap();
        assert_eq!(p.status.collision_count, Some(1));
        let h1 = pod_template_hash(&d.spec.as_ref().unwrap().template, Some(1));
        assert_eq!(created.metadata.name, Some(format!("web-{h1}")));
        assert_eq!(annotation(&created, REVISION_ANNOTATION), Some("2"));
    }

    #[test]
    fn deleting_deployment_only_updates_status() {
        let mut sim = settled(3, rolling("1", "0"));
        sim.d.metadata.deletion_timestamp = Some(Time(sim.now));
        sim.set_template("img:b");
        sim.spec_mut().replicas = Some(7);
        let p = plan(&sim.d, &sim.rss, sim.now).unwrap();
        assert!(p.create.is_none() && p.update.is_empty() && p.delete.is_empty());
        assert_eq!(p.status.observed_generation, sim.d.metadata.generation);
        assert_eq!(p.status.replicas, Some(3));
    }

    #[test]
    fn foreign_replica_sets_are_ignored_and_adopted_ones_found() {
        let mut sim = settled(2, rolling("1", "0"));
        let mut foreign = sim.rss[0].clone();
        foreign.metadata.name = Some("someone-else".into());
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other-uid".into();
        foreign.spec.as_mut().unwrap().template = Some(template("img:b"));
        let mut rss = sim.rss.clone();
        rss.push(foreign);
        sim.set_template("img:b");
        let p = plan(&sim.d, &rss, sim.now).unwrap();
        assert!(p.create.is_some(), "a foreign RS is not the new RS");
        assert!(p
            .update
            .iter()
            .all(|u| u.metadata.name.as_deref() != Some("someone-else")));
        // A matching owned RS with an unparsable revision is still found as the new
        // one (no second create; upstream leaves such a revision alone).
        let mut owned = sim.rss.clone();
        let mut again = p.create.unwrap();
        again.metadata.creation_timestamp = Some(Time(sim.now));
        again
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_ANNOTATION.into(), "not-a-number".into());
        owned.push(again);
        let p = plan(&sim.d, &owned, sim.now).unwrap();
        assert!(p.create.is_none());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = deployment(2, rolling("25%", "25%"));
        let mut cases: Vec<(&str, Deployment)> = Vec::new();
        let mut d = good.clone();
        d.spec = None;
        cases.push(("no spec", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().selector = LabelSelector::default();
        cases.push(("empty selector", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().template = PodTemplateSpec::default();
        cases.push(("empty template", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().template.spec = None;
        cases.push(("template without spec", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().template.metadata = None;
        cases.push(("selector does not match", d));
        let mut d = good.clone();
        d.metadata.name = None;
        cases.push(("no name", d));
        let mut d = good.clone();
        d.metadata.uid = None;
        cases.push(("no uid", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().replicas = Some(-1);
        cases.push(("negative replicas", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().strategy = Some(rolling("25%", "0"));
        d.spec
            .as_mut()
            .unwrap()
            .strategy
            .as_mut()
            .unwrap()
            .rolling_update
            .as_mut()
            .unwrap()
            .max_surge = Some(IntOrString::String("lots".into()));
        cases.push(("bad maxSurge", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().strategy.as_mut().unwrap().type_ = Some("BlueGreen".into());
        cases.push(("bad strategy", d));
        let mut d = good.clone();
        d.spec.as_mut().unwrap().revision_history_limit = Some(-3);
        cases.push(("negative history limit", d));
        for (what, d) in cases {
            assert!(plan(&d, &[], t0()).is_err(), "{what} should be rejected");
        }
        // Owned ReplicaSets without name or spec are rejected too.
        let rs = plan(&good, &[], t0()).unwrap().create.unwrap();
        let mut no_name = rs.clone();
        no_name.metadata.name = None;
        assert!(plan(&good, &[no_name], t0()).is_err());
        let mut no_spec = rs.clone();
        no_spec.spec = None;
        assert!(plan(&good, &[no_spec], t0()).is_err());
        // Odd but valid: no status, garbage annotations, defaults everywhere.
        let mut odd = rs.clone();
        odd.metadata.annotations = Some(
            [
                (DESIRED_REPLICAS_ANNOTATION.to_string(), "x".to_string()),
                (MAX_REPLICAS_ANNOTATION.to_string(), "-".to_string()),
            ]
            .into(),
        );
        let mut d = good.clone();
        d.spec.as_mut().unwrap().strategy = None;
        d.spec.as_mut().unwrap().replicas = None;
        let p = plan(&d, &[odd], t0()).unwrap();
        assert!(p.create.is_none());
    }
}
