//! The runtime conformance suite (the `testing` feature): what every
//! [`Runtime`] must do, run against each implementation (sim here, process
//! in `process::tests`, and any later runtime). Start is idempotent and
//! reports each container, which becomes ready; pods get distinct IPs;
//! stop is idempotent and forgets the pod; logs exist for a running
//! container and not for a stopped pod.

use std::time::Duration;

use serde_json::json;
use shoal_fabric::testing::wait_until;
use shoal_kubelet_proto::PodLogs;

use crate::{PodConfig, PodState, Runtime};

/// A pod whose two containers print a line and keep running (the sim
/// runtime ignores the command).
pub fn pod(uid: &str) -> PodConfig {
    pod_with(uid, None)
}

/// The same pod with both containers of `image` (a runtime of images
/// needs one that has `sh` and `sleep`); None: `img-a`, `img-b`.
pub fn pod_with(uid: &str, image: Option<&str>) -> PodConfig {
    let c = |name: &str| {
        let image = image.map_or_else(|| format!("img-{name}"), str::to_string);
        json!({"name": name, "image": image,
        "command": ["sh", "-c", "echo started; exec sleep 3600"]})
    };
    let pod = json!({"metadata": {"uid": uid, "name": format!("p-{uid}"), "namespace": "default"},
           "spec": {"restartPolicy": "Always", "containers": [c("a"), c("b")]}});
    PodConfig::of(&pod).expect("the conformance pod decodes")
}

/// Starts `p` until every container is ready; returns that state.
pub async fn ready(rt: &dyn Runtime, p: &PodConfig) -> PodState {
    wait_until(Duration::from_secs(30), || async {
        let s = rt.start(p).await;
        if !s.containers.is_empty() && s.containers.iter().all(|c| c.ready) {
            Ok(())
        } else {
            Err(format!("not ready: {s:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rt.start(p).await
}

/// Runs the suite against `rt`.
pub async fn suite(rt: &dyn Runtime) {
    suite_with(rt, None).await
}

/// Runs the suite against `rt` with pods of `image` (see [`pod_with`]).
pub async fn suite_with(rt: &dyn Runtime, image: Option<&str>) {
    let pod = |uid: &str| pod_with(uid, image);
    let p = pod("u1");
    let first = ready(rt, &p).await;
    assert_eq!(first.containers.len(), 2);
    assert!(!first.pod_ip.is_empty());
    // Idempotent: the same pod, the same state.
    assert_eq!(rt.start(&p).await, first);
    let second = ready(rt, &pod("u2")).await;
    assert_ne!(second.pod_ip, first.pod_ip, "pods get distinct IPs");
    let mut running = rt.running();
    running.sort();
    assert_eq!(running, vec!["u1".to_string(), "u2".to_string()]);
    let req = PodLogs {
        namespace: "default".into(),
        pod: "p-u1".into(),
        container: "a".into(),
        tail_lines: Some(1),
        previous: false,
        timestamps: false,
        follow: false,
    };
    wait_until(Duration::from_secs(30), || async {
        let logs = rt.logs(&req, "u1").await.map_err(|e| e.to_string())?;
        if logs.lines().count() == 1 {
            Ok(())
        } else {
            Err(format!("logs: {logs:?}"))
        }
    })
    .await
    .unwrap();
    rt.stop("u1", Duration::ZERO).await;
    rt.stop("u1", Duration::ZERO).await;
    assert_eq!(rt.running(), vec!["u2".to_string()]);
    assert!(rt.logs(&req, "u1").await.is_err());
    rt.stop("u2", Duration::ZERO).await;
    assert!(rt.running().is_empty());
}
