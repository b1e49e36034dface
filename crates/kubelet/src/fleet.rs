//! A fleet of hollow kubelets in one process (like kwok): N sim nodes
//! registered as Node objects, and one pushed watch of every pod (the
//! watch cache) that runs each pod bound to one of them, instead of N
//! filtered watches. `shoal sim` drives the control plane with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::sim::SimRuntime;
use super::status::StatusReporter;
use super::{node_object, pod_status, NodeSpec, Runtime};
use shoal_model::cache::{Cache, Kind, Start};
use shoal_model::errors::{ApiError, ApiResult};
use shoal_model::events::EventRecorder;
use shoal_model::objects;
use shoal_model::podcidr::{self, PodCidrs, PodSlot};
use shoal_model::registry::Registry;
use shoal_store::command::{Op, Txn};
use shoal_store::{ReadRequest, Store};

/// Node registrations in flight at once (the store groups them).
const IN_FLIGHT: usize = 512;

/// Status reports (batches of up to 1,024 writes) in flight at once.
const REPORTS_IN_FLIGHT: usize = 4;

pub struct Fleet {
    pub store: Store,
    pub cache: Cache,
    pub nodes: Vec<NodeSpec>,
    pub pod_range: PodCidrs,
    /// Each node's /24, once registered.
    pub slots: HashMap<String, PodSlot>,
    /// Whether each node records its kubelet's Events (Pulled, Created,
    /// Started, Killing), as a real kubelet does.
    pub events: bool,
}

impl Fleet {
    /// Creates every Node object, each with its own /24 of the pod range
    /// claimed in the same transaction (the claims are read once and the
    /// free /24s handed out in order; an exhausted range is an error).
    pub async fn register(&mut self) -> ApiResult<()> {
        let nodes = &shoal_model::resources::NODES;
        let read = self
            .store
            .read(ReadRequest::prefix(podcidr::CLAIMS))
            .await?;
        let mut claims = self.pod_range.claims(&read.kvs);
        let gate = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for spec in &self.nodes {
            let mut node = node_object(spec, "sim", &[], &[]);
            // Hollow nodes announce a local-path directory too, so claims
            // of the default class are provisioned on them (nothing is
            // mounted: sim pods have no filesystem).
            node["metadata"]["annotations"] = serde_json::json!({
                objects::LOCAL_PATH_ANNOTATION: format!("/sim/{}/local-path", spec.name)
            });
            let mut obj = objects::prepare_create(nodes, "", node)?;
            let key = nodes.key("", &spec.name);
            let mut txn = Txn::create(key, Vec::new());
            let slot = self
                .pod_range
                .assign_from(&mut claims, &mut obj, &mut txn)?;
            if let Some(Op::Put { value, .. }) = txn.success.first_mut() {
                *value = objects::stored_bytes(&obj);
            }
            self.slots.insert(spec.name.clone(), slot);
            let (store, gate, name) = (self.store.clone(), gate.clone(), spec.name.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let done = store.write(txn).await?;
                if done.succeeded {
                    Ok(())
                } else {
                    // The Node exists, or its /24 was taken meanwhile.
                    Err(ApiError::already_exists(nodes, &name))
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| ApiError::new(500, "InternalError", e.to_string()))??;
        }
        Ok(())
    }

    /// Runs the pods bound to the fleet's nodes until dropped.
    pub async fn run(self) {
        let pods = &shoal_model::resources::PODS;
        let runtimes: HashMap<String, (SimRuntime, String, EventRecorder)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let slot = self.slots.get(&n.name)?;
                // One recorder a node, as each kubelet has its own.
                let rt = SimRuntime::new(slot);
                let r = EventRecorder::new(Arc::new(self.store.clone()), "kubelet", &n.name)
                    .enabled(self.events);
                rt.set_events(crate::podevents::PodEvents::new(r.clone()));
                Some((n.name.clone(), (rt, n.address.clone(), r)))
            })
            .collect();
        let (reporter, _) = StatusReporter::start(self.store.clone(), REPORTS_IN_FLIGHT);
        loop {
            let Ok(mut w) = self.cache.watch(&pods.prefix(None), Start::Snapshot) else {
                return;
            };
            let mut backlog: Vec<Arc<shoal_model::cache::CacheEvent>> = w.initial.clone();
            let mut last = w.rev;
            loop {
                for e in backlog.drain(..) {
                    if e.kind == Kind::Deleted {
                        continue;
                    }
                    let node = e
                        .object
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let Some((rt, host, recorder)) = runtimes.get(node) else {
                        continue;
                    };
                    let pod = e.object.clone();
                    let key = e.key.clone();
                    if pod.pointer("/metadata/deletionTimestamp").is_some() {
                        let uid = super::pod_uid(&pod);
                        if rt.state(&uid).is_some() {
                            super::killing(recorder, &pod);
                        }
                        let _ = rt.stop(&uid, Duration::ZERO).await;
                        let rev = objects::rv_of(&pod).ok().flatten().unwrap_or(0);
                        match Registry::finish_pod_txn(&pod, rev) {
                            Ok(Some(txn)) => reporter.report(key, txn),
                            // Finalizers hold it: their owner removes it.
                            Ok(None) => {}
                            Err(e) => tracing::warn!("sim kubelet: {}", e.message),
                        }
                        continue;
                    }
                    if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running") {
                        continue;
                    }
                    let config = match super::PodConfig::of(&pod) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(
                                "sim kubelet: not starting {}: {e}",
                                super::pod_uid(&pod)
                            );
                            continue;
                        }
                    };
                    let state = rt.start(&config).await;
                    let rev = objects::rv_of(&pod).ok().flatten().unwrap_or(0);
                    let status = pod_status(&pod, &state, host);
                    super::report_status(&reporter, &key, &pod, rev, status);
                }
                match w.live.recv().await {
                    Ok(b) => {
                        backlog.extend(w.mine(&b).filter(|e| e.rev > last).cloned());
                        last = last.max(b.rev);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
