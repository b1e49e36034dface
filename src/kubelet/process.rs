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
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc, watch};

use super::{ContainerState, ContainerStatus, PodState, Runtime};
use crate::api::logs::PodLogs;
use crate::api::objects;

mod exec;
mod forward;
mod instance;
mod logs;
pub mod probe;
pub mod sandbox;
pub mod shim;
pub mod volumes;

pub use instance::{kill_leftovers_now, stop_leftovers};
use instance::{terminate, Adopted, Persisted, Waiter};

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
fn argv_of(c: &Value) -> Result<Vec<String>, String> {
    let strings = |k: &str| -> Vec<String> {
        c.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("command");
    if argv.is_empty() {
        return Err(
            "the process runtime runs a container's command; this container has none (no images here)"
                .into(),
        );
    }
    argv.extend(strings("args"));
    Ok(argv)
}

/// A container's environment: the literal values the kubelet resolved
/// (`kubelet::envs`), and the pod IP for `status.podIP` references.
fn env_of(c: &Value, pod_ip: &str) -> Vec<(String, String)> {
    c.get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.get("name")?.as_str()?.to_string();
            let path = e
                .pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str);
            let value = match path {
                Some("status.podIP" | "status.podIPs") => pod_ip,
                _ => e.get("value").and_then(Value::as_str).unwrap_or(""),
            };
            Some((name, value.to_string()))
        })
        .collect()
}

impl ProcessRuntime {
    /// A runtime keeping its pods under `root` (created if missing);
    /// `node` picks the pod IPs' second octet.
    /// `shim` is the `shoal` binary that runs each container instance
    /// (`shoal shim`); `sandboxes` gives pods their own namespaces (None:
    /// host networking). Pods a previous agent left under `root` are
    /// adopted: their running containers keep their processes. Call within
    /// a Tokio runtime, then [`ProcessRuntime::prepare`].
    pub fn new(
        root: &Path,
        node: u8,
        backoff: Backoff,
        shim: &Path,
        sandboxes: Option<sandbox::Sandboxes>,
    ) -> std::io::Result<ProcessRuntime> {
        std::fs::create_dir_all(root)?;
        let rt = ProcessRuntime {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                node,
                next_ip: Mutex::new(0),
                pods: Mutex::new(HashMap::new()),
                changes: broadcast::channel(1024).0,
                backoff,
                shim: shim.to_owned(),
                sandboxes: sandboxes.map(Arc::new),
            }),
        };
        rt.restore();
        Ok(rt)
    }

    /// Checks and prepares the host for pod sandboxes (a pod CIDR that
    /// overlaps a host route is refused) and drops what pods that are gone
    /// left; before any pod starts.
    pub async fn prepare(&self) -> Result<(), String> {
        let Some(sb) = self.inner.sandboxes.clone() else {
            return Ok(());
        };
        let keep = self.running();
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
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
                // Not a pod this runtime can resume: whatever it holds goes.
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            };
            let (Some(pod), Some(ip)) = (saved.get("pod"), saved.get("ip").and_then(Value::as_str))
            else {
                continue;
            };
            let uid = super::pod_uid(pod);
            let sandbox = saved
                .get("sandbox")
                .and_then(|s| serde_json::from_value::<sandbox::Sandbox>(s.clone()).ok());
            if self.inner.sandboxes.is_some() && sandbox.is_none() {
                // Its sandbox was never finished, so nothing of it ran:
                // the pod starts again when the kubelet asks.
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            let mut pods = lock(&self.inner.pods);
            let run = self.launch(&uid, pod, Net::Ready(ip.to_string(), sandbox), true);
            tracing::info!(pod = %uid, ip, "process runtime: adopted a pod from a previous agent");
            pods.insert(uid, run);
        }
    }

    /// Starts the supervisors of a pod (`resume`: adopting what a previous
    /// agent left in its directory).
    fn launch(&self, uid: &str, pod: &Value, net: Net, resume: bool) -> PodRun {
        let policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_string();
        let dir = self.inner.root.join(uid);
        let (ip, sandbox) = match &net {
            Net::Ready(ip, sb) => (ip.clone(), sb.clone()),
            Net::Pending => (String::new(), None),
        };
        if !resume {
            save_pod(&dir, pod, &ip, sandbox.as_ref());
        }
        let (stop, _) = watch::channel(None);
        let mut run = PodRun {
            ip: Arc::new(Mutex::new(ip.clone())),
            init: Vec::new(),
            containers: Vec::new(),
            stop,
            supervisors: Vec::new(),
        };
        let list = |k: &str| {
            pod.pointer(&format!("/spec/{k}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let init_specs = list("initContainers");
        let has_init = !init_specs.is_empty();
        let specs = init_specs
            .into_iter()
            .map(|c| (true, c))
            .chain(list("containers").into_iter().map(|c| (false, c)));
        let (mut init_sups, mut app_sups) = (Vec::new(), Vec::new());
        for (is_init, c) in specs {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let cdir = dir.join(&name);
            let mut ctr = Ctr {
                name: name.clone(),
                image: c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
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
                        ctr.ready = probe::Probe::of(&c, "readinessProbe").is_none()
                            && probe::Probe::of(&c, "startupProbe").is_none();
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
            let sup = Supervisor {
                init: is_init,
                uid: uid.to_string(),
                pod_name: pod
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                shim: self.inner.shim.clone(),
                adopted,
                ended,
                enter: match (&self.inner.sandboxes, &sandbox) {
                    (Some(sbs), Some(_)) => Some(sbs.enter(uid, &c)),
                    _ => None,
                },
                ip: ip.clone(),
                mounts: Vec::new(),
                grace: Duration::from_secs(
                    pod.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(30),
                ),
                dir: cdir,
                spec: c,
                // Init containers run until they succeed (or once, Never).
                policy: match (is_init, policy.as_str()) {
                    (true, "Never") => "Never".to_string(),
                    (true, _) => "OnFailure".to_string(),
                    (false, p) => p.to_string(),
                },
                ctr,
                stop: run.stop.subscribe(),
                changes: self.inner.changes.clone(),
                backoff: self.inner.backoff,
                sandboxes: self.inner.sandboxes.clone(),
            };
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
                    sup.enter = Some(sup.sandboxes_enter(&sandbox));
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
    #[cfg(test)]
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
    fn instance_of(&self, req: &PodLogs, uid: &str) -> Result<PathBuf, String> {
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
        let (name, restarts) = found
            .ok_or_else(|| format!("container {:?} is not running on this node", req.container))?;
        let instance = if req.previous {
            restarts
                .checked_sub(1)
                .ok_or_else(|| format!("previous terminated container {name:?} not found"))?
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

    fn start(&self, pod: &Value) -> BoxFuture<'static, PodState> {
        let uid = super::pod_uid(pod);
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
            let _ = tokio::fs::remove_dir_all(&dir).await;
        })
    }

    fn running(&self) -> Vec<String> {
        lock(&self.inner.pods).keys().cloned().collect()
    }

    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, String>> {
        let base = self.instance_of(req, uid);
        let req = req.clone();
        Box::pin(async move { logs::read(&shim::log_path(&base?), &req).await })
    }

    fn follow(
        &self,
        req: &PodLogs,
        uid: &str,
        sink: crate::actor::Sink<String>,
    ) -> BoxFuture<'static, ()> {
        let base = self.instance_of(req, uid);
        let req = req.clone();
        Box::pin(async move {
            match base {
                Ok(base) => logs::follow(&base, &req, sink).await,
                Err(e) => sink.end(&e).await,
            }
        })
    }

    fn exec(
        &self,
        req: &crate::api::logs::Exec,
        uid: &str,
        input: Option<mpsc::Receiver<crate::api::logs::Input>>,
        sink: crate::actor::Sink<crate::api::logs::ExecEvent>,
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
    ) -> BoxFuture<'static, Result<tokio::net::TcpStream, String>> {
        let ip = lock(&self.inner.pods)
            .get(uid)
            .map(|run| lock(&run.ip).clone());
        let netns = self.inner.sandboxes.as_ref().map(|sb| sb.netns_path(uid));
        let uid = uid.to_string();
        Box::pin(async move {
            match ip {
                Some(ip) => forward::connect(netns, &ip, port).await,
                None => Err(format!("pod {uid} is not running on this node")),
            }
        })
    }

    fn needs_config(&self) -> bool {
        true
    }

    fn update(&self, pod: &Value) {
        let uid = super::pod_uid(pod);
        let ip = match lock(&self.inner.pods).get(&uid) {
            Some(run) => lock(&run.ip).clone(),
            None => return,
        };
        let dir = self.inner.root.join(&uid);
        // The new data survives an agent restart too.
        if let Some(mut saved) = std::fs::read(dir.join("pod.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            saved["pod"] = pod.clone();
            let tmp = dir.join("pod.json.tmp");
            if std::fs::write(&tmp, saved.to_string()).is_ok() {
                let _ = std::fs::rename(tmp, dir.join("pod.json"));
            }
        }
        if let Err(e) = volumes::update(&dir, pod, &ip) {
            tracing::warn!(pod = %uid, "updating volumes: {e}");
        }
    }
}

/// Runs one container until its pod stops or its restartPolicy ends it.
struct Supervisor {
    /// An init container: returns once it succeeded instead of waiting.
    init: bool,
    uid: String,
    pod_name: String,
    /// The `shoal` binary (its `shim` subcommand runs each instance).
    shim: PathBuf,
    /// A running instance a previous agent started.
    adopted: Option<Adopted>,
    /// An instance that ended while no agent watched it.
    ended: Option<(i32, String, String)>,
    /// The pod IP (probes go there).
    ip: String,
    /// The pod sandbox the container enters (None: host networking).
    enter: Option<sandbox::Enter>,
    /// Its volumes, bound in its own mount namespace.
    mounts: Vec<sandbox::Mount>,
    /// The pod's terminationGracePeriodSeconds (a liveness kill's grace).
    grace: Duration,
    dir: PathBuf,
    spec: Value,
    policy: String,
    ctr: Arc<Mutex<Ctr>>,
    stop: watch::Receiver<Option<Duration>>,
    changes: broadcast::Sender<String>,
    backoff: Backoff,
    sandboxes: Option<Arc<sandbox::Sandboxes>>,
}

impl Supervisor {
    /// Where this container's probes and hooks go.
    fn target(&self, pid: u32) -> probe::Target {
        probe::Target {
            ip: self.ip.clone(),
            env: env_of(&self.spec, &self.ip),
            enter: self.enter.as_ref().map(|_| pid),
        }
    }

    fn sandboxes_enter(&self, _sandbox: &sandbox::Sandbox) -> sandbox::Enter {
        self.sandboxes
            .as_ref()
            .map(|sbs| sbs.enter(&self.uid, &self.spec))
            .unwrap_or_default()
    }

    fn set(&self, state: ContainerState, pid: Option<u32>) {
        let mut c = lock(&self.ctr);
        if matches!(c.state, ContainerState::Terminated { .. })
            && !matches!(state, ContainerState::Terminated { .. })
        {
            c.last = Some(c.state.clone());
        }
        c.ready = false;
        c.state = state;
        c.pid = pid;
        drop(c);
        let _ = self.changes.send(self.uid.clone());
    }

    fn stopping(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Runs the container by its restartPolicy until the pod stops; an
    /// init container returns true once it succeeded, false if it failed
    /// for good (or the pod stopped).
    async fn run(mut self) -> bool {
        let config_error = self
            .spec
            .get(crate::kubelet::envs::CONFIG_ERROR)
            .and_then(Value::as_str)
            .map(String::from);
        let argv: Vec<String> = match config_error.map_or_else(|| argv_of(&self.spec), Err) {
            // `$(VAR)` in command and args, from the container's env.
            Ok(a) => {
                let vars: std::collections::BTreeMap<String, String> =
                    env_of(&self.spec, &self.ip).into_iter().collect();
                a.iter()
                    .map(|s| crate::kubelet::envs::expand(s, &vars))
                    .collect()
            }
            Err(message) => {
                let reason = "CreateContainerConfigError".to_string();
                self.set(ContainerState::Waiting { reason, message }, None);
                let _ = self.stop.wait_for(Option::is_some).await;
                return false;
            }
        };
        let mut failures: u32 = 0;
        loop {
            if self.stopping().is_some() {
                return false;
            }
            let instance = lock(&self.ctr).restarts;
            let started = Instant::now();
            let exit = match self.ended.take() {
                Some(ended) => Some(ended),
                None => {
                    let adopted = self.adopted.take();
                    self.run_once(&argv, instance, adopted).await
                }
            };
            let Some((code, reason, message)) = exit else {
                return false; // stopped
            };
            let finished_at = objects::now();
            self.set(
                ContainerState::Terminated {
                    exit_code: code,
                    reason: if message.is_empty() {
                        reason
                    } else {
                        format!("{reason}: {message}")
                    },
                    finished_at,
                },
                None,
            );
            let restart = match self.policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
            if !restart {
                if self.init {
                    return code == 0;
                }
                let _ = self.stop.wait_for(Option::is_some).await;
                return false;
            }
            if started.elapsed() >= self.backoff.reset_after {
                failures = 0;
            }
            let delay = self.backoff.delay(failures);
            failures = failures.saturating_add(1);
            {
                let mut c = lock(&self.ctr);
                c.restarts += 1;
            }
            let name = lock(&self.ctr).name.clone();
            self.set(
                ContainerState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {delay:?} restarting failed container={name} pod={}",
                        self.uid
                    ),
                },
                None,
            );
            let stopped = tokio::time::timeout(delay, self.stop.wait_for(Option::is_some)).await;
            if stopped.is_ok() {
                return false;
            }
        }
    }

    /// One instance of the container, through a shim (`shim`): Some(exit
    /// code, reason, message) when it ended by itself, None when the pod
    /// was stopped. `adopted` is an instance a previous agent started.
    async fn run_once(
        &mut self,
        argv: &[String],
        instance: u32,
        adopted: Option<Adopted>,
    ) -> Option<(i32, String, String)> {
        let base = self.dir.join(instance.to_string());
        let (mut waiter, pid) = match adopted {
            Some(a) => (a.waiter, a.pid),
            None => match self.spawn(argv, &base).await {
                Ok(w) => w,
                Err(why) => return Some((128, "StartError".into(), why)),
            },
        };
        if !matches!(lock(&self.ctr).state, ContainerState::Running { .. }) {
            self.set(
                ContainerState::Running {
                    started_at: objects::now(),
                },
                Some(pid),
            );
        }
        self.persist(instance, waiter.pid());
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<String>();
        let prober = tokio::spawn(probe::run(
            self.spec.clone(),
            self.target(pid),
            self.ctr.clone(),
            self.uid.clone(),
            self.changes.clone(),
            kill_tx,
        ));
        let mut kill_rx = std::pin::pin!(kill_rx);
        enum End {
            Exited,
            Stopped(Duration),
            Killed(String),
        }
        let end = tokio::select! {
            _ = waiter.wait() => End::Exited,
            grace = self.stop.wait_for(Option::is_some) => {
                End::Stopped(grace.ok().and_then(|g| *g).unwrap_or(Duration::ZERO))
            }
            Ok(why) = &mut kill_rx => End::Killed(why),
        };
        prober.abort();
        let code = |base: &Path| shim::read_exit(base).map_or(128, |(c, _)| c);
        match end {
            End::Exited => {
                let (c, why) = shim::read_exit(&base).unwrap_or((128, "the shim died".into()));
                let reason = if c == 0 { "Completed" } else { "Error" };
                Some((c, reason.to_string(), why))
            }
            End::Stopped(grace) => {
                // The preStop hook first, within the grace period; then
                // SIGTERM with what is left of it.
                let t0 = Instant::now();
                if let Some(hook) = probe::Probe::hook(&self.spec, "preStop") {
                    let hook = probe::Probe {
                        timeout: grace.max(Duration::from_millis(1)),
                        ..hook
                    };
                    if let Err(e) = hook.check(&self.target(pid)).await {
                        tracing::info!(pod = %self.uid, "preStop hook failed: {e}");
                    }
                }
                terminate(&mut waiter, pid, grace.saturating_sub(t0.elapsed())).await;
                None
            }
            End::Killed(why) => {
                // A failed liveness or startup probe: killed, then the
                // restartPolicy decides.
                terminate(&mut waiter, pid, self.grace).await;
                Some((code(&base), "Error".to_string(), why))
            }
        }
    }

    /// Starts a shim for `argv`; returns it and the container's pid.
    async fn spawn(&self, argv: &[String], base: &Path) -> Result<(Waiter, u32), String> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let _ = tokio::fs::remove_file(shim::exit_path(base)).await;
        let mut cmd = tokio::process::Command::new(&self.shim);
        cmd.arg("shim").arg("--base").arg(base);
        let enter = sandbox::Enter {
            mounts: self.mounts.clone(),
            ..self.enter.clone().unwrap_or_default()
        };
        if enter != sandbox::Enter::default() {
            let json = serde_json::to_string(&enter).map_err(|e| format!("the sandbox: {e}"))?;
            cmd.arg("--sandbox").arg(json);
        }
        if let Some(wd) = self.spec.get("workingDir").and_then(Value::as_str) {
            cmd.arg("--workdir").arg(wd);
        }
        // The container's environment only, not the agent's.
        cmd.arg("--")
            .args(argv)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOSTNAME", &self.pod_name)
            // The shim's allocator commits memory lazily (4.9 → 1.2 MB of
            // anonymous memory a shim); the shim removes this again.
            .env(shim::LAZY_MALLOC.0, shim::LAZY_MALLOC.1)
            .envs(env_of(&self.spec, &self.ip))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the shim {}: {e}", self.shim.display()))?;
        let first = match child.stdout.take() {
            Some(out) => {
                let mut line = String::new();
                let _ = BufReader::new(out).read_line(&mut line).await;
                line
            }
            None => String::new(),
        };
        let first = first.trim();
        match first.parse::<u32>() {
            Ok(pid) => Ok((Waiter::Child(child), pid)),
            Err(_) => {
                let _ = child.wait().await;
                let why = shim::read_exit(base)
                    .map(|(_, why)| why)
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| first.trim_start_matches("error ").to_string());
                Err(why)
            }
        }
    }

    /// Records the instance (for a later agent to adopt it).
    fn persist(&self, instance: u32, shim_pid: Option<u32>) {
        let c = lock(&self.ctr);
        let state = Persisted {
            instance,
            restarts: c.restarts,
            shim_pid,
            pid: c.pid,
            started_at: match &c.state {
                ContainerState::Running { started_at } => started_at.clone(),
                _ => String::new(),
            },
            last: c.last.clone(),
        };
        drop(c);
        if let Ok(text) = serde_json::to_string(&state) {
            let path = self.dir.join("state.json");
            let tmp = self.dir.join("state.json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(tmp, path);
            }
        }
    }
}

/// A pod's network as it launches: known (an IP, and the sandbox that
/// holds it if any), or a sandbox still to create.
enum Net {
    Ready(String, Option<sandbox::Sandbox>),
    Pending,
}

/// Records a pod for a later agent to adopt (`<dir>/pod.json`).
fn save_pod(dir: &Path, pod: &Value, ip: &str, sandbox: Option<&sandbox::Sandbox>) {
    let mut saved = json!({"pod": pod, "ip": ip});
    if let Some(sb) = sandbox {
        saved["sandbox"] = json!(sb);
    }
    let _ = std::fs::create_dir_all(dir);
    let tmp = dir.join("pod.json.tmp");
    if std::fs::write(&tmp, saved.to_string()).is_ok() {
        let _ = std::fs::rename(tmp, dir.join("pod.json"));
    }
}

/// Sets a pod's volumes up before its containers start.
struct Volumes {
    dir: PathBuf,
    pod: Value,
    /// False for an adopted pod: its files are there already.
    write: bool,
    ctrs: Vec<Arc<Mutex<Ctr>>>,
    changes: broadcast::Sender<String>,
    uid: String,
    stop: watch::Receiver<Option<Duration>>,
}

impl Volumes {
    /// Sets the volumes up and gives each container its mounts; false
    /// when they cannot be (every container waits, saying why, until the
    /// pod stops).
    async fn mount<'a>(
        &mut self,
        ip: &str,
        sups: impl Iterator<Item = &'a mut Supervisor>,
    ) -> bool {
        let ready = match volumes::set_up(&self.dir, &self.pod, ip, self.write) {
            Ok(r) => r,
            Err(why) => {
                tracing::info!(pod = %self.uid, "{why}");
                for c in &self.ctrs {
                    lock(c).state = ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: why.clone(),
                    };
                }
                let _ = self.changes.send(self.uid.clone());
                let _ = self.stop.wait_for(Option::is_some).await;
                return false;
            }
        };
        for sup in sups {
            match volumes::mounts(&sup.spec, &ready) {
                Ok(m) if !m.is_empty() && !sandbox::is_root() => {
                    sup.spec[crate::kubelet::envs::CONFIG_ERROR] = serde_json::json!(
                        "volume mounts need root (a mount namespace of the container's own); this agent is not root"
                    );
                }
                Ok(m) => sup.mounts = m,
                Err(why) => sup.spec[crate::kubelet::envs::CONFIG_ERROR] = serde_json::json!(why),
            }
        }
        true
    }
}

/// The creation of one pod's sandbox, retried with back-off until it
/// works or the pod stops (upstream's FailedCreatePodSandBox).
struct Creation {
    sandboxes: Arc<sandbox::Sandboxes>,
    uid: String,
    pod: Value,
    dir: PathBuf,
    ip: Arc<Mutex<String>>,
    stop: watch::Receiver<Option<Duration>>,
    ctrs: Vec<Arc<Mutex<Ctr>>>,
    changes: broadcast::Sender<String>,
}

impl Creation {
    async fn run(mut self) -> Option<sandbox::Sandbox> {
        let mut delay = Duration::from_millis(500);
        loop {
            if self.stop.borrow().is_some() {
                return None;
            }
            match self.sandboxes.create(&self.uid).await {
                Ok(sb) => {
                    save_pod(&self.dir, &self.pod, &sb.ip, Some(&sb));
                    *lock(&self.ip) = sb.ip.clone();
                    let _ = self.changes.send(self.uid.clone());
                    return Some(sb);
                }
                Err(why) => {
                    tracing::warn!(pod = %self.uid, "creating the pod sandbox: {why}");
                    for c in &self.ctrs {
                        lock(c).state = ContainerState::Waiting {
                            reason: "ContainerCreating".into(),
                            message: format!("FailedCreatePodSandBox: {why}"),
                        };
                    }
                    let _ = self.changes.send(self.uid.clone());
                    let stopped =
                        tokio::time::timeout(delay, self.stop.wait_for(Option::is_some)).await;
                    if stopped.is_ok() {
                        return None;
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// The PATH a container starts with (upstream's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[cfg(test)]
mod tests;
