//! The kubelet with the process runtime in an in-process cluster: pod
//! status follows the real processes (restarts pushed by the runtime, not
//! polled), logs come through the API, and a refused container says why.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::json;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn pod(name: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Always", "containers": [container]}
    }))
    .unwrap()
}

/// Waits until pod `name`'s first container status satisfies `cond`.
async fn status_until(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let r = wait_until(Duration::from_secs(30), || {
        let pods = pods.clone();
        let cond = &cond;
        async move {
            let p = pods.get(name).await.map_err(|e| e.to_string())?;
            let v = serde_json::to_value(&p).map_err(|e| e.to_string())?;
            match v.pointer("/status/containerStatuses/0") {
                Some(cs) if cond(cs) => Ok(()),
                other => Err(format!("waiting for {what}: {other:?}")),
            }
        }
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_value(pods.get(name).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pods_restart_report_and_log_through_the_api() {
    let c = TestCluster::start_with(3, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
        cfg.kubelet.restart_backoff_ms = 100;
        cfg.kubelet.restart_backoff_max_ms = 400;
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k);

    // A crashing container: restarts pushed by the runtime reach the API.
    let crash = json!({"name": "c", "image": "none",
        "command": ["sh", "-c", "echo hello from $POD; exit 3"],
        "env": [{"name": "POD", "value": "crasher"}]});
    pods.create(&PostParams::default(), &pod("crasher", crash))
        .await
        .unwrap();
    let v = status_until(&pods, "crasher", "two restarts", |cs| {
        cs["restartCount"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    let ip = v["status"]["podIP"].as_str().unwrap();
    assert!(
        ip.starts_with("127."),
        "loopback pod IPs without a sandbox: {ip}"
    );
    // Logs of the previous instance through the API and the kubelet actor.
    let lp = LogParams {
        previous: true,
        ..LogParams::default()
    };
    let logs = pods.logs("crasher", &lp).await.unwrap();
    assert_eq!(logs, "hello from crasher\n");

    // A container without a command: refused, with the reason, Pending.
    let bare = json!({"name": "c", "image": "nginx:1.14.2"});
    pods.create(&PostParams::default(), &pod("bare", bare))
        .await
        .unwrap();
    let v = status_until(&pods, "bare", "a refusal", |cs| {
        cs.pointer("/state/waiting/reason").and_then(|r| r.as_str())
            == Some("CreateContainerConfigError")
    })
    .await;
    assert_eq!(v["status"]["phase"], "Pending");
    let msg = v
        .pointer("/status/containerStatuses/0/state/waiting/message")
        .and_then(|m| m.as_str())
        .unwrap_or("");
    assert!(msg.contains("command"), "{msg}");

    // A long-running container is Running and Ready; deleting the pod
    // stops its process and the pod object goes.
    let server = json!({"name": "c", "image": "none", "command": ["sleep", "3600"]});
    pods.create(&PostParams::default(), &pod("sleeper", server))
        .await
        .unwrap();
    let v = status_until(&pods, "sleeper", "running", |cs| cs["ready"] == true).await;
    assert_eq!(v["status"]["phase"], "Running");
    let pid: i32 = v["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("process://"))
        .and_then(|p| p.parse().ok())
        .expect("a process:// container id");
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(pid, 0) == 0 };
            match pods.get_opt("sleeper").await {
                Ok(None) if !alive => Ok(()),
                other => Err(format!(
                    "process alive: {alive}, pod: {:?}",
                    other.map(|p| p.is_some())
                )),
            }
        }
    })
    .await
    .unwrap();
    for name in ["crasher", "bare"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_come_from_config_maps_secrets_and_fields() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let c = TestCluster::start_with(3, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(k.clone());
    let secrets: Api<Secret> = Api::default_namespaced(k.clone());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast"}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cr3t"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    // A Service of the namespace: its variables, as upstream's.
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::default_namespaced(k.clone());
    let backend: k8s_openapi::api::core::v1::Service = serde_json::from_value(
        json!({"metadata": {"name": "backend"}, "spec": {"ports": [{"port": 8080}]}}),
    )
    .unwrap();
    let backend = svcs.create(&PostParams::default(), &backend).await.unwrap();
    let backend_ip = backend.spec.unwrap().cluster_ip.unwrap();
    let shell = json!({"name": "c", "image": "none",
        "command": ["sh", "-c", "echo \"$MODE $PASS $POD_NAME $NODE $IP $BACKEND_SERVICE_HOST:$BACKEND_SERVICE_PORT\"; exec sleep 3600"],
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]});
    pods.create(&PostParams::default(), &pod("envpod", shell))
        .await
        .unwrap();
    let v = status_until(&pods, "envpod", "ready", |cs| cs["ready"] == true).await;
    let node = v["spec"]["nodeName"].as_str().unwrap().to_string();
    let ip = v["status"]["podIP"].as_str().unwrap().to_string();
    let want = format!("fast s3cr3t envpod {node} {ip} {backend_ip}:8080\n");
    wait_until(Duration::from_secs(10), || {
        let (pods, want) = (pods.clone(), want.clone());
        async move {
            let logs = pods
                .logs("envpod", &LogParams::default())
                .await
                .map_err(|e| e.to_string())?;
            if logs == want {
                Ok(())
            } else {
                Err(format!("logs {logs:?}, want {want:?}"))
            }
        }
    })
    .await
    .unwrap();
    // A ConfigMap that does not exist: the container is refused with why.
    let missing = json!({"name": "c", "image": "none", "command": ["true"],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]});
    pods.create(&PostParams::default(), &pod("nocfg", missing))
        .await
        .unwrap();
    let v = status_until(&pods, "nocfg", "a config error", |cs| {
        cs.pointer("/state/waiting/reason").and_then(|r| r.as_str())
            == Some("CreateContainerConfigError")
    })
    .await;
    let msg = v["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert_eq!(msg, "configmap \"nope\" not found");
}

/// The agent of a node is killed and started again: its pods keep their
/// processes (same pids, no restart) and are Ready again; a pod deleted
/// while the agent was down is stopped when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_outlive_a_killed_agent_and_deleted_ones_stop_on_its_return() {
    let mut c = TestCluster::start_with(3, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k);
    // Pinned to node-3, tolerating its unreachability (no eviction while
    // its agent is down).
    let pinned = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "node-3", "terminationGracePeriodSeconds": 5,
                     "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}],
                     "containers": [{"name": "c", "image": "none", "command": ["sleep", "3600"]}]}
        }))
        .unwrap()
    };
    let pid_of = |v: &serde_json::Value| -> i32 {
        v["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("process://"))
            .and_then(|p| p.parse().ok())
            .expect("a process:// container id")
    };
    for name in ["survivor", "doomed"] {
        pods.create(&PostParams::default(), &pinned(name))
            .await
            .unwrap();
    }
    let survivor =
        pid_of(&status_until(&pods, "survivor", "ready", |cs| cs["ready"] == true).await);
    let doomed = pid_of(&status_until(&pods, "doomed", "ready", |cs| cs["ready"] == true).await);
    // SAFETY: signal 0 only checks that the process exists.
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) == 0 };

    c.kill(3);
    assert!(
        alive(survivor) && alive(doomed),
        "the processes outlive their agent"
    );
    pods.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    c.restart(3).unwrap();

    let v = status_until(&pods, "survivor", "ready again", |cs| cs["ready"] == true).await;
    assert_eq!(pid_of(&v), survivor, "the same process, not restarted");
    assert_eq!(v["status"]["containerStatuses"][0]["restartCount"], 0);
    wait_until(Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            match pods.get_opt("doomed").await {
                Ok(None) if !alive(doomed) => Ok(()),
                other => Err(format!(
                    "doomed: alive {}, object {:?}",
                    alive(doomed),
                    other.map(|p| p.is_some())
                )),
            }
        }
    })
    .await
    .unwrap();
    pods.delete("survivor", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), || async {
        if alive(survivor) {
            Err("survivor still running".to_string())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
}

/// Benchmark (docs/BENCHMARKS.md): pod startup latency with the process
/// runtime, create → Running and Ready as a watch sees it, for 100 pods
/// created at 5/s; then the time until 100 pods created at once all run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test --release --test cluster process_pod_startup_latency -- --ignored --nocapture"]
async fn process_pod_startup_latency() {
    use futures::StreamExt;
    use std::collections::HashMap;
    use tokio::time::Instant;
    // SHOAL_BENCH_NETWORK=host|cni|auto (default auto: CNI sandboxes as root).
    let network: shoal::kubelet::config::PodNetwork = std::env::var("SHOAL_BENCH_NETWORK")
        .unwrap_or_else(|_| "auto".into())
        .parse()
        .expect("SHOAL_BENCH_NETWORK: auto, cni or host");
    eprintln!("kubelet.network = {network}");
    let c = TestCluster::start_with(3, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
        cfg.kubelet.network = network;
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k);
    let sleeper = |name: String, batch: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"batch": batch}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "none", "command": ["sleep", "3600"]}]}
        }))
        .unwrap()
    };
    // Times each pod from its create call to Ready, through one watch.
    async fn measure(
        pods: &Api<Pod>,
        batch: &str,
        n: usize,
        per_second: Option<f64>,
        make: &dyn Fn(String, &str) -> Pod,
    ) -> (Vec<f64>, f64) {
        let wp = kube::api::WatchParams::default().labels(&format!("batch={batch}"));
        let mut events = pods.watch(&wp, "0").await.unwrap().boxed();
        let started = Instant::now();
        let mut created: HashMap<String, Instant> = HashMap::new();
        let mut ready: HashMap<String, f64> = HashMap::new();
        let mut next = 0usize;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(
            1.0 / per_second.unwrap_or(1e9),
        ));
        while ready.len() < n {
            tokio::select! {
                _ = tick.tick(), if next < n => {
                    let burst = if per_second.is_some() { 1 } else { n };
                    for _ in 0..burst {
                        let name = format!("{batch}-{next}");
                        created.insert(name.clone(), Instant::now());
                        pods.create(&PostParams::default(), &make(name, batch)).await.unwrap();
                        next += 1;
                    }
                }
                ev = events.next() => {
                    let Some(Ok(kube::api::WatchEvent::Added(p) | kube::api::WatchEvent::Modified(p))) = ev else { continue };
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let is_ready = p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                        cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                    });
                    if is_ready && !ready.contains_key(&name) {
                        if let Some(t) = created.get(&name) {
                            ready.insert(name, t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                }
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "{} of {n} ready",
                ready.len()
            );
        }
        let mut ms: Vec<f64> = ready.into_values().collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        (ms, started.elapsed().as_secs_f64())
    }
    let pct = |ms: &[f64], p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    let (paced, _) = measure(&pods, "paced", 100, Some(5.0), &sleeper).await;
    eprintln!(
        "100 pods at 5/s: startup p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(&paced, 0.5),
        pct(&paced, 0.99),
        paced[paced.len() - 1]
    );
    pods.delete_collection(
        &DeleteParams::default(),
        &kube::api::ListParams::default().labels("batch=paced"),
    )
    .await
    .unwrap();
    let (burst, all) = measure(&pods, "burst", 100, None, &sleeper).await;
    eprintln!(
        "100 pods at once: all Running and Ready after {all:.2} s (startup p50 {:.0} ms, p99 {:.0} ms)",
        pct(&burst, 0.5),
        pct(&burst, 0.99)
    );
}

/// An agent is killed and kept down: its pods run again on the other
/// nodes as real processes within the control plane's bound; its own
/// processes go on meanwhile (a kubelet that is down stops nothing), and
/// are stopped when it returns, their pods no longer bound to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_agent_run_elsewhere_as_processes() {
    let _timing = crate::timing_guard().await;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let mut c = TestCluster::start_with(5, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "procs"},
        "spec": {"replicas": 8, "selector": {"matchLabels": {"app": "procs"}},
                 "template": {"metadata": {"labels": {"app": "procs"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "c", "image": "none", "command": ["sleep", "3600"]}]}}}
    }))
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let lp = kube::api::ListParams::default().labels("app=procs");
    // (node, pid) of each ready pod.
    let placed = |list: &[Pod]| -> Vec<(String, i32)> {
        list.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let v = serde_json::to_value(p).ok()?;
                let cs = v.pointer("/status/containerStatuses/0")?;
                if cs["ready"] != true {
                    return None;
                }
                let pid = cs["containerID"]
                    .as_str()?
                    .strip_prefix("process://")?
                    .parse()
                    .ok()?;
                Some((v["spec"]["nodeName"].as_str()?.to_string(), pid))
            })
            .collect()
    };
    wait_until(Duration::from_secs(30), || {
        let (pods, lp) = (pods.clone(), lp.clone());
        async move {
            let n = placed(&pods.list(&lp).await.map_err(|e| e.to_string())?.items).len();
            if n == 8 {
                Ok(())
            } else {
                Err(format!("{n} ready"))
            }
        }
    })
    .await
    .unwrap();
    let before = placed(&pods.list(&lp).await.unwrap().items);
    // The node (not node-1, the client's) that runs the most of them.
    let count = |n: &str| before.iter().filter(|(node, _)| node == n).count();
    let victim = (2..=5).max_by_key(|i| count(&format!("node-{i}"))).unwrap();
    let name = format!("node-{victim}");
    let orphans: Vec<i32> = before
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .collect();
    assert!(!orphans.is_empty(), "{before:?}");
    // SAFETY: signal 0 only checks that the process exists.
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) == 0 };

    let killed = tokio::time::Instant::now();
    c.kill(victim);
    wait_until(Duration::from_secs(30), || {
        let (pods, lp, name) = (pods.clone(), lp.clone(), name.clone());
        async move {
            let now = placed(&pods.list(&lp).await.map_err(|e| e.to_string())?.items);
            if now.len() == 8 && now.iter().all(|(n, _)| *n != name) {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        }
    })
    .await
    .unwrap();
    let took = killed.elapsed();
    eprintln!(
        "{} pods of {name} run elsewhere as processes {took:?} after the kill",
        orphans.len()
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    for (_, pid) in placed(&pods.list(&lp).await.unwrap().items) {
        assert!(alive(pid), "replacement process {pid}");
    }
    assert!(
        orphans.iter().all(|p| alive(*p)),
        "a dead agent stops nothing"
    );

    // The agent returns: its old pods are bound elsewhere, so it stops them.
    c.restart(victim).unwrap();
    wait_until(Duration::from_secs(30), || async {
        let left: Vec<&i32> = orphans.iter().filter(|p| alive(**p)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {left:?}"))
        }
    })
    .await
    .unwrap();
}
