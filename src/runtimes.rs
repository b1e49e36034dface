//! Building a worker node's runtimes from its `[kubelet]` config: the
//! default runtime (`runtime`) and the others it offers (`runtimes`),
//! wrapped in one `MultiRuntime` that runs each pod with the handler its
//! RuntimeClass names.
//!
//! The runtimes need the node's /24, which registration gives, so what is
//! built here is a [`MakeRuntime`] called then. Order matters because the
//! process and docker runtimes share the node's CNI sandboxes: the process
//! runtime is built first (it adopts the pods a previous agent left), then
//! the sandboxes are prepared keeping those pods and the docker runtime's
//! (its pod directories), then docker starts and adopts its own (at once
//! when it is the default; in the background, and again while its engine
//! does not answer, when it is not).

use std::sync::Arc;
use std::time::Duration;

use crate::config::NodeConfig;
use crate::kubelet::config::RuntimeKind;
use crate::kubelet::multi::{Build, ClassLookup, MultiRuntime};
use crate::kubelet::podevents::PodEvents;
use crate::kubelet::process::sandbox::Sandboxes;
use crate::kubelet::{MakeRuntime, Runtime, RuntimeError};
use crate::model::events::EventRecorder;
use crate::model::podcidr::PodSlot;
use crate::store::{ReadRequest, Store};

/// The node's runtimes, built once it has its slot; the config is checked
/// now, so a node that cannot give pods what was asked for does not start.
pub fn make(
    cfg: &NodeConfig,
    store: Store,
    metrics: &crate::metrics::Metrics,
) -> anyhow::Result<MakeRuntime> {
    let offered = cfg
        .kubelet
        .offered()
        .map_err(|e| anyhow::anyhow!("kubelet: {e}"))?;
    let default = offered[0];
    if default == RuntimeKind::Sim {
        let node_name = cfg.name.clone();
        return Ok(Box::new(move |slot| {
            let (store, node_name) = (store.clone(), node_name.clone());
            Box::pin(async move {
                let rt = crate::kubelet::sim::SimRuntime::new(&slot);
                let recorder = EventRecorder::new(Arc::new(store), "kubelet", &node_name);
                rt.set_events(PodEvents::new(recorder));
                Ok(Arc::new(rt) as Arc<dyn Runtime>)
            })
        }));
    }
    let network = cfg.kubelet.network;
    let sandboxed = Sandboxes::wanted(network).map_err(|e| anyhow::anyhow!("kubelet: {e}"))?;
    let mut with_docker = offered.contains(&RuntimeKind::Docker);
    if with_docker && !sandboxed {
        let why = format!(
            "the docker runtime gives each pod a CNI sandbox, so it needs root, the CNI plugins and kubelet.network auto or cni (it is {network})"
        );
        if default == RuntimeKind::Docker {
            anyhow::bail!("kubelet: {why}");
        }
        tracing::warn!("kubelet: not offering the docker runtime: {why}");
        with_docker = false;
    }
    let with_process = offered.contains(&RuntimeKind::Process);
    if !sandboxed {
        tracing::info!(
            "kubelet: pods share the host's network (loopback pod IPs): kubelet.network = {network}, root: {}",
            crate::kubelet::process::sandbox::is_root()
        );
    }
    // The `shoal` binary runs each container's shim.
    let shim = if cfg.kubelet.shim.as_os_str().is_empty() {
        std::env::current_exe().map_err(|e| anyhow::anyhow!("kubelet: the shoal binary: {e}"))?
    } else {
        cfg.kubelet.shim.clone()
    };
    let backoff = crate::kubelet::process::Backoff {
        initial: Duration::from_millis(cfg.kubelet.restart_backoff_ms),
        max: Duration::from_millis(cfg.kubelet.restart_backoff_max_ms),
        ..Default::default()
    };
    let (range, data_dir) = (cfg.kubelet.pod_cidr.clone(), cfg.data_dir.clone());
    let domain = cfg.kubelet.cluster_domain.clone();
    let socket = cfg.kubelet.docker_socket.clone();
    let lookup = class_lookup(store.clone());
    let docker_metrics = crate::kubelet::docker::metrics::DockerMetrics::default();
    if with_docker {
        docker_metrics.register(metrics);
    }
    let node_name = cfg.name.clone();
    Ok(Box::new(move |slot: PodSlot| {
        let (shim, range, data_dir, domain, socket, lookup, store, node_name) = (
            shim.clone(),
            range.clone(),
            data_dir.clone(),
            domain.clone(),
            socket.clone(),
            lookup.clone(),
            store.clone(),
            node_name.clone(),
        );
        let docker_metrics = docker_metrics.clone();
        Box::pin(async move {
            let sandboxes = Sandboxes::for_mode(network, &range, &slot, &data_dir)?
                .map(|s| s.with_cluster_domain(&domain));
            // The docker runtime's pods (adopted when it starts) keep
            // their sandboxes too.
            let docker_pods: Vec<String> = if with_docker {
                std::fs::read_dir(data_dir.join("docker"))
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let process = if with_process {
                let rt = crate::kubelet::process::ProcessRuntime::new(
                    &data_dir.join("pods"),
                    &slot,
                    backoff,
                    &shim,
                    sandboxes.clone(),
                )
                .map_err(|e| RuntimeError::Host(format!("the pods directory: {e}")))?;
                rt.set_events(PodEvents::new(EventRecorder::new(
                    Arc::new(store.clone()),
                    "kubelet",
                    &node_name,
                )));
                // Keeps the sandboxes of the pods it adopted.
                rt.prepare_keeping(&docker_pods).await?;
                Some(Arc::new(rt) as Arc<dyn Runtime>)
            } else {
                if let Some(sbs) = &sandboxes {
                    sbs.prepare(&docker_pods).await?;
                }
                None
            };
            let docker = with_docker.then(|| {
                let (sbs, root) = (sandboxes.clone(), data_dir.join("docker"));
                let index = slot.index;
                let events = PodEvents::new(EventRecorder::new(
                    Arc::new(store.clone()),
                    "kubelet",
                    &node_name,
                ));
                let build: Build = Box::new(move || {
                    let (sbs, root, socket, events, metrics) = (
                        sbs.clone(),
                        root.clone(),
                        socket.clone(),
                        events.clone(),
                        docker_metrics.clone(),
                    );
                    Box::pin(async move {
                        let sbs = sbs.ok_or_else(|| {
                            RuntimeError::Unsupported(
                                "the docker runtime needs pod sandboxes".into(),
                            )
                        })?;
                        let rt = crate::kubelet::docker::DockerRuntime::start(
                            &socket, index, sbs, backoff, &root, events, metrics,
                        )
                        .await?;
                        Ok(Arc::new(rt) as Arc<dyn Runtime>)
                    })
                });
                build
            });
            let (default_rt, others): (Arc<dyn Runtime>, Vec<(String, Build)>) =
                match (default, process, docker) {
                    (RuntimeKind::Docker, process, Some(mut build)) => {
                        let rt = build().await?;
                        let others = process
                            .map(|p| {
                                let build: Build =
                                    Box::new(move || Box::pin(std::future::ready(Ok(p.clone()))));
                                vec![(RuntimeKind::Process.as_str().to_string(), build)]
                            })
                            .unwrap_or_default();
                        (rt, others)
                    }
                    (_, Some(process), docker) => (
                        process,
                        docker
                            .map(|b| vec![(RuntimeKind::Docker.as_str().to_string(), b)])
                            .unwrap_or_default(),
                    ),
                    _ => {
                        return Err(RuntimeError::Unsupported(format!(
                            "no {default} runtime to build"
                        )))
                    }
                };
            Ok(Arc::new(MultiRuntime::new(default_rt, others, lookup)) as Arc<dyn Runtime>)
        })
    }))
}

/// The handler of a RuntimeClass, read from the store (a class is read
/// when a pod naming it first starts on the node).
fn class_lookup(store: Store) -> ClassLookup {
    Arc::new(move |class: String| {
        let store = store.clone();
        Box::pin(async move {
            let key = crate::model::resources::RUNTIMECLASSES.key("", &class);
            let read = store
                .read(ReadRequest::key(key))
                .await
                .map_err(|e| e.to_string())?;
            Ok(read.kvs.first().and_then(|kv| {
                serde_json::from_slice::<serde_json::Value>(&kv.value)
                    .ok()?
                    .get("handler")?
                    .as_str()
                    .map(str::to_string)
            }))
        })
    })
}
