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
//! period. Without root, pods share the host's network and get a distinct
//! loopback address (`127.<node>.x.y`) as their pod IP: a degraded mode
//! (the network namespace sandbox comes with root, later).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, watch};

use super::{ContainerState, ContainerStatus, PodState, Runtime};
use crate::api::logs::PodLogs;
use crate::api::objects;

mod logs;
pub mod probe;

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
    ip: String,
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
    pub fn new(root: &Path, node: u8, backoff: Backoff) -> std::io::Result<ProcessRuntime> {
        std::fs::create_dir_all(root)?;
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                node,
                next_ip: Mutex::new(0),
                pods: Mutex::new(HashMap::new()),
                changes: broadcast::channel(1024).0,
                backoff,
            }),
        })
    }

    fn next_ip(&self) -> String {
        let mut n = lock(&self.inner.next_ip);
        *n = n.wrapping_add(1) % (254 * 256);
        let v = *n;
        format!("127.{}.{}.{}", self.inner.node, v / 254, v % 254 + 1)
    }

    fn state_of(run: &PodRun) -> PodState {
        PodState {
            pod_ip: run.ip.clone(),
            containers: run
                .containers
                .iter()
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
                .collect(),
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
        let policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_string();
        let dir = self.inner.root.join(&uid);
        let (stop, _) = watch::channel(None);
        let mut run = PodRun {
            ip: self.next_ip(),
            containers: Vec::new(),
            stop,
            supervisors: Vec::new(),
        };
        let specs = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in specs {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ctr = Arc::new(Mutex::new(Ctr {
                name: name.clone(),
                image: c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                state: ContainerState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                },
                last: None,
                restarts: 0,
                pid: None,
                ready: false,
            }));
            run.containers.push(ctr.clone());
            let sup = Supervisor {
                uid: uid.clone(),
                ip: run.ip.clone(),
                grace: Duration::from_secs(
                    pod.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(30),
                ),
                dir: dir.join(&name),
                spec: c,
                policy: policy.clone(),
                ctr,
                stop: run.stop.subscribe(),
                changes: self.inner.changes.clone(),
                backoff: self.inner.backoff,
            };
            run.supervisors.push(tokio::spawn(sup.run()));
        }
        let state = Self::state_of(&run);
        pods.insert(uid, run);
        Box::pin(async move { state })
    }

    fn stop(&self, uid: &str, grace: Duration) -> BoxFuture<'static, ()> {
        let run = lock(&self.inner.pods).remove(uid);
        let dir = self.inner.root.join(uid);
        Box::pin(async move {
            if let Some(run) = run {
                let _ = run.stop.send(Some(grace));
                for s in run.supervisors {
                    let _ = s.await;
                }
            }
            let _ = tokio::fs::remove_dir_all(&dir).await;
        })
    }

    fn running(&self) -> Vec<String> {
        lock(&self.inner.pods).keys().cloned().collect()
    }

    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, String>> {
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
        let dir = self.inner.root.join(uid);
        let req = req.clone();
        Box::pin(async move {
            let (name, restarts) = found.ok_or_else(|| {
                format!("container {:?} is not running on this node", req.container)
            })?;
            let instance = if req.previous {
                restarts
                    .checked_sub(1)
                    .ok_or_else(|| format!("previous terminated container {name:?} not found"))?
            } else {
                restarts
            };
            logs::read(&dir.join(&name).join(format!("{instance}.log")), &req).await
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
}

/// Runs one container until its pod stops or its restartPolicy ends it.
struct Supervisor {
    uid: String,
    /// The pod IP (probes go there).
    ip: String,
    /// The pod's terminationGracePeriodSeconds (a liveness kill's grace).
    grace: Duration,
    dir: PathBuf,
    spec: Value,
    policy: String,
    ctr: Arc<Mutex<Ctr>>,
    stop: watch::Receiver<Option<Duration>>,
    changes: broadcast::Sender<String>,
    backoff: Backoff,
}

impl Supervisor {
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

    async fn run(mut self) {
        let config_error = self
            .spec
            .get(crate::kubelet::envs::CONFIG_ERROR)
            .and_then(Value::as_str)
            .map(String::from);
        let argv = match config_error.map_or_else(|| argv_of(&self.spec), Err) {
            Ok(a) => a,
            Err(message) => {
                let reason = "CreateContainerConfigError".to_string();
                self.set(ContainerState::Waiting { reason, message }, None);
                let _ = self.stop.wait_for(Option::is_some).await;
                return;
            }
        };
        let mut failures: u32 = 0;
        loop {
            if self.stopping().is_some() {
                return;
            }
            let instance = lock(&self.ctr).restarts;
            let started = Instant::now();
            let exit = self.run_once(&argv, instance).await;
            let Some((code, reason, message)) = exit else {
                return; // stopped
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
                let _ = self.stop.wait_for(Option::is_some).await;
                return;
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
                return;
            }
        }
    }

    /// One instance of the container: Some(exit code, reason, message)
    /// when it ended by itself, None when the pod was stopped.
    async fn run_once(&mut self, argv: &[String], instance: u32) -> Option<(i32, String, String)> {
        if let Err(e) = tokio::fs::create_dir_all(&self.dir).await {
            return Some((
                128,
                "StartError".into(),
                format!("creating {}: {e}", self.dir.display()),
            ));
        }
        let log_path = self.dir.join(format!("{instance}.log"));
        let log = match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
        {
            Ok(f) => f,
            Err(e) => return Some((128, "StartError".into(), format!("log file: {e}"))),
        };
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(env_of(&self.spec, &self.ip))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(wd) = self.spec.get("workingDir").and_then(Value::as_str) {
            cmd.current_dir(wd);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Some((128, "StartError".into(), format!("{}: {e}", argv[0])));
            }
        };
        let pid = child.id();
        self.set(
            ContainerState::Running {
                started_at: objects::now(),
            },
            pid,
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pumps = [
            child
                .stdout
                .take()
                .map(|o| tokio::spawn(pump(o, "stdout", tx.clone()))),
            child
                .stderr
                .take()
                .map(|e| tokio::spawn(pump(e, "stderr", tx.clone()))),
        ];
        drop(tx);
        let writer = tokio::spawn(logs::write(log, rx));
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<String>();
        let prober = tokio::spawn(probe::run(
            self.spec.clone(),
            self.ip.clone(),
            env_of(&self.spec, &self.ip),
            self.ctr.clone(),
            self.uid.clone(),
            self.changes.clone(),
            kill_tx,
        ));
        let mut kill_rx = std::pin::pin!(kill_rx);
        enum End {
            Exited(Option<std::process::ExitStatus>),
            Stopped(Duration),
            Killed(String),
        }
        let end = tokio::select! {
            status = child.wait() => End::Exited(status.ok()),
            grace = self.stop.wait_for(Option::is_some) => {
                End::Stopped(grace.ok().and_then(|g| *g).unwrap_or(Duration::ZERO))
            }
            Ok(why) = &mut kill_rx => End::Killed(why),
        };
        prober.abort();
        let code_of = |status: Option<std::process::ExitStatus>| {
            use std::os::unix::process::ExitStatusExt;
            status
                .and_then(|s| s.code().or(s.signal().map(|sig| 128 + sig)))
                .unwrap_or(128)
        };
        let outcome = match end {
            End::Exited(status) => {
                let code = code_of(status);
                let reason = if code == 0 { "Completed" } else { "Error" };
                Some((code, reason.to_string(), String::new()))
            }
            End::Stopped(grace) => {
                terminate(&mut child, pid, grace).await;
                None
            }
            End::Killed(why) => {
                // A failed liveness or startup probe: killed, then the
                // restartPolicy decides.
                terminate(&mut child, pid, self.grace).await;
                let code = code_of(child.try_wait().ok().flatten());
                Some((code, "Error".to_string(), why))
            }
        };
        for p in pumps.into_iter().flatten() {
            let _ = p.await;
        }
        let _ = writer.await;
        outcome
    }
}

/// SIGTERM to the container's process group, SIGKILL after `grace`.
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>, grace: Duration) {
    let Some(pid) = pid else { return };
    let group = -(pid as i32);
    // SAFETY: kill(2) with a process group id; no memory is touched.
    unsafe { libc::kill(group, libc::SIGTERM) };
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.wait().await;
    }
}

/// Forwards a pipe's lines to the log writer.
async fn pump(
    out: impl AsyncRead + Unpin,
    stream: &'static str,
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, String)>,
) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send((stream, line)).is_err() {
            return;
        }
    }
}

/// Writes one line in the CRI log format.
async fn write_line(f: &mut tokio::fs::File, stream: &str, line: &str) -> std::io::Result<()> {
    let ts = jiff::Timestamp::now();
    f.write_all(format!("{ts} {stream} F {line}\n").as_bytes())
        .await
}

#[cfg(test)]
mod tests;
