//! The docker runtime's pods: one task per pod creates its sandbox (the
//! pause container, whose network namespace the node's CNI bridge wires
//! as the process runtime's), then runs its init containers in order and
//! its app containers together, each as a loop of engine containers:
//! create, start, wait, and the restartPolicy with its back-off.
//!
//! ```text
//! start(pod) ─► pause container (network none, IPC shareable) ─► ip netns attach + CNI ADD
//!                  └─► per container: create (container:<pause> network, IPC[, PID]) ─► start ─► wait ─► restartPolicy
//! ```
//!
//! Every engine container carries labels naming its pod (uid, namespace,
//! name), its container and attempt, and the node, so stopping a pod
//! removes exactly its containers, by label. An instance's container is
//! kept until the next one has started, for `logs --previous`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::{broadcast, watch};

use super::engine::Engine;
use crate::process::sandbox::Sandboxes;
use crate::process::Backoff;
use crate::RuntimeError;
use crate::{ContainerState, ContainerStatus, PodConfig, PodState, Runtime};
use shoal_kubelet_proto::PodLogs;

/// The most of one container's log a `logs` request returns.
const MAX_LOG_BYTES: usize = 10 << 20;

/// The label keys every engine container of shoal's carries.
pub mod labels {
    pub const NODE: &str = "io.shoal.node";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const CONTAINER: &str = "io.kubernetes.container.name";
    pub const ATTEMPT: &str = "io.shoal.container.attempt";
    /// The sandbox container's container name.
    pub const SANDBOX: &str = "POD";
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One container as the runtime keeps it.
#[derive(Debug, Clone)]
pub(super) struct Ctr {
    pub(super) name: String,
    pub(super) image: String,
    pub(super) state: ContainerState,
    pub(super) last: Option<ContainerState>,
    pub(super) restarts: u32,
    /// The engine's id of the current instance, and of the one before.
    pub(super) id: Option<String>,
    pub(super) previous: Option<String>,
    pub(super) ready: bool,
}

struct PodRun {
    ip: Arc<Mutex<String>>,
    init: Vec<Arc<Mutex<Ctr>>>,
    containers: Vec<Arc<Mutex<Ctr>>>,
    stop: watch::Sender<Option<Duration>>,
    /// The pod as resolved (None for a pod adopted from a previous agent
    /// until the kubelet resolves it again: its containers' next
    /// instances wait for it).
    config: watch::Sender<Option<Arc<PodConfig>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a pod adopted from a previous agent brings (see `adopt`).
pub(super) struct Adopted {
    pub(super) ip: String,
    pub(super) sandbox: String,
    pub(super) init: Vec<Ctr>,
    pub(super) containers: Vec<Ctr>,
}

struct Inner {
    engine: Engine,
    node: u32,
    sandboxes: Arc<Sandboxes>,
    pods: Mutex<HashMap<String, PodRun>>,
    changes: broadcast::Sender<String>,
    events: crate::podevents::PodEvents,
    metrics: super::metrics::DockerMetrics,
    backoff: Backoff,
    /// Pods' own files, `<root>/<uid>/`.
    root: PathBuf,
    /// Its handler, `docker`, with why the engine does not answer if it
    /// does not (see `Engine::follow_health`).
    handlers: watch::Sender<Vec<crate::Handler>>,
}

/// The docker runtime of one node (cheap to clone).
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

impl DockerRuntime {
    /// A runtime on `engine` whose pods get `sandboxes`' CNI network.
    /// `node` (the node's slot index) names its engine containers, so
    /// several nodes may share one engine. Pods' files go under `root`;
    /// their containers' Events go to `events`.
    pub fn new(
        engine: Engine,
        node: u32,
        sandboxes: Sandboxes,
        backoff: Backoff,
        root: &Path,
        events: crate::podevents::PodEvents,
        metrics: super::metrics::DockerMetrics,
    ) -> DockerRuntime {
        DockerRuntime {
            inner: Arc::new(Inner {
                engine,
                node,
                sandboxes: Arc::new(sandboxes),
                pods: Mutex::new(HashMap::new()),
                changes: broadcast::channel(1024).0,
                events,
                metrics,
                backoff,
                root: root.to_owned(),
                handlers: watch::channel(vec![crate::Handler {
                    name: "docker".into(),
                    default: true,
                    problem: None,
                }])
                .0,
            }),
        }
    }

    /// Follows whether the engine answers (the runtime's handler state),
    /// until the runtime is dropped.
    pub fn follow_health(&self) {
        let weak = Arc::downgrade(&self.inner);
        let (engine, me) = (self.inner.engine.clone(), weak.clone());
        let health = move |problem: Option<String>| {
            if let Some(inner) = me.upgrade() {
                inner.handlers.send_modify(|hs| {
                    for h in hs {
                        h.problem = problem.clone();
                    }
                });
            }
        };
        tokio::spawn(engine.follow_health(health, move || weak.strong_count() > 0));
    }

    /// The runtime of node `node` on the engine at `socket`: the engine
    /// must answer (API 1.41 or later), the pause image is imported if
    /// missing, and the pods a previous agent of this node left are
    /// adopted (`adopt`: their containers go on, the same ones) or, what
    /// cannot be, removed. The caller prepares the node's sandboxes
    /// (`Sandboxes::prepare`) keeping the pods under `root` and those its
    /// other runtime keeps. It then follows whether the engine answers.
    pub async fn start(
        socket: &Path,
        node: u32,
        sandboxes: Sandboxes,
        backoff: Backoff,
        root: &Path,
        events: crate::podevents::PodEvents,
        metrics: super::metrics::DockerMetrics,
    ) -> Result<DockerRuntime, RuntimeError> {
        let engine = Engine::connect(socket).map_err(RuntimeError::Unsupported)?;
        engine
            .ping(Duration::from_secs(10))
            .await
            .map_err(RuntimeError::Unsupported)?;
        engine.ensure_pause().await.map_err(RuntimeError::Host)?;
        shoal_fabric::private::dir(root)
            .map_err(|e| RuntimeError::Host(format!("{}: {e}", root.display())))?;
        let rt = DockerRuntime::new(engine, node, sandboxes, backoff, root, events, metrics);
        super::adopt::adopt(&rt).await;
        rt.follow_health();
        Ok(rt)
    }

    /// Starts pod `pod`'s task: a new pod, or one `adopted` from a
    /// previous agent (its sandbox and containers go on; `pod` is then the
    /// unresolved pod it saved).
    fn launch(&self, pod: &PodConfig, adopted: Option<Adopted>) -> PodRun {
        let has_init = !pod.init_containers().is_empty();
        let fresh = |c: &Container, app: bool| Ctr {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: ContainerState::Waiting {
                reason: if has_init && app {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                }
                .into(),
                message: String::new(),
            },
            last: None,
            restarts: 0,
            id: None,
            previous: None,
            ready: false,
        };
        let shared = |list: Vec<Ctr>| -> Vec<Arc<Mutex<Ctr>>> {
            list.into_iter().map(|c| Arc::new(Mutex::new(c))).collect()
        };
        let (init, containers, ip, resume) = match adopted {
            Some(a) => (shared(a.init), shared(a.containers), a.ip, Some(a.sandbox)),
            None => (
                shared(
                    pod.init_containers()
                        .iter()
                        .map(|c| fresh(c, false))
                        .collect(),
                ),
                shared(pod.containers().iter().map(|c| fresh(c, true)).collect()),
                String::new(),
                None,
            ),
        };
        let refused = unsupported(pod);
        if let Some(message) = &refused {
            for c in init.iter().chain(&containers) {
                lock(c).state = ContainerState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: message.clone(),
                };
            }
        }
        let (stop, stop_rx) = watch::channel(None);
        let resolved = resume.is_none().then(|| Arc::new(pod.clone()));
        let (config, config_rx) = watch::channel(resolved);
        let ip = Arc::new(Mutex::new(ip));
        let uid = pod.uid().to_string();
        let task = super::pod::PodTask {
            engine: self.inner.engine.clone(),
            node: self.inner.node,
            sandboxes: self.inner.sandboxes.clone(),
            pod: pod.unresolved(),
            config: config_rx,
            resume,
            ip: ip.clone(),
            init: init.clone(),
            containers: containers.clone(),
            stop: stop_rx,
            changes: self.inner.changes.clone(),
            events: self.inner.events.clone(),
            metrics: self.inner.metrics.clone(),
            pulled: self.inner.handlers.clone(),
            backoff: self.inner.backoff,
            dir: self.inner.root.join(&uid),
        };
        PodRun {
            ip,
            init,
            containers,
            stop,
            config,
            task: tokio::spawn(async move {
                if refused.is_none() {
                    task.run().await
                }
            }),
        }
    }

    /// Keeps an adopted pod.
    pub(super) fn adopt_pod(&self, pod: &PodConfig, adopted: Adopted) {
        let run = self.launch(pod, Some(adopted));
        lock(&self.inner.pods).insert(pod.uid().to_string(), run);
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(super) fn node(&self) -> u32 {
        self.inner.node
    }

    pub(super) fn sandboxes(&self) -> &Sandboxes {
        &self.inner.sandboxes
    }

    pub(super) fn root(&self) -> &Path {
        &self.inner.root
    }

    fn state_of(run: &PodRun) -> PodState {
        let statuses = |list: &[Arc<Mutex<Ctr>>]| -> Vec<ContainerStatus> {
            list.iter()
                .map(|c| {
                    let c = lock(c);
                    ContainerStatus {
                        name: c.name.clone(),
                        image: c.image.clone(),
                        ready: c.ready,
                        state: c.state.clone(),
                        last_state: c.last.clone(),
                        restart_count: c.restarts,
                        container_id: c
                            .id
                            .as_ref()
                            .map(|id| format!("docker://{id}"))
                            .unwrap_or_default(),
                    }
                })
                .collect()
        };
        PodState {
            pod_ip: lock(&run.ip).clone(),
            containers: statuses(&run.containers),
            init_containers: statuses(&run.init),
        }
    }

    /// The engine container a logs request names.
    fn instance_of(&self, req: &PodLogs, uid: &str) -> Result<String, RuntimeError> {
        let pods = lock(&self.inner.pods);
        let not_here = || {
            RuntimeError::NotFound(format!(
                "container {:?} is not running on this node",
                req.container
            ))
        };
        let run = pods.get(uid).ok_or_else(not_here)?;
        let ctr = run
            .containers
            .iter()
            .chain(&run.init)
            .find(|c| req.container.is_empty() || lock(c).name == req.container)
            .ok_or_else(not_here)?;
        let c = lock(ctr);
        let id = if req.previous {
            c.previous.clone().ok_or_else(|| {
                RuntimeError::NotFound(format!(
                    "previous terminated container {:?} not found",
                    c.name
                ))
            })?
        } else {
            c.id.clone().ok_or_else(|| {
                RuntimeError::NotFound(format!("container {:?} has not started yet", c.name))
            })?
        };
        Ok(id)
    }
}

/// Removes every engine container of node `node` (app containers first,
/// sandboxes last), then each pod's sandbox network and files under
/// `root`: what an agent finds from a previous one, and what `shoal dev`
/// removes at exit.
pub async fn remove_node(engine: &Engine, node: u32, root: &Path, sandboxes: Option<&Sandboxes>) {
    remove_labelled(engine, &format!("{}={node}", labels::NODE)).await;
    if let Ok(pods) = std::fs::read_dir(root) {
        for pod in pods.flatten() {
            if let Some(sbs) = sandboxes {
                sbs.destroy(&pod.file_name().to_string_lossy()).await;
            }
            crate::process::volumes::remove_pod_dir(&pod.path());
        }
    }
}

/// The engine containers carrying `label` (`key=value`), in any state.
pub(super) async fn list_labelled(
    engine: &Engine,
    label: &str,
) -> Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    engine
        .api()
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
}

/// Removes the engine containers carrying `label` (`key=value`): app
/// containers first, sandboxes last.
pub(super) async fn remove_labelled(engine: &Engine, label: &str) {
    let docker = engine.api();
    let list = list_labelled(engine, label).await.unwrap_or_default();
    let is_sandbox = |c: &bollard::models::ContainerSummary| {
        c.labels
            .as_ref()
            .and_then(|l| l.get(labels::CONTAINER))
            .map(String::as_str)
            == Some(labels::SANDBOX)
    };
    let (sandbox, apps): (Vec<_>, Vec<_>) = list.into_iter().partition(is_sandbox);
    let remove = RemoveContainerOptionsBuilder::new().force(true).build();
    for c in apps.iter().chain(&sandbox) {
        if let Some(id) = &c.id {
            if let Err(e) = docker.remove_container(id, Some(remove.clone())).await {
                tracing::warn!("docker runtime: removing {id}: {e}");
            }
        }
    }
}

/// What a pod asks that this runtime does not do yet, if anything: such a
/// pod's containers wait with `CreateContainerConfigError` saying so,
/// rather than run without it.
pub fn unsupported(pod: &PodConfig) -> Option<String> {
    let spec = pod.spec()?;
    (spec.host_network == Some(true))
        .then(|| "the docker runtime does not support hostNetwork yet".into())
}

/// The engine container name of a pod's sandbox or of one instance of a
/// container (unique per node, so nodes may share an engine).
pub(super) fn container_name(node: u32, uid: &str, container: &str, attempt: u32) -> String {
    format!("shoal-{node}-{uid}-{container}-{attempt}")
}

/// What the engine is given for a container's process: its Entrypoint
/// and Cmd, each None to keep the image's.
pub type Argv = (Option<Vec<String>>, Option<Vec<String>>);

/// Entrypoint and Cmd for the engine from a container's command and args,
/// by Kubernetes' rules: neither given runs the image's own; `command`
/// replaces the image's ENTRYPOINT and drops its CMD; `args` alone keeps
/// the ENTRYPOINT and replaces the CMD. `$(VAR)` is expanded from the
/// container's environment.
pub fn entrypoint_and_cmd(c: &Container, env: &[(String, String)]) -> Result<Argv, String> {
    let vars: std::collections::BTreeMap<String, String> = env.iter().cloned().collect();
    let expand = |list: &Option<Vec<String>>| -> Result<Option<Vec<String>>, String> {
        match list {
            None => Ok(None),
            Some(items) => items
                .iter()
                .map(|s| {
                    crate::envs::expand(s, &vars).map_err(|e| format!("command and args: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    };
    let command = expand(&c.command)?.filter(|v| !v.is_empty());
    let args = expand(&c.args)?;
    Ok(match (command, args) {
        (None, None) => (None, None),
        (None, Some(args)) => (None, Some(args)),
        (Some(command), args) => (Some(command), Some(args.unwrap_or_default())),
    })
}

impl Runtime for DockerRuntime {
    fn handlers(&self) -> watch::Receiver<Vec<crate::Handler>> {
        self.inner.handlers.subscribe()
    }

    /// The engine's images, largest first, at most upstream's 50
    /// (`nodeStatusMaxImages`).
    fn images(&self) -> BoxFuture<'static, Vec<crate::NodeImage>> {
        let docker = self.inner.engine.api().clone();
        Box::pin(async move {
            let list = docker
                .list_images(None::<bollard::query_parameters::ListImagesOptions>)
                .await
                .unwrap_or_default();
            let mut out: Vec<crate::NodeImage> = list
                .into_iter()
                .map(|i| crate::NodeImage {
                    names: i
                        .repo_tags
                        .into_iter()
                        .chain(i.repo_digests)
                        .filter(|n| !n.starts_with("<none>"))
                        .collect(),
                    size_bytes: i.size,
                })
                .filter(|i| !i.names.is_empty())
                .collect();
            out.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
            out.truncate(50);
            out
        })
    }

    fn name(&self) -> &'static str {
        "docker"
    }

    fn start(&self, pod: &PodConfig) -> BoxFuture<'static, PodState> {
        let uid = pod.uid().to_string();
        let mut pods = lock(&self.inner.pods);
        if let Some(run) = pods.get(&uid) {
            let state = Self::state_of(run);
            return Box::pin(async move { state });
        }
        let run = self.launch(pod, None);
        let state = Self::state_of(&run);
        pods.insert(uid, run);
        Box::pin(async move { state })
    }

    fn stop(&self, uid: &str, grace: Duration) -> BoxFuture<'static, ()> {
        let run = lock(&self.inner.pods).remove(uid);
        let inner = self.inner.clone();
        let uid = uid.to_string();
        Box::pin(async move {
            if let Some(run) = run {
                let _ = run.stop.send(Some(grace));
                let _ = run.task.await;
            }
            // Its containers are stopped: then every engine container of
            // the pod (the sandbox last), then its network.
            remove_labelled(&inner.engine, &format!("{}={uid}", labels::POD_UID)).await;
            inner.sandboxes.destroy(&uid).await;
            let dir = inner.root.join(&uid);
            let _ =
                tokio::task::spawn_blocking(move || crate::process::volumes::remove_pod_dir(&dir))
                    .await;
        })
    }

    fn running(&self) -> Vec<String> {
        lock(&self.inner.pods).keys().cloned().collect()
    }

    /// The pod resolved again: its projected volumes get the new files
    /// (each swapped at once), its containers' next instances the new
    /// environment.
    fn update(&self, pod: &PodConfig) {
        let ip = match lock(&self.inner.pods).get(pod.uid()) {
            Some(run) => {
                run.config.send_replace(Some(Arc::new(pod.clone())));
                lock(&run.ip).clone()
            }
            None => return,
        };
        let dir = self.inner.root.join(pod.uid());
        if dir.join("volumes").exists() {
            if let Err(e) = crate::process::volumes::update(&dir, pod, &ip) {
                tracing::warn!(pod = %pod.uid(), "docker runtime: updating the pod's volumes: {e}");
            }
        }
    }

    fn resolved(&self, uid: &str) -> bool {
        lock(&self.inner.pods)
            .get(uid)
            .is_none_or(|run| run.config.borrow().is_some())
    }

    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, RuntimeError>> {
        let id = self.instance_of(req, uid);
        let engine = self.inner.engine.clone();
        let req = req.clone();
        Box::pin(async move {
            let id = id?;
            let mut stream = engine
                .logs(&id, false, req.timestamps, req.tail_lines)
                .await
                .map_err(RuntimeError::Host)?;
            let mut text = Vec::new();
            while let Some(chunk) = stream.next().await {
                text.extend_from_slice(&chunk.map_err(RuntimeError::Host)?);
                if text.len() > MAX_LOG_BYTES {
                    break;
                }
            }
            Ok(String::from_utf8_lossy(&text).into_owned())
        })
    }

    /// `logs -f`: the engine's log stream of the container, followed
    /// until the container ends or the client goes.
    fn follow(
        &self,
        req: &PodLogs,
        uid: &str,
        sink: shoal_fabric::actor::Sink<String>,
    ) -> BoxFuture<'static, ()> {
        let id = self.instance_of(req, uid);
        let engine = self.inner.engine.clone();
        let req = req.clone();
        Box::pin(async move {
            let id = match id {
                Ok(id) => id,
                Err(e) => return sink.end(&e.to_string()).await,
            };
            let mut stream = match engine.logs(&id, true, req.timestamps, req.tail_lines).await {
                Ok(s) => s,
                Err(e) => return sink.end(&e).await,
            };
            loop {
                tokio::select! {
                    chunk = stream.next() => match chunk {
                        Some(Ok(c)) => {
                            let text = String::from_utf8_lossy(&c).into_owned();
                            if sink.send(&text).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(e)) => return sink.end(&e).await,
                        None => return sink.end("the container ended").await,
                    },
                    _ = sink.closed() => return,
                }
            }
        })
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.inner.changes.subscribe())
    }

    fn state(&self, uid: &str) -> Option<PodState> {
        lock(&self.inner.pods).get(uid).map(Self::state_of)
    }

    fn needs_config(&self) -> bool {
        true
    }

    /// `kubectl exec`: an exec instance in the container, through the
    /// engine (`docker::exec`).
    fn exec(
        &self,
        req: &shoal_kubelet_proto::Exec,
        uid: &str,
        input: Option<tokio::sync::mpsc::Receiver<shoal_kubelet_proto::Input>>,
        sink: shoal_fabric::actor::Sink<shoal_kubelet_proto::ExecEvent>,
    ) -> BoxFuture<'static, ()> {
        let running = lock(&self.inner.pods).get(uid).and_then(|run| {
            let c = run
                .containers
                .iter()
                .find(|c| lock(c).name == req.container)?;
            let c = lock(c);
            matches!(c.state, ContainerState::Running { .. })
                .then(|| c.id.clone())
                .flatten()
        });
        let (engine, req, uid) = (self.inner.engine.clone(), req.clone(), uid.to_string());
        Box::pin(async move {
            match running {
                Some(id) if req.attach => super::exec::attach(engine, id, input, sink).await,
                Some(id) => super::exec::run(engine, id, req.command, req.tty, input, sink).await,
                None => {
                    let why = format!(
                        "container {:?} of pod {uid} is not running on this node",
                        req.container
                    );
                    sink.end(&why).await
                }
            }
        })
    }

    /// `kubectl port-forward`: from inside the pod's network namespace
    /// (the sandbox's, mounted as the process runtime's are).
    fn connect(
        &self,
        uid: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<tokio::net::TcpStream, RuntimeError>> {
        let ip = lock(&self.inner.pods)
            .get(uid)
            .map(|run| lock(&run.ip).clone())
            .filter(|ip| !ip.is_empty());
        let netns = self.inner.sandboxes.netns_path(uid);
        let uid = uid.to_string();
        Box::pin(async move {
            match ip {
                Some(ip) => crate::process::forward::connect(Some(netns), &ip, port).await,
                None => Err(RuntimeError::NotFound(format!(
                    "pod {uid} is not running on this node"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules_for_entrypoint_and_cmd() {
        let env = vec![("WHO".to_string(), "you".to_string())];
        let plain = container(json!({"name": "c"}));
        assert_eq!(entrypoint_and_cmd(&plain, &env).unwrap(), (None, None));
        let args = container(json!({"name": "c", "args": ["-v", "$(WHO)"]}));
        assert_eq!(
            entrypoint_and_cmd(&args, &env).unwrap(),
            (None, Some(vec!["-v".into(), "you".into()]))
        );
        let command = container(json!({"name": "c", "command": ["echo"]}));
        assert_eq!(
            entrypoint_and_cmd(&command, &env).unwrap(),
            (Some(vec!["echo".into()]), Some(vec![]))
        );
        let both =
            container(json!({"name": "c", "command": ["echo", "$(WHO)"], "args": ["$$(WHO)"]}));
        assert_eq!(
            entrypoint_and_cmd(&both, &env).unwrap(),
            (
                Some(vec!["echo".into(), "you".into()]),
                Some(vec!["$(WHO)".into()])
            )
        );
        // An empty command is no command: the image's ENTRYPOINT stays.
        let empty = container(json!({"name": "c", "command": [], "args": ["x"]}));
        assert_eq!(
            entrypoint_and_cmd(&empty, &env).unwrap(),
            (None, Some(vec!["x".into()]))
        );
    }

    #[test]
    fn what_the_runtime_cannot_do_yet_is_named_not_skipped() {
        let pod = |spec: serde_json::Value| {
            PodConfig::of(&json!({"metadata": {"uid": "u", "name": "p"}, "spec": spec})).unwrap()
        };
        let plain = pod(json!({"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]}));
        assert_eq!(unsupported(&plain), None);
        let much = pod(json!({
            "volumes": [{"name": "v", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "i",
                "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                "readinessProbe": {"tcpSocket": {"port": 80}},
                "securityContext": {"runAsUser": 1000}}]}));
        assert_eq!(
            unsupported(&much),
            None,
            "volumes, probes and securityContext run"
        );
        let host = pod(json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(
            unsupported(&host).unwrap(),
            "the docker runtime does not support hostNetwork yet"
        );
    }

    #[test]
    fn names_are_unique_per_node_pod_container_and_attempt() {
        assert_eq!(container_name(3, "u-1", "web", 2), "shoal-3-u-1-web-2");
        assert_ne!(
            container_name(1, "u", "c", 0),
            container_name(2, "u", "c", 0)
        );
    }
}
