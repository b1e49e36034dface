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
use crate::podevents::PodEvents;
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
    pub(super) backoff: Backoff,
    /// Bind mounts every container gets (the pod's network files).
    pub(super) binds: Vec<String>,
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
}

impl CtrLoop {
    fn set(&self, state: ContainerState) {
        let mut c = lock(&self.ctr);
        if matches!(c.state, ContainerState::Terminated { .. })
            && !matches!(state, ContainerState::Terminated { .. })
        {
            c.last = Some(c.state.clone());
        }
        c.ready = matches!(state, ContainerState::Running { .. });
        c.state = state;
        drop(c);
        let _ = self.task.changes.send(self.task.uid.clone());
    }

    fn stopping(&self) -> Option<Duration> {
        *self.task.stop.borrow()
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
            last = self.task.engine.pull(image, login, PULL_DEADLINE).await;
            if last.is_ok() || matches!(last, Err(PullError::InvalidName(_))) {
                break;
            }
        }
        if last.is_ok() {
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
                reason: if message.is_empty() {
                    reason
                } else {
                    format!("{reason}: {message}")
                },
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
            Err(why) => return Some((128, "CreateContainerConfigError".into(), why)),
        };
        let join = format!("container:{}", self.sandbox);
        let limits = CgroupLimits::of(&self.spec);
        let body = ContainerCreateBody {
            image: self.spec.image.clone(),
            entrypoint,
            cmd,
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: self.spec.working_dir.clone(),
            labels: Some(self.labels(attempt)),
            tty: self.spec.tty,
            open_stdin: self.spec.stdin,
            stdin_once: self.spec.stdin_once,
            host_config: Some(HostConfig {
                network_mode: Some(join.clone()),
                ipc_mode: Some(join.clone()),
                pid_mode: self.share_pid.then(|| join.clone()),
                binds: Some(self.task.binds.clone()),
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
        let created = match docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
        {
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
        if let Err(e) = docker.start_container(&created, None).await {
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
        self.set(ContainerState::Running {
            started_at: objects::now(),
        });
        self.wait_for(&created).await
    }

    /// Waits for instance `created` to end (Some(exit code, reason,
    /// message)) or the pod to stop (None; the instance is stopped with
    /// the pod's grace).
    async fn wait_for(&self, created: &str) -> Option<(i32, String, String)> {
        let docker = self.task.engine.api();
        let created = created.to_string(); // The container's end, or the pod's stop. A wait that breaks
                                           // because the engine went away is not the container's end: the
                                           // container runs on, and is waited for again once the engine
                                           // answers (never started twice).
        let ended = loop {
            let mut wait = docker.wait_container(&created, None);
            tokio::select! {
                _ = wait.next() => {}
                g = stopped_with(self.task.stop.clone()) => break Err(g),
            };
            match docker.inspect_container(&created, None).await {
                Ok(i) if i.state.as_ref().and_then(|s| s.running) == Some(true) => continue,
                Ok(i) => break Ok(i.state.unwrap_or_default()),
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
                        g = stopped_with(self.task.stop.clone()) => break Err(g),
                    }
                }
            }
        };
        let state = match ended {
            Ok(state) => state,
            Err(grace) => {
                let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
                let _ = docker
                    .stop_container(
                        &created,
                        Some(StopContainerOptionsBuilder::new().t(t).build()),
                    )
                    .await;
                return None;
            }
        };
        let code = state.exit_code.unwrap_or(128) as i32;
        let reason = if state.oom_killed == Some(true) {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        };
        Some((code, reason.into(), state.error.unwrap_or_default()))
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

/// The grace period the pod is stopped with, once it is.
async fn stopped_with(mut stop: watch::Receiver<Option<Duration>>) -> Duration {
    match stop.wait_for(Option::is_some).await {
        Ok(g) => g.unwrap_or(Duration::ZERO),
        Err(_) => Duration::ZERO,
    }
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
