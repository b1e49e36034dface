//! The `sim` runtime: a hollow node (like kubemark or kwok). Containers
//! "start" at once and keep no process; a pod can be told to fail with
//! the annotation `sim.shoal.dev/exit-code: "N"` (its containers
//! terminate with N, and restartPolicy decides the rest). Logs are one
//! line per container start.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ContainerState, ContainerStatus, PodConfig, PodState, Runtime, RuntimeError};
use futures::future::BoxFuture;
use shoal_kubelet_proto::PodLogs;
use shoal_model::podcidr::PodSlot;

/// The annotation that makes a sim pod's containers exit.
pub const EXIT_CODE: &str = "sim.shoal.dev/exit-code";

#[derive(Debug, Clone)]
struct SimPod {
    state: PodState,
    log: Vec<String>,
}

/// A hollow runtime; pod IPs come from the node's /24, as a real node's.
#[derive(Clone)]
pub struct SimRuntime {
    pods: Arc<Mutex<HashMap<String, SimPod>>>,
    /// Where the Events of pods it starts go (none until set).
    events: Arc<std::sync::OnceLock<crate::podevents::PodEvents>>,
    /// The node's /24 (its network address).
    network: Ipv4Addr,
}

impl SimRuntime {
    /// A runtime for the node holding `slot` of the pod range.
    pub fn new(slot: &PodSlot) -> SimRuntime {
        SimRuntime {
            pods: Arc::default(),
            events: Arc::default(),
            network: slot.network(),
        }
    }

    /// Records upstream's Pulled, Created and Started for each container
    /// of each pod it starts from now on (a real kubelet's Events).
    pub fn set_events(&self, events: crate::podevents::PodEvents) {
        let _ = self.events.set(events);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SimPod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn start(&self, pod: &PodConfig) -> BoxFuture<'static, PodState> {
        let uid = pod.uid().to_string();
        let exit: Option<i32> = pod.annotation(EXIT_CODE).and_then(|s| s.parse().ok());
        let policy = pod.restart_policy();
        let mut pods = self.lock();
        let n = pods.len() as u32 + 1;
        let now = shoal_model::objects::now();
        if let (false, Some(events)) = (pods.contains_key(&uid), self.events.get()) {
            for c in pod.containers() {
                let image = c.image.as_deref().unwrap_or("");
                let message = format!("Container image {image:?} already present on machine");
                events.normal(pod, "Pulled", message);
                events.normal(pod, "Created", format!("Created container: {}", c.name));
                events.normal(pod, "Started", format!("Started container {}", c.name));
            }
        }
        let entry = pods.entry(uid.clone()).or_insert_with(|| {
            let statuses = pod
                .containers()
                .iter()
                .map(|c| {
                    let (name, image) = (&c.name, c.image.clone().unwrap_or_default());
                    let (state, ready, restarts) = match exit {
                        None => (
                            ContainerState::Running {
                                started_at: now.clone(),
                            },
                            true,
                            0,
                        ),
                        Some(code) if code != 0 && policy != crate::RestartPolicy::Never => (
                            ContainerState::Waiting {
                                reason: "CrashLoopBackOff".into(),
                                message: format!("back-off restarting failed container {name}"),
                            },
                            false,
                            1,
                        ),
                        Some(code) => (
                            ContainerState::Terminated {
                                exit_code: code,
                                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                                message: String::new(),
                                finished_at: now.clone(),
                            },
                            false,
                            0,
                        ),
                    };
                    ContainerStatus {
                        name: name.clone(),
                        image,
                        state,
                        ready,
                        restart_count: restarts,
                        last_state: None,
                        container_id: format!("sim://{uid}/{name}"),
                    }
                })
                .collect();
            SimPod {
                state: PodState {
                    // .1 is the gateway a real node's bridge holds.
                    pod_ip: Ipv4Addr::from(u32::from(self.network) + 2 + (n - 1) % 253).to_string(),
                    containers: statuses,
                    init_containers: Vec::new(),
                },
                log: pod
                    .containers()
                    .iter()
                    .map(|c| {
                        let image = c.image.as_deref().unwrap_or("");
                        format!("{now} sim: container {} ({image}) started", c.name)
                    })
                    .collect(),
            }
        });
        let state = entry.state.clone();
        Box::pin(async move { state })
    }

    fn stop(&self, uid: &str, _grace: Duration) -> BoxFuture<'static, ()> {
        self.lock().remove(uid);
        Box::pin(async {})
    }

    fn running(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn state(&self, uid: &str) -> Option<PodState> {
        self.lock().get(uid).map(|p| p.state.clone())
    }

    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, RuntimeError>> {
        let pods = self.lock();
        let out = match pods.get(uid) {
            None => Err(RuntimeError::NotFound(format!(
                "pod {:?} is not running on this node",
                req.pod
            ))),
            Some(p) => {
                let mine: Vec<&String> = p
                    .log
                    .iter()
                    .filter(|l| l.contains(&format!("container {} (", req.container)))
                    .collect();
                let skip = req
                    .tail_lines
                    .map_or(0, |t| mine.len().saturating_sub(t as usize));
                Ok(mine
                    .into_iter()
                    .skip(skip)
                    .map(|l| format!("{l}\n"))
                    .collect())
            }
        };
        Box::pin(async move { out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_slot() -> PodSlot {
        PodSlot {
            index: 1,
            cidr: "10.88.1.0/24".into(),
        }
    }

    #[tokio::test]
    async fn runtime_errors_are_typed() {
        let rt = SimRuntime::new(&test_slot());
        let req = PodLogs {
            namespace: "default".into(),
            pod: "ghost".into(),
            container: "c".into(),
            tail_lines: None,
            previous: false,
            timestamps: false,
            follow: false,
        };
        let e = rt.logs(&req, "no-such-uid").await.unwrap_err();
        assert!(matches!(e, RuntimeError::NotFound(_)), "{e:?}");
        assert!(!e.is_retryable());
        let e = rt.connect("no-such-uid", 80).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Unsupported(_)), "{e:?}");
        assert!(!e.is_retryable());
        assert!(RuntimeError::Host("EAGAIN".into()).is_retryable());
    }

    #[tokio::test]
    async fn sim_passes_the_runtime_conformance_suite() {
        crate::testing::suite(&SimRuntime::new(&test_slot())).await;
    }

    #[tokio::test]
    async fn sim_pods_fail_on_request() {
        let rt = SimRuntime::new(&test_slot());
        let mut p = crate::testing::pod("f");
        p.pod.metadata.annotations = Some([(EXIT_CODE.to_string(), "3".to_string())].into());
        let s = rt.start(&p).await;
        assert!(
            matches!(s.containers[0].state, ContainerState::Waiting { ref reason, .. } if reason == "CrashLoopBackOff")
        );
        assert_eq!(s.containers[0].restart_count, 1);
        let mut once = crate::testing::pod("g");
        if let Some(spec) = once.pod.spec.as_mut() {
            spec.restart_policy = Some("Never".into());
        }
        once.pod.metadata.annotations = Some([(EXIT_CODE.to_string(), "0".to_string())].into());
        let s = rt.start(&once).await;
        assert!(matches!(
            s.containers[0].state,
            ContainerState::Terminated { exit_code: 0, .. }
        ));
    }
}
