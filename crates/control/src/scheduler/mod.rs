//! The scheduler: a leader-follow component of the control
//! plane. It is pushed pod and node changes by the watch cache, keeps a
//! snapshot of every node with what is placed on it, and binds pending
//! pods through the filter/score framework (`framework`), committing the
//! bindings concurrently under the fence token (the store groups them).
//!
//! A pod no node fits gets `PodScheduled=False` with upstream's message
//! ("0/3 nodes are available: …") and a `FailedScheduling` Event, and is
//! parked; any node change or freed capacity puts the parked pods back in
//! the queue (event-driven, never polled).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::errors::ReconcileError;
use crate::fenced::update_status;
use shoal_model::cache::{Cache, CacheEvent, Kind, Start};
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects;
use shoal_model::registry::set_condition;
use shoal_model::registry::Registry;
use shoal_model::resources::PODS;

pub mod framework;
pub mod volumes;

use framework::{Decision, NodeInfo, PodRequest};

/// The scheduler's name in pods' `spec.schedulerName`.
pub const NAME: &str = "default-scheduler";

/// Pods bound per round (their writes go out together).
const ROUND: usize = 256;

/// The store prefix of PersistentVolumes and PersistentVolumeClaims both.
const VOLUME_PREFIX: &[u8] = b"/registry/persistentvolume";

pub struct Scheduler {
    pub cache: Cache,
    pub registry: Registry,
    pub config: framework::Config,
    pub events: EventRecorder,
}

/// A pod waiting for a node: its key and the object as last seen.
#[derive(Clone)]
struct Pending {
    key: Vec<u8>,
    pod: Arc<Value>,
}

/// What the scheduler knows.
#[derive(Default)]
struct State {
    /// Every node, with `index` by name (the framework takes a slice).
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Assigned pods by key: the node they count on and what they cost it
    /// (not the pod: 150,000 typed pods would cost gigabytes).
    assigned: HashMap<Vec<u8>, (String, PodRequest)>,
    queue: VecDeque<Pending>,
    /// Keys queued (no duplicates).
    queued: std::collections::HashSet<Vec<u8>>,
    parked: HashMap<Vec<u8>, Pending>,
    start: usize,
}

fn node_name_of(p: &Value) -> &str {
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn wants_us(p: &Value) -> bool {
    node_name_of(p).is_empty()
        && p.pointer("/metadata/deletionTimestamp").is_none()
        && p.pointer("/spec/schedulerName")
            .and_then(Value::as_str)
            .unwrap_or(NAME)
            == NAME
        && !matches!(
            p.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

impl State {
    fn unpark_all(&mut self) {
        for (k, p) in self.parked.drain() {
            if self.queued.insert(k) {
                self.queue.push_back(p);
            }
        }
    }

    fn enqueue(&mut self, p: Pending) {
        self.parked.remove(&p.key);
        if self.queued.insert(p.key.clone()) {
            self.queue.push_back(p);
        } else if let Some(q) = self.queue.iter_mut().find(|q| q.key == p.key) {
            q.pod = p.pod;
        }
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        let i = *self.index.get(name)?;
        self.nodes.get_mut(i)
    }

    fn unassign(&mut self, key: &[u8]) -> bool {
        match self.assigned.remove(key) {
            Some((node, req)) => {
                if let Some(info) = self.node_mut(&node) {
                    info.remove_request(&req);
                }
                true
            }
            None => false,
        }
    }

    fn assign(&mut self, key: Vec<u8>, node: &str, pod: &Pod) {
        self.unassign(&key);
        let req = PodRequest::of(pod);
        if let Some(info) = self.node_mut(node) {
            info.add_request(&req);
        }
        self.assigned.insert(key, (node.to_string(), req));
    }

    fn on_pod(&mut self, e: &CacheEvent) {
        let p = &e.object;
        let gone = e.kind == Kind::Deleted;
        if gone || p.pointer("/metadata/deletionTimestamp").is_some() || !node_name_of(p).is_empty()
        {
            self.parked.remove(&e.key);
            if self.queued.remove(&e.key) {
                self.queue.retain(|q| q.key != e.key);
            }
        }
        let finished = matches!(
            p.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if gone || finished {
            if self.unassign(&e.key) {
                // Capacity freed: parked pods may fit now.
                self.unpark_all();
            }
            return;
        }
        let node = node_name_of(p);
        if !node.is_empty() {
            // A status update of a placed pod changes nothing here.
            let same_spec = e
                .prev
                .as_deref()
                .is_some_and(|prev| prev.get("spec") == p.get("spec"));
            if same_spec && self.assigned.get(&e.key).is_some_and(|(n, _)| n == node) {
                return;
            }
            if let Ok(pod) = serde_json::from_value::<Pod>((**p).clone()) {
                self.assign(e.key.clone(), node, &pod);
            }
        } else if wants_us(p) {
            self.enqueue(Pending {
                key: e.key.clone(),
                pod: p.clone(),
            });
        }
    }

    fn on_node(&mut self, e: &CacheEvent) {
        let name = objects::name_of(&e.object).to_string();
        if e.kind == Kind::Deleted {
            if let Some(i) = self.index.remove(&name) {
                self.nodes.swap_remove(i);
                if let Some(moved) = self.nodes.get(i) {
                    self.index.insert(moved.name().to_string(), i);
                }
            }
            return;
        }
        let Ok(node) = serde_json::from_value::<Node>((*e.object).clone()) else {
            return;
        };
        match self.node_mut(&name) {
            Some(info) => info.set_node(node),
            None => {
                let mut info = NodeInfo::new(node);
                for (n, req) in self.assigned.values() {
                    if *n == name {
                        info.add_request(req);
                    }
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(info);
            }
        }
        // A new or changed node: parked pods may fit now.
        self.unpark_all();
    }
}

impl Scheduler {
    /// Runs until aborted (this node stops leading).
    pub async fn run(self) {
        let pods = &shoal_model::resources::PODS;
        let nodes = &shoal_model::resources::NODES;
        loop {
            // Claims and volumes (one prefix holds both): a change may let
            // a parked pod fit.
            let (Ok(mut node_watch), Ok(mut pod_watch), Ok(mut volume_watch)) = (
                self.cache.watch(&nodes.prefix(None), Start::Snapshot),
                self.cache.watch(&pods.prefix(None), Start::Snapshot),
                self.cache.watch(VOLUME_PREFIX, Start::Snapshot),
            ) else {
                return;
            };
            let mut st = State::default();
            for e in &node_watch.initial {
                st.on_node(e);
            }
            for e in &pod_watch.initial {
                st.on_pod(e);
            }
            let (mut node_rev, mut pod_rev) = (node_watch.rev, pod_watch.rev);
            loop {
                // Take in every change already pushed, then schedule.
                while let Ok(b) = node_watch.live.try_recv() {
                    node_watch
                        .mine(&b)
                        .filter(|e| e.rev > node_rev)
                        .for_each(|e| st.on_node(e));
                    node_rev = node_rev.max(b.rev);
                }
                while let Ok(b) = pod_watch.live.try_recv() {
                    pod_watch
                        .mine(&b)
                        .filter(|e| e.rev > pod_rev)
                        .for_each(|e| st.on_pod(e));
                    pod_rev = pod_rev.max(b.rev);
                }
                while let Ok(b) = volume_watch.live.try_recv() {
                    if volume_watch.mine(&b).next().is_some() {
                        st.unpark_all();
                    }
                }
                if !st.queue.is_empty() {
                    self.round(&mut st).await;
                    continue;
                }
                tokio::select! {
                    b = node_watch.live.recv() => match b {
                        Ok(b) => {
                            node_watch.mine(&b).filter(|e| e.rev > node_rev).for_each(|e| st.on_node(e));
                            node_rev = node_rev.max(b.rev);
                        }
                        Err(_) => break,
                    },
                    b = pod_watch.live.recv() => match b {
                        Ok(b) => {
                            pod_watch.mine(&b).filter(|e| e.rev > pod_rev).for_each(|e| st.on_pod(e));
                            pod_rev = pod_rev.max(b.rev);
                        }
                        Err(_) => break,
                    },
                    b = volume_watch.live.recv() => match b {
                        Ok(b) => {
                            if volume_watch.mine(&b).next().is_some() {
                                st.unpark_all();
                            }
                        }
                        Err(_) => break,
                    },
                }
            }
        }
    }

    /// Decides up to ROUND pods against the snapshot (each decision
    /// counted on its node at once), then commits the bindings together.
    async fn round(&self, st: &mut State) {
        let mut binds = tokio::task::JoinSet::new();
        for _ in 0..ROUND {
            let Some(p) = st.queue.pop_front() else { break };
            st.queued.remove(&p.key);
            let Ok(pod) = serde_json::from_value::<Pod>((*p.pod).clone()) else {
                continue;
            };
            // Claims first: a pod whose claims no node can hold now is
            // parked with upstream's message.
            let needs = if volumes::Needs::wanted(&p.pod) {
                match volumes::Needs::of(&self.cache, &p.pod) {
                    Ok(n) => Some(Arc::new(n)),
                    Err(why) => {
                        let n = st.nodes.len();
                        let message = format!("0/{n} nodes are available: {why}.");
                        st.parked.insert(p.key.clone(), p.clone());
                        let (fenced, events, pod) =
                            (self.registry.clone(), self.events.clone(), p.pod.clone());
                        binds.spawn(async move {
                            unschedulable(&fenced, &events, &pod, &message).await;
                            Ok(0)
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            let decision = match &needs {
                None => framework::schedule(&pod, &st.nodes, &self.config, st.start),
                Some(n) => {
                    framework::schedule_with(&pod, &st.nodes, &self.config, st.start, &|ni| {
                        n.fits(ni)
                    })
                }
            };
            match decision {
                Decision::Scheduled {
                    node, evaluated, ..
                } => {
                    st.start = (st.start + evaluated) % st.nodes.len().max(1);
                    st.assign(p.key.clone(), &node, &pod);
                    let (fenced, pod) = (self.registry.clone(), p.pod.clone());
                    let events = self.events.clone();
                    binds.spawn(async move {
                        if let Some(needs) = needs {
                            // The claims learn the node before the pod is
                            // bound to it (the volume controller binds or
                            // provisions there).
                            if let Err(e) = needs.select(&fenced, &node).await {
                                let e = ReconcileError::Unavailable(e);
                                return Err((pod.clone(), e));
                            }
                        }
                        let bound = bind(&fenced, &pod, &node)
                            .await
                            .map_err(|e| (pod.clone(), e));
                        if bound.is_ok() {
                            let message = format!(
                                "Successfully assigned {}/{} to {node}",
                                objects::namespace_of(&pod),
                                objects::name_of(&pod)
                            );
                            events.emit(
                                &ObjectRef::of(&pod),
                                EventType::Normal,
                                "Scheduled",
                                &message,
                            );
                        }
                        bound
                    });
                }
                Decision::Unschedulable { message, .. } => {
                    st.parked.insert(p.key.clone(), p.clone());
                    let (fenced, events, pod) =
                        (self.registry.clone(), self.events.clone(), p.pod.clone());
                    binds.spawn(async move {
                        unschedulable(&fenced, &events, &pod, &message).await;
                        Ok(0)
                    });
                }
            }
        }
        while let Some(r) = binds.join_next().await {
            if let Ok(Err((pod, e))) = r {
                // The pod changed under us; its newer version is queued by
                // the watch, or it was deleted.
                tracing::debug!(pod = objects::name_of(&pod), "binding failed: {e}");
                let key = PODS.key(objects::namespace_of(&pod), objects::name_of(&pod));
                st.unassign(&key);
            }
        }
    }
}

/// Binds `pod` to `node` through the registry (`pods/binding`:
/// spec.nodeName and PodScheduled=True in one write), guarded by the
/// resourceVersion the decision was made on.
async fn bind(reg: &Registry, pod: &Value, node: &str) -> Result<u64, ReconcileError> {
    crate::fenced::resource_version(pod)?;
    let bound = reg
        .bind(pod, node)
        .await
        .map_err(|e| ReconcileError::from(e).about(pod))?;
    Ok(objects::rv_of(&bound).ok().flatten().unwrap_or(0))
}

/// Marks `pod` unschedulable (once per distinct message) with an Event.
async fn unschedulable(fenced: &Registry, events: &EventRecorder, pod: &Value, message: &str) {
    let already = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type") == Some(&json!("PodScheduled"))
                    && c.get("message") == Some(&json!(message))
            })
        });
    if already {
        return;
    }
    let pods = &PODS;
    let mut marked = pod.clone();
    set_condition(
        &mut marked,
        json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": objects::now(), "lastProbeTime": null}),
    );
    if let Err(e) = update_status(fenced, pods, pod, marked["status"].clone()).await {
        tracing::debug!("marking a pod unschedulable: {e}");
    }
    events.emit(
        &ObjectRef::of(pod),
        EventType::Warning,
        "FailedScheduling",
        message,
    );
}
