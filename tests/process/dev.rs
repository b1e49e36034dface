//! `shoal dev`: `READY`, a working kubeconfig, a pod running as a real
//! process, and Ctrl-C leaving no agent, pid file or pod process behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{shoal, wait_for};

#[test]
fn dev_prints_ready_and_ctrl_c_leaves_nothing_behind() {
    use std::io::{BufRead, BufReader};
    let _cni = crate::cni_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    // The default runtime: process.
    let mut dev = shoal()
        .args(["dev", "--nodes", "3", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // A failing assertion still stops the cluster (Ctrl-C), pods and all.
    struct Interrupt(Option<i32>);
    impl Drop for Interrupt {
        fn drop(&mut self) {
            let Some(pid) = self.0 else { return };
            // SAFETY: a libc call with integer arguments only.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }
    let mut interrupt = Interrupt(Some(dev.id() as i32));
    let stdout = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|l: &String| l == "READY") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no READY within 60 s; got {lines:?}"),
        }
    }
    // The console names the pods' network mode before READY: CNI sandboxes
    // as root with the plugins (as scripts/test.sh installs them), else
    // host networking, saying why.
    let network = lines
        .iter()
        .find(|l| l.starts_with("network: "))
        .unwrap_or_else(|| panic!("no network line before READY: {lines:?}"));
    if crate::cni_sandboxes() {
        assert_eq!(
            network,
            "network: cni (each pod has its own network namespace and an address from its node's /24 of 10.88.0.0/16)"
        );
    } else {
        assert!(
            network.starts_with("network: host (degraded: ") && network.contains("why: "),
            "{network}"
        );
    }
    let canonical = dir.canonicalize().unwrap();
    assert!(
        lines.contains(&format!(
            "export KUBECONFIG={}",
            canonical.join("kubeconfig").display()
        )),
        "{lines:?}"
    );

    // The kubeconfig works with curl against /shoal/v1/members.
    let kube: Value =
        serde_json::from_slice(&std::fs::read(canonical.join("kubeconfig")).unwrap()).unwrap();
    let server = kube["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let ca = kube["clusters"][0]["cluster"]["certificate-authority"]
        .as_str()
        .unwrap()
        .to_string();
    let token = kube["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(kube["current-context"], "node-1");
    // GET `path` with the kubeconfig's credentials; fails on an HTTP error.
    let get = |path: &str| {
        Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--cacert",
                &ca,
                "-H",
                &format!("Authorization: Bearer {token}"),
            ])
            .arg(format!("{server}{path}"))
            .output()
            .expect("curl is installed (the README's test command installs it)")
    };
    let out = get("/shoal/v1/members");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    // READY waits for the cluster's own objects: the `kubernetes` Service
    // is there at once (a pod made now gets its variables).
    let svc = get("/api/v1/namespaces/default/services/kubernetes");
    assert!(
        svc.status.success(),
        "the kubernetes Service right after READY: {}",
        String::from_utf8_lossy(&svc.stderr)
    );

    // A pod runs as a real process (the process runtime is the default).
    let curl = |args: &[&str]| -> Value {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                &ca,
                "-H",
                &format!("Authorization: Bearer {token}"),
            ])
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "c", "image": "none", "command": ["sleep", "3600"]}]}});
    // READY waited for the system namespaces; the deadline is for the
    // create itself.
    wait_for(Duration::from_secs(30), "the pod is created", || {
        let created = curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &pod.to_string(),
            &format!("{server}/api/v1/namespaces/default/pods"),
        ]);
        let made = created["metadata"]["name"] == "sleeper" || created["reason"] == "AlreadyExists";
        made.then_some(()).ok_or_else(|| created.to_string())
    });
    let pod_pid: i32 = wait_for(Duration::from_secs(30), "the pod runs", || {
        let p = curl(&[&format!("{server}/api/v1/namespaces/default/pods/sleeper")]);
        p.pointer("/status/containerStatuses/0/containerID")
            .and_then(Value::as_str)
            .and_then(|id| id.strip_prefix("process://"))
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| format!("not running yet: {}", p["status"]))
    });
    // SAFETY: a libc call with integer arguments only.
    assert!(unsafe { libc::kill(pod_pid, 0) } == 0);

    let pids: Vec<i32> = (1..=3)
        .map(|k| {
            std::fs::read_to_string(canonical.join(format!("node-{k}.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    // SAFETY: a libc call with integer arguments only.
    unsafe { libc::kill(dev.id() as i32, libc::SIGINT) };
    let status = wait_for(Duration::from_secs(20), "dev exits", || {
        dev.try_wait()
            .map_err(|e| e.to_string())?
            .ok_or("running".into())
    });
    // Exited and reaped: its pid is no longer its own to signal.
    interrupt.0 = None;
    assert!(status.success(), "dev must exit 0 on Ctrl-C, got {status}");
    for pid in pids {
        // SAFETY: a libc call with integer arguments only.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "agent {pid} survived Ctrl-C");
    }
    // Pods outlive their agents, but not the dev cluster.
    // SAFETY: a libc call with integer arguments only.
    let alive = unsafe { libc::kill(pod_pid, 0) } == 0;
    assert!(!alive, "pod process {pod_pid} survived Ctrl-C");
    for k in 1..=3 {
        assert!(
            !canonical.join(format!("node-{k}.pid")).exists(),
            "pid file of node-{k} left behind"
        );
        if crate::cni_sandboxes() {
            let bridge = format!("/sys/class/net/shoal-{k}");
            assert!(
                !std::path::Path::new(&bridge).exists(),
                "{bridge} left behind"
            );
        }
    }
    let left = crate::sandbox_leftovers();
    assert!(left.is_empty(), "sandboxes left behind: {left:?}");
    let tables = crate::proxy_tables();
    assert!(tables.is_empty(), "proxy tables left behind: {tables:?}");
}
