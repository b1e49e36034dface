//! The `process` runtime: each container's `command` and `args` run as a
//! supervised process on the node (no image: a container without a
//! `command` is refused with a clear reason in its status).
//!
//! ```text
//! start(pod) ─► pod dir <root>/<uid>/ ─► one supervisor task per container
//!                                         ├─ spawn (own process group, env, stdout/stderr piped)
//!                                         ├─ log lines ─► <uid>/<container>/<restart>.log (CRI format)
//!                                         └─ exit ─► restartPolicy, back-off (CrashLoopBackOff) ─► changes
//! ```
//!
//! State changes that happen on their own (a container exits, restarts,
//! waits out its back-off) are pushed on [`Runtime::changes`] as the pod's
//! uid, so the kubelet reports them; nothing polls. Stopping a pod sends
//! SIGTERM to each container's process group and SIGKILL after the grace
//! period. As root (with the CNI plugins), each pod gets a sandbox
//! (`sandbox`): its own network namespace with an address of the node's
//! pod subnet, an IPC namespace its containers share, cgroups with their
//! limits. Without root, pods share the host's network and get a distinct
//! loopback address (`127.<node>.x.y`) as their pod IP: a degraded mode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Container;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc, watch};

use super::{
    ContainerState, ContainerStatus, PodConfig, PodState, RestartPolicy, Runtime, RuntimeError,
};
use shoal_kubelet_proto::PodLogs;
use shoal_model::objects;

pub mod dns;
mod exec;
pub(crate) mod forward;
mod instance;
mod logs;
pub mod probe;
pub mod sandbox;
pub mod security;
mod setup;
pub mod shim;
mod supervisor;
pub mod volumes;

/// Undoes, in a forked child before it execs a container's command, the
/// `PR_SET_THP_DISABLE` that `shoal` sets for itself (see `main.rs`): the
/// flag is inherited across fork and exec, and containers get the
/// machine's transparent huge page policy as under any other runtime.
/// Only a system call, so it is async-signal-safe as `pre_exec` requires.
pub(crate) fn machine_thp_policy() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub use instance::{kill_leftovers_now, stop_leftovers};
use instance::{terminate, Adopted, Persisted, Waiter};
use setup::{save_pod, Creation, Net, Saved, Volumes};
use shoal_model::podcidr::PodSlot;
use supervisor::Supervisor;

/// Restart back-off: the first delay, doubled per restart up to `max`,
/// reset once a container ran `reset_after` without exiting (upstream:
/// 10 s, 5 min, 10 min).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay before restart number `n` (0 = the first restart).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// One container as its supervisor keeps it.
#[derive(Debug, Clone)]
struct Ctr {
    name: String,
    image: String,
    state: ContainerState,
    last: Option<ContainerState>,
    restarts: u32,
    pid: Option<u32>,
    /// Running, started (startup probe passed) and ready (readiness probe
    /// passing, or none).
    ready: bool,
}

struct PodRun {
    /// The pod IP (empty until its sandbox has one).
    ip: Arc<Mutex<String>>,
    /// Init containers, run one after the other to completion first.
    init: Vec<Arc<Mutex<Ctr>>>,
    containers: Vec<Arc<Mutex<Ctr>>>,
    /// Tells the supervisors to stop, with the grace period.
    stop: watch::Sender<Option<Duration>>,
    /// The pod's resolved configuration; None for a pod adopted from a
    /// previous agent until the kubelet resolves it again (no secret is
    /// kept on disk for it).
    config: watch::Sender<Option<Arc<PodConfig>>>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
}

struct Inner {
    root: PathBuf,
    node: u8,
    next_ip: Mutex<u32>,
    pods: Mutex<HashMap<String, PodRun>>,
    changes: broadcast::Sender<String>,
    backoff: Backoff,
    shim: PathBuf,
    /// Pod sandboxes (root with the CNI plugins), or host networking.
    sandboxes: Option<Arc<sandbox::Sandboxes>>,
    /// Where the containers' Events go (none until set).
    events: Arc<std::sync::OnceLock<crate::podevents::PodEvents>>,
}

/// The process runtime of one node (cheap to clone).
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a container runs: argv and environment, or why it cannot run.
fn argv_of(c: &Container) -> Result<Vec<String>, String> {
    let mut argv = c.command.clone().unwrap_or_default();
    if argv.is_empty() {
        return Err(
            "the process runtime runs a container's command; this container has none (no images here)"
                .into(),
        );
    }
    argv.extend(c.args.iter().flatten().cloned());
    Ok(argv)
}

/// A container's environment: the literal values the kubelet resolved
/// (`kubelet::envs`), and the pod IP for `status.podIP` references.
pub(crate) fn env_of(
    env: &[k8s_openapi::api::core::v1::EnvVar],
    pod_ip: &str,
) -> Vec<(String, String)> {
    env.iter()
        .map(|e| {
            let path = e
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            let value = match path {
                Some("status.podIP" | "status.podIPs") => pod_ip,
                _ => e.value.as_deref().unwrap_or(""),
            };
            (e.name.clone(), value.to_string())
        })
        .collect()
}

impl ProcessRuntime {
    /// A runtime keeping its pods under `root` (created if missing), for
    /// the node holding `slot` of the pod range (in host mode the slot
    /// picks the loopback pod IPs' second octet: 127.<index % 254 + 1>.x.y).
    /// `shim` is the `shoal` binary that runs each container instance
    /// (`shoal shim`); `sandboxes` gives pods their own namespaces (None:
    /// host networking). Pods a previous agent left under `root` are
    /// adopted: their running containers keep their processes. Call within
    /// a Tokio runtime, then [`ProcessRuntime::prepare`].
    pub fn new(
        root: &Path,
        slot: &PodSlot,
        backoff: Backoff,
        shim: &Path,
        sandboxes: Option<sandbox::Sandboxes>,
    ) -> std::io::Result<ProcessRuntime> {
        // Pods' files, logs and records: this user's only.
        shoal_fabric::private::dir(root)?;
        let rt = ProcessRuntime {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                node: (slot.index % 254 + 1) as u8,
                next_ip: Mutex::new(0),
                pods: Mutex::new(HashMap::new()),
                changes: broadcast::channel(1024).0,
                backoff,
                shim: shim.to_owned(),
                sandboxes: sandboxes.map(Arc::new),
                events: Arc::default(),
            }),
        };
        rt.restore();
        Ok(rt)
    }

    /// Where the containers' Events go from now on (Created, Started,
    /// BackOff, Unhealthy, Killing, Failed, FailedMount); set once.
    pub fn set_events(&self, events: crate::podevents::PodEvents) {
        let _ = self.inner.events.set(events);
    }

    /// Checks and prepares the host for pod sandboxes (a pod CIDR that
    /// overlaps a host route is refused) and drops what pods that are gone
    /// left; before any pod starts.
    pub async fn prepare(&self) -> Result<(), RuntimeError> {
        self.prepare_keeping(&[]).await
    }

    /// `prepare`, keeping the sandboxes of the pods `also` names too (the
    /// pods another runtime of the node keeps).
    pub async fn prepare_keeping(&self, also: &[String]) -> Result<(), RuntimeError> {
        let Some(sb) = self.inner.sandboxes.clone() else {
            return Ok(());
        };
        let mut keep = self.running();
        keep.extend_from_slice(also);
        sb.prepare(&keep).await
    }

    /// A loopback pod IP no pod of this runtime holds.
    fn next_ip(&self, pods: &HashMap<String, PodRun>) -> String {
        let mut n = lock(&self.inner.next_ip);
        loop {
            *n = n.wrapping_add(1) % (254 * 256);
            let v = *n;
            let ip = format!("127.{}.{}.{}", self.inner.node, v / 254, v % 254 + 1);
            if !pods.values().any(|r| *lock(&r.ip) == ip) {
                return ip;
            }
        }
    }

    /// Adopts the pods a previous agent left (`<root>/<uid>/pod.json`).
    fn restore(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.inner.root) else {
            return;
        };
        for d in dirs.flatten() {
            let dir = d.path();
            let Some(saved) = std::fs::read(dir.join("pod.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
            else {
                // Not a pod this runtime can resume: whatever it holds goes.
                volumes::remove_pod_dir(&dir);
                continue;
            };
            let Saved { pod, ip, sandbox } = saved;
            let uid = pod.uid().to_string();
            if self.inner.sandboxes.is_some() && sandbox.is_none() {
                // Its sandbox was never finished, so nothing of it ran:
                // the pod starts again when the kubelet asks.
                volumes::remove_pod_dir(&dir);
                continue;
            }
            let mut pods = lock(&self.inner.pods);
            let run = self.launch(&uid, &pod, Net::Ready(ip.clone(), sandbox), true);
            tracing::info!(pod = %uid, ip, "process runtime: adopted a pod from a previous agent");
            pods.insert(uid, run);
        }
    }

    /// Starts the supervisors of a pod (`resume`: adopting what a previous
    /// agent left in its directory).
    fn launch(&self, uid: &str, pod: &PodConfig, net: Net, resume: bool) -> PodRun {
        let policy = pod.restart_policy();
        let dir = self.inner.root.join(uid);
        let (ip, sandbox) = match &net {
            Net::Ready(ip, sb) => (ip.clone(), sb.clone()),
            Net::Pending => (String::new(), None),
        };
        if !resume {
            save_pod(&dir, pod, &ip, sandbox.as_ref());
        }
        let (stop, _) = watch::channel(None);
        // An adopted pod's record holds no resolved value: its containers
        // wait for the kubelet's resolution before any new instance.
        let (config, _) = watch::channel((!resume).then(|| Arc::new(pod.clone())));
        let mut run = PodRun {
            ip: Arc::new(Mutex::new(ip.clone())),
            init: Vec::new(),
            containers: Vec::new(),
            stop,
            config,
            supervisors: Vec::new(),
        };
        let has_init = !pod.init_containers().is_empty();
        let specs = pod
            .init_containers()
            .iter()
            .map(|c| (true, c))
            .chain(pod.containers().iter().map(|c| (false, c)));
        let (mut init_sups, mut app_sups) = (Vec::new(), Vec::new());
        for (is_init, c) in specs {
            let name = c.name.clone();
            let cdir = dir.join(&name);
            let mut ctr = Ctr {
                name: name.clone(),
                image: c.image.clone().unwrap_or_default(),
                state: ContainerState::Waiting {
                    reason: if has_init && !is_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    }
                    .into(),
                    message: String::new(),
                },
                last: None,
                restarts: 0,
                pid: None,
                ready: false,
            };
            let (mut adopted, mut ended) = (None, None);
            let saved = resume
                .then(|| std::fs::read(cdir.join("state.json")).ok())
                .flatten()
                .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok());
            if let Some(p) = saved {
                ctr.restarts = p.restarts;
                ctr.last = p.last;
                let base = cdir.join(p.instance.to_string());
                let finished = shim::read_exit(&base);
                match (p.shim_pid.and_then(Waiter::adopt), p.pid, finished) {
                    (Some(waiter), Some(pid), None) => {
                        ctr.state = ContainerState::Running {
                            started_at: p.started_at,
                        };
                        ctr.pid = Some(pid);
                        // Ready at once unless a probe has to say so again.
                        ctr.ready = c.readiness_probe.is_none() && c.startup_probe.is_none();
                        adopted = Some(Adopted { waiter, pid });
                    }
                    (_, _, Some((code, why))) => {
                        let reason = if code == 0 { "Completed" } else { "Error" };
                        ended = Some((code, reason.to_string(), why));
                    }
                    _ => ended = Some((128, "Error".into(), "lost while no agent ran".into())),
                }
            }
            let ctr = Arc::new(Mutex::new(ctr));
            if is_init {
                run.init.push(ctr.clone());
            } else {
                run.containers.push(ctr.clone());
            }
            let mut sup = Supervisor {
                init: is_init,
                uid: uid.to_string(),
                pod_name: pod.name().to_string(),
                shim: self.inner.shim.clone(),
                adopted,
                ended,
                enter: None,
                start_error: None,
                security: Default::default(),
                ip: ip.clone(),
                mounts: Vec::new(),
                grace: pod.grace(),
                dir: cdir,
                config_error: None,
                config: run.config.subscribe(),
                env: env_of(pod.env_of(c), &ip),
                spec: c.clone(),
                // Init containers run until they succeed (or once, Never).
                policy: if is_init { policy.for_init() } else { policy },
                ctr,
                stop: run.stop.subscribe(),
                changes: self.inner.changes.clone(),
                backoff: self.inner.backoff,
                sandboxes: self.inner.sandboxes.clone(),
                events: self.inner.events.clone(),
                pod_ref: crate::podevents::PodEvents::object_of(pod),
            };
            if let Some(sb) = &sandbox {
                sup.enter_sandbox(sb);
            }
            if is_init {
                init_sups.push(sup);
            } else {
                app_sups.push(sup);
            }
        }
        // One task a pod: its sandbox first (when it has none yet); the
        // init containers in order, each to success; then the app
        // containers together. A failed init container that will not run
        // again leaves the app containers waiting.
        let pending = match (&net, &self.inner.sandboxes) {
            (Net::Pending, Some(sbs)) => Some(Creation {
                sandboxes: sbs.clone(),
                uid: uid.to_string(),
                pod: pod.clone(),
                dir: dir.clone(),
                ip: run.ip.clone(),
                stop: run.stop.subscribe(),
                ctrs: run.init.iter().chain(&run.containers).cloned().collect(),
                changes: self.inner.changes.clone(),
            }),
            _ => None,
        };
        let mut volumes = Volumes {
            net_files: self
                .inner
                .sandboxes
                .as_ref()
                .map(|s| (s.gateway(), s.cluster_domain().to_string())),
            dir: dir.clone(),
            pod: pod.clone(),
            write: !resume,
            ctrs: run.init.iter().chain(&run.containers).cloned().collect(),
            changes: self.inner.changes.clone(),
            uid: uid.to_string(),
            stop: run.stop.subscribe(),
        };
        run.supervisors.push(tokio::spawn(async move {
            if let Some(creation) = pending {
                let Some(sandbox) = creation.run().await else {
                    return; // stopped first
                };
                for sup in init_sups.iter_mut().chain(app_sups.iter_mut()) {
                    sup.ip = sandbox.ip.clone();
                    sup.enter_sandbox(&sandbox);
                }
            }
            let ip = init_sups
                .iter()
                .chain(&app_sups)
                .next()
                .map(|s| s.ip.clone());
            if !volumes
                .mount(
                    ip.as_deref().unwrap_or(""),
                    init_sups.iter_mut().chain(app_sups.iter_mut()),
                )
                .await
            {
                return;
            }
            for sup in init_sups {
                if !sup.run().await {
                    return;
                }
            }
            futures::future::join_all(app_sups.into_iter().map(Supervisor::run)).await;
        }));
        run
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
                        container_id: c.pid.map(|p| format!("process://{p}")).unwrap_or_default(),
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

    /// Drops every supervisor without stopping anything, as a killed
    /// agent would (tests of adoption).
    #[cfg(any(test, feature = "testing"))]
    pub fn abandon(&self) {
        for (_, run) in lock(&self.inner.pods).drain() {
            for s in run.supervisors {
                s.abort();
            }
        }
    }

    /// The pids of a pod's running containers, by container name.
    pub fn pids(&self, uid: &str) -> HashMap<String, u32> {
        let pods = lock(&self.inner.pods);
        pods.get(uid)
            .map(|run| {
                run.containers
                    .iter()
                    .filter_map(|c| {
                        let c = lock(c);
                        Some((c.name.clone(), c.pid?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The files of the container instance a logs request names
    /// (`<base>.log`, `<base>.exit`).
    fn instance_of(&self, req: &PodLogs, uid: &str) -> Result<PathBuf, RuntimeError> {
        let pods = lock(&self.inner.pods);
        let found = pods.get(uid).and_then(|run| {
            let pick = run
                .containers
                .iter()
                .find(|c| req.container.is_empty() || lock(c).name == req.container)?;
            let c = lock(pick);
            Some((c.name.clone(), c.restarts))
        });
        drop(pods);
        let (name, restarts) = found.ok_or_else(|| {
            RuntimeError::NotFound(format!(
                "container {:?} is not running on this node",
                req.container
            ))
        })?;
        let instance = if req.previous {
            restarts.checked_sub(1).ok_or_else(|| {
                RuntimeError::NotFound(format!("previous terminated container {name:?} not found"))
            })?
        } else {
            restarts
        };
        Ok(self
            .inner
            .root
            .join(uid)
            .join(&name)
            .join(instance.to_string()))
    }
}

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start(&self, pod: &PodConfig) -> BoxFuture<'static, PodState> {
        let uid = pod.uid().to_string();
        let mut pods = lock(&self.inner.pods);
        if let Some(run) = pods.get(&uid) {
            let state = Self::state_of(run);
            return Box::pin(async move { state });
        }
        let net = if self.inner.sandboxes.is_some() {
            Net::Pending
        } else {
            Net::Ready(self.next_ip(&pods), None)
        };
        let run = self.launch(&uid, pod, net, false);
        let state = Self::state_of(&run);
        pods.insert(uid, run);
        Box::pin(async move { state })
    }

    fn stop(&self, uid: &str, grace: Duration) -> BoxFuture<'static, ()> {
        let run = lock(&self.inner.pods).remove(uid);
        let dir = self.inner.root.join(uid);
        let sandboxes = self.inner.sandboxes.clone();
        let uid = uid.to_string();
        Box::pin(async move {
            if let Some(run) = run {
                let _ = run.stop.send(Some(grace));
                for s in run.supervisors {
                    let _ = s.await;
                }
            }
            // Its processes are gone: then its sandbox.
            if let Some(sbs) = sandboxes {
                sbs.destroy(&uid).await;
            }
            let _ = tokio::task::spawn_blocking(move || volumes::remove_pod_dir(&dir)).await;
        })
    }

    fn running(&self) -> Vec<String> {
        lock(&self.inner.pods).keys().cloned().collect()
    }

    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, RuntimeError>> {
        let base = self.instance_of(req, uid);
        let req = req.clone();
        Box::pin(async move { logs::read(&shim::log_path(&base?), &req).await })
    }

    fn follow(
        &self,
        req: &PodLogs,
        uid: &str,
        sink: shoal_fabric::actor::Sink<String>,
    ) -> BoxFuture<'static, ()> {
        let base = self.instance_of(req, uid);
        let req = req.clone();
        Box::pin(async move {
            match base {
                Ok(base) => logs::follow(&base, &req, sink).await,
                Err(e) => sink.end(&e.to_string()).await,
            }
        })
    }

    fn exec(
        &self,
        req: &shoal_kubelet_proto::Exec,
        uid: &str,
        input: Option<mpsc::Receiver<shoal_kubelet_proto::Input>>,
        sink: shoal_fabric::actor::Sink<shoal_kubelet_proto::ExecEvent>,
    ) -> BoxFuture<'static, ()> {
        let pid = lock(&self.inner.pods).get(uid).and_then(|run| {
            let c = run
                .containers
                .iter()
                .find(|c| lock(c).name == req.container)?;
            lock(c).pid
        });
        let (req, uid) = (req.clone(), uid.to_string());
        Box::pin(async move {
            match pid {
                // The shim holds the process's stdio and writes it to the
                // container's log: there is no terminal to attach to.
                Some(_) if req.attach => {
                    sink.end("the process runtime cannot attach to a container: follow its output with kubectl logs -f, or run the pod with runtimeClassName: docker").await
                }
                Some(pid) => exec::run(pid, &req.command, req.tty, input, sink).await,
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

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.inner.changes.subscribe())
    }

    fn state(&self, uid: &str) -> Option<PodState> {
        lock(&self.inner.pods).get(uid).map(Self::state_of)
    }

    fn connect(
        &self,
        uid: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<tokio::net::TcpStream, RuntimeError>> {
        let ip = lock(&self.inner.pods)
            .get(uid)
            .map(|run| lock(&run.ip).clone());
        let netns = self.inner.sandboxes.as_ref().map(|sb| sb.netns_path(uid));
        let uid = uid.to_string();
        Box::pin(async move {
            match ip {
                Some(ip) => forward::connect(netns, &ip, port).await,
                None => Err(RuntimeError::NotFound(format!(
                    "pod {uid} is not running on this node"
                ))),
            }
        })
    }

    fn needs_config(&self) -> bool {
        true
    }

    fn update(&self, pod: &PodConfig) {
        let uid = pod.uid();
        let ip = match lock(&self.inner.pods).get(uid) {
            Some(run) => {
                run.config.send_replace(Some(Arc::new(pod.clone())));
                lock(&run.ip).clone()
            }
            None => return,
        };
        let dir = self.inner.root.join(uid);
        // The pod as stored now survives an agent restart too (without
        // what was resolved for it).
        if let Some(mut saved) = std::fs::read(dir.join("pod.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
        {
            saved.pod = pod.unresolved();
            saved.write(&dir);
        }
        if let Err(e) = volumes::update(&dir, pod, &ip) {
            tracing::warn!(pod = %uid, "updating volumes: {e}");
        }
    }

    fn resolved(&self, uid: &str) -> bool {
        lock(&self.inner.pods)
            .get(uid)
            .is_none_or(|run| run.config.borrow().is_some())
    }
}

/// The PATH a container starts with (upstream's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
