//! The process runtime against real processes: each container runs under
//! the `shoal-shim` binary of this crate (`CARGO_BIN_EXE_shoal-shim`, so
//! `cargo test -p shoal-kubelet` finds it), through the runtime
//! conformance suite and the cases of its own.

use std::time::Duration;

use serde_json::Value;
use shoal_kubelet_proto::PodLogs;

use serde_json::json;
use shoal_fabric::testing::wait_until;
use shoal_kubelet::process::*;
use shoal_kubelet::testing as conformance;
use shoal_kubelet::*;
use std::path::Path;

fn quick() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        reset_after: Duration::from_secs(600),
    }
}

/// This crate's shim binary (`shoal-shim shim …`, as the agent runs
/// `shoal shim …`).
pub fn shoal_bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_shoal-shim").into()
}

/// A test's directory; whatever its runtimes leave running dies with it
/// (a failed test must not leak processes).
struct Dir(tempfile::TempDir);

impl Dir {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        kill_leftovers_now(&self.path().join("pods"));
    }
}

fn tmp() -> Dir {
    Dir(tempfile::tempdir().unwrap())
}

fn runtime(dir: &Dir) -> ProcessRuntime {
    // Slot 6: host-mode pod IPs are 127.7.x.y.
    let slot = shoal_model::podcidr::PodSlot {
        index: 6,
        cidr: "10.80.6.0/24".into(),
    };
    ProcessRuntime::new(&dir.path().join("pods"), &slot, quick(), &shoal_bin(), None).unwrap()
}

/// The typed pod a runtime is handed.
fn cfg(p: &Value) -> PodConfig {
    PodConfig::of(p).expect("a test pod decodes")
}

fn pod(uid: &str, policy: &str, command: Value) -> Value {
    json!({"metadata": {"uid": uid, "name": format!("p-{uid}"), "namespace": "default"},
           "spec": {"restartPolicy": policy,
                    "containers": [{"name": "c", "image": "none", "command": command,
                                    "env": [{"name": "GREETING", "value": "hello"}]}]}})
}

/// Waits until the pod's only container matches `cond`; returns its status.
async fn until(
    rt: &ProcessRuntime,
    uid: &str,
    what: &str,
    cond: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    wait_until(Duration::from_secs(10), || async {
        match rt.state(uid).and_then(|s| s.containers.into_iter().next()) {
            Some(c) if cond(&c) => Ok(()),
            other => Err(format!("waiting for {what}: {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rt.state(uid).unwrap().containers.remove(0)
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[tokio::test]
async fn process_passes_the_runtime_conformance_suite() {
    let dir = tmp();
    let rt = runtime(&dir);
    conformance::suite(&rt).await;
    // Loopback pod IPs in the node's range.
    let s = conformance::ready(&rt, &conformance::pod("u3")).await;
    assert!(s.pod_ip.starts_with("127.7."), "{}", s.pod_ip);
    rt.stop("u3", Duration::ZERO).await;
}

#[tokio::test]
async fn a_container_without_a_command_is_refused_with_a_reason() {
    let dir = tmp();
    let rt = runtime(&dir);
    let mut p = pod("n", "Always", json!(null));
    p["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("command");
    rt.start(&cfg(&p)).await;
    let c = until(&rt, "n", "a refusal", |c| matches!(c.state, ContainerState::Waiting { ref reason, .. } if reason == "CreateContainerConfigError")).await;
    let ContainerState::Waiting { message, .. } = c.state else {
        unreachable!()
    };
    assert!(message.contains("command"), "{message}");
    assert!(!c.ready);
    rt.stop("n", Duration::ZERO).await;
}

#[tokio::test]
async fn a_crashing_container_restarts_with_back_off_and_keeps_its_last_state() {
    let dir = tmp();
    let rt = runtime(&dir);
    let mut changes = rt.changes().unwrap();
    rt.start(&cfg(&pod(
        "x",
        "Always",
        json!(["sh", "-c", "echo run $GREETING; exit 3"]),
    )))
    .await;
    let c = until(&rt, "x", "two restarts", |c| c.restart_count >= 2).await;
    match c.last_state {
        Some(ContainerState::Terminated {
            exit_code,
            ref reason,
            ..
        }) => {
            assert_eq!(exit_code, 3);
            assert_eq!(reason, "Error");
        }
        ref other => panic!("lastState {other:?}"),
    }
    // The changes were pushed.
    assert_eq!(changes.recv().await.unwrap(), "x");
    // The previous instance's log, with the environment applied.
    let req = PodLogs {
        namespace: "default".into(),
        pod: "p-x".into(),
        container: "c".into(),
        tail_lines: None,
        previous: true,
        timestamps: false,
        follow: false,
    };
    assert_eq!(rt.logs(&req, "x").await.unwrap(), "run hello\n");
    rt.stop("x", Duration::ZERO).await;
}

#[tokio::test]
async fn restart_policy_never_and_on_failure_leave_finished_containers() {
    let dir = tmp();
    let rt = runtime(&dir);
    rt.start(&cfg(&pod("ok", "OnFailure", json!(["true"]))))
        .await;
    rt.start(&cfg(&pod("bad", "Never", json!(["false"])))).await;
    let ok = until(&rt, "ok", "completion", |c| {
        matches!(c.state, ContainerState::Terminated { .. })
    })
    .await;
    assert!(
        matches!(ok.state, ContainerState::Terminated { exit_code: 0, ref reason, .. } if reason == "Completed")
    );
    let bad = until(&rt, "bad", "failure", |c| {
        matches!(c.state, ContainerState::Terminated { .. })
    })
    .await;
    assert!(matches!(
        bad.state,
        ContainerState::Terminated { exit_code: 1, .. }
    ));
    assert_eq!((ok.restart_count, bad.restart_count), (0, 0));
    rt.stop("ok", Duration::ZERO).await;
    rt.stop("bad", Duration::ZERO).await;
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_a_start_error_not_a_crash_of_the_agent() {
    let dir = tmp();
    let rt = runtime(&dir);
    rt.start(&cfg(&pod(
        "nf",
        "Never",
        json!(["/nonexistent/shoal-test-binary"]),
    )))
    .await;
    let c = until(&rt, "nf", "a start error", |c| {
        matches!(c.state, ContainerState::Terminated { .. })
    })
    .await;
    let ContainerState::Terminated {
        exit_code,
        reason,
        message,
        ..
    } = c.state
    else {
        unreachable!()
    };
    assert_eq!(exit_code, 128);
    assert!(
        reason == "StartError" && message.contains("nonexistent"),
        "{reason}: {message}"
    );
    // The runtime goes on running other pods.
    conformance::ready(&rt, &conformance::pod("other")).await;
    rt.stop("nf", Duration::ZERO).await;
    rt.stop("other", Duration::ZERO).await;
}

#[tokio::test]
async fn a_killed_process_is_restarted_with_a_new_pid() {
    let dir = tmp();
    let rt = runtime(&dir);
    let p = pod("k", "Always", json!(["sleep", "3600"]));
    conformance::ready(&rt, &cfg(&p)).await;
    let pid = rt.pids("k")["c"];
    // SAFETY: SIGKILL to the child we started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let c = until(&rt, "k", "a restart", |c| c.restart_count == 1 && c.ready).await;
    assert!(
        matches!(
            c.last_state,
            Some(ContainerState::Terminated { exit_code: 137, .. })
        ),
        "{:?}",
        c.last_state
    );
    let new = rt.pids("k")["c"];
    assert_ne!(new, pid);
    rt.stop("k", Duration::ZERO).await;
    assert!(!alive(new), "the process is gone after stop");
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let dir = tmp();
    let rt = runtime(&dir);
    // Ignores SIGTERM: only SIGKILL ends it.
    let p = pod(
        "t",
        "Always",
        json!([
            "sh",
            "-c",
            "trap '' TERM; echo up; while true; do sleep 0.05; done"
        ]),
    );
    conformance::ready(&rt, &cfg(&p)).await;
    let pid = rt.pids("t")["c"];
    let t = std::time::Instant::now();
    rt.stop("t", Duration::from_millis(300)).await;
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!alive(pid));
    // A process that honours SIGTERM ends at once.
    let p = pod("t2", "Always", json!(["sleep", "3600"]));
    conformance::ready(&rt, &cfg(&p)).await;
    let t = std::time::Instant::now();
    rt.stop("t2", Duration::from_secs(30)).await;
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn back_off_doubles_up_to_the_cap() {
    let b = Backoff::default();
    assert_eq!(b.delay(0), Duration::from_secs(10));
    assert_eq!(b.delay(1), Duration::from_secs(20));
    assert_eq!(b.delay(4), Duration::from_secs(160));
    assert_eq!(b.delay(5), Duration::from_secs(300));
    assert_eq!(b.delay(40), Duration::from_secs(300));
}

fn with_probes(uid: &str, command: Value, probes: Value) -> Value {
    let mut p = pod(uid, "Always", command);
    for (k, v) in probes.as_object().unwrap() {
        p["spec"]["containers"][0][k] = v.clone();
    }
    p["spec"]["terminationGracePeriodSeconds"] = json!(5);
    p
}

#[tokio::test]
async fn readiness_follows_its_probe() {
    let dir = tmp();
    let rt = runtime(&dir);
    let flag = dir.path().join("ready");
    let probes = json!({"readinessProbe": {"exec": {"command": ["test", "-f", flag.to_str().unwrap()]},
                                             "periodSeconds": 1, "failureThreshold": 1}});
    let p = with_probes("r", json!(["sleep", "3600"]), probes);
    rt.start(&cfg(&p)).await;
    let c = until(&rt, "r", "running", |c| {
        matches!(c.state, ContainerState::Running { .. })
    })
    .await;
    assert!(!c.ready, "not ready before the probe passes");
    std::fs::write(&flag, "").unwrap();
    until(&rt, "r", "ready", |c| c.ready).await;
    std::fs::remove_file(&flag).unwrap();
    let c = until(&rt, "r", "unready again", |c| !c.ready).await;
    assert_eq!(c.restart_count, 0, "readiness never restarts");
    rt.stop("r", Duration::ZERO).await;
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let dir = tmp();
    let rt = runtime(&dir);
    let probes = json!({"livenessProbe": {"exec": {"command": ["false"]},
                                            "periodSeconds": 1, "failureThreshold": 1}});
    rt.start(&cfg(&with_probes("l", json!(["sleep", "3600"]), probes)))
        .await;
    let c = until(&rt, "l", "a restart", |c| c.restart_count >= 1).await;
    match c.last_state {
        Some(ContainerState::Terminated { ref message, .. }) => {
            assert!(message.contains("Liveness probe failed"), "{message}")
        }
        ref other => panic!("lastState {other:?}"),
    }
    rt.stop("l", Duration::ZERO).await;
}

#[tokio::test]
async fn http_and_startup_probes_gate_readiness() {
    let dir = tmp();
    let rt = runtime(&dir);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let probes = json!({
        "ports": [{"name": "web", "containerPort": port}],
        "startupProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 1, "failureThreshold": 30},
        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}});
    let server = json!([
        "python3",
        "-m",
        "http.server",
        port.to_string(),
        "--bind",
        "0.0.0.0"
    ]);
    rt.start(&cfg(&with_probes("h", server, probes))).await;
    let c = until(&rt, "h", "ready through HTTP", |c| c.ready).await;
    assert_eq!(c.restart_count, 0);
    // A startup probe that never passes kills the container.
    let never = json!({"startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}});
    rt.start(&cfg(&with_probes("s", json!(["sleep", "3600"]), never)))
        .await;
    let c = until(&rt, "s", "killed by its startup probe", |c| {
        c.restart_count >= 1
    })
    .await;
    match c.last_state {
        Some(ContainerState::Terminated { ref message, .. }) => {
            assert!(message.contains("Startup probe failed"), "{message}")
        }
        ref other => panic!("lastState {other:?}"),
    }
    rt.stop("h", Duration::ZERO).await;
    rt.stop("s", Duration::ZERO).await;
}

#[tokio::test]
async fn a_new_runtime_adopts_the_pods_a_killed_agent_left() {
    let dir = tmp();
    let first = runtime(&dir);
    let p = pod("keep", "Always", json!(["sleep", "3600"]));
    let before = conformance::ready(&first, &cfg(&p)).await;
    let pid = first.pids("keep")["c"];
    // A container that ends while no agent watches it.
    let done = pod("done", "Never", json!(["sh", "-c", "sleep 0.3; exit 4"]));
    first.start(&cfg(&done)).await;
    until(&first, "done", "started", |c| {
        matches!(c.state, ContainerState::Running { .. })
    })
    .await;
    // The agent dies: supervisors gone, processes untouched.
    first.abandon();
    assert!(alive(pid));
    wait_until(Duration::from_secs(10), || async {
        if shim::read_exit(&dir.path().join("pods/done/c/0")).is_some() {
            Ok(())
        } else {
            Err("the unwatched container has not ended yet".to_string())
        }
    })
    .await
    .unwrap();
    // A new agent adopts: same process, same IP, no restart.
    let second = runtime(&dir);
    let mut running = second.running();
    running.sort();
    assert_eq!(running, vec!["done".to_string(), "keep".to_string()]);
    let now = second.start(&cfg(&p)).await;
    assert_eq!(now.pod_ip, before.pod_ip);
    assert_eq!(
        second.pids("keep")["c"],
        pid,
        "the process was not restarted"
    );
    assert!(
        now.containers[0].ready && now.containers[0].restart_count == 0,
        "{now:?}"
    );
    // What ended while no agent watched is reported as ended.
    let c = until(&second, "done", "its exit", |c| {
        matches!(c.state, ContainerState::Terminated { .. })
    })
    .await;
    assert!(
        matches!(c.state, ContainerState::Terminated { exit_code: 4, .. }),
        "{c:?}"
    );
    // The adopted process is still ours to stop (through its pidfd).
    second.stop("keep", Duration::from_secs(5)).await;
    assert!(!alive(pid));
    second.stop("done", Duration::ZERO).await;
}

#[tokio::test]
async fn init_containers_run_in_order_to_success_before_the_app() {
    let dir = tmp();
    let rt = runtime(&dir);
    let flag = dir.path().join("initialized");
    let f = flag.to_str().unwrap();
    let mut p = pod(
        "i",
        "Always",
        json!([
            "sh",
            "-c",
            format!("test -f {f} && exec sleep 3600; exit 9")
        ]),
    );
    p["spec"]["initContainers"] = json!([
        {"name": "first", "image": "none", "command": ["sh", "-c", "sleep 0.2"]},
        {"name": "second", "image": "none", "command": ["touch", f]}]);
    let s = conformance::ready(&rt, &cfg(&p)).await;
    assert_eq!(
        s.containers[0].restart_count, 0,
        "the app found what init made"
    );
    assert_eq!(s.init_containers.len(), 2);
    for c in &s.init_containers {
        assert!(
            matches!(c.state, ContainerState::Terminated { exit_code: 0, .. }),
            "{c:?}"
        );
    }
    let status = crate::pod_status(&p, &s, "h");
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["initContainerStatuses"][1]["name"], "second");
    rt.stop("i", Duration::ZERO).await;

    // A failing init container under Never: the app never starts, the pod fails.
    let mut bad = pod("b", "Never", json!(["sleep", "3600"]));
    bad["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "none", "command": ["false"]}]);
    rt.start(&cfg(&bad)).await;
    wait_until(Duration::from_secs(10), || async {
        let s = rt.state("b").unwrap();
        match &s.init_containers[0].state {
            ContainerState::Terminated { exit_code: 1, .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let s = rt.state("b").unwrap();
    assert!(
        matches!(s.containers[0].state, ContainerState::Waiting { ref reason, .. } if reason == "PodInitializing")
    );
    let status = crate::pod_status(&bad, &s, "h");
    assert_eq!(status["phase"], "Failed");
    let init = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(init["status"], "False");
    rt.stop("b", Duration::ZERO).await;
}

#[tokio::test]
async fn a_pre_stop_hook_runs_before_sigterm() {
    let dir = tmp();
    let rt = runtime(&dir);
    let mark = dir.path().join("pre-stopped");
    let mut p = pod("ps", "Always", json!(["sleep", "3600"]));
    p["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"exec": {"command": ["touch", mark.to_str().unwrap()]}}});
    conformance::ready(&rt, &cfg(&p)).await;
    let pid = rt.pids("ps")["c"];
    assert!(!mark.exists());
    rt.stop("ps", Duration::from_secs(5)).await;
    assert!(mark.exists(), "the preStop hook ran");
    assert!(!alive(pid));
}

#[tokio::test]
async fn a_container_sees_only_its_own_environment() {
    let dir = tmp();
    let rt = runtime(&dir);
    let out = dir.path().join("env");
    let p = pod(
        "e",
        "Never",
        json!([
            "sh",
            "-c",
            format!("env > {0}; echo said $(GREETING) >> {0}", out.display())
        ]),
    );
    rt.start(&cfg(&p)).await;
    until(&rt, "e", "done", |c| {
        matches!(c.state, ContainerState::Terminated { .. })
    })
    .await;
    let env = std::fs::read_to_string(&out).unwrap();
    assert!(env.contains("GREETING=hello"), "{env}");
    assert!(
        env.contains("said hello"),
        "$(VAR) expanded in the command: {env}"
    );
    assert!(env.contains("HOSTNAME=p-e"), "{env}");
    assert!(env.contains("PATH=/usr/local/sbin:"), "{env}");
    // Nothing of the agent's own environment, nor the shim's allocator setting.
    assert!(!env.contains("CARGO"), "{env}");
    assert!(!env.contains("MIMALLOC"), "{env}");
    rt.stop("e", Duration::ZERO).await;
}

/// `shoal` turns transparent huge pages off for itself (main.rs), which
/// children inherit: a container gets the machine's policy back.
#[tokio::test]
async fn a_container_gets_the_machines_huge_page_policy_not_the_agents() {
    // As in the `shoal` binary (this test process stands for the agent;
    // the shim sets the same for itself).
    // SAFETY: prctl with integer arguments only.
    let set = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    assert_eq!(set, 0);
    let dir = tmp();
    let rt = runtime(&dir);
    let out = dir.path().join("thp");
    let p = pod(
        "thp",
        "Never",
        json!([
            "sh",
            "-c",
            format!("grep THP_enabled /proc/self/status > {}", out.display())
        ]),
    );
    rt.start(&cfg(&p)).await;
    until(&rt, "thp", "done", |c| {
        matches!(c.state, ContainerState::Terminated { .. })
    })
    .await;
    let status = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        status.split_whitespace().collect::<Vec<_>>(),
        ["THP_enabled:", "1"]
    );
    rt.stop("thp", Duration::ZERO).await;
}

/// securityContext as the shim applies it (as root): the user and group a
/// container runs as, runAsNonRoot refused for a root user with its
/// reason, a read-only root that refuses writes, capabilities dropped.
#[tokio::test]
async fn security_contexts_are_applied_or_refused() {
    // SAFETY: geteuid(2) touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: setting a container's user needs root");
        return;
    }
    let dir = tmp();
    let rt = runtime(&dir);
    let logs = |uid: &'static str| {
        let rt = rt.clone();
        async move {
            let req = PodLogs {
                namespace: "default".into(),
                pod: format!("p-{uid}"),
                container: "c".into(),
                tail_lines: None,
                previous: false,
                timestamps: false,
                follow: false,
            };
            rt.logs(&req, uid).await.unwrap_or_default()
        }
    };
    let with = |uid: &str, command: &str, pod_sc: Value, sc: Value| {
        let mut p = pod(uid, "Never", json!(["sh", "-c", command]));
        p["spec"]["securityContext"] = pod_sc;
        p["spec"]["containers"][0]["securityContext"] = sc;
        cfg(&p)
    };
    let done = |c: &ContainerStatus| matches!(c.state, ContainerState::Terminated { .. });

    let marker = format!("/shoal-ro-test-{}", std::process::id());
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
         grep CapBnd /proc/self/status; grep NoNewPrivs /proc/self/status; \
         touch {marker} && echo wrote || echo refused"
    );
    rt.start(&with(
        "sc",
        &script,
        json!({"runAsUser": 1000, "runAsGroup": 2000, "supplementalGroups": [3000]}),
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"]}}),
    ))
    .await;
    until(&rt, "sc", "the run", done).await;
    let out = logs("sc").await;
    assert!(out.contains("uid=1000 gid=2000 groups=2000 3000"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("refused") && !out.contains("wrote"), "{out}");
    assert!(!std::path::Path::new(&marker).exists());

    // Without them: root, every capability, a writable root.
    rt.start(&with("plain", &script, json!({}), json!({})))
        .await;
    until(&rt, "plain", "the run", done).await;
    let out = logs("plain").await;
    let _ = std::fs::remove_file(&marker);
    assert!(out.contains("uid=0 gid=0"), "{out}");
    assert!(out.contains("wrote"), "{out}");
    assert!(!out.contains("CapBnd:\t0000000000000000"), "{out}");

    // runAsNonRoot with no user: refused, the reason in the status.
    rt.start(&with(
        "nr",
        "echo ran",
        json!({"runAsNonRoot": true}),
        json!({}),
    ))
    .await;
    let c = until(&rt, "nr", "a refusal", |c| {
        matches!(c.state, ContainerState::Waiting { ref reason, .. } if reason == "CreateContainerConfigError")
    })
    .await;
    let ContainerState::Waiting { message, .. } = &c.state else {
        unreachable!()
    };
    assert!(message.contains("runAsNonRoot"), "{message}");
    for uid in ["sc", "plain", "nr"] {
        rt.stop(uid, Duration::ZERO).await;
    }
}
