//! The [`Runtime`] trait: what the kubelet asks of whatever runs its pods
//! (the `process` runtime, `sim`, later `docker`), and what a runtime
//! reports back ([`PodState`], [`ContainerStatus`]). The conformance suite
//! (`testing`) pins what every implementation must do.
//!
//! A runtime is handed a [`PodConfig`], like CRI's sandbox and container
//! configs: the typed pod as stored, plus what the kubelet resolved for
//! it (literal environments, the files of its projected volumes, and why
//! a container or volume cannot be set up), so no runtime reads JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use shoal_kubelet_proto::PodLogs;

/// What a runtime reports of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Running {
        started_at: String,
    },
    Waiting {
        reason: String,
        message: String,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        /// What ended it, in words (a probe's failure, the container's
        /// termination message), or empty.
        #[serde(default)]
        message: String,
        finished_at: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    pub ready: bool,
    pub restart_count: u32,
    /// The previous instance's end (`lastState.terminated`), if any.
    #[serde(default)]
    pub last_state: Option<ContainerState>,
    /// `<runtime>://<id>`.
    #[serde(default)]
    pub container_id: String,
}

/// A pod as its runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    pub pod_ip: String,
    pub containers: Vec<ContainerStatus>,
    /// Init containers, in order (`initContainerStatuses`).
    #[serde(default)]
    pub init_containers: Vec<ContainerStatus>,
}

/// What a runtime is asked to run: the pod as stored, and what the kubelet
/// resolved for it. Without resolution (`Runtime::needs_config` false, or
/// a pod the runtime already runs) the maps are empty and each container's
/// environment is its `env` as stored. Secret values live only in the
/// resolved maps, which a runtime keeps in memory, never on disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PodConfig {
    /// The pod as stored (its `env` entries still name their sources).
    pub pod: Pod,
    /// By container name: its environment made literal (`envs`), except
    /// `status.podIP` references, which the runtime fills in.
    #[serde(default)]
    pub envs: BTreeMap<String, Vec<EnvVar>>,
    /// By container name: why its configuration cannot be built (a
    /// missing ConfigMap or Secret); it waits with
    /// `CreateContainerConfigError`.
    #[serde(default)]
    pub config_errors: BTreeMap<String, String>,
    /// By volume name: the files a `configMap`, `secret` or `projected`
    /// volume projects, or why it cannot be set up.
    #[serde(default)]
    pub projections: BTreeMap<String, Projection>,
    /// The registry logins of its `imagePullSecrets`, in order.
    #[serde(default)]
    pub pull_auths: Vec<crate::pullsecrets::RegistryAuth>,
    /// By volume name: the directory a `persistentVolumeClaim` volume's
    /// bound volume lives in, or why it cannot be mounted yet.
    #[serde(default)]
    pub claims: BTreeMap<String, Result<std::path::PathBuf, String>>,
}

/// A projected volume's content, as the kubelet resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Projection {
    Files(Vec<ProjectedFile>),
    /// Why it cannot be set up (a missing ConfigMap that is not optional,
    /// a missing key).
    Failed(String),
}

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectedFile {
    /// Relative to the volume, without `..`.
    pub path: String,
    pub data: ByteString,
    pub mode: u32,
}

impl PodConfig {
    /// The stored pod, typed, with nothing resolved; Config when it does
    /// not decode as a Pod (the API's validation keeps such pods out).
    pub fn of(pod: &Value) -> Result<PodConfig, RuntimeError> {
        let pod: Pod = serde_json::from_value(pod.clone()).map_err(|e| {
            RuntimeError::Config(format!("the pod does not decode as a v1 Pod: {e}"))
        })?;
        Ok(PodConfig {
            pod,
            ..PodConfig::default()
        })
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.pod
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy::named(self.spec().and_then(|s| s.restart_policy.as_deref()))
    }

    /// `terminationGracePeriodSeconds` (upstream's default 30 s).
    pub fn grace(&self) -> Duration {
        let secs = self
            .spec()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }

    pub fn init_containers(&self) -> &[Container] {
        self.spec()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
    }

    pub fn containers(&self) -> &[Container] {
        self.spec()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
    }

    pub fn volumes(&self) -> &[k8s_openapi::api::core::v1::Volume] {
        self.spec()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default()
    }

    /// Container `c`'s environment: as resolved, or as stored.
    pub fn env_of<'a>(&'a self, c: &'a Container) -> &'a [EnvVar] {
        match self.envs.get(&c.name) {
            Some(env) => env,
            None => c.env.as_deref().unwrap_or_default(),
        }
    }

    /// The pod alone, without what was resolved for it (what may be
    /// written to disk).
    pub fn unresolved(&self) -> PodConfig {
        PodConfig {
            pod: self.pod.clone(),
            ..PodConfig::default()
        }
    }

    /// Why container `name` cannot be configured, if it cannot.
    pub fn config_error(&self, name: &str) -> Option<&str> {
        self.config_errors.get(name).map(String::as_str)
    }
}

/// Why a runtime could not do what was asked (logs, a connection into a
/// pod); the kubelet actor sends its text back to the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The pod, or the container asked for, does not run on this node.
    #[error("{0}")]
    NotFound(String),
    /// This runtime cannot do it at all (a hollow pod has no network).
    #[error("{0}")]
    Unsupported(String),
    /// The host failed (a file, a namespace, a socket): may pass.
    #[error("{0}")]
    Host(String),
    /// The pod asks for what cannot be set up as it is (a volumeMount of
    /// no volume, a bad hostPath): its containers wait with
    /// `CreateContainerConfigError` until the pod or the host changes.
    #[error("{0}")]
    Config(String),
}

impl RuntimeError {
    /// Whether asking again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RuntimeError::Host(_) | RuntimeError::Config(_))
    }
}

/// A runtime handler a node offers (what a RuntimeClass's `handler`
/// names), and whether it can start pods now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    /// Whether it runs the pods that name no RuntimeClass.
    pub default: bool,
    /// Why it cannot start pods now (the Docker Engine does not answer),
    /// or None.
    pub problem: Option<String>,
}

/// An image the node holds (the Node's `status.images`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeImage {
    pub names: Vec<String>,
    pub size_bytes: i64,
}

/// Runs pods on one node. The conformance suite (`sim::tests`) pins what
/// every runtime must do.
pub trait Runtime: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Starts (or finds running) the pod; reports its state.
    fn start(&self, pod: &PodConfig) -> BoxFuture<'static, PodState>;
    /// Stops the pod (within `grace`); idempotent.
    fn stop(&self, uid: &str, grace: Duration) -> BoxFuture<'static, ()>;
    /// The pods it runs, by uid.
    fn running(&self) -> Vec<String>;
    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, RuntimeError>>;
    /// `logs -f`: the logs so far, then what the container writes, into
    /// `sink` until the container ends (the default: what `logs` has,
    /// then the end).
    fn follow(
        &self,
        req: &PodLogs,
        uid: &str,
        sink: shoal_fabric::actor::Sink<String>,
    ) -> BoxFuture<'static, ()> {
        let logs = self.logs(req, uid);
        Box::pin(async move {
            match logs.await {
                Ok(text) => {
                    let _ = sink.send(&text).await;
                    sink.end("the logs end here").await;
                }
                Err(e) => sink.end(&e.to_string()).await,
            }
        })
    }
    /// Uids of pods whose state changed on its own (a container exited or
    /// restarted), pushed; None for a runtime whose pods change only when
    /// told (sim).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
    /// `kubectl exec`: runs the command in a container of the pod,
    /// streaming its output and exit code into `sink`; `input` carries the
    /// client's stdin and terminal resizes when it asked for them (the
    /// default: no processes to run it in).
    fn exec(
        &self,
        _req: &shoal_kubelet_proto::Exec,
        _uid: &str,
        _input: Option<tokio::sync::mpsc::Receiver<shoal_kubelet_proto::Input>>,
        sink: shoal_fabric::actor::Sink<shoal_kubelet_proto::ExecEvent>,
    ) -> BoxFuture<'static, ()> {
        let name = self.name();
        Box::pin(async move {
            sink.end(&format!("the {name} runtime has no processes to exec in"))
                .await
        })
    }
    /// `kubectl port-forward`: a TCP connection to `port` of the pod, as
    /// seen from inside it (the default: no network to reach).
    fn connect(
        &self,
        _uid: &str,
        _port: u16,
    ) -> BoxFuture<'static, Result<tokio::net::TcpStream, RuntimeError>> {
        let name = self.name();
        Box::pin(async move {
            Err(RuntimeError::Unsupported(format!(
                "the {name} runtime has no pod network to forward to"
            )))
        })
    }
    /// The pod's current state, if the runtime runs it.
    fn state(&self, _uid: &str) -> Option<PodState> {
        None
    }
    /// Whether `start` wants the pod with its containers' environments
    /// resolved (`envs`): ConfigMaps and Secrets read, fields filled in.
    fn needs_config(&self) -> bool {
        false
    }
    /// The pod resolved again (a ConfigMap or Secret it names changed, or
    /// the runtime adopted it after an agent restart): its projected
    /// volumes get the new files, and its containers' next instances the
    /// new environment.
    fn update(&self, _pod: &PodConfig) {}
    /// Whether the runtime has the pod's resolved configuration (false for
    /// a pod adopted from a previous agent until `update` gives it).
    fn resolved(&self, _uid: &str) -> bool {
        true
    }
    /// The images the node holds for it (the default: none).
    fn images(&self) -> BoxFuture<'static, Vec<NodeImage>> {
        Box::pin(async { Vec::new() })
    }
    /// The handlers it offers and whether each can start pods now,
    /// pushed as that changes, and also when its images changed (a
    /// pull): what the Node says of the runtime is written again (the
    /// default: itself, always able).
    fn handlers(&self) -> tokio::sync::watch::Receiver<Vec<Handler>> {
        tokio::sync::watch::channel(vec![Handler {
            name: self.name().to_string(),
            default: true,
            problem: None,
        }])
        .1
    }
}

/// A pod's `spec.restartPolicy`, read once where a runtime needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart whatever the exit code (the default).
    #[default]
    Always,
    /// Restart after a non-zero exit code.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The pod's policy; `Always` when absent or not one of upstream's
    /// three (validation refuses those at the API).
    pub fn of(pod: &Value) -> RestartPolicy {
        RestartPolicy::named(pod.pointer("/spec/restartPolicy").and_then(Value::as_str))
    }

    /// The policy `spec.restartPolicy` names (`Always` when none).
    pub fn named(name: Option<&str>) -> RestartPolicy {
        match name {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// The policy of an init container of a pod under `self`: it runs
    /// until it succeeds, or once when the pod never restarts.
    pub fn for_init(self) -> RestartPolicy {
        match self {
            RestartPolicy::Never => RestartPolicy::Never,
            _ => RestartPolicy::OnFailure,
        }
    }

    /// Whether a container that exited with `code` starts again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn restart_policy_as_upstream() {
        let of = |p: Value| RestartPolicy::of(&json!({"spec": p}));
        assert_eq!(of(json!({})), RestartPolicy::Always);
        assert_eq!(
            of(json!({"restartPolicy": "OnFailure"})),
            RestartPolicy::OnFailure
        );
        assert_eq!(of(json!({"restartPolicy": "Never"})), RestartPolicy::Never);
        assert_eq!(of(json!({"restartPolicy": 7})), RestartPolicy::Always);
        let table = [
            (RestartPolicy::Always, [true, true]),
            (RestartPolicy::OnFailure, [true, false]),
            (RestartPolicy::Never, [false, false]),
        ];
        for (p, [after_failure, after_success]) in table {
            assert_eq!(p.restarts(1), after_failure, "{p:?} after exit 1");
            assert_eq!(p.restarts(0), after_success, "{p:?} after exit 0");
        }
        assert_eq!(RestartPolicy::Always.for_init(), RestartPolicy::OnFailure);
        assert_eq!(RestartPolicy::Never.for_init(), RestartPolicy::Never);
    }
}
