//! The docker runtime against this machine's Docker Engine (CI has one;
//! these tests never pull: the pause image is imported from the program
//! build.rs compiled, and the pods run `shoal-test/busybox:1`, which
//! scripts/images.sh builds). Pods get CNI sandboxes on a bridge and pod
//! CIDR of their own (`shoal-200`, 10.89.200.0/24), so they need root and
//! the CNI plugins, as scripts/test.sh provides. The agent's own life
//! (engine outages, restarts and adoption, floods of output) is in
//! `agent`.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use shoal_kubelet::config::PodNetwork;
use shoal_kubelet::docker::engine::{self, Engine};
use shoal_kubelet::docker::DockerRuntime;
use shoal_kubelet::process::sandbox::Sandboxes;
use shoal_kubelet::process::Backoff;
use shoal_kubelet::testing as conformance;

/// The image the pods run (scripts/images.sh).
const BUSYBOX: &str = "shoal-test/busybox:1";

fn engine() -> Engine {
    Engine::connect(Path::new(engine::DEFAULT_SOCKET))
        .unwrap_or_else(|e| panic!("these tests need the machine's Docker Engine: {e}"))
}

#[tokio::test]
async fn the_pause_image_is_imported_once_and_its_container_stops_at_sigterm() {
    let engine = engine();
    let api = engine.ping(Duration::from_secs(10)).await.unwrap();
    assert!(api.starts_with("1."), "API version {api}");
    let image = engine.ensure_pause().await.unwrap();
    assert_eq!(image, engine::pause_image());
    assert!(engine.has_image(&image).await.unwrap());
    // A second agent finds it there.
    assert_eq!(engine.ensure_pause().await.unwrap(), image);

    let name = format!("shoal-test-pause-{}", std::process::id());
    let docker = engine.api();
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await
        .unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    let state = docker
        .inspect_container(&created.id, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.running, Some(true), "{state:?}");
    assert!(state.pid.unwrap_or(0) > 0);

    // SIGTERM ends it at once (a pause that ignored it would take the
    // whole 10 s grace and a SIGKILL).
    let t0 = Instant::now();
    docker
        .stop_container(
            &created.id,
            Some(StopContainerOptionsBuilder::new().t(10).build()),
        )
        .await
        .unwrap();
    let took = t0.elapsed();
    let state = docker
        .inspect_container(&created.id, None)
        .await
        .unwrap()
        .state
        .unwrap();
    docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .unwrap();
    assert_eq!(state.exit_code, Some(0), "{state:?}");
    assert!(
        took < Duration::from_secs(5),
        "stopping the pause container took {took:?}"
    );
}

#[tokio::test]
async fn an_engine_that_is_not_there_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    // A socket path nobody listens on: refused at connect or at the call.
    let err = match Engine::connect(&socket) {
        Err(e) => e,
        Ok(engine) => engine.ping(Duration::from_secs(5)).await.unwrap_err(),
    };
    assert!(err.contains("Docker Engine"), "{err}");
}

/// Held by each test whose pods get CNI sandboxes (they share the pod
/// CIDR's host rules).
static CNI: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A docker runtime for node slot `index` (bridge `shoal-<index>`, pods in
/// 10.89.<index>.0/24), and the directory its CNI records live in.
async fn runtime(index: u32) -> (DockerRuntime, tempfile::TempDir) {
    runtime_on(index, engine()).await
}

/// `runtime`, on `engine`.
async fn runtime_on(index: u32, engine: Engine) -> (DockerRuntime, tempfile::TempDir) {
    assert!(
        engine.has_image(BUSYBOX).await.unwrap(),
        "{BUSYBOX} is missing: run ./scripts/images.sh (scripts/test.sh does)"
    );
    let data = tempfile::tempdir().unwrap();
    let slot = shoal_model::podcidr::PodSlot {
        index,
        cidr: format!("10.89.{index}.0/24"),
    };
    let sandboxes = Sandboxes::for_mode(PodNetwork::Cni, "10.89.0.0/16", &slot, data.path())
        .unwrap_or_else(|e| panic!("pod sandboxes (root and the CNI plugins): {e}"))
        .expect("kubelet.network = cni gives sandboxes");
    sandboxes.prepare(&[]).await.unwrap();
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        reset_after: Duration::from_secs(600),
    };
    let events = shoal_kubelet::podevents::PodEvents::default();
    let rt = DockerRuntime::new(
        engine,
        index,
        sandboxes,
        backoff,
        &data.path().join("pods"),
        events,
        Default::default(),
    );
    (rt, data)
}

/// Asserts nothing of node `index`'s pods `uids` is left: no engine
/// container, no network namespace.
async fn assert_clean(index: u32, uids: &[&str]) {
    let left = engine()
        .api()
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&std::collections::HashMap::from([(
                    "label".to_string(),
                    vec![format!("io.shoal.node={index}")],
                )]))
                .build(),
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "containers left: {left:?}");
    for uid in uids {
        let netns = Path::new("/run/netns").join(format!("shoal-{index}-{uid}"));
        assert!(!netns.exists(), "{} is left", netns.display());
    }
}

/// A logs request for container `container` of pod `pod` in `default`.
fn logs_of(pod: &str, container: &str, follow: bool) -> shoal_kubelet_proto::PodLogs {
    shoal_kubelet_proto::PodLogs {
        namespace: "default".into(),
        pod: pod.into(),
        container: container.into(),
        tail_lines: None,
        previous: false,
        timestamps: false,
        follow,
    }
}

#[tokio::test]
async fn the_docker_runtime_passes_the_conformance_suite() {
    let _cni = CNI.lock().await;
    let (rt, _data) = runtime(200).await;
    conformance::suite_with(&rt, Some(BUSYBOX)).await;
    assert_clean(200, &["u1", "u2"]).await;
    // The node's images (its status.images), largest first.
    use shoal_kubelet::Runtime;
    let images = rt.images().await;
    assert!(
        images.iter().any(|i| i.names.iter().any(|n| n == BUSYBOX)),
        "{images:?}"
    );
    assert!(images
        .windows(2)
        .all(|w| w[0].size_bytes >= w[1].size_bytes));
}

#[tokio::test]
async fn an_images_cmd_runs_and_a_pods_containers_share_its_network_and_port_forward() {
    use shoal_kubelet::Runtime;
    let _cni = CNI.lock().await;
    let (rt, _data) = runtime(201).await;
    // `web` has no command: the image's CMD (busybox httpd on 8080) runs.
    // `client` reaches it over the pod's loopback.
    let pod = serde_json::json!({
        "metadata": {"uid": "net1", "name": "net", "namespace": "default"},
        "spec": {"containers": [
            {"name": "web", "image": "shoal-test/web:1"},
            {"name": "client", "image": BUSYBOX, "command": ["sh", "-c",
                "cat /etc/resolv.conf; until wget -q -O- http://127.0.0.1:8080/; do sleep 1; done; exec sleep 3600"]}
        ]}
    });
    let pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    let state = conformance::ready(&rt, &pod).await;
    let logs = logs_of("net", "client", false);
    shoal_fabric::testing::wait_until(Duration::from_secs(30), || async {
        let text = rt.logs(&logs, "net1").await.map_err(|e| e.to_string())?;
        if text.contains("shoal-test web") && text.contains("search default.svc.cluster.local") {
            Ok(())
        } else {
            Err(format!("client logs: {text:?}"))
        }
    })
    .await
    .unwrap();
    // The pod IP (CNI's, on the node's bridge) reaches the same server.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect((state.pod_ip.as_str(), 8080))
        .await
        .unwrap_or_else(|e| panic!("connecting to {}:8080: {e}", state.pod_ip));
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("shoal-test web"), "{answer}");
    // port-forward's connection, made inside the pod's network namespace.
    let mut fwd = rt.connect("net1", 8080).await.unwrap();
    fwd.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    fwd.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("shoal-test web"), "{answer}");
    rt.stop("net1", Duration::ZERO).await;
    assert_clean(201, &["net1"]).await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    use shoal_kubelet::{ContainerState, Runtime};
    let _cni = CNI.lock().await;
    let (rt, _data) = runtime(202).await;
    // The shell holds 100 MB in a variable under a 24 MiB limit.
    let pod = serde_json::json!({
        "metadata": {"uid": "oom1", "name": "oom", "namespace": "default"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "hog", "image": BUSYBOX, "command": ["sh", "-c",
                "x=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived"],
             "resources": {"limits": {"memory": "24Mi"}}}
        ]}
    });
    let pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    rt.start(&pod).await;
    shoal_fabric::testing::wait_until(Duration::from_secs(60), || async {
        let state = rt.start(&pod).await;
        match &state.containers[0].state {
            ContainerState::Terminated { .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let end = match &rt.start(&pod).await.containers[0].state {
        ContainerState::Terminated {
            exit_code, reason, ..
        } => (*exit_code, reason.clone()),
        other => panic!("{other:?}"),
    };
    assert!(end.1.starts_with("OOMKilled"), "{end:?}");
    assert_eq!(end.0, 137, "{end:?}");
    rt.stop("oom1", Duration::ZERO).await;
    assert_clean(202, &["oom1"]).await;
}

/// Waits until pod `uid`'s state satisfies `ok`; returns it.
async fn until(
    rt: &DockerRuntime,
    uid: &str,
    what: &str,
    ok: impl Fn(&shoal_kubelet::PodState) -> bool,
) -> shoal_kubelet::PodState {
    use shoal_kubelet::Runtime;
    shoal_fabric::testing::wait_until(Duration::from_secs(60), || {
        let s = rt.state(uid);
        let pass = s.as_ref().is_some_and(&ok);
        async move {
            if pass {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    rt.state(uid).unwrap()
}

fn terminated(c: &shoal_kubelet::ContainerStatus) -> Option<(i32, String)> {
    match &c.state {
        shoal_kubelet::ContainerState::Terminated {
            exit_code, message, ..
        } => Some((*exit_code, message.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn volumes_security_probes_and_termination_messages_work_in_containers() {
    use shoal_kubelet::{ContainerState, ProjectedFile, Projection, Runtime};
    let _cni = CNI.lock().await;
    let (rt, data) = runtime(203).await;
    let file = |path: &str, text: &str| ProjectedFile {
        path: path.into(),
        data: k8s_openapi::ByteString(text.as_bytes().to_vec()),
        mode: 0o644,
    };
    // `a` runs as 1000:3000 on a read-only root with its volumes, ready
    // once `b` made /data/ready; `b` leaves a termination message; `c`
    // fails with its log as the message; `d` asks runAsNonRoot of an image
    // that runs as root.
    let pod = serde_json::json!({
        "metadata": {"uid": "spec1", "name": "spec", "namespace": "default", "labels": {"app": "spec"}},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "sec"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
            "containers": [
            {"name": "a", "image": BUSYBOX, "command": ["sh", "-c",
                "id > /data/id; cat /cfg/greeting > /data/cfg; cat /sec/token > /data/token; cat /info/labels > /data/labels; touch /rootfs 2> /data/ro; exec sleep 3600"],
             "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
             "readinessProbe": {"exec": {"command": ["cat", "/data/ready"]}, "periodSeconds": 1},
             "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/cfg"},
                {"name": "sec", "mountPath": "/sec"}, {"name": "info", "mountPath": "/info"}]},
            {"name": "b", "image": BUSYBOX, "command": ["sh", "-c",
                "until [ -e /data/id ]; do sleep 0.2; done; touch /data/ready; echo 'bye from b' > /dev/termination-log; exit 2"],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "c", "image": BUSYBOX, "terminationMessagePolicy": "FallbackToLogsOnError",
             "command": ["sh", "-c", "echo last words; exit 3"]},
            {"name": "d", "image": BUSYBOX, "securityContext": {"runAsNonRoot": true}, "command": ["true"]}
        ]}
    });
    let mut pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    pod.projections.insert(
        "cfg".into(),
        Projection::Files(vec![file("greeting", "hi")]),
    );
    pod.projections.insert(
        "sec".into(),
        Projection::Files(vec![file("token", "s3cret")]),
    );
    rt.start(&pod).await;
    let s = until(&rt, "spec1", "a ready, b and c ended", |s| {
        s.containers[0].ready
            && terminated(&s.containers[1]).is_some()
            && terminated(&s.containers[2]).is_some()
    })
    .await;
    assert_eq!(
        terminated(&s.containers[1]),
        Some((2, "bye from b\n".into()))
    );
    let (code, message) = terminated(&s.containers[2]).unwrap();
    assert_eq!(code, 3);
    assert!(message.contains("last words"), "{message}");
    match &s.containers[3].state {
        ContainerState::Waiting { reason, message } => {
            assert_eq!(reason, "CreateContainerConfigError");
            assert!(
                message.contains("runAsNonRoot and image will run as root"),
                "{message}"
            );
        }
        other => panic!("d: {other:?}"),
    }
    let volumes = data.path().join("pods/spec1/volumes");
    let read = |f: &str| std::fs::read_to_string(volumes.join("data").join(f)).unwrap_or_default();
    let id = read("id");
    assert!(id.contains("uid=1000") && id.contains("gid=3000"), "{id}");
    assert_eq!(read("cfg"), "hi");
    assert_eq!(read("token"), "s3cret");
    assert!(
        read("labels").contains("app=\"spec\""),
        "{}",
        read("labels")
    );
    assert!(
        read("ro").contains("Read-only file system"),
        "{}",
        read("ro")
    );
    assert!(
        shoal_kubelet::process::volumes::is_tmpfs(&volumes.join("sec")),
        "secrets stay in memory"
    );
    rt.stop("spec1", Duration::ZERO).await;

    // Liveness kills and restarts; postStart and preStop hooks run (seen
    // through a hostPath).
    let host = tempfile::tempdir().unwrap();
    let pod = serde_json::json!({
        "metadata": {"uid": "spec2", "name": "hooks", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 5,
            "volumes": [{"name": "host", "hostPath": {"path": host.path().to_str().unwrap()}}],
            "containers": [
            {"name": "hooked", "image": BUSYBOX, "command": ["sleep", "3600"],
             "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo up > /host/post-start"]}},
                           "preStop": {"exec": {"command": ["sh", "-c", "echo down > /host/pre-stop"]}}},
             "volumeMounts": [{"name": "host", "mountPath": "/host"}]},
            {"name": "unwell", "image": BUSYBOX, "command": ["sleep", "3600"],
             "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}}
        ]}
    });
    let pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    rt.start(&pod).await;
    let s = until(&rt, "spec2", "unwell restarted", |s| {
        s.containers[1].restart_count >= 1
    })
    .await;
    match &s.containers[1].last_state {
        Some(ContainerState::Terminated { message, .. }) => {
            assert!(message.contains("Liveness probe failed"), "{message}")
        }
        other => panic!("unwell's last state: {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(host.path().join("post-start")).unwrap(),
        "up\n"
    );
    rt.stop("spec2", Duration::from_secs(5)).await;
    assert_eq!(
        std::fs::read_to_string(host.path().join("pre-stop")).unwrap(),
        "down\n"
    );
    assert_clean(203, &["spec1", "spec2"]).await;
}

#[tokio::test]
async fn images_that_cannot_be_had_wait_with_upstreams_reasons_and_others_run() {
    use shoal_kubelet::{ContainerState, Runtime};
    let _cni = CNI.lock().await;
    let (rt, _data) = runtime(204).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed); // nothing listens there now
    let pod = serde_json::json!({
        "metadata": {"uid": "img1", "name": "img", "namespace": "default"},
        "spec": {"containers": [
            {"name": "never", "image": "shoal-test/absent:1", "imagePullPolicy": "Never"},
            {"name": "invalid", "image": "Not//Valid:tag"},
            {"name": "unreachable", "image": format!("127.0.0.1:{port}/x:1")},
            {"name": "fine", "image": BUSYBOX, "command": ["sleep", "3600"]}
        ]}
    });
    let pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    let reason = |s: &shoal_kubelet::ContainerStatus| match &s.state {
        ContainerState::Waiting { reason, .. } => reason.clone(),
        ContainerState::Running { .. } => "Running".into(),
        ContainerState::Terminated { reason, .. } => format!("Terminated {reason}"),
    };
    // Every reason shows at some point, the back-off after the pull
    // error; the container with an image runs all along.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    shoal_fabric::testing::wait_until(Duration::from_secs(60), || {
        let (rt, pod, seen) = (&rt, &pod, &seen);
        async move {
            let state = rt.start(pod).await;
            let mut seen = seen.lock().unwrap();
            for s in &state.containers {
                seen.insert(format!("{} {}", s.name, reason(s)));
            }
            let want = [
                "never ErrImageNeverPull",
                "invalid InvalidImageName",
                "unreachable ErrImagePull",
                "unreachable ImagePullBackOff",
                "fine Running",
            ];
            if want.iter().all(|w| seen.contains(*w)) {
                Ok(())
            } else {
                Err(format!("seen {seen:?}"))
            }
        }
    })
    .await
    .unwrap();
    let state = rt.start(&pod).await;
    assert_eq!(reason(&state.containers[3]), "Running", "{state:?}");
    assert!(
        state.containers.iter().all(|c| c.restart_count == 0),
        "{state:?}"
    );
    rt.stop("img1", Duration::ZERO).await;
    assert_clean(204, &["img1"]).await;
}

#[tokio::test]
async fn logs_follow_what_a_container_writes_as_it_writes_it() {
    use shoal_kubelet::Runtime;
    let _cni = CNI.lock().await;
    let (rt, _data) = runtime(205).await;
    // "two" only comes once the test has seen "one" through the follow.
    let pod = serde_json::json!({
        "metadata": {"uid": "log1", "name": "log", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c",
            "echo one; until [ -e /tmp/go ]; do sleep 1; done; echo two; exec sleep 3600"]}]}
    });
    let pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    conformance::ready(&rt, &pod).await;
    let req = logs_of("log", "c", true);
    let (sink, mut sub) = shoal_fabric::actor::Sink::<String>::channel(16);
    let follow = tokio::spawn(rt.follow(&req, "log1", sink));
    let mut seen = String::new();
    let deadline = Duration::from_secs(30);
    while !seen.contains("one") {
        let chunk = tokio::time::timeout(deadline, sub.next())
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&chunk);
    }
    assert!(!seen.contains("two"), "{seen}");
    let exec = std::process::Command::new("docker")
        .args(["exec"])
        .arg("shoal-205-log1-c-0")
        .args(["touch", "/tmp/go"])
        .status()
        .unwrap();
    assert!(exec.success());
    while !seen.contains("two") {
        let chunk = tokio::time::timeout(deadline, sub.next())
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&chunk);
    }
    assert_eq!(seen, "one\ntwo\n");
    drop(sub);
    rt.stop("log1", Duration::ZERO).await;
    let _ = follow.await;
    assert_clean(205, &["log1"]).await;
}

mod agent;
