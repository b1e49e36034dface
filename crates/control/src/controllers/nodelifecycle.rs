//! Node lifecycle without heartbeat writes: membership (SWIM) says when a
//! node is `down`; this controller then asks `kubelet@node` directly, and
//! only when that fails too does it act, as upstream's node-lifecycle
//! controller does after its grace period:
//!
//! 1. the Node's `Ready` condition becomes `Unknown` and it gets the
//!    `node.kubernetes.io/unreachable` taints (NoSchedule, NoExecute);
//! 2. after each pod's toleration of that taint (`tolerationSeconds`, or
//!    the configured default, never below the suspicion timeout) the pod
//!    is evicted (marked for deletion; its ReplicaSet replaces it at once)
//!    through the eviction path, charged to its PodDisruptionBudget but
//!    never refused by it (`registry::eviction`: the pod is already gone).
//!    The toleration counts from the node's first sign of trouble, when
//!    membership began to suspect it: a node that refutes its suspicion is
//!    never `down`, so no toleration at least as long as the suspicion
//!    evicts a pod of a node that is merely slow or behind lossy links;
//! 3. evictions are rate-limited, and pause in a zone where more than
//!    55 % of the nodes are down (a partition, not dead nodes);
//! 4. when membership says the node is `alive` again, the taints go and
//!    `Ready` is `True` again.

use shoal_model::registry::Registry;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::update_object_and_status;
use crate::fenced::evict_lost_pod;
use shoal_fabric::actor::{ActorPath, ActorSystem};
use shoal_fabric::membership::{MemberState, Membership};
use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::resources::Resource;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Upstream's unhealthyZoneThreshold.
const ZONE_UNHEALTHY: f64 = 0.55;

pub struct NodeLifecycle {
    pub cache: Cache,
    pub registry: Registry,
    pub membership: Membership,
    pub actors: ActorSystem,
    /// How long a pod without its own toleration stays on an unreachable
    /// node.
    pub default_toleration: Duration,
    /// Evictions per second, cluster-wide.
    pub evictions_per_second: f64,
    /// NodeNotReady / NodeReady (the Node and its pods), and
    /// TaintManagerEviction (each evicted pod).
    pub events: shoal_model::events::EventRecorder,
}

fn nodes() -> &'static Resource {
    &shoal_model::resources::NODES
}

fn pods() -> &'static Resource {
    &shoal_model::resources::PODS
}

/// A pod's toleration of the unreachable NoExecute taint: None = it
/// tolerates it forever; Some(d) = it is evicted after d.
pub fn toleration(pod: &Value, default: Duration) -> Option<Duration> {
    let tols = pod.pointer("/spec/tolerations").and_then(Value::as_array);
    let matching = tols.into_iter().flatten().find(|t| {
        let key = t.get("key").and_then(Value::as_str).unwrap_or("");
        let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (key == UNREACHABLE || (key.is_empty() && op == "Exists"))
            && (effect.is_empty() || effect == "NoExecute")
    });
    match matching {
        None => Some(default),
        Some(t) => t
            .get("tolerationSeconds")
            .and_then(Value::as_i64)
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

/// The Node with Ready=Unknown and the unreachable taints, or Ready=True
/// and no such taints.
pub fn with_reachability(node: &Value, reachable: bool) -> Value {
    let mut n = node.clone();
    let now = objects::now();
    if let Some(cs) = n
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in cs.iter_mut() {
            if c.get("type").and_then(Value::as_str) != Some("Ready") {
                continue;
            }
            let (status, reason, message) = if reachable {
                ("True", "KubeletReady", "kubelet is posting ready status")
            } else {
                (
                    "Unknown",
                    "NodeStatusUnknown",
                    "Kubelet stopped posting node status.",
                )
            };
            if c.get("status").and_then(Value::as_str) != Some(status) {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
    }
    let mut taints: Vec<Value> = n
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.retain(|t| t.get("key").and_then(Value::as_str) != Some(UNREACHABLE));
    if !reachable {
        taints.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now}));
        taints.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}));
    }
    if !n.get("spec").is_some_and(Value::is_object) {
        n["spec"] = json!({});
    }
    if taints.is_empty() {
        if let Some(spec) = n.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("taints");
        }
    } else {
        n["spec"]["taints"] = json!(taints);
    }
    n
}

fn is_unreachable(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(UNREACHABLE))
        })
}

/// A simple token bucket.
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.rate.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl NodeLifecycle {
    async fn kubelet_answers(&self, node: &str) -> bool {
        let to = ActorPath::new(shoal_kubelet_proto::KUBELET, node);
        self.actors
            .ask(&to, shoal_kubelet_proto::Ping, Duration::from_secs(1))
            .await
            .is_ok()
    }

    async fn set_reachable(&self, name: &str, reachable: bool) {
        let Some(node) = self.cache.get(&nodes().key("", name)) else {
            return;
        };
        if is_unreachable(&node) != reachable {
            return;
        }
        let updated = with_reachability(&node, reachable);
        // The Ready condition (status) and the unreachable taints (spec).
        match update_object_and_status(&self.registry, nodes(), &updated).await {
            Ok(_) => {
                tracing::info!(node = name, reachable, "node reachability changed");
                self.record_status_change(&node, reachable);
            }
            Err(e) => tracing::debug!(node = name, "marking the node: {e}"),
        }
    }

    /// Upstream's Events of a node's readiness: on the Node (`Node x status
    /// is now: NodeNotReady`), and a Warning on each of its pods when it
    /// is lost.
    fn record_status_change(&self, node: &Value, reachable: bool) {
        use shoal_model::events::{EventType, ObjectRef};
        let name = objects::name_of(node);
        let status = if reachable {
            "NodeReady"
        } else {
            "NodeNotReady"
        };
        let mut me = ObjectRef::of(node);
        me.api_version = "v1".into();
        me.kind = "Node".into();
        let msg = format!("Node {name} status is now: {status}");
        self.events.emit(&me, EventType::Normal, status, &msg);
        if reachable {
            return;
        }
        let (on_node, _) = self.cache.list(&pods().prefix(None), |p| {
            p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(name)
        });
        for p in on_node {
            self.events.emit(
                &ObjectRef::of(&p),
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready",
            );
        }
    }

    /// Runs until aborted (the node stops leading).
    pub async fn run(self) {
        let mut events = match self.membership.subscribe(4096).await {
            Ok(rx) => rx,
            Err(e) => return tracing::warn!("node lifecycle: no membership events: {e}"),
        };
        let mut states: HashMap<String, (MemberState, String)> = HashMap::new();
        // When each node came under suspicion (its first sign of trouble).
        let mut suspected: HashMap<String, Instant> = HashMap::new();
        // Unreachable nodes, and when their trouble began.
        let mut unreachable: HashMap<String, Instant> = HashMap::new();
        let mut bucket = Bucket {
            tokens: 1.0,
            rate: self.evictions_per_second,
            at: Instant::now(),
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    let zone = ev.meta.as_ref().map(|m| m.zone.clone()).unwrap_or_default();
                    states.insert(ev.name.clone(), (ev.state, zone));
                    match ev.state {
                        MemberState::Suspect => {
                            suspected.entry(ev.name.clone()).or_insert_with(Instant::now);
                        }
                        MemberState::Down if !self.kubelet_answers(&ev.name).await => {
                            self.set_reachable(&ev.name, false).await;
                            let since = suspected.get(&ev.name).copied().unwrap_or_else(Instant::now);
                            unreachable.entry(ev.name.clone()).or_insert(since);
                        }
                        MemberState::Alive => {
                            suspected.remove(&ev.name);
                            unreachable.remove(&ev.name);
                            self.set_reachable(&ev.name, true).await;
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    self.evict(&unreachable, &states, &mut bucket).await;
                }
            }
        }
    }

    /// Evicts the pods of unreachable nodes whose toleration has run out.
    async fn evict(
        &self,
        unreachable: &HashMap<String, Instant>,
        states: &HashMap<String, (MemberState, String)>,
        bucket: &mut Bucket,
    ) {
        for (node, since) in unreachable {
            let zone = states.get(node).map(|(_, z)| z.clone()).unwrap_or_default();
            let in_zone: Vec<&MemberState> = states
                .values()
                .filter(|(_, z)| *z == zone)
                .map(|(s, _)| s)
                .collect();
            let down = in_zone
                .iter()
                .filter(|s| matches!(s, MemberState::Down))
                .count();
            if in_zone.len() > 2 && down as f64 / in_zone.len() as f64 > ZONE_UNHEALTHY {
                tracing::debug!(%zone, "zone mostly down: evictions paused");
                continue;
            }
            let (on_node, _) = self.cache.list(&pods().prefix(None), |p| {
                p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node.as_str())
                    && p.pointer("/metadata/deletionTimestamp").is_none()
            });
            // The due pods the rate allows, evicted together (their
            // writes share log entries).
            let mut evictions = tokio::task::JoinSet::new();
            let mut limited = false;
            for pod in on_node {
                let due =
                    toleration(&pod, self.default_toleration).is_some_and(|t| since.elapsed() >= t);
                if !due {
                    continue;
                }
                if !bucket.take() {
                    limited = true;
                    break;
                }
                let fenced = self.registry.clone();
                let msg = format!(
                    "Marking for deletion Pod {}/{}",
                    objects::namespace_of(&pod),
                    objects::name_of(&pod)
                );
                self.events.emit(
                    &shoal_model::events::ObjectRef::of(&pod),
                    shoal_model::events::EventType::Normal,
                    "TaintManagerEviction",
                    &msg,
                );
                evictions.spawn(async move { (evict_lost_pod(&fenced, &pod).await, pod) });
            }
            let mut evicted = 0;
            while let Some(r) = evictions.join_next().await {
                match r {
                    Ok((Ok(_), _)) => evicted += 1,
                    Ok((Err(e), pod)) => {
                        tracing::debug!(pod = objects::name_of(&pod), "evicting: {e}")
                    }
                    Err(e) => tracing::debug!("evicting: {e}"),
                }
            }
            if evicted > 0 {
                tracing::info!(%node, evicted, "evicted pods from an unreachable node");
            }
            if limited {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_of_the_unreachable_taint() {
        let d = Duration::from_secs(3);
        assert_eq!(toleration(&json!({"spec": {}}), d), Some(d));
        let own = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        assert_eq!(toleration(&own, d), Some(Duration::from_secs(10)));
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(toleration(&forever, d), None);
        let other = json!({"spec": {"tolerations": [{"key": "x", "operator": "Exists"}]}});
        assert_eq!(toleration(&other, d), Some(d));
    }

    #[test]
    fn unreachable_nodes_get_taints_and_unknown_then_recover() {
        let node = json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let down = with_reachability(&node, false);
        assert!(is_unreachable(&down));
        assert_eq!(down["status"]["conditions"][0]["status"], "Unknown");
        assert_eq!(down["spec"]["taints"].as_array().unwrap().len(), 3);
        let up = with_reachability(&down, true);
        assert!(!is_unreachable(&up));
        assert_eq!(up["status"]["conditions"][0]["status"], "True");
        assert_eq!(
            up["spec"]["taints"],
            json!([{"key": "dedicated", "effect": "NoSchedule"}])
        );
    }
}
