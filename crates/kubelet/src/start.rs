//! Starting a kubelet: register the Node (which gives it its /24 of the
//! cluster's pod range), build the runtime for that /24 (the process
//! runtime's bridge and addresses come from it), then run the pods bound to
//! the node. The `kubelet` actor is served from the start and answers
//! "not registered yet" until the runtime exists.
//!
//! The slot is also written to `<data dir>/pod-slot.json`, so that tools
//! which tear a node's sandboxes down after it stopped (`shoal dev`, the
//! test clusters) know its bridge without a store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use shoal_model::errors::ApiResult;
use shoal_model::events::EventRecorder;
use shoal_model::podcidr::{PodCidrs, PodSlot};
use shoal_store::Store;

use crate::{node::register, Kubelet, NodeSpec, Runtime, RuntimeError};

/// The node's runtime, once the node is registered.
pub type RuntimeCell = Arc<OnceLock<Arc<dyn Runtime>>>;

/// Builds the node's runtime for the slot it was given.
pub type MakeRuntime =
    Box<dyn FnMut(PodSlot) -> BoxFuture<'static, Result<Arc<dyn Runtime>, RuntimeError>> + Send>;

/// What runs once a node is registered and its runtime built.
pub type OnRegistered = Box<dyn FnOnce(&PodSlot, &NodeSpec) + Send>;

/// Everything a kubelet needs before its node is registered.
pub struct KubeletStart {
    pub store: Store,
    pub spec: NodeSpec,
    /// The runtime's name, for the Node's `containerRuntimeVersion`.
    pub runtime_name: &'static str,
    pub pod_range: PodCidrs,
    pub data_dir: PathBuf,
    pub cell: RuntimeCell,
    pub make: MakeRuntime,
    pub metrics: crate::KubeletMetrics,
    /// Publish the pod bridge's gateway as the node's InternalIP
    /// (`kubelet.node_address = bridge`).
    pub bridge_address: bool,
    /// Called once with the node's slot when it is registered and its
    /// runtime built (the service proxy and DNS start then: their tables
    /// and addresses come from the slot, the bridge from the runtime).
    pub on_registered: Option<OnRegistered>,
}

impl KubeletStart {
    /// Registers the node, builds its runtime, then runs its pods, forever.
    /// A registration that keeps failing (an exhausted pod range, say) is
    /// logged as an error, with why, and retried.
    pub async fn run(mut self) {
        let name = self.spec.name.clone();
        let mut pause = Duration::from_millis(100);
        let mut tries = 0u32;
        let slot = loop {
            match register(
                &self.store,
                &self.spec,
                self.runtime_name,
                &[],
                &[],
                &self.pod_range,
            )
            .await
            {
                Ok(slot) => break slot,
                Err(e) => {
                    tries += 1;
                    if tries % 20 == 5 {
                        tracing::error!(node = %name, "kubelet: cannot register the node: {}", e.message);
                    } else {
                        tracing::debug!(node = %name, "kubelet: registering the node: {}", e.message);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        };
        if self.bridge_address {
            // The gateway is known once the slot is: publish it (the node
            // keeps its slot, so this second write only refreshes).
            let gateway = std::net::Ipv4Addr::from(u32::from(slot.network()) + 1).to_string();
            if self.spec.address != gateway {
                self.spec.address = gateway;
                while let Err(e) = register(
                    &self.store,
                    &self.spec,
                    self.runtime_name,
                    &[],
                    &[],
                    &self.pod_range,
                )
                .await
                {
                    tracing::debug!(node = %name, "kubelet: publishing the node's address: {}", e.message);
                    tokio::time::sleep(pause).await;
                }
            }
        }
        if let Err(e) = save_slot(&self.data_dir, &slot) {
            tracing::warn!(node = %name, "kubelet: {e}");
        }
        tracing::info!(node = %name, pod_cidr = %slot.cidr, runtime = self.runtime_name, "kubelet registered its node");
        let runtime = loop {
            match (self.make)(slot.clone()).await {
                Ok(rt) => break rt,
                Err(e) => {
                    tracing::error!(node = %name, "kubelet: the runtime: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        let _ = self.cell.set(runtime.clone());
        // The Node says which runtime handlers can start pods now, as
        // that changes (labels the RuntimeClasses select, a condition).
        tokio::spawn(publish_handlers(
            self.store.clone(),
            self.spec.clone(),
            self.runtime_name,
            self.pod_range.clone(),
            runtime.clone(),
        ));
        // The node's bridge and address exist now (the runtime prepared
        // them): what listens on them may start.
        if let Some(f) = self.on_registered.take() {
            f(&slot, &self.spec);
        }
        let events = EventRecorder::new(Arc::new(self.store.clone()), "kubelet", &name);
        // Local volumes: the directory they live under, announced; the
        // directories of deleted ones, removed.
        if runtime.needs_config() {
            tokio::spawn(crate::local_volumes::run(
                self.store.clone(),
                name.clone(),
                crate::local_volumes::root_of(&self.data_dir),
                events.clone(),
            ));
        }
        Kubelet {
            store: self.store,
            spec: self.spec,
            runtime,
            events,
            metrics: self.metrics,
        }
        .run()
        .await
    }
}

/// Writes the node's runtime handlers into its Node each time they
/// change, until the runtime is gone.
async fn publish_handlers(
    store: Store,
    spec: NodeSpec,
    runtime_name: &'static str,
    range: PodCidrs,
    runtime: Arc<dyn Runtime>,
) {
    let mut handlers = runtime.handlers();
    loop {
        let now = handlers.borrow_and_update().clone();
        let images = runtime.images().await;
        let mut pause = Duration::from_millis(100);
        while let Err(e) = register(&store, &spec, runtime_name, &now, &images, &range).await {
            tracing::debug!(node = %spec.name, "kubelet: publishing the runtime handlers: {}", e.message);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            if handlers.has_changed().unwrap_or(false) {
                break;
            }
        }
        if handlers.changed().await.is_err() {
            return;
        }
    }
}

/// Registers `spec`'s Node (or refreshes it) and returns its slot of
/// `range`; the error says why (an exhausted range names it).
pub async fn register_node(
    store: &Store,
    spec: &NodeSpec,
    runtime_name: &str,
    range: &PodCidrs,
) -> ApiResult<PodSlot> {
    register(store, spec, runtime_name, &[], &[], range).await
}

/// Where a node's slot is kept in its data dir.
pub fn slot_path(data_dir: &Path) -> PathBuf {
    data_dir.join("pod-slot.json")
}

fn save_slot(data_dir: &Path, slot: &PodSlot) -> Result<(), String> {
    let path = slot_path(data_dir);
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(slot).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The slot a node's kubelet last registered with, if any.
pub fn load_slot(data_dir: &Path) -> Option<PodSlot> {
    let bytes = std::fs::read(slot_path(data_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
