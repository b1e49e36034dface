//! The working state of one sync: finding the new ReplicaSet, RollingUpdate and Recreate scaling, proportional scaling, history cleanup and status, as upstream's sync.go, rolling.go and recreate.go.

use super::*;

// ---------------------------------------------------------------------------
// Working state of one sync

pub(super) struct State {
    pub(super) rss: Vec<ReplicaSet>,
    pub(super) keys: Vec<Value>,
    pub(super) dirty: BTreeSet<usize>,
    pub(super) created: Option<usize>,
    pub(super) new: Option<usize>,
    /// The Deployment's status as read (for progress comparisons).
    pub(super) orig_status: DeploymentStatus,
    /// The Deployment's status as mutated during the sync.
    pub(super) status: DeploymentStatus,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) all_names: BTreeSet<String>,
    pub(super) deletes: Vec<String>,
    pub(super) requeue: Option<Duration>,
}

impl State {
    pub(super) fn new(cx: &Ctx, d: &Deployment, given: &[ReplicaSet]) -> Result<Self, String> {
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

    pub(super) fn into_plan(self, d: &Deployment) -> Plan {
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

    pub(super) fn mark(&mut self, i: usize) {
        if self.created != Some(i) {
            self.dirty.insert(i);
        }
    }

    pub(super) fn all(&self) -> Vec<usize> {
        (0..self.rss.len()).collect()
    }

    pub(super) fn olds(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|&i| Some(i) != self.new)
            .collect()
    }

    pub(super) fn active_olds_by_creation(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|&i| spec_replicas(&self.rss[i]) > 0)
            .collect();
        v.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        v
    }

    pub(super) fn sum(&self, idx: &[usize], f: fn(&ReplicaSet) -> i64) -> i64 {
        idx.iter().map(|&i| f(&self.rss[i])).sum()
    }

    pub(super) fn set_deployment_revision(&mut self, rev: &str) {
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
    pub(super) fn get_new_rs(&mut self, cx: &Ctx, create: bool) -> Result<(), String> {
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
        let all_spec = self.sum(&self.all(), pods_held);
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
    pub(super) fn scale_and_record(&mut self, cx: &Ctx, i: usize, new_scale: i64) -> bool {
        if spec_replicas(&self.rss[i]) == new_scale {
            return false;
        }
        self.scale_replica_set(cx, i, new_scale)
    }

    /// Upstream `scaleReplicaSet`: also refreshes desired/max-replicas
    /// annotations; returns whether the size changed.
    pub(super) fn scale_replica_set(&mut self, cx: &Ctx, i: usize, new_scale: i64) -> bool {
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

    pub(super) fn is_scaling_event(&self, cx: &Ctx) -> bool {
        self.all().into_iter().any(|i| {
            let rs = &self.rss[i];
            spec_replicas(rs) > 0
                && int_annotation(rs, DESIRED_REPLICAS_ANNOTATION).is_some_and(|d| d != cx.replicas)
        })
    }

    pub(super) fn find_active_or_latest(&self) -> Option<usize> {
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

    pub(super) fn is_saturated(&self, cx: &Ctx) -> bool {
        let Some(n) = self.new else { return false };
        let rs = &self.rss[n];
        int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == Some(cx.replicas)
            && spec_replicas(rs) == cx.replicas
            && status_available(rs) == cx.replicas
    }

    /// Upstream `scale`: scaling event or paused deployment, including
    /// proportional scaling of several active ReplicaSets.
    pub(super) fn scale(&mut self, cx: &Ctx) {
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
    pub(super) fn proportion(&self, cx: &Ctx, i: usize, to_add: i64, added: i64) -> i64 {
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

    pub(super) fn rollout_rolling(&mut self, cx: &Ctx) -> Result<(), String> {
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

    pub(super) fn reconcile_new_rs(&mut self, cx: &Ctx) -> bool {
        let Some(n) = self.new else { return false };
        let size = spec_replicas(&self.rss[n]);
        match size.cmp(&cx.replicas) {
            Ordering::Equal => false,
            Ordering::Greater => self.scale_and_record(cx, n, cx.replicas),
            Ordering::Less => {
                let all = self.sum(&self.all(), pods_held);
                let target = new_rs_new_replicas(cx, all, size);
                self.scale_and_record(cx, n, target)
            }
        }
    }

    pub(super) fn reconcile_old_rss(&mut self, cx: &Ctx) -> bool {
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

    pub(super) fn rollout_recreate(&mut self, cx: &Ctx) -> Result<(), String> {
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
    pub(super) fn check_paused_conditions(&mut self, cx: &Ctx) {
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
    pub(super) fn cleanup_deployment(&mut self, cx: &Ctx) {
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
    pub(super) fn calculate_status(&self, cx: &Ctx) -> DeploymentStatus {
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

    pub(super) fn sync_deployment_status(&mut self, cx: &Ctx) {
        self.status = self.calculate_status(cx);
    }

    /// Upstream `syncRolloutStatus` (+ `requeueStuckDeployment`).
    pub(super) fn sync_rollout_status(&mut self, cx: &Ctx) {
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

/// The pods a ReplicaSet counts for the surge: its spec, or the pods it
/// still has if more (a scaled-down ReplicaSet whose surplus pod is not
/// deleted yet), so a surge never waits on another controller's delete
/// and the pods never exceed replicas + maxSurge, even for a moment.
pub(super) fn pods_held(rs: &ReplicaSet) -> i64 {
    spec_replicas(rs).max(status_replicas(rs))
}

/// Upstream `NewRSNewReplicas`, given the sum of all ReplicaSets' spec.replicas.
pub(super) fn new_rs_new_replicas(cx: &Ctx, all_spec: i64, new_spec: i64) -> i64 {
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
