//! An agent killed with SIGKILL and started again (as `shoal dev` starts
//! it) keeps its running pods, with the same processes, pod IPs and
//! network namespaces, and stops the pod deleted while it was down; with
//! sandboxes, the same for docker pods (the same containers, adopted).

use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;
use super::kubectl_process::{alive, http_get, pid_of};

/// Kills on drop: an agent the test started itself.
pub(super) struct Agent(pub(super) std::process::Child);

impl Agent {
    /// Node `node`'s agent of the `shoal dev` cluster `k` started again
    /// by hand, as `shoal dev` starts it (the process runtime, CNI
    /// sandboxes, dev's pod CIDR).
    pub(super) fn restart(k: &Dev, node: usize) -> Agent {
        Agent(
            super::shoal()
                .args(["agent", "--config"])
                .arg(k.dir().join(format!("node-{node}.toml")))
                .current_dir(k.dir())
                .env("SHOAL_KUBELET_RUNTIME", "process")
                // As dev offers it with sandboxes.
                .env(
                    "SHOAL_KUBELET_RUNTIMES",
                    if super::cni_sandboxes() {
                        "process,docker"
                    } else {
                        ""
                    },
                )
                .env("SHOAL_KUBELET_NETWORK", "auto")
                .env("SHOAL_KUBELET_POD_CIDR", "10.88.0.0/16")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn an_agent_killed_and_restarted_keeps_its_pods_and_stops_the_deleted_one() {
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: keeper}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 2
  containers:
  - name: http
    image: none
    command: ["python3", "-m", "http.server", "8000", "--bind", "$(POD_IP)"]
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    readinessProbe:
      httpGet: {path: /, port: 8000}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: doomed}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: none
    command: ["sleep", "3600"]
"#;
    // With sandboxes the node offers docker too: a docker pod to keep and
    // one to delete while the agent is down.
    let cni = super::cni_sandboxes();
    let docker_pods = r#"---
apiVersion: v1
kind: Pod
metadata: {name: dkeeper}
spec:
  nodeName: node-2
  runtimeClassName: docker
  terminationGracePeriodSeconds: 2
  containers: [{name: web, image: "shoal-test/web:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: ddoomed}
spec:
  nodeName: node-2
  runtimeClassName: docker
  terminationGracePeriodSeconds: 2
  containers: [{name: c, image: "shoal-test/busybox:1", command: [sleep, "3600"]}]
"#;
    let manifest = if cni {
        format!("{manifest}{docker_pods}")
    } else {
        manifest.to_string()
    };
    let f = k.file("pods.yaml", &manifest);
    k.ok(&["apply", "-f", &f]);
    let mut names = vec!["pod/keeper", "pod/doomed"];
    if cni {
        names.extend(["pod/dkeeper", "pod/ddoomed"]);
    }
    let mut wait = vec!["wait", "--for=condition=Ready", "--timeout=90s"];
    wait.extend(&names);
    k.ok(&wait);
    let get = |name: &str| -> Value {
        serde_json::from_str(&k.ok(&["get", "pod", name, "-o", "json"])).unwrap()
    };
    let (keeper, doomed) = (get("keeper"), get("doomed"));
    let keeper_pid = pid_of(&keeper).unwrap();
    let doomed_pid = pid_of(&doomed).unwrap();
    let keeper_ip = keeper["status"]["podIP"].as_str().unwrap().to_string();
    // Namespaces are named after the node's slot: its /24's index in dev's
    // 10.88.0.0/16, given when node-2 registered.
    let node2: Value =
        serde_json::from_str(&k.ok(&["get", "node", "node-2", "-o", "json"])).unwrap();
    let slot: u32 = node2["spec"]["podCIDR"]
        .as_str()
        .and_then(|c| c.strip_prefix("10.88."))
        .and_then(|c| c.split('.').next())
        .and_then(|k3| k3.parse().ok())
        .expect("node-2 has a /24 of 10.88.0.0/16");
    let netns = |p: &Value| format!("shoal-{slot}-{}", p["metadata"]["uid"].as_str().unwrap());
    let has_netns = |name: &str| std::path::Path::new("/run/netns").join(name).exists();
    if cni {
        assert!(has_netns(&netns(&keeper)) && has_netns(&netns(&doomed)));
    }

    // SIGKILL node-2's agent; its pods keep running without it.
    let agent = k.pid(2);
    // SAFETY: SIGKILL to the agent process shoal dev started.
    unsafe { libc::kill(agent, libc::SIGKILL) };
    super::wait_for(Duration::from_secs(10), "the agent gone", || {
        if alive(agent) {
            Err("alive".into())
        } else {
            Ok(())
        }
    });
    assert!(alive(keeper_pid) && alive(doomed_pid));
    // A pod deleted while its agent is down.
    k.ok(&["delete", "pod", "doomed", "--wait=false"]);
    let docker_before = cni.then(|| {
        k.ok(&["delete", "pod", "ddoomed", "--wait=false"]);
        (get("dkeeper"), get("ddoomed"))
    });

    // The agent again, as shoal dev starts it.
    let _agent = Agent::restart(&k, 2);
    // The deleted pod stops (process, sandbox, object), the other is
    // adopted: the same process, pod IP and network namespace, Ready.
    super::wait_for(
        Duration::from_secs(60),
        "doomed stopped, keeper adopted",
        || {
            let gone = !k.ok(&["get", "pods", "-o", "name"]).contains("pod/doomed");
            let p = get("keeper");
            let ready = p["status"]["containerStatuses"][0]["ready"] == true;
            if gone && !alive(doomed_pid) && ready && !(cni && has_netns(&netns(&doomed))) {
                Ok(())
            } else {
                Err(format!(
                    "doomed gone {gone}, its process alive {}, its netns {}; keeper {}",
                    alive(doomed_pid),
                    cni && has_netns(&netns(&doomed)),
                    p["status"]
                ))
            }
        },
    );
    let after = get("keeper");
    assert_eq!(
        pid_of(&after),
        Some(keeper_pid),
        "the keeper was not restarted"
    );
    assert_eq!(after["status"]["podIP"], keeper_ip.as_str());
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    if cni {
        assert!(has_netns(&netns(&keeper)));
    }
    let body = http_get(&keeper_ip).unwrap_or_else(|e| panic!("{keeper_ip}: {e}"));
    assert!(body.contains("Directory listing"), "{body}");

    // The docker pods: the kept one is adopted (the same container, no
    // restart), the deleted one's containers go.
    if let Some((dkeeper, ddoomed)) = docker_before {
        let id = |p: &Value| p["status"]["containerStatuses"][0]["containerID"].clone();
        let uid = ddoomed["metadata"]["uid"].as_str().unwrap().to_string();
        super::wait_for(
            Duration::from_secs(60),
            "ddoomed gone, dkeeper adopted",
            || {
                let left = super::docker::containers_of(&uid);
                let gone = !k.ok(&["get", "pods", "-o", "name"]).contains("pod/ddoomed");
                let p = get("dkeeper");
                let ready = p["status"]["containerStatuses"][0]["ready"] == true;
                if gone && left.is_empty() && ready {
                    Ok(())
                } else {
                    Err(format!(
                        "ddoomed gone {gone}, its containers {left:?}; dkeeper {}",
                        p["status"]
                    ))
                }
            },
        );
        let after = get("dkeeper");
        assert_eq!(id(&after), id(&dkeeper), "dkeeper kept its container");
        assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
        assert_eq!(after["status"]["podIP"], dkeeper["status"]["podIP"]);
        let ip = after["status"]["podIP"].as_str().unwrap();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{ip}:8080/")])
            .output()
            .unwrap();
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.contains("shoal-test web"), "{page}");
    }
}
