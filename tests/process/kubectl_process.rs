//! kubectl 1.33 against a 3-node `shoal dev` with the process runtime:
//! what issue 7's end-to-end asks that needs no network sandbox. Pods
//! share the host's network (the degraded mode), so each server binds its
//! own loopback pod IP (`status.podIP` through the downward API).

use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: http
        image: python:3
        command: ["python3", "-m", "http.server", "8000", "--bind", "$(POD_IP)"]
        env:
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        ports: [{containerPort: 8000}]
        readinessProbe:
          httpGet: {path: /, port: 8000}
          periodSeconds: 1
"#;

fn pods(k: &Dev, selector: &str) -> Vec<Value> {
    let out = k.ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn pid_of(p: &Value) -> Option<i32> {
    p.pointer("/status/containerStatuses/0/containerID")?
        .as_str()?
        .strip_prefix("process://")?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn http_get(ip: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "2", &format!("http://{ip}:8000/")])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn kubectl_runs_real_processes_that_restart_probe_log_and_go() {
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    let web = k.file("web.yaml", WEB);
    k.ok(&["apply", "-f", &web]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);

    // Three pods, Running and Ready, distinct pod IPs, each answering HTTP.
    let running = pods(&k, "app=web");
    assert_eq!(running.len(), 3);
    let ips: std::collections::BTreeSet<String> = running
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 3, "distinct pod IPs: {ips:?}");
    for ip in &ips {
        let body = http_get(ip).unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert!(body.contains("Directory listing"), "{ip}: {body}");
    }

    // kubectl logs shows the server's output (the requests above).
    let name = running[0]["metadata"]["name"].as_str().unwrap().to_string();
    super::wait_for(Duration::from_secs(10), "the request in the logs", || {
        let logs = k.ok(&["logs", &name]);
        if logs.contains("\"GET / HTTP/1.1\" 200") {
            Ok(())
        } else {
            Err(logs)
        }
    });

    // SIGKILL a container's process: restarted, restartCount 1.
    let pid = pid_of(&running[0]).expect("a process container id");
    // SAFETY: SIGKILL to the pod's server process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    super::wait_for(Duration::from_secs(60), "a restart", || {
        let p: Value = serde_json::from_str(&k.ok(&["get", "pod", &name, "-o", "json"])).unwrap();
        let cs = &p["status"]["containerStatuses"][0];
        if cs["restartCount"] == 1 && cs["ready"] == true {
            Ok(())
        } else {
            Err(cs.to_string())
        }
    });

    // A failing readiness probe: the pod stays Running but not Ready.
    // A failing liveness probe: the container is restarted.
    let probes = r#"apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  containers:
  - name: c
    image: none
    command: ["sleep", "3600"]
    readinessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
  - name: d
    image: none
    command: ["sleep", "3600"]
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
"#;
    let probed = k.file("probed.yaml", probes);
    k.ok(&["apply", "-f", &probed]);
    super::wait_for(Duration::from_secs(60), "probes acting", || {
        let p: Value =
            serde_json::from_str(&k.ok(&["get", "pod", "probed", "-o", "json"])).unwrap();
        let cs = p["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let c = cs.iter().find(|c| c["name"] == "c");
        let d = cs.iter().find(|c| c["name"] == "d");
        match (c, d) {
            (Some(c), Some(d))
                if c["ready"] == false
                    && c["state"].get("running").is_some()
                    && d["restartCount"].as_u64().unwrap_or(0) >= 1 =>
            {
                Ok(())
            }
            _ => Err(format!("{cs:?}")),
        }
    });
    let ready = k.ok(&[
        "get",
        "pod",
        "probed",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "False");

    // Deleting the Deployment leaves no server process behind.
    let pids: Vec<i32> = pods(&k, "app=web").iter().filter_map(pid_of).collect();
    assert_eq!(pids.len(), 3);
    k.ok(&["delete", "deployment", "web"]);
    k.ok(&["delete", "pod", "probed"]);
    super::wait_for(Duration::from_secs(60), "no server process", || {
        let left: Vec<&i32> = pids.iter().filter(|p| alive(**p)).collect();
        if left.is_empty() && pods(&k, "app=web").is_empty() {
            Ok(())
        } else {
            Err(format!("alive: {left:?}"))
        }
    });
}
