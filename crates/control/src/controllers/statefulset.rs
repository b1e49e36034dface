//! The StatefulSet controller: stable, ordered pods `<set>-<ordinal>`,
//! each with its own claims from `volumeClaimTemplates` (made before the
//! pod, kept across its restarts and rescheduling) and its DNS name under
//! the set's headless Service. A reconcile reads the set and its pods from
//! the watch cache, keeps the ControllerRevisions (`revisions`), asks
//! `statefulset_plan::plan` what to create and delete, and writes under
//! the fence token. A pod whose node is lost stays Terminating and is not
//! replaced until it is gone, as upstream: at most one pod per ordinal.
//! Claims follow `persistentVolumeClaimRetentionPolicy`: with
//! `whenDeleted: Delete` the set owns them (the garbage collector deletes
//! them with it); with `whenScaled: Delete` a pod removed by a scale-down
//! takes its claims with it.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::runtime::{Action, KeyFn, Reconciler};
use super::statefulset_plan::{self as plan, Plan};
use super::{update_object, update_status};
use crate::errors::ReconcileError;
use shoal_model::cache::Cache;
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::Registry;
use shoal_model::resources::{
    CONTROLLERREVISIONS, PERSISTENTVOLUMECLAIMS as CLAIMS, PODS, SERVICES, STATEFULSETS,
};

pub struct StatefulSetController {
    pub cache: Cache,
    pub registry: Registry,
    pub events: EventRecorder,
}

impl StatefulSetController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, last: &mut u64) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(set) = self.cache.get(&STATEFULSETS.key(ns, name)) else {
            return Ok(Action::Done);
        };
        if set.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Action::Done);
        }
        let claimer = super::claim::Claimer {
            owner: &set,
            kind: "StatefulSet",
            api_version: "apps/v1",
            dependents: &PODS,
        };
        let (mine, claimed) = claimer.owned(&self.cache, &self.registry).await?;
        *last = (*last).max(claimed);
        let hash = super::revisions::sync(
            &self.cache,
            &self.registry,
            &STATEFULSETS,
            &set,
            &mine,
            last,
        )
        .await?;
        let update = format!("{name}-{hash}");
        let current = set
            .pointer("/status/currentRevision")
            .and_then(Value::as_str)
            .filter(|c| self.cache.get(&CONTROLLERREVISIONS.key(ns, c)).is_some())
            .unwrap_or(&update)
            .to_string();
        let plan = plan::plan(&set, &mine, &update, &current);
        let me = ObjectRef::of(&set);
        self.check_service(&set, &me);
        let failed = self.apply(&set, &plan, &update, &current, last).await;
        if let Some(rev) = update_status(&self.registry, &STATEFULSETS, &set, plan.status).await? {
            *last = (*last).max(rev);
        }
        failed.map(|()| Action::Done)
    }

    /// Deletes, then creates (claims first), as the plan says.
    async fn apply(
        &self,
        set: &Value,
        plan: &Plan,
        update: &str,
        current: &str,
        last: &mut u64,
    ) -> Result<(), ReconcileError> {
        let me = ObjectRef::of(set);
        let set_name = objects::name_of(set);
        let scaled_delete = set
            .pointer("/spec/persistentVolumeClaimRetentionPolicy/whenScaled")
            .and_then(Value::as_str)
            == Some("Delete");
        for p in &plan.delete {
            let pod_name = objects::name_of(p);
            if scaled_delete && plan.condemned.iter().any(|c| c == pod_name) {
                self.hand_claims_to(set, p, last).await?;
            }
            if let Some(rev) = super::delete_pod(&self.registry, p).await? {
                *last = (*last).max(rev);
                let msg = format!("delete Pod {pod_name} in StatefulSet {set_name} successful");
                self.events
                    .emit(&me, EventType::Normal, "SuccessfulDelete", &msg);
            }
        }
        // Each ordinal's claims, then its pod; ordinals side by side in
        // slow start's growing window (OrderedReady asks for one at a time).
        let ns = objects::namespace_of(set).to_string();
        let set_arc = Arc::new(set.clone());
        let jobs: Vec<(i64, Value, Vec<Value>)> = plan
            .create
            .iter()
            .map(|&(ordinal, at_update)| {
                let revision = if at_update { update } else { current };
                let template = self.template(set, &ns, revision);
                let pod = plan::pod_for(set, &template, ordinal, revision);
                let claims = plan::claims_for(set, ordinal)
                    .into_iter()
                    .filter(|c| {
                        self.cache
                            .get(&CLAIMS.key(&ns, objects::name_of(c)))
                            .is_none()
                    })
                    .collect();
                (ordinal, pod, claims)
            })
            .collect();
        let jobs = Arc::new(jobs);
        let (made, failed) = super::slow_start::run(jobs.len(), |i| {
            let (jobs, reg, events, set) = (
                jobs.clone(),
                self.registry.clone(),
                self.events.clone(),
                set_arc.clone(),
            );
            async move {
                let (_, pod, claims) = &jobs[i];
                create_ordinal(&reg, &events, &set, pod, claims).await
            }
        })
        .await;
        for rev in made {
            *last = (*last).max(rev);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The pod template of `revision` (the set's own when it is the
    /// current template's, or the revision is gone).
    fn template(&self, set: &Value, ns: &str, revision: &str) -> Value {
        let own = set.pointer("/spec/template").cloned().unwrap_or(json!({}));
        self.cache
            .get(&CONTROLLERREVISIONS.key(ns, revision))
            .and_then(|r| super::revisions::template_of(&r))
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or(own)
    }

    /// whenScaled Delete: the condemned pod becomes the owner of its
    /// claims, which the garbage collector deletes once the pod is gone.
    async fn hand_claims_to(
        &self,
        set: &Value,
        pod: &Value,
        last: &mut u64,
    ) -> Result<(), ReconcileError> {
        let ns = objects::namespace_of(set);
        let Some(ordinal) = plan::ordinal_of(set, pod) else {
            return Ok(());
        };
        for claim in plan::claims_for(set, ordinal) {
            let Some(have) = self.cache.get(&CLAIMS.key(ns, objects::name_of(&claim))) else {
                continue;
            };
            let uid = pod.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
            let mut refs: Vec<Value> = have
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if refs.iter().any(|r| r.get("uid") == Some(&uid)) {
                continue;
            }
            refs.push(plan::owner_ref("v1", "Pod", pod, false));
            let mut owned = (*have).clone();
            owned["metadata"]["ownerReferences"] = json!(refs);
            *last = (*last).max(update_object(&self.registry, &CLAIMS, &owned).await?);
        }
        Ok(())
    }

    /// A set whose headless Service does not exist still gets its pods;
    /// an Event says their DNS names will not resolve until it does.
    fn check_service(&self, set: &Value, me: &ObjectRef) {
        let Some(svc) = set
            .pointer("/spec/serviceName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return;
        };
        let ns = objects::namespace_of(set);
        if self.cache.get(&SERVICES.key(ns, svc)).is_none() {
            let msg = format!(
                "service {svc:?} not found: the pods are created, but their DNS names (<pod>.{svc}.{ns}.svc) resolve only once the headless Service exists"
            );
            self.events
                .emit(me, EventType::Warning, "ServiceNotFound", &msg);
        }
    }
}

/// Creates `claims` (those not there yet), then `pod`, for one ordinal of
/// `set`, with upstream's Events; a name already held (a claim made
/// before, a pod still terminating) is not an error. Returns the highest
/// revision written.
async fn create_ordinal(
    reg: &Registry,
    events: &EventRecorder,
    set: &Value,
    pod: &Value,
    claims: &[Value],
) -> Result<u64, ReconcileError> {
    let me = ObjectRef::of(set);
    let ns = objects::namespace_of(set);
    let set_name = objects::name_of(set);
    let pod_name = objects::name_of(pod);
    let mut last = 0;
    for claim in claims {
        let claim_name = objects::name_of(claim);
        match reg.create(&CLAIMS, ns, claim.clone(), false).await {
            Ok(made) => {
                last = last.max(objects::rv_of(&made).ok().flatten().unwrap_or(0));
                let msg = format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"
                );
                events.emit(&me, EventType::Normal, "SuccessfulCreate", &msg);
            }
            Err(e) if e.code == 409 => {}
            Err(e) => {
                let msg = format!(
                    "create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                    e.message
                );
                events.emit(&me, EventType::Warning, "FailedCreate", &msg);
                return Err(ReconcileError::from(e));
            }
        }
    }
    match reg.create(&PODS, ns, pod.clone(), false).await {
        Ok(made) => {
            last = last.max(objects::rv_of(&made).ok().flatten().unwrap_or(0));
            let msg = format!("create Pod {pod_name} in StatefulSet {set_name} successful");
            events.emit(&me, EventType::Normal, "SuccessfulCreate", &msg);
            Ok(last)
        }
        // The name is held (a pod still terminating): wait for it.
        Err(e) if e.code == 409 => Ok(last),
        Err(e) => {
            let msg = format!(
                "create Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                e.message
            );
            events.emit(&me, EventType::Warning, "FailedCreate", &msg);
            Err(ReconcileError::from(e))
        }
    }
}

impl Reconciler for StatefulSetController {
    fn name(&self) -> &'static str {
        "statefulset"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        super::claim::claiming_watches(&self.cache, &STATEFULSETS, &PODS, "StatefulSet")
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move { self.sync(&key).await })
    }
}
