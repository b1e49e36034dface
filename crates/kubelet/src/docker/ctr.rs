//! One container of a pod under the docker runtime: a loop of engine
//! containers (image by pull policy, create joined to the pod's sandbox,
//! start, wait, inspect) under the restartPolicy and its back-off, each
//! change of state pushed and told as an Event. A container adopted from
//! a previous agent is waited for, not started again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Container;
use tokio::sync::{broadcast, watch};

use super::engine::{Engine, PullError};
use super::pod::{pod_labels, stopped};
use super::runtime::{container_name, entrypoint_and_cmd, lock, Ctr};
use super::spec;
use crate::podevents::PodEvents;
use crate::process::probe;
use crate::process::sandbox::{CgroupLimits, CPU_PERIOD_US};
use crate::process::Backoff;
use crate::{ContainerState, PodConfig, RestartPolicy};
use shoal_model::objects;

/// What every container loop of a pod shares.
pub(super) struct Shared {
    pub(super) engine: Engine,
    pub(super) node: u32,
    pub(super) uid: String,
    /// The pod as stored, and as resolved once it is.
    pub(super) pod: PodConfig,
    pub(super) config: watch::Receiver<Option<Arc<PodConfig>>>,
    pub(super) ip: Arc<Mutex<String>>,
    pub(super) stop: watch::Receiver<Option<Duration>>,
    pub(super) changes: broadcast::Sender<String>,
    pub(super) events: PodEvents,
    pub(super) metrics: super::metrics::DockerMetrics,
    /// The runtime's handlers, touched after a pull (see `Runtime::handlers`).
    pub(super) pulled: watch::Sender<Vec<crate::Handler>>,
    pub(super) backoff: Backoff,
    /// Bind mounts every container gets (the pod's network files).
    pub(super) binds: Vec<String>,
    /// The pod's own directory (its termination message files).
    pub(super) dir: std::path::PathBuf,
}

/// One container's loop of engine containers.
pub(super) struct CtrLoop {
    pub(super) task: Arc<Shared>,
    pub(super) sandbox: String,
    pub(super) share_pid: bool,
    pub(super) spec: Container,
    pub(super) ctr: Arc<Mutex<Ctr>>,
    pub(super) policy: RestartPolicy,
    pub(super) init: bool,
    /// Its volume mounts, or why they cannot be made.
    pub(super) mounts: Result<Vec<crate::process::sandbox::Mount>, String>,
}

impl CtrLoop {
    fn set(&self, state: ContainerState) {
        let mut c = lock(&self.ctr);
        if matches!(c.state, ContainerState::Terminated { .. })
            && !matches!(state, ContainerState::Terminated { .. })
        {
            c.last = Some(c.state.clone());
        }
        // A readiness or startup probe decides when it is ready.
        c.ready =
            matches!(state, ContainerState::Running { .. }) && !probe::gates_readiness(&self.spec);
        c.state = state;
        drop(c);
        let _ = self.task.changes.send(self.task.uid.clone());
    }

    fn stopping(&self) -> Option<Duration> {
        *self.task.stop.borrow()
    }

    /// Waits with `CreateContainerConfigError` (why) until the pod stops:
    /// the pod asks what cannot be done as it is.
    async fn config_error(&self, why: String) -> Option<(i32, String, String)> {
        let pod = &self.task.pod;
        self.task
            .events
            .warning(pod, "Failed", format!("Error: {why}"));
        self.set(ContainerState::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: why,
        });
        stopped(self.task.stop.clone()).await;
        None
    }

    /// Where its probes and hooks go: the pod's IP, and engine exec
    /// instances in `created`.
    fn target(&self, created: &str) -> probe::Target {
        probe::Target {
            ip: lock(&self.task.ip).clone(),
            env: Vec::new(),
            enter: None,
            exec: Some(super::exec::hook(
                self.task.engine.clone(),
                created.to_string(),
            )),
        }
    }

    /// Has the container's image by its pull policy, retrying with
    /// back-off (`ErrImagePull`, then `ImagePullBackOff`; `ErrImageNeverPull`
    /// and `InvalidImageName` wait the same way); false if the pod stopped
    /// first.
    async fn image(&self) -> bool {
        let image = self.spec.image.clone().unwrap_or_default();
        let policy = pull_policy(&self.spec);
        let mut failures: u32 = 0;
        loop {
            let present = match self.task.engine.image_present(&image).await {
                // An answer that is neither the image nor its absence (the
                // engine redirects some malformed names): the pull says why.
                Err(PullError::Failed(_)) => Ok(false),
                other => other,
            };
            let events = &self.task.events;
            let pod = &self.task.pod;
            let why = match present {
                Ok(true) if policy != "Always" => {
                    let message = format!("Container image {image:?} already present on machine");
                    events.normal(pod, "Pulled", message);
                    return true;
                }
                Ok(false) if policy == "Never" => (
                    "ErrImageNeverPull",
                    format!("Container image {image:?} is not present with pull policy of Never"),
                ),
                Ok(_) => match self.pull(&image).await {
                    Ok(()) => return true,
                    Err(PullError::InvalidName(m)) => ("InvalidImageName", m),
                    Err(PullError::Failed(m)) => ("ErrImagePull", m),
                },
                Err(PullError::InvalidName(m)) => ("InvalidImageName", m),
                Err(PullError::Failed(m)) => ("ErrImagePull", m),
            };
            let (reason, message) = why;
            match reason {
                "ErrImageNeverPull" => events.warning(pod, "ErrImageNeverPull", message.clone()),
                "InvalidImageName" => events.warning(pod, "InspectFailed", message.clone()),
                _ => events.warning(
                    pod,
                    "Failed",
                    format!("Failed to pull image {image:?}: {message}"),
                ),
            }
            events.warning(pod, "Failed", format!("Error: {reason}"));
            self.set(ContainerState::Waiting {
                reason: reason.into(),
                message: message.clone(),
            });
            let delay = self.task.backoff.delay(failures);
            failures = failures.saturating_add(1);
            let mut stop = self.task.stop.clone();
            let until = Instant::now() + delay;
            // The failure shows first; then, for a failed pull, the back-off
            // until the next try (as the kubelet's next sync would show).
            let first = delay.min(Duration::from_secs(1));
            if tokio::time::timeout(first, stop.wait_for(Option::is_some))
                .await
                .is_ok()
            {
                return false;
            }
            if reason == "ErrImagePull" {
                events.normal(pod, "BackOff", format!("Back-off pulling image {image:?}"));
                events.warning(pod, "Failed", "Error: ImagePullBackOff".into());
                self.set(ContainerState::Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: format!("Back-off pulling image {image:?}: {message}"),
                });
            }
            let rest = until.saturating_duration_since(Instant::now());
            if tokio::time::timeout(rest, stop.wait_for(Option::is_some))
                .await
                .is_ok()
            {
                return false;
            }
        }
    }

    /// Pulls `image` (Pulling, then Pulled with the time it took), with
    /// each of the pod's logins for its registry in turn, or none if it
    /// has none; the last failure is the answer.
    async fn pull(&self, image: &str) -> Result<(), PullError> {
        let pod = &self.task.pod;
        self.task
            .events
            .normal(pod, "Pulling", format!("Pulling image {image:?}"));
        let began = Instant::now();
        let resolved = self.task.config.borrow().clone();
        let logins: Vec<Option<bollard::auth::DockerCredentials>> = resolved
            .as_deref()
            .unwrap_or(pod)
            .pull_auths
            .iter()
            .filter(|a| a.matches(image))
            .map(|a| {
                Some(bollard::auth::DockerCredentials {
                    username: Some(a.username.clone()),
                    password: Some(a.password.clone()),
                    serveraddress: Some(a.server.clone()),
                    ..Default::default()
                })
            })
            .collect();
        let tries = if logins.is_empty() {
            vec![None]
        } else {
            logins
        };
        let mut last = Err(PullError::Failed(format!(
            "pulling {image}: no login tried"
        )));
        for login in tries {
            let pull = self.task.engine.pull(image, login, PULL_DEADLINE);
            last = self.task.metrics.time("pull_image", pull).await;
            if last.is_ok() || matches!(last, Err(PullError::InvalidName(_))) {
                break;
            }
        }
        if last.is_ok() {
            // The node's images changed: what the Node says is written again.
            self.task.pulled.send_modify(|_| {});
            let took = began.elapsed();
            self.task.events.normal(
                pod,
                "Pulled",
                format!("Successfully pulled image {image:?} in {took:.3?}"),
            );
        }
        last
    }

    /// Runs the container by its restartPolicy until the pod stops; an
    /// init container returns true once it succeeded.
    pub(super) async fn run(self) -> bool {
        let mut failures: u32 = 0;
        if let Err(why) = &self.mounts {
            self.config_error(why.clone()).await;
            return false;
        }
        // An adopted container's instance goes on: it is waited for.
        let mut resume = lock(&self.ctr).id.clone();
        loop {
            let started = Instant::now();
            let ended = match resume.take() {
                Some(id) => self.wait_for(&id).await,
                None => {
                    if self.stopping().is_some() || !self.image().await {
                        return false;
                    }
                    self.run_once().await
                }
            };
            let Some((code, reason, message)) = ended else {
                return false; // stopped
            };
            self.set(ContainerState::Terminated {
                exit_code: code,
                reason,
                message,
                finished_at: objects::now(),
            });
            if !self.policy.restarts(code) {
                if self.init {
                    return code == 0;
                }
                stopped(self.task.stop.clone()).await;
                return false;
            }
            if started.elapsed() >= self.task.backoff.reset_after {
                failures = 0;
            }
            let delay = self.task.backoff.delay(failures);
            failures = failures.saturating_add(1);
            lock(&self.ctr).restarts += 1;
            let pod = &self.task.pod;
            self.task.events.warning(
                pod,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    self.spec.name,
                    pod.name(),
                    pod.pod.metadata.namespace.as_deref().unwrap_or(""),
                    self.task.uid
                ),
            );
            self.set(ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {delay:?} restarting failed container={} pod={}",
                    self.spec.name, self.task.uid
                ),
            });
            let mut stop = self.task.stop.clone();
            if tokio::time::timeout(delay, stop.wait_for(Option::is_some))
                .await
                .is_ok()
            {
                return false;
            }
        }
    }

    /// One engine container: Some(exit code, reason, message) when it
    /// ended by itself or could not start, None when the pod stopped.
    async fn run_once(&self) -> Option<(i32, String, String)> {
        let docker = self.task.engine.api();
        let attempt = lock(&self.ctr).restarts;
        let name = container_name(self.task.node, &self.task.uid, &self.spec.name, attempt);
        let ip = lock(&self.task.ip).clone();
        // An adopted pod's next instance waits for its resolved environment.
        let mut config = self.task.config.clone();
        let resolved = tokio::select! {
            c = config.wait_for(Option::is_some) => c.ok().and_then(|c| c.clone()),
            _ = stopped(self.task.stop.clone()) => None,
        };
        let resolved = resolved?;
        let env = crate::process::env_of(resolved.env_of(&self.spec), &ip);
        let (entrypoint, cmd) = match entrypoint_and_cmd(&self.spec, &env) {
            Ok(v) => v,
            Err(why) => return self.config_error(why).await,
        };
        // The security context, checked against the image's USER.
        let image = self.spec.image.clone().unwrap_or_default();
        let image_user = docker
            .inspect_image(&image)
            .await
            .ok()
            .and_then(|i| i.config?.user)
            .unwrap_or_default();
        let pod_security = self
            .task
            .pod
            .spec()
            .and_then(|s| s.security_context.as_ref());
        let sec = match spec::security(pod_security, &self.spec, &image_user) {
            Ok(s) => s,
            Err(why) => return self.config_error(why).await,
        };
        // Its volumes, and the file its termination message goes to.
        let mut mounts = spec::mounts(self.mounts.as_deref().unwrap_or_default());
        let (term_target, term_host) = spec::termination_file(&self.task.dir, &self.spec, attempt);
        if let Err(e) = new_termination_file(&term_host) {
            let why = format!("{}: {e}", term_host.display());
            return Some((128, "CreateContainerError".into(), why));
        }
        mounts.push(bollard::models::Mount {
            target: Some(term_target),
            source: Some(term_host.display().to_string()),
            typ: Some(bollard::models::MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        });
        let join = format!("container:{}", self.sandbox);
        let limits = CgroupLimits::of(&self.spec);
        let body = ContainerCreateBody {
            image: self.spec.image.clone(),
            entrypoint,
            cmd,
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: self.spec.working_dir.clone(),
            user: sec.user,
            labels: Some(self.labels(attempt)),
            tty: self.spec.tty,
            open_stdin: self.spec.stdin,
            stdin_once: self.spec.stdin_once,
            host_config: Some(HostConfig {
                network_mode: Some(join.clone()),
                ipc_mode: Some(join.clone()),
                pid_mode: self.share_pid.then(|| join.clone()),
                binds: Some(self.task.binds.clone()),
                mounts: Some(mounts),
                group_add: (!sec.group_add.is_empty()).then_some(sec.group_add),
                privileged: Some(sec.privileged),
                cap_add: (!sec.cap_add.is_empty()).then_some(sec.cap_add),
                cap_drop: (!sec.cap_drop.is_empty()).then_some(sec.cap_drop),
                readonly_rootfs: Some(sec.readonly_rootfs),
                security_opt: (!sec.security_opt.is_empty()).then_some(sec.security_opt),
                // The same limits the process runtime writes to cgroups.
                memory: limits.memory_bytes.and_then(|m| i64::try_from(m).ok()),
                cpu_period: limits.cpu_quota_us.map(|_| CPU_PERIOD_US as i64),
                cpu_quota: limits.cpu_quota_us.and_then(|q| i64::try_from(q).ok()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let create = docker.create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        );
        let created = match self.task.metrics.time("create_container", create).await {
            Ok(c) => c.id,
            Err(e) => {
                let pod = &self.task.pod;
                self.task
                    .events
                    .warning(pod, "Failed", format!("Error: {e}"));
                return Some((128, "CreateContainerError".into(), e.to_string()));
            }
        };
        let name_of = &self.spec.name;
        self.task.events.normal(
            &self.task.pod,
            "Created",
            format!("Created container: {name_of}"),
        );
        // The instance before stays for `logs --previous`; older ones go.
        let older = {
            let mut c = lock(&self.ctr);
            let current = c.id.replace(created.clone());
            std::mem::replace(&mut c.previous, current)
        };
        if let Some(old) = older {
            let _ = docker
                .remove_container(
                    &old,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
        }
        let start = docker.start_container(&created, None);
        if let Err(e) = self.task.metrics.time("start_container", start).await {
            let pod = &self.task.pod;
            self.task
                .events
                .warning(pod, "Failed", format!("Error: {e}"));
            return Some((128, "StartError".into(), e.to_string()));
        }
        self.task.events.normal(
            &self.task.pod,
            "Started",
            format!("Started container {name_of}"),
        );
        // postStart runs before the container counts as running; a hook
        // that fails kills it.
        if let Some(hook) = probe::Probe::post_start(
            &self.spec,
            self.task.pod.grace().max(Duration::from_secs(1)),
        ) {
            if let Err(e) = hook.check(&self.target(&created)).await {
                let why = format!("PostStartHook failed: {e}");
                self.task
                    .events
                    .warning(&self.task.pod, "FailedPostStartHook", why.clone());
                let code = self.kill(&created, self.task.pod.grace()).await;
                return Some((code, "Error".into(), why));
            }
        }
        self.set(ContainerState::Running {
            started_at: objects::now(),
        });
        self.wait_for(&created).await
    }

    /// Stops instance `id` within `grace` (SIGTERM, then SIGKILL); its
    /// exit code.
    async fn kill(&self, id: &str, grace: Duration) -> i32 {
        let docker = self.task.engine.api();
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let _ = docker
            .stop_container(id, Some(StopContainerOptionsBuilder::new().t(t).build()))
            .await;
        docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|i| i.state?.exit_code)
            .map_or(137, |c| i32::try_from(c).unwrap_or(137))
    }

    /// Waits for instance `created` to end (Some(exit code, reason,
    /// message)) or the pod to stop (None; the preStop hook runs, then
    /// the instance is stopped with what is left of the pod's grace),
    /// probing it meanwhile: a failed liveness or startup probe kills it.
    async fn wait_for(&self, created: &str) -> Option<(i32, String, String)> {
        let docker = self.task.engine.api();
        let created = created.to_string();
        let attempt = lock(&self.ctr).restarts;
        let (ctr, changes, uid) = (
            self.ctr.clone(),
            self.task.changes.clone(),
            self.task.uid.clone(),
        );
        let set_ready = move |ready: bool| {
            let mut c = lock(&ctr);
            if c.ready != ready && matches!(c.state, ContainerState::Running { .. }) {
                c.ready = ready;
                drop(c);
                let _ = changes.send(uid.clone());
            }
        };
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<String>();
        let prober = AbortOnDrop(tokio::spawn(probe::run(
            self.spec.clone(),
            self.target(&created),
            set_ready,
            kill_tx,
        )));
        let killed = async move {
            match kill_rx.await {
                Ok(why) => why,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::pin!(killed);
        enum End {
            Exited(bollard::models::ContainerState),
            Stopped(Duration),
            Killed(String),
        }
        // A wait that breaks because the engine went away is not the
        // container's end: it runs on, and is waited for again once the
        // engine answers (never started twice).
        let end = loop {
            let mut wait = docker.wait_container(&created, None);
            tokio::select! {
                _ = wait.next() => {}
                g = super::pod::stopped_grace(self.task.stop.clone()) => break End::Stopped(g),
                why = &mut killed => break End::Killed(why),
            };
            match docker.inspect_container(&created, None).await {
                Ok(i) if i.state.as_ref().and_then(|s| s.running) == Some(true) => continue,
                Ok(i) => break End::Exited(i.state.unwrap_or_default()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) => {
                    let why = format!("the container was removed: {message}");
                    return Some((137, "Error".into(), why));
                }
                Err(e) => {
                    tracing::debug!(pod = %self.task.uid, container = %self.spec.name,
                        "docker runtime: the engine: {e}; waiting for it");
                    tokio::select! {
                        () = self.task.engine.answers() => continue,
                        g = super::pod::stopped_grace(self.task.stop.clone()) => break End::Stopped(g),
                    }
                }
            }
        };
        drop(prober);
        let state = match end {
            End::Exited(state) => state,
            End::Stopped(grace) => {
                let began = Instant::now();
                if let Some(hook) = probe::Probe::pre_stop(&self.spec) {
                    let hook = probe::Probe {
                        timeout: grace.max(Duration::from_millis(1)),
                        ..hook
                    };
                    if let Err(e) = hook.check(&self.target(&created)).await {
                        let why = format!("PreStopHook failed: {e}");
                        self.task
                            .events
                            .warning(&self.task.pod, "FailedPreStopHook", why);
                    }
                }
                self.kill(&created, grace.saturating_sub(began.elapsed()))
                    .await;
                return None;
            }
            End::Killed(why) => {
                let pod = &self.task.pod;
                self.task.events.warning(pod, "Unhealthy", why.clone());
                let name = &self.spec.name;
                self.task.events.normal(
                    pod,
                    "Killing",
                    format!("Container {name} failed a probe, will be restarted"),
                );
                let code = self.kill(&created, pod.grace()).await;
                return Some((code, "Error".into(), why));
            }
        };
        let (code, reason) = exit_of(&state);
        // The container's own words first, then (FallbackToLogsOnError,
        // a failure) the end of its log, then the engine's.
        let (_, term_host) = spec::termination_file(&self.task.dir, &self.spec, attempt);
        let mut message = spec::termination_message(&term_host);
        let fallback =
            self.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        if message.is_empty() && fallback && code != 0 {
            message = self.last_log_lines(&created).await;
        }
        if message.is_empty() {
            message = state.error.unwrap_or_default();
        }
        Some((code, reason.into(), message))
    }

    /// The last 80 lines of instance `id`'s log, at most 2048 bytes (what
    /// upstream's FallbackToLogsOnError keeps).
    async fn last_log_lines(&self, id: &str) -> String {
        let Ok(mut stream) = self.task.engine.logs(id, false, false, Some(80)).await else {
            return String::new();
        };
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.extend_from_slice(&chunk);
        }
        let keep = text.len().saturating_sub(2048);
        String::from_utf8_lossy(&text[keep..]).into_owned()
    }

    fn labels(&self, attempt: u32) -> HashMap<String, String> {
        pod_labels(&self.task.pod, self.task.node, &self.spec.name, attempt)
    }
}

/// How long one pull may take.
const PULL_DEADLINE: Duration = Duration::from_secs(300);

/// A container's image pull policy: as given, else upstream's default
/// (`Always` for `:latest` or no tag, `IfNotPresent` otherwise).
pub(super) fn pull_policy(c: &Container) -> &'static str {
    match c.image_pull_policy.as_deref() {
        Some("Always") => "Always",
        Some("Never") => "Never",
        Some("IfNotPresent") => "IfNotPresent",
        _ => {
            let image = c.image.as_deref().unwrap_or("");
            let name = image.split('@').next().unwrap_or("");
            let digest = image.contains('@');
            // The tag follows the last ':' after the last '/' (a port in
            // the registry's host is not a tag).
            let last = name.rsplit('/').next().unwrap_or(name);
            match last.rsplit_once(':') {
                _ if digest => "IfNotPresent",
                Some((_, "latest")) | None => "Always",
                Some(_) => "IfNotPresent",
            }
        }
    }
}

/// An ended engine container's exit code and Kubernetes' reason for it.
pub(super) fn exit_of(state: &bollard::models::ContainerState) -> (i32, &'static str) {
    let code = state
        .exit_code
        .map_or(128, |c| i32::try_from(c).unwrap_or(128));
    let reason = if state.oom_killed == Some(true) {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    (code, reason)
}

/// Aborts the task when dropped (a container's prober ends with its wait).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Makes `path` an empty file any user in the container may write (its
/// process may not run as root).
fn new_termination_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, b"")?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pull_policy_defaults_as_upstreams() {
        let c = |image: &str, policy: Option<&str>| -> Container {
            serde_json::from_value(serde_json::json!({
                "name": "c", "image": image, "imagePullPolicy": policy
            }))
            .unwrap()
        };
        assert_eq!(pull_policy(&c("nginx", None)), "Always");
        assert_eq!(pull_policy(&c("nginx:latest", None)), "Always");
        assert_eq!(pull_policy(&c("nginx:1.27", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/x", None)), "Always");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/x:2", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("x@sha256:abc", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("nginx", Some("Never"))), "Never");
        assert_eq!(pull_policy(&c("nginx:1", Some("Always"))), "Always");
    }
}
