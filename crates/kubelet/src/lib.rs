//! The kubelet of a worker node: registers the node's `Node`
//! object, is pushed the pods bound to it (a store watch with a
//! server-side filter on `spec.nodeName`), runs them through a
//! [`Runtime`], and writes their status back; it also answers `pods/log`
//! as the `kubelet` actor.
//!
//! ```text
//! store watch (spec.nodeName = me) ─► kubelet ─► Runtime (sim, later process/docker)
//!                                         └──► pod status, Node object (store writes)
//! ```
//!
//! Liveness is not written here: membership (SWIM) says whether a node is
//! up, so the Node object changes only when something about it changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::Registry;
use shoal_model::resources::Resource;
use shoal_store::watch::{EventKind, FieldFilter, WatchEnd, WatchEvent};
use shoal_store::{ReadRequest, Store};

mod actor;
pub mod config;
pub mod docker;
pub mod envs;
pub mod fleet;
pub mod local_volumes;
pub mod multi;
mod node;
pub mod podevents;
pub mod process;
pub mod pullsecrets;
mod resolve;
mod runtime;
pub mod sim;
mod start;
pub mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod volumes;

pub use actor::{serve as serve_actor, ExecSessions, KubeletActor};
pub use node::{node_object, NodeSpec};
pub use runtime::{
    ContainerState, ContainerStatus, Handler, NodeImage, PodConfig, PodState, ProjectedFile,
    Projection, RestartPolicy, Runtime, RuntimeError,
};
pub use shoal_kubelet_proto::Ping;
pub use start::{
    load_slot, register_node, slot_path, KubeletStart, MakeRuntime, OnRegistered, RuntimeCell,
};
use status::StatusReporter;

pub(crate) fn pods() -> &'static Resource {
    &shoal_model::resources::PODS
}

pub(crate) fn nodes() -> &'static Resource {
    &shoal_model::resources::NODES
}

/// A pod's `metadata.uid` ("" if it has none).
pub fn pod_uid(pod: &Value) -> String {
    pod.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The status a pod gets from its runtime state.
pub fn pod_status(pod: &Value, state: &PodState, host_ip: &str) -> Value {
    let now = objects::now();
    let restart_policy = RestartPolicy::of(pod);
    let all_ready = !state.containers.is_empty() && state.containers.iter().all(|c| c.ready);
    let terminated: Vec<i32> = state
        .containers
        .iter()
        .filter_map(|c| match c.state {
            ContainerState::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        })
        .collect();
    let finished = !state.containers.is_empty() && terminated.len() == state.containers.len();
    // No container has run yet (being created, or refused): Pending.
    let never_started = state
        .containers
        .iter()
        .all(|c| c.restart_count == 0 && matches!(c.state, ContainerState::Waiting { .. }));
    // Init containers all succeeded (or there are none).
    let initialized = state
        .init_containers
        .iter()
        .all(|c| matches!(c.state, ContainerState::Terminated { exit_code: 0, .. }));
    let init_failed = restart_policy == RestartPolicy::Never
        && state.init_containers.iter().any(
            |c| matches!(c.state, ContainerState::Terminated { exit_code, .. } if exit_code != 0),
        );
    let phase = match () {
        _ if init_failed => "Failed",
        _ if !initialized || never_started => "Pending",
        _ if finished
            && terminated.iter().all(|c| *c == 0)
            && restart_policy != RestartPolicy::Always =>
        {
            "Succeeded"
        }
        _ if finished && restart_policy == RestartPolicy::Never => "Failed",
        _ => "Running",
    };
    let cond = |ty: &str, ok: bool| {
        json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now,
               "lastProbeTime": null})
    };
    let statuses = |list: &[ContainerStatus]| -> Vec<Value> {
        list.iter()
        .map(|c| {
            let st = |s: &ContainerState| match s {
                ContainerState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
                ContainerState::Waiting { reason, message } => {
                    json!({"waiting": {"reason": reason, "message": message}})
                }
                ContainerState::Terminated { exit_code, reason, message, finished_at } => {
                    let mut t = json!({"exitCode": exit_code, "reason": reason, "finishedAt": finished_at});
                    if !message.is_empty() {
                        t["message"] = json!(message);
                    }
                    json!({"terminated": t})
                }
            };
            let mut v = json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": c.ready,
                "started": matches!(c.state, ContainerState::Running { .. }),
                "restartCount": c.restart_count, "state": st(&c.state),
                "lastState": c.last_state.as_ref().map(st).unwrap_or_else(|| json!({})),
            });
            if !c.container_id.is_empty() {
                v["containerID"] = json!(c.container_id);
            }
            v
        })
        .collect()
    };
    let containers = statuses(&state.containers);
    let start = pod
        .pointer("/status/startTime")
        .cloned()
        .unwrap_or_else(|| json!(now));
    let mut status = json!({
        "phase": phase,
        "conditions": [
            cond("PodReadyToStartContainers", true),
            cond("Initialized", initialized),
            cond("Ready", all_ready),
            cond("ContainersReady", all_ready),
            cond("PodScheduled", true),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": state.pod_ip,
        "podIPs": [{"ip": state.pod_ip}],
        "startTime": start,
        "containerStatuses": containers,
        "initContainerStatuses": statuses(&state.init_containers),
        "qosClass": pod.pointer("/status/qosClass").cloned().unwrap_or(json!("BestEffort")),
    });
    if state.init_containers.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("initContainerStatuses");
        }
    }
    status
}

/// Statuses equal but for timestamps (so an unchanged pod is not
/// rewritten).
fn same_status(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !k.ends_with("Time") && !k.ends_with("At"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(a) == strip(b)
}

/// The kubelet of one node.
pub struct Kubelet {
    pub store: Store,
    pub spec: NodeSpec,
    pub runtime: Arc<dyn Runtime>,
    /// The kubelet's Events (`Killing` when it stops a deleted pod).
    pub events: EventRecorder,
    pub metrics: KubeletMetrics,
}

/// How often the kubelet listed its pods, and how often its watches
/// resumed on another replica instead.
#[derive(Clone, Default)]
pub struct KubeletMetrics {
    pub pod_lists: prometheus_client::metrics::counter::Counter,
    pub watch_resumes: prometheus_client::metrics::counter::Counter,
    /// 1 for the replica the kubelet's watches are on, 0 for those it left.
    pub watch_replica: prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >,
}

impl KubeletMetrics {
    /// Registers them (`shoal_kubelet_pod_lists_total`,
    /// `shoal_kubelet_watch_resumes_total`).
    pub fn register(&self, m: &shoal_fabric::metrics::Metrics) {
        m.register(
            "kubelet_pod_lists",
            "Lists of every pod by the kubelet (at start and after an expired watch)",
            self.pod_lists.clone(),
        );
        m.register(
            "kubelet_watch_resumes",
            "Kubelet watches resumed from their last revision on another replica",
            self.watch_resumes.clone(),
        );
        m.register(
            "kubelet_watch_replica",
            "1 for the store replica the kubelet's watches are on",
            self.watch_replica.clone(),
        );
    }
}

impl Kubelet {
    /// Runs the pods bound to the (registered) node, forever.
    pub async fn run(self) {
        let (reporter, _) = StatusReporter::start(self.store.clone(), 1);
        loop {
            if let Err(e) = self.follow(&reporter).await {
                tracing::debug!(node = %self.spec.name, "kubelet pod watch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Lists the pods bound here, then follows them until the watch ends.
    async fn follow(&self, reporter: &StatusReporter) -> Result<(), String> {
        let filter = FieldFilter {
            field: "spec.nodeName".into(),
            equals: self.spec.name.clone(),
        };
        // State changes the runtime makes on its own (a container exited,
        // restarted; a pod adopted): reported like any other, from before
        // the list, so none made while the list is read is missed.
        let mut changes = self.runtime.changes();
        let listed = self
            .store
            .read(ReadRequest::prefix(pods().prefix(None)))
            .await
            .map_err(|e| e.to_string())?;
        self.metrics.pod_lists.inc();
        let mut known: HashMap<Vec<u8>, Known> = HashMap::new();
        let bound: Vec<(&Vec<u8>, Value, u64)> = listed
            .kvs
            .iter()
            .filter(|kv| filter.matches(&kv.value))
            .filter_map(|kv| {
                let pod = serde_json::from_slice::<Value>(&kv.value).ok()?;
                Some((&kv.key, pod, kv.mod_rev))
            })
            .collect();
        // Pods the runtime runs (adopted after a restart) that are no
        // longer bound here stop first, before anything starts.
        let uids: std::collections::HashSet<String> =
            bound.iter().map(|(_, pod, _)| pod_uid(pod)).collect();
        for uid in self.runtime.running() {
            if !uids.contains(&uid) {
                tracing::info!(node = %self.spec.name, pod = %uid, "stopping a pod no longer bound here");
                self.runtime.stop(&uid, Duration::ZERO).await;
            }
        }
        for (key, pod, rev) in bound {
            self.sync_pod(key, pod, rev, &mut known, reporter).await;
        }
        // Where each watch goes on from: the listed revision, then the last
        // revision it saw. A watch that ends because its replica lost the
        // leader or went away resumes from there on another replica; only
        // an expired one (its revision compacted) lists again.
        let mut revs = Revs {
            pods: listed.revision,
            configs: [listed.revision; 3],
        };
        loop {
            // This node's replica, or, on a worker-only node, another's.
            let replica = self.store.watch_replica();
            let on = |r: &str| vec![("replica", r.to_string())];
            self.metrics
                .watch_replica
                .get_or_create(&on(&replica))
                .set(1);
            let end = self
                .watch_from(
                    &replica,
                    &filter,
                    &mut revs,
                    &mut known,
                    &mut changes,
                    reporter,
                )
                .await;
            match end {
                WatchEnd::Expired(why) => return Err(format!("a watch expired: {why}")),
                WatchEnd::LeaderLost(why) | WatchEnd::Lost(why) => {
                    tracing::debug!(node = %self.spec.name, %replica,
                        "kubelet watches resume from revision {}: {why}", revs.pods + 1);
                    self.store.watch_failed(&replica);
                    self.metrics.watch_resumes.inc();
                    self.metrics
                        .watch_replica
                        .get_or_create(&on(&replica))
                        .set(0);
                    // Back off before asking again (this node's own replica
                    // may stay cut off for a while).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Follows the pods bound here and the ConfigMaps and Secrets from
    /// `revs` on `replica`, until a watch ends (how is returned).
    async fn watch_from(
        &self,
        replica: &str,
        filter: &FieldFilter,
        revs: &mut Revs,
        known: &mut HashMap<Vec<u8>, Known>,
        changes: &mut Option<tokio::sync::broadcast::Receiver<String>>,
        reporter: &StatusReporter,
    ) -> WatchEnd {
        let lost = |e: &dyn std::fmt::Display| WatchEnd::Lost(e.to_string());
        let mut sub = match self
            .store
            .watch_filtered(
                replica,
                &pods().prefix(None),
                revs.pods + 1,
                Some(filter.clone()),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return lost(&e),
        };
        // ConfigMaps, Secrets and claims: pods that mount one get its
        // changes, and pods that could not start without one start once it
        // is there (a claim: once it is bound).
        let mut configs = Vec::new();
        if self.runtime.needs_config() {
            for (i, (res, kind)) in [
                (&shoal_model::resources::CONFIGMAPS, "ConfigMap"),
                (&shoal_model::resources::SECRETS, "Secret"),
                (
                    &shoal_model::resources::PERSISTENTVOLUMECLAIMS,
                    "PersistentVolumeClaim",
                ),
            ]
            .into_iter()
            .enumerate()
            {
                match self
                    .store
                    .watch(replica, &res.prefix(None), revs.configs[i] + 1)
                    .await
                {
                    Ok(sub) => configs.push((i, kind, sub)),
                    Err(e) => return lost(&e),
                }
            }
        }
        loop {
            let next = tokio::select! {
                n = sub.next() => n,
                (i, kind, n) = async {
                    if configs.is_empty() {
                        return std::future::pending().await;
                    }
                    let nexts = configs.iter_mut().map(|(i, kind, s)| {
                        let (i, kind): (usize, &'static str) = (*i, kind);
                        Box::pin(async move { (i, kind, s.next().await) })
                    });
                    futures::future::select_all(nexts).await.0
                } => {
                    match n {
                        Ok(WatchEvent::Events(events)) => {
                            for e in events {
                                revs.configs[i] = revs.configs[i].max(e.rev);
                                self.config_changed(kind, &e.key, known, reporter).await;
                            }
                        }
                        Ok(WatchEvent::Progress { rev }) => {
                            revs.configs[i] = revs.configs[i].max(rev);
                        }
                        Err(end) => return end.into(),
                    }
                    continue;
                }
                uid = async {
                    match changes.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match uid {
                        Ok(uid) => self.report_change(&uid, known, reporter),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Missed some: report every pod's state.
                            let uids: Vec<String> = known.values().map(|k| k.uid.clone()).collect();
                            for uid in uids {
                                self.report_change(&uid, known, reporter);
                            }
                        }
                        Err(_) => *changes = None,
                    }
                    continue;
                }
            };
            match next {
                Ok(WatchEvent::Events(events)) => {
                    for e in events {
                        revs.pods = revs.pods.max(e.rev);
                        match e.kind {
                            EventKind::Put => {
                                if let Ok(pod) = serde_json::from_slice::<Value>(&e.value) {
                                    self.sync_pod(&e.key, pod, e.rev, known, reporter).await;
                                }
                            }
                            EventKind::Delete => {
                                if let Some(k) = known.remove(&e.key) {
                                    tokio::spawn(self.runtime.stop(&k.uid, Duration::ZERO));
                                }
                            }
                        }
                    }
                }
                Ok(WatchEvent::Progress { rev }) => revs.pods = revs.pods.max(rev),
                Err(end) => return end.into(),
            }
        }
    }

    /// Brings one bound pod to its wanted state and reports it.
    async fn sync_pod(
        &self,
        key: &[u8],
        pod: Value,
        rev: u64,
        known: &mut HashMap<Vec<u8>, Known>,
        reporter: &StatusReporter,
    ) {
        let uid = pod_uid(&pod);
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            let grace = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            known.remove(key);
            // Stopped (within its grace, beside the other pods): the pod
            // object goes (upstream's final delete). As upstream's kubelet,
            // one `Killing` Event per container it stops.
            let running = self.runtime.running().contains(&uid);
            let stop = self.runtime.stop(&uid, Duration::from_secs(grace));
            let (reporter, key, events) = (reporter.clone(), key.to_vec(), self.events.clone());
            tokio::spawn(async move {
                if running {
                    killing(&events, &pod);
                }
                stop.await;
                match Registry::finish_pod_txn(&pod, rev) {
                    Ok(Some(txn)) => reporter.report(key, txn),
                    // Finalizers hold it: their owner removes it.
                    Ok(None) => {}
                    Err(e) => tracing::warn!("kubelet: {}", e.message),
                }
            });
            return;
        }
        known.insert(
            key.to_vec(),
            Known {
                uid: uid.clone(),
                pod: pod.clone(),
                rev,
            },
        );
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            return;
        }
        let running = self.runtime.state(&uid).is_some();
        let config = if self.runtime.needs_config() && (!running || !self.runtime.resolved(&uid)) {
            self.resolved(&pod).await
        } else {
            PodConfig::of(&pod)
        };
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                // The API's validation keeps such pods out; one that got
                // in anyway is left alone, loudly.
                tracing::warn!(node = %self.spec.name, pod = %uid, "not starting the pod: {e}");
                return;
            }
        };
        if running && !self.runtime.resolved(&uid) {
            // Adopted from a previous agent, which kept no secret on disk:
            // its containers' next instances get their environment now.
            self.runtime.update(&config);
        }
        let state = self.runtime.start(&config).await;
        let status = pod_status(&pod, &state, &self.spec.address);
        if pod.get("status").is_some_and(|s| same_status(s, &status)) {
            return;
        }
        // Through the status rules; batched with the other pods' reports
        // (see `status`).
        report_status(reporter, key, &pod, rev, status);
    }
}

impl Kubelet {
    /// A ConfigMap or Secret (`kind`, at store key `key`) changed: each
    /// pod here that names it and could not start for want of it starts
    /// again; each that mounts it gets the new files.
    async fn config_changed(
        &self,
        kind: &'static str,
        key: &[u8],
        known: &HashMap<Vec<u8>, Known>,
        reporter: &StatusReporter,
    ) {
        // <prefix>/<namespace>/<name>
        let key = String::from_utf8_lossy(key);
        let mut parts = key.rsplit('/');
        let (Some(name), Some(ns)) = (parts.next(), parts.next()) else {
            return;
        };
        let target = (kind, name.to_string());
        let mut restart = Vec::new();
        for (k, p) in known {
            if objects::namespace_of(&p.pod) != ns {
                continue;
            }
            if kind == "PersistentVolumeClaim" {
                // A claim that binds lets a pod waiting for it mount it. The
                // binding may come before the runtime has recorded the
                // failed mount, so any pod of the claim not started yet
                // starts again (claims change seldom: bound once).
                let uses = volumes::claims(&p.pod).iter().any(|(_, c)| c == name);
                let waiting = uses
                    && self.runtime.state(&p.uid).is_none_or(|s| {
                        s.init_containers.iter().chain(&s.containers).any(|c| {
                            matches!(&c.state, ContainerState::Waiting { reason, .. }
                                if reason == "ContainerCreating")
                        })
                    });
                if waiting {
                    restart.push((k.clone(), p.pod.clone(), p.rev));
                }
                continue;
            }
            let mounted = volumes::referenced(&p.pod).contains(&target);
            if !mounted && !envs::referenced(&p.pod).contains(&target) {
                continue;
            }
            let waiting = self.runtime.state(&p.uid).is_some_and(|s| {
                s.init_containers.iter().chain(&s.containers).any(|c| {
                    matches!(&c.state, ContainerState::Waiting { reason, message }
                        if reason == "CreateContainerConfigError"
                            || message.starts_with("MountVolume.SetUp failed"))
                })
            });
            if waiting {
                restart.push((k.clone(), p.pod.clone(), p.rev));
            } else if mounted {
                match self.resolved(&p.pod).await {
                    Ok(config) => self.runtime.update(&config),
                    Err(e) => tracing::warn!(pod = %p.uid, "not updating the pod's volumes: {e}"),
                }
            }
        }
        for (k, pod, rev) in restart {
            let uid = pod_uid(&pod);
            tracing::info!(node = %self.spec.name, pod = %uid, "{kind} {ns}/{name} changed: starting the pod again");
            self.runtime.stop(&uid, Duration::ZERO).await;
            let mut again = HashMap::new();
            self.sync_pod(&k, pod, rev, &mut again, reporter).await;
        }
    }
}

/// A pod bound here as the kubelet last saw it.
struct Known {
    uid: String,
    pod: Value,
    rev: u64,
}

/// The last revision each of the kubelet's watches saw: pods, then
/// ConfigMaps and Secrets.
struct Revs {
    pods: u64,
    configs: [u64; 3],
}

impl Kubelet {
    /// Reports the runtime's current state of pod `uid`, if it changed.
    fn report_change(&self, uid: &str, known: &HashMap<Vec<u8>, Known>, reporter: &StatusReporter) {
        let Some((key, k)) = known.iter().find(|(_, k)| k.uid == uid) else {
            // A pod the runtime runs that is not bound here (one a runtime
            // built after the kubelet's list adopted): it stops.
            if self.runtime.state(uid).is_some() {
                tracing::info!(node = %self.spec.name, pod = %uid, "stopping a pod no longer bound here");
                tokio::spawn(self.runtime.stop(uid, Duration::ZERO));
            }
            return;
        };
        let Some(state) = self.runtime.state(uid) else {
            return;
        };
        let status = pod_status(&k.pod, &state, &self.spec.address);
        if k.pod.get("status").is_some_and(|s| same_status(s, &status)) {
            return;
        }
        report_status(reporter, key, &k.pod, k.rev, status);
    }
}

/// Records upstream's `Killing` Event for each container of `pod`.
pub(crate) fn killing(events: &EventRecorder, pod: &Value) {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let object = ObjectRef::of(pod);
    for c in containers {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let message = format!("Stopping container {name}");
        events.emit(&object, EventType::Normal, "Killing", &message);
    }
}

/// Queues the write of `status` into `pod` (stored at `rev`) by the
/// registry's status rules.
pub(crate) fn report_status(
    reporter: &StatusReporter,
    key: &[u8],
    pod: &Value,
    rev: u64,
    status: Value,
) {
    match Registry::status_txn(pods(), pod, rev, status) {
        Ok(Some(txn)) => reporter.report(key.to_vec(), txn),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            pod = objects::name_of(pod),
            "kubelet: the status: {}",
            e.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_object_carries_capacity_labels_and_ready() {
        let spec = NodeSpec {
            name: "node-2".into(),
            address: "127.0.0.1".into(),
            region: "eu".into(),
            zone: "b".into(),
            milli_cpu: 2000,
            memory_bytes: 8 << 30,
            pods: 110,
        };
        let n = node_object(&spec, "sim", &[], &[]);
        assert_eq!(n["metadata"]["labels"]["topology.kubernetes.io/zone"], "b");
        assert_eq!(n["status"]["allocatable"]["cpu"], "2");
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
        assert_eq!(n["status"]["capacity"]["memory"], "8Gi");
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        // The typed Node reads it.
        let _: k8s_openapi::api::core::v1::Node = serde_json::from_value(n).unwrap();
    }

    #[test]
    fn phase_follows_containers_and_restart_policy() {
        let pod = |policy: &str| json!({"spec": {"restartPolicy": policy}});
        let st = |state: ContainerState, ready: bool| PodState {
            pod_ip: "10.0.0.1".into(),
            containers: vec![ContainerStatus {
                name: "c".into(),
                image: "i".into(),
                state,
                ready,
                restart_count: 0,
                last_state: None,
                container_id: String::new(),
            }],
            init_containers: Vec::new(),
        };
        let running = st(
            ContainerState::Running {
                started_at: "t".into(),
            },
            true,
        );
        let s = pod_status(&pod("Always"), &running, "127.0.0.1");
        assert_eq!(s["phase"], "Running");
        assert!(s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"));
        let done = |code| {
            st(
                ContainerState::Terminated {
                    exit_code: code,
                    reason: "Completed".into(),
                    message: String::new(),
                    finished_at: "t".into(),
                },
                false,
            )
        };
        assert_eq!(
            pod_status(&pod("Never"), &done(0), "h")["phase"],
            "Succeeded"
        );
        assert_eq!(
            pod_status(&pod("OnFailure"), &done(0), "h")["phase"],
            "Succeeded"
        );
        assert_eq!(pod_status(&pod("Never"), &done(1), "h")["phase"], "Failed");
        assert_eq!(
            pod_status(&pod("Always"), &done(0), "h")["phase"],
            "Running"
        );
        // Timestamps alone do not make a status different.
        let a = pod_status(&pod("Always"), &running, "h");
        let mut b = a.clone();
        b["startTime"] = json!("other");
        assert!(same_status(&a, &b));
        b["podIP"] = json!("10.0.0.2");
        assert!(!same_status(&a, &b));
    }
}
