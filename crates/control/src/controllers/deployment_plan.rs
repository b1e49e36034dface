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
//! - The surge counts each ReplicaSet at the larger of its spec and its
//!   `status.replicas` (`sync::pods_held`): upstream counts specs only, so
//!   a new ReplicaSet may scale up before an old one's surplus pod is
//!   deleted, one pod above replicas + maxSurge for a moment.
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

mod replicasets;
mod sync;

use replicasets::*;
use sync::*;

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

/// A Deployment whose Progressing condition says ProgressDeadlineExceeded
/// (`kubectl rollout status` fails with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment \"{name}\" exceeded its progress deadline")]
pub struct DeadlineExceeded {
    pub name: String,
}

/// A Deployment the rules refuse as it is (a missing name or uid, an empty
/// or non-matching selector, a bad maxSurge): why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDeployment(pub String);

/// What `kubectl rollout status` would say: `Ok((message, done))`, or `Err`
/// when the Progressing condition says ProgressDeadlineExceeded.
pub fn rollout_status(d: &Deployment) -> Result<(String, bool), DeadlineExceeded> {
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
        return Err(DeadlineExceeded {
            name: name.to_string(),
        });
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
pub fn plan(
    d: &Deployment,
    owned: &[ReplicaSet],
    now: jiff::Timestamp,
) -> Result<Plan, InvalidDeployment> {
    plan_of(d, owned, now).map_err(InvalidDeployment)
}

fn plan_of(d: &Deployment, owned: &[ReplicaSet], now: jiff::Timestamp) -> Result<Plan, String> {
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

pub(crate) fn scaled_value(v: &IntOrString, total: i64, round_up: bool) -> Result<i64, String> {
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

#[cfg(test)]
mod tests;
