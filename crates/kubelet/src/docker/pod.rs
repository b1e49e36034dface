//! One pod's task under the docker runtime: its sandbox (the pause
//! container, then CNI), its init containers in order, its app containers
//! together, each a loop of engine containers (`ctr`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::{broadcast, watch};

use super::ctr::{CtrLoop, Shared};
use super::engine::Engine;
use super::runtime::{container_name, labels, lock, Ctr};
use crate::podevents::PodEvents;
use crate::process::sandbox::Sandboxes;
use crate::process::Backoff;
use crate::{ContainerState, PodConfig};

/// What one pod's task needs.
pub(super) struct PodTask {
    pub(super) engine: Engine,
    pub(super) node: u32,
    pub(super) sandboxes: Arc<Sandboxes>,
    /// The pod as stored (nothing resolved: what may be saved to disk).
    pub(super) pod: PodConfig,
    /// The pod as resolved, once it is (see `PodRun::config`).
    pub(super) config: watch::Receiver<Option<Arc<PodConfig>>>,
    /// The sandbox container of a pod adopted from a previous agent.
    pub(super) resume: Option<String>,
    pub(super) ip: Arc<Mutex<String>>,
    pub(super) init: Vec<Arc<Mutex<Ctr>>>,
    pub(super) containers: Vec<Arc<Mutex<Ctr>>>,
    pub(super) stop: watch::Receiver<Option<Duration>>,
    pub(super) changes: broadcast::Sender<String>,
    pub(super) events: PodEvents,
    pub(super) metrics: super::metrics::DockerMetrics,
    pub(super) pulled: watch::Sender<Vec<crate::Handler>>,
    pub(super) backoff: Backoff,
    /// The pod's own files (its resolv.conf and hosts).
    pub(super) dir: PathBuf,
}

impl PodTask {
    fn uid(&self) -> String {
        self.pod.uid().to_string()
    }

    fn labels(&self, container: &str, attempt: u32) -> HashMap<String, String> {
        pod_labels(&self.pod, self.node, container, attempt)
    }

    /// Every container shows `state` (the sandbox failed or is pending).
    fn set_all(&self, state: &ContainerState) {
        for c in self.init.iter().chain(&self.containers) {
            let mut c = lock(c);
            c.state = state.clone();
            c.ready = false;
        }
        let _ = self.changes.send(self.uid());
    }

    /// The pod's resolv.conf (the node's DNS, the cluster's search list)
    /// and hosts, as the process runtime writes them, bound read-only
    /// into each container.
    fn net_files(&self, ip: &str) -> Result<Vec<String>, String> {
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let domain = self.sandboxes.cluster_domain();
        let pod = &self.pod.pod;
        let files = [
            (
                "resolv.conf",
                crate::process::dns::resolv_conf(pod, self.sandboxes.gateway(), domain, &host),
            ),
            ("hosts", crate::process::dns::hosts(pod, ip, domain)),
        ];
        for (name, text) in files {
            let path = etc.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(self.binds())
    }

    /// The binds of the pod's network files (written by `net_files`).
    fn binds(&self) -> Vec<String> {
        ["resolv.conf", "hosts"]
            .iter()
            .map(|name| {
                format!(
                    "{}:/etc/{name}:ro",
                    self.dir.join("etc").join(name).display()
                )
            })
            .collect()
    }

    /// Creates and starts the pause container and wires its network;
    /// returns the sandbox container's id and the binds of the pod's
    /// network files.
    async fn sandbox(&self) -> Result<(String, Vec<String>), String> {
        let image = self.engine.ensure_pause().await?;
        // The pod's directory first: what names it to clean-up later.
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let uid = self.uid();
        let name = container_name(self.node, &uid, labels::SANDBOX, 0);
        let docker = self.engine.api();
        // What a failed earlier attempt left under the name goes first.
        let _ = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let share_pid = self
            .pod
            .spec()
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false);
        let body = ContainerCreateBody {
            image: Some(image),
            hostname: Some(self.pod.name().chars().take(63).collect()),
            labels: Some(self.labels(labels::SANDBOX, 0)),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ipc_mode: Some("shareable".into()),
                // Its own PID namespace either way; the app containers
                // join it only when the pod shares one.
                pid_mode: (!share_pid).then(String::new),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .metrics
            .time(
                "create_sandbox_container",
                docker.create_container(
                    Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                    body,
                ),
            )
            .await
            .map_err(|e| format!("creating the pod sandbox: {e}"))?;
        self.metrics
            .time(
                "start_sandbox_container",
                docker.start_container(&created.id, None),
            )
            .await
            .map_err(|e| format!("starting the pod sandbox: {e}"))?;
        let pid = docker
            .inspect_container(&created.id, None)
            .await
            .map_err(|e| format!("inspecting the pod sandbox: {e}"))?
            .state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .ok_or("the pod sandbox has no process")?;
        let sandbox = self
            .metrics
            .time(
                "set_up_pod_network",
                self.sandboxes.wire_process(&uid, pid as u32),
            )
            .await
            .map_err(|e| e.to_string())?;
        let binds = self.net_files(&sandbox.ip)?;
        // What an agent after this one adopts the pod by.
        super::adopt::save(&self.dir, &self.pod, &sandbox.ip, &created.id)?;
        *lock(&self.ip) = sandbox.ip;
        Ok((created.id, binds))
    }

    /// Runs the pod until it is stopped.
    pub(super) async fn run(self) {
        let mut resume = self.resume.clone();
        loop {
            let resumed = resume.is_some();
            let sandbox = match resume.take() {
                Some(id) => Ok((id, self.binds())),
                None => tokio::select! {
                    s = self.metrics.time("run_podsandbox", self.sandbox()) => s,
                    _ = stopped(self.stop.clone()) => return,
                },
            };
            let (sandbox, binds) = match sandbox {
                Ok(made) => made,
                Err(message) => {
                    tracing::warn!(pod = %self.uid(), "docker runtime: {message}");
                    self.set_all(&ContainerState::Waiting {
                        reason: "CreatePodSandboxError".into(),
                        message,
                    });
                    stopped(self.stop.clone()).await;
                    return;
                }
            };
            if !self.run_in(&sandbox, binds, resumed).await {
                return;
            }
            // The sandbox died: the pod is made again, a new sandbox and
            // new instances of its containers (containers joined to a lost
            // network namespace break silently).
            self.events.normal(
                &self.pod,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.".into(),
            );
            let docker = self.engine.api();
            let _ = docker
                .remove_container(
                    &sandbox,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
            self.sandboxes.destroy(&self.uid()).await;
            for c in self.init.iter().chain(&self.containers) {
                let mut c = lock(c);
                if let Some(id) = c.id.take() {
                    c.previous = Some(id);
                    c.restarts += 1;
                }
            }
        }
    }

    /// Runs the pod's containers in `sandbox` until the pod stops or its
    /// containers are done (false), or the sandbox dies (true, its
    /// containers stopped).
    async fn run_in(&self, sandbox: &str, binds: Vec<String>, resumed: bool) -> bool {
        // Its volumes, from the resolved pod (an adopted pod's files are
        // in place: only their paths are computed).
        let ip = lock(&self.ip).clone();
        let resolved = self.config.borrow().clone();
        let (volume_pod, write) = match &resolved {
            Some(c) => (c.as_ref(), !resumed),
            None => (&self.pod, false),
        };
        let ready = match crate::process::volumes::set_up(&self.dir, volume_pod, &ip, write) {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                tracing::info!(pod = %self.uid(), "docker runtime: {message}");
                self.events
                    .warning(&self.pod, "FailedMount", message.clone());
                self.set_all(&ContainerState::Waiting {
                    reason: "ContainerCreating".into(),
                    message,
                });
                stopped(self.stop.clone()).await;
                return false;
            }
        };
        let share_pid = self
            .pod
            .spec()
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false);
        // The containers stop when the pod does, or when the sandbox dies.
        let (halt, halted) = watch::channel(None);
        let loops = |list: &[Arc<Mutex<Ctr>>], specs: &[Container], init: bool| -> Vec<CtrLoop> {
            list.iter()
                .zip(specs)
                .map(|(ctr, spec)| CtrLoop {
                    task: self.shared(binds.clone(), halted.clone()),
                    sandbox: sandbox.to_string(),
                    share_pid,
                    spec: spec.clone(),
                    ctr: ctr.clone(),
                    policy: if init {
                        self.pod.restart_policy().for_init()
                    } else {
                        self.pod.restart_policy()
                    },
                    init,
                    mounts: crate::process::volumes::mounts(spec, &ready)
                        .map_err(|e| e.to_string()),
                })
                .collect()
        };
        let init = loops(&self.init, self.pod.init_containers(), true);
        let apps = loops(&self.containers, self.pod.containers(), false);
        let work = async move {
            for l in init {
                if !l.run().await {
                    return;
                }
            }
            futures::future::join_all(apps.into_iter().map(CtrLoop::run)).await;
        };
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => false,
            grace = stopped_grace(self.stop.clone()) => {
                let _ = halt.send(Some(grace));
                work.await;
                false
            }
            () = self.sandbox_ends(sandbox) => {
                tracing::info!(pod = %self.uid(), "docker runtime: the pod's sandbox died; making the pod again");
                let _ = halt.send(Some(Duration::ZERO));
                work.await;
                true
            }
        }
    }

    /// Returns once sandbox container `id` no longer runs (an engine that
    /// does not answer is waited for, not taken for the sandbox's end).
    async fn sandbox_ends(&self, id: &str) {
        let docker = self.engine.api();
        loop {
            let mut wait = docker.wait_container(id, None);
            let _ = wait.next().await;
            match docker.inspect_container(id, None).await {
                Ok(i) if i.state.as_ref().and_then(|s| s.running) == Some(true) => continue,
                Ok(_) => return,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return,
                Err(_) => self.engine.answers().await,
            }
        }
    }

    fn shared(&self, binds: Vec<String>, stop: watch::Receiver<Option<Duration>>) -> Arc<Shared> {
        Arc::new(Shared {
            binds,
            engine: self.engine.clone(),
            node: self.node,
            uid: self.uid(),
            pod: self.pod.clone(),
            config: self.config.clone(),
            ip: self.ip.clone(),
            stop,
            changes: self.changes.clone(),
            events: self.events.clone(),
            metrics: self.metrics.clone(),
            pulled: self.pulled.clone(),
            backoff: self.backoff,
            dir: self.dir.clone(),
        })
    }
}

/// The grace period the pod is stopped with, once it is. A sender that
/// is gone is an agent going away (dropped, or its runtime shutting
/// down), never a stop: the pod's containers run on for the next agent
/// to adopt, as after a `kill -9`.
pub(super) async fn stopped_grace(mut stop: watch::Receiver<Option<Duration>>) -> Duration {
    let grace = stop.wait_for(Option::is_some).await.map(|g| *g);
    match grace {
        Ok(g) => g.unwrap_or(Duration::ZERO),
        Err(_) => std::future::pending().await,
    }
}

/// Resolves once the pod is told to stop (never if the agent goes away).
pub(super) async fn stopped(stop: watch::Receiver<Option<Duration>>) {
    stopped_grace(stop).await;
}

/// The labels of one engine container of pod `pod` on node `node`.
pub(super) fn pod_labels(
    pod: &PodConfig,
    node: u32,
    container: &str,
    attempt: u32,
) -> HashMap<String, String> {
    let meta = &pod.pod.metadata;
    HashMap::from([
        (labels::NODE.to_string(), node.to_string()),
        (labels::POD_UID.to_string(), pod.uid().to_string()),
        (
            labels::POD_NAMESPACE.to_string(),
            meta.namespace.clone().unwrap_or_default(),
        ),
        (
            labels::POD_NAME.to_string(),
            meta.name.clone().unwrap_or_default(),
        ),
        (labels::CONTAINER.to_string(), container.to_string()),
        (labels::ATTEMPT.to_string(), attempt.to_string()),
    ])
}
