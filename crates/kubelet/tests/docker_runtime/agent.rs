//! The docker runtime across the agent's own life: the engine's socket
//! going away and coming back, an agent killed and started again (its
//! pods adopted, a dead sandbox not), and a container flooding its output
//! without newlines.

use std::path::Path;
use std::time::{Duration, Instant};

use shoal_kubelet::docker::engine::{self, Engine};
use shoal_kubelet::docker::DockerRuntime;
use shoal_kubelet::process::sandbox::Sandboxes;
use shoal_kubelet::process::Backoff;

use super::*;

/// Waits until the runtime's handler says the engine answers (`up`) or
/// not; returns the problem it gives.
async fn handler_up(rt: &DockerRuntime, up: bool) -> Option<String> {
    use shoal_kubelet::Runtime;
    let handlers = rt.handlers();
    shoal_fabric::testing::wait_until(Duration::from_secs(30), || {
        let problem = handlers.borrow().first().and_then(|h| h.problem.clone());
        async move {
            if problem.is_none() == up {
                Ok(())
            } else {
                Err(format!("the handler's problem: {problem:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the handler (up: {up}): {e}"));
    let problem = handlers.borrow().first().and_then(|h| h.problem.clone());
    problem
}

#[tokio::test]
async fn an_engine_outage_marks_the_handler_and_no_container_starts_twice() {
    use shoal_fabric::testing::UnixRelay;
    use shoal_kubelet::Runtime;
    let _cni = CNI.lock().await;
    // The runtime reaches the engine through a relay the test takes away.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let real = Path::new(engine::DEFAULT_SOCKET);
    let mut relay = UnixRelay::start(&socket, real).unwrap();
    let (rt, _data) = runtime_on(206, Engine::connect(&socket).unwrap()).await;
    rt.follow_health();
    assert_eq!(handler_up(&rt, true).await, None);
    let pod = conformance::pod_with("outage1", Some(BUSYBOX));
    let before = conformance::ready(&rt, &pod).await;

    // The socket goes: the handler says so, naming it, at once (the
    // engine's event stream closes).
    let gone = Instant::now();
    relay.stop();
    let problem = handler_up(&rt, false).await.unwrap_or_default();
    assert!(
        problem.contains(&socket.display().to_string()),
        "the problem names the socket: {problem}"
    );
    println!("the outage was seen after {:?}", gone.elapsed());

    // It comes back: the handler is able again, and the containers that
    // ran through the outage are the same ones, never restarted.
    relay = UnixRelay::start(&socket, real).unwrap();
    handler_up(&rt, true).await;
    let after = rt.start(&pod).await;
    for (b, a) in before.containers.iter().zip(&after.containers) {
        assert_eq!(
            a.container_id, b.container_id,
            "{} kept its container",
            a.name
        );
        assert_eq!(a.restart_count, 0, "{a:?}");
        assert!(a.ready, "{a:?}");
    }
    let running = engine()
        .api()
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&std::collections::HashMap::from([(
                    "label".to_string(),
                    vec!["io.kubernetes.pod.uid=outage1".to_string()],
                )]))
                .build(),
        ))
        .await
        .unwrap();
    assert_eq!(
        running.len(),
        3,
        "the sandbox and two containers: {running:?}"
    );
    rt.stop("outage1", Duration::ZERO).await;
    assert_clean(206, &["outage1"]).await;
    drop(relay);
}

/// Node slot `index`'s sandboxes with their CNI records under `data`.
fn sandboxes_of(index: u32, data: &Path) -> Sandboxes {
    let slot = shoal_model::podcidr::PodSlot {
        index,
        cidr: format!("10.89.{index}.0/24"),
    };
    Sandboxes::for_mode(PodNetwork::Cni, "10.89.0.0/16", &slot, data)
        .unwrap_or_else(|e| panic!("pod sandboxes (root and the CNI plugins): {e}"))
        .expect("kubelet.network = cni gives sandboxes")
}

/// The engine containers of pod `uid` named `container` (`POD`: its sandbox).
async fn engine_ids(uid: &str, container: &str) -> Vec<String> {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![
            format!("io.kubernetes.pod.uid={uid}"),
            format!("io.kubernetes.container.name={container}"),
        ],
    )]);
    engine()
        .api()
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// An agent of node slot 207 on the machine's engine, adopting what the
/// one before it left under `data`.
async fn agent(data: &Path) -> DockerRuntime {
    let sandboxes = sandboxes_of(207, data);
    // As a node does: the sandboxes of the pods the runtime will adopt
    // (its pod directories) are kept.
    let keep: Vec<String> = std::fs::read_dir(data.join("pods"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    sandboxes.prepare(&keep).await.unwrap();
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        reset_after: Duration::from_secs(600),
    };
    DockerRuntime::start(
        Path::new(engine::DEFAULT_SOCKET),
        207,
        sandboxes,
        backoff,
        &data.join("pods"),
        Default::default(),
        Default::default(),
    )
    .await
    .expect("the docker runtime starts")
}

/// Pod adopt1's running sandbox containers, through the docker CLI.
fn second_sandbox() -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", "label=io.kubernetes.pod.uid=adopt1"])
        .args(["--filter", "label=io.kubernetes.container.name=POD"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_agent_that_starts_again_adopts_its_containers_and_not_a_dead_sandbox() {
    // (And a sandbox that dies under a running agent makes the pod again.)
    use shoal_kubelet::{ContainerState, Runtime};
    let _cni = CNI.blocking_lock();
    let data = tempfile::tempdir().unwrap();
    let pod = shoal_kubelet::PodConfig::of(&serde_json::json!({
        "metadata": {"uid": "adopt1", "name": "adopt", "namespace": "default"},
        "spec": {
            "initContainers": [{"name": "init", "image": BUSYBOX, "command": ["true"]}],
            "containers": [
                {"name": "a", "image": BUSYBOX, "command": ["sleep", "3600"]},
                {"name": "b", "image": BUSYBOX, "command": ["sleep", "3600"]},
            ]}
    }))
    .unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let before = first.block_on(async {
        let rt = agent(data.path()).await;
        let state = conformance::ready(&rt, &pod).await;
        state
    });
    // The agent dies (kill -9): its tasks go, its containers stay.
    first.shutdown_background();

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let rt = agent(data.path()).await;
        assert_eq!(rt.running(), ["adopt1"], "the pod is adopted");
        let after = rt.state("adopt1").unwrap();
        assert_eq!(after.pod_ip, before.pod_ip);
        for (b, a) in before.containers.iter().zip(&after.containers) {
            assert_eq!(
                a.container_id, b.container_id,
                "{} is the same container",
                a.name
            );
            assert_eq!(a.restart_count, 0, "{a:?}");
            assert!(a.ready, "{a:?}");
        }
        assert_eq!(
            after.init_containers[0].container_id,
            before.init_containers[0].container_id
        );
        assert!(
            matches!(
                &after.init_containers[0].state,
                ContainerState::Terminated { exit_code: 0, .. }
            ),
            "{:?}",
            after.init_containers[0]
        );
        // Its resolved configuration is the kubelet's to give again.
        assert!(!rt.resolved("adopt1"));
        rt.update(&pod);
        assert!(rt.resolved("adopt1"));
        // Supervised again: container `a` killed in the engine restarts.
        let a = before.containers[0]
            .container_id
            .trim_start_matches("docker://")
            .to_string();
        engine()
            .api()
            .kill_container(&a, None::<bollard::query_parameters::KillContainerOptions>)
            .await
            .unwrap();
        shoal_fabric::testing::wait_until(Duration::from_secs(30), || {
            let s = rt.state("adopt1").unwrap();
            let replaced = !s.containers[0].container_id.ends_with(&a);
            async move {
                let c = &s.containers[0];
                if c.restart_count == 1 && c.ready && replaced {
                    Ok(())
                } else {
                    Err(format!("{c:?}"))
                }
            }
        })
        .await
        .expect("the adopted container restarts under its policy");
        // A sandbox that dies under a running agent: the pod is made
        // again, a new sandbox and new instances of every container.
        let before = rt.state("adopt1").unwrap();
        let sandbox = engine_ids("adopt1", "POD").await;
        for id in &sandbox {
            engine()
                .api()
                .kill_container(id, None::<bollard::query_parameters::KillContainerOptions>)
                .await
                .unwrap();
        }
        let again = until(&rt, "adopt1", "the pod made again", |s| {
            s.containers
                .iter()
                .zip(&before.containers)
                .all(|(a, b)| a.ready && a.restart_count == b.restart_count + 1)
        })
        .await;
        let now = engine_ids("adopt1", "POD").await;
        assert!(
            now.iter().all(|id| !sandbox.contains(id)),
            "a new sandbox: {now:?}"
        );
        assert!(!again.pod_ip.is_empty());
    });
    second.shutdown_background();
    // The sandbox dies while no agent runs.
    for id in second_sandbox() {
        let out = std::process::Command::new("docker")
            .args(["kill", &id])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    // A pod whose sandbox died is not adopted: everything of it goes.
    let third = tokio::runtime::Runtime::new().unwrap();
    third.block_on(async {
        let rt = agent(data.path()).await;
        assert!(rt.running().is_empty(), "{:?}", rt.running());
        assert_clean(207, &["adopt1"]).await;
    });
}

/// The agent's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_container_writing_without_newlines_does_not_grow_the_agent() {
    use shoal_kubelet::Runtime;
    let _cni = CNI.lock().await;
    let (rt, _data) = runtime(208).await;
    // 12 MB on one line: the engine keeps it (in 16 KiB records), the
    // agent reads at most its limit (10 MiB) of it, and a follow gets it
    // in pieces. (The engine serves logs at a few MB/s here.)
    let pod = serde_json::json!({
        "metadata": {"uid": "flood1", "name": "flood", "namespace": "default"},
        "spec": {"containers": [
            {"name": "c", "image": BUSYBOX, "command": ["sh", "-c",
                "head -c 12000000 /dev/zero | tr '\\0' x; echo; echo done; exec sleep 3600"]},
            // On a terminal the engine's log stream has no frames to cut it.
            {"name": "t", "image": BUSYBOX, "tty": true, "command": ["sh", "-c",
                "head -c 12000000 /dev/zero | tr '\\0' x; echo; echo done; exec sleep 3600"]}]}
    });
    let pod = shoal_kubelet::PodConfig::of(&pod).unwrap();
    conformance::ready(&rt, &pod).await;
    for name in ["c", "t"] {
        let req = logs_of("flood", name, false);
        let before = rss_kib();
        shoal_fabric::testing::wait_until(Duration::from_secs(120), || async {
            let tail = logs_of_tail("flood", name, 1);
            let last = rt.logs(&tail, "flood1").await.map_err(|e| e.to_string())?;
            if last.contains("done") {
                Ok(())
            } else {
                Err(format!("the last line: {} bytes", last.len()))
            }
        })
        .await
        .expect("the container writes its flood");
        // Read from the start, the limit is reached before "done".
        let text = rt.logs(&req, "flood1").await.unwrap();
        let largest = text.len();
        assert!(!text.contains("done"));
        assert!(
            text.len() >= 10 << 20 && text.len() <= (10 << 20) + (1 << 20),
            "one logs request returns about its 10 MiB limit: {} bytes",
            text.len()
        );
        // A follow from the start: pieces, never the whole line at once.
        let (sink, mut sub) = shoal_fabric::actor::Sink::<String>::channel(4);
        let follow = tokio::spawn(rt.follow(&logs_of("flood", name, true), "flood1", sink));
        let (mut got, mut biggest) = (0usize, 0usize);
        while got < 4 << 20 {
            let chunk = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("the follow goes on")
                .expect("the follow has more");
            biggest = biggest.max(chunk.len());
            got += chunk.len();
        }
        drop(sub);
        let _ = follow.await;
        assert!(biggest <= 1 << 20, "a follow's piece is {biggest} bytes");
        let grown = rss_kib().saturating_sub(before);
        println!("{name}: largest response {largest} bytes, biggest piece {biggest}, RSS grew {grown} KiB");
        assert!(
            grown < 100 << 10,
            "the agent grew {grown} KiB reading a 12 MB line"
        );
    }
    rt.stop("flood1", Duration::ZERO).await;
    assert_clean(208, &["flood1"]).await;
}

/// A logs request for the last `n` lines.
fn logs_of_tail(pod: &str, container: &str, n: u64) -> shoal_kubelet_proto::PodLogs {
    shoal_kubelet_proto::PodLogs {
        tail_lines: Some(n),
        ..logs_of(pod, container, false)
    }
}
