//! kubectl 1.33 against a 3-node `shoal dev` with the process runtime,
//! issue 7's end to end. As root (CI) each pod has a CNI sandbox: its own
//! network namespace with an address of its node's /24, reached from the
//! host and from pods on other nodes. Without root the pods share the
//! host's network (the degraded mode), so each server binds its own
//! loopback pod IP (`status.podIP` through the downward API).

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

pub(super) fn pods(k: &Dev, selector: &str) -> Vec<Value> {
    let out = k.ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

pub(super) fn pid_of(p: &Value) -> Option<i32> {
    p.pointer("/status/containerStatuses/0/containerID")?
        .as_str()?
        .strip_prefix("process://")?
        .parse()
        .ok()
}

pub(super) fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub(super) fn http_get(ip: &str) -> Result<String, String> {
    http_at(ip, "/")
}

fn http_at(ip: &str, path: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "2", &format!("http://{ip}:8000{path}")])
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
    let cni = super::cni_sandboxes();
    for p in &running {
        let ip = p["status"]["podIP"].as_str().unwrap();
        let node = p["spec"]["nodeName"].as_str().unwrap();
        // The node's /24, given at registration, of dev's 10.88.0.0/16.
        let node_obj: Value =
            serde_json::from_str(&k.ok(&["get", "node", node, "-o", "json"])).unwrap();
        let cidr = node_obj["spec"]["podCIDR"].as_str().unwrap();
        let k3: u32 = cidr
            .strip_prefix("10.88.")
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if cni {
            assert!(
                ip.starts_with(&format!("10.88.{k3}.")),
                "{ip} on {node} ({cidr})"
            );
        } else {
            // Host mode: the slot's loopback /16.
            assert!(
                ip.starts_with(&format!("127.{}.", k3 % 254 + 1)),
                "{ip} on {node} ({cidr})"
            );
        }
        let body = http_get(ip).unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert!(body.contains("Directory listing"), "{ip}: {body}");
    }
    if cni {
        // Each pod in its own network namespace, with its veth on its
        // node's bridge.
        let netns = super::sandbox_leftovers();
        assert_eq!(
            netns.iter().filter(|n| !n.starts_with("veth")).count(),
            3,
            "{netns:?}"
        );
        assert_eq!(
            netns.iter().filter(|n| n.starts_with("veth")).count(),
            3,
            "{netns:?}"
        );
    }

    // From a pod on another node, by pod IP.
    let target = &running[0];
    let target_ip = target["status"]["podIP"].as_str().unwrap();
    let other = if target["spec"]["nodeName"] == "node-1" {
        "node-2"
    } else {
        "node-1"
    };
    let client = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {other}
  containers:
  - name: c
    image: none
    command: ["sh", "-c", "for i in $(seq 30); do curl -sS --max-time 2 http://{target_ip}:8000/ >/dev/null && echo REACHED {target_ip} && break; sleep 1; done; exec sleep 3600"]
"#
    );
    let client = k.file("client.yaml", &client);
    k.ok(&["apply", "-f", &client]);
    super::wait_for(
        Duration::from_secs(40),
        "the client pod reaching the server",
        || {
            let out = k.run(&["logs", "client"]);
            let logs = String::from_utf8_lossy(&out.stdout).into_owned();
            if logs.contains(&format!("REACHED {target_ip}")) {
                Ok(())
            } else {
                Err(format!("{logs}{}", String::from_utf8_lossy(&out.stderr)))
            }
        },
    );

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

    // kubectl exec (WebSocket, v5.channel.k8s.io): output, exit code, and
    // the pod's own network namespace.
    let ip_of_0 = running[0]["status"]["podIP"].as_str().unwrap().to_string();
    let out = k.run(&[
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo ip $POD_IP; echo oops >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ip {ip_of_0}\n")
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );
    if cni {
        let addr = k.ok(&[
            "exec", &name, "--", "ip", "-4", "-o", "addr", "show", "eth0",
        ]);
        assert!(addr.contains(&format!("inet {ip_of_0}/24")), "{addr}");
    }

    // kubectl logs -f follows what the server writes next.
    let ip0 = running[0]["status"]["podIP"].as_str().unwrap().to_string();
    let mut follow = k
        .command(&["logs", "-f", &name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    'follow: for i in 0.. {
        let _ = http_at(&ip0, &format!("/follow-me-{i}"));
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            if l.contains("/follow-me-") {
                break 'follow;
            }
            seen.push(l);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logs -f showed no new request: {seen:?}"
        );
    }
    let _ = follow.kill();
    let _ = follow.wait();
    // ... and ends by itself when the container does.
    let once = r#"apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: none
    command: ["sh", "-c", "echo one; sleep 2; echo two"]
"#;
    let f = k.file("once.yaml", once);
    k.ok(&["apply", "-f", &f]);
    super::wait_for(Duration::from_secs(30), "once running", || {
        let p: Value = serde_json::from_str(&k.ok(&["get", "pod", "once", "-o", "json"])).unwrap();
        if p["status"]["containerStatuses"][0]["state"]
            .get("running")
            .is_some()
        {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });
    let t0 = std::time::Instant::now();
    let followed = k.run(&["logs", "-f", "once"]);
    assert!(followed.status.success(), "{followed:?}");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "one\ntwo\n");
    assert!(t0.elapsed() < Duration::from_secs(15));

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
    k.ok(&["delete", "pod", "probed", "client", "once", "--wait=false"]);
    super::wait_for(Duration::from_secs(60), "no server process", || {
        let left: Vec<&i32> = pids.iter().filter(|p| alive(**p)).collect();
        if left.is_empty() && pods(&k, "app=web").is_empty() {
            Ok(())
        } else {
            Err(format!("alive: {left:?}"))
        }
    });
    // Nor a network namespace or veth, once every pod is gone.
    super::wait_for(Duration::from_secs(60), "no sandbox left", || {
        let left = super::sandbox_leftovers();
        let pods = k.ok(&["get", "pods", "-o", "name"]);
        if left.is_empty() && pods.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} {pods}"))
        }
    });
}

#[test]
fn config_maps_and_secrets_reach_containers_as_files_and_env() {
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    // A pod that needs a ConfigMap not there yet waits, saying why.
    let manifest = r#"apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: conf
    configMap:
      name: app
      items: [{key: greeting, path: greeting.txt, mode: 0600}]
  - name: creds
    secret: {secretName: creds, defaultMode: 0440}
  - name: scratch
    emptyDir: {}
  - name: info
    downwardAPI:
      items: [{path: name, fieldRef: {fieldPath: metadata.name}}]
  containers:
  - name: c
    image: none
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: app, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    volumeMounts:
    - {name: conf, mountPath: /etc/shoal-test/conf}
    - {name: creds, mountPath: /etc/shoal-test/creds}
    - {name: scratch, mountPath: /shoal-test-scratch}
    - {name: info, mountPath: /etc/shoal-test/info}
    command:
    - sh
    - -c
    - |
      echo "env $GREETING $PASSWORD"
      stat -L -c 'mode %a %n' /etc/shoal-test/conf/greeting.txt /etc/shoal-test/creds/password
      echo "pod $(cat /etc/shoal-test/info/name)"
      echo x > /shoal-test-scratch/w && echo "scratch writable"
      echo y > /etc/shoal-test/conf/new 2>/dev/null || echo "conf read-only"
      while true; do echo "file $(cat /etc/shoal-test/conf/greeting.txt)"; sleep 0.5; done
"#;
    let f = k.file("reader.yaml", manifest);
    k.ok(&["apply", "-f", &f]);
    let status = |name: &str| -> Value {
        let p: Value = serde_json::from_str(&k.ok(&["get", "pod", name, "-o", "json"])).unwrap();
        p["status"]["containerStatuses"][0].clone()
    };
    super::wait_for(
        Duration::from_secs(30),
        "reader waiting for its ConfigMap",
        || {
            let cs = status("reader");
            let msg = cs["state"]["waiting"]["message"].as_str().unwrap_or("");
            if msg.contains("configmap \"app\" not found")
                || cs["state"]["waiting"]["reason"] == "CreateContainerConfigError"
            {
                Ok(())
            } else {
                Err(cs.to_string())
            }
        },
    );
    let cm = |greeting: &str| {
        k.file(
            "app.yaml",
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata: {{greeting: {greeting}}}\n"),
        )
    };
    k.ok(&["apply", "-f", &cm("hello")]);
    let logs = || String::from_utf8_lossy(&k.run(&["logs", "reader"]).stdout).into_owned();
    super::wait_for(
        Duration::from_secs(30),
        "reader running with its files",
        || {
            let l = logs();
            if l.contains("file hello") {
                Ok(l)
            } else {
                Err(l)
            }
        },
    );
    let l = logs();
    assert!(l.contains("env hello s3cr3t"), "{l}");
    assert!(
        l.contains("mode 600 /etc/shoal-test/conf/greeting.txt"),
        "{l}"
    );
    assert!(l.contains("mode 440 /etc/shoal-test/creds/password"), "{l}");
    assert!(l.contains("pod reader"), "{l}");
    assert!(l.contains("scratch writable"), "{l}");
    assert!(l.contains("conf read-only"), "{l}");
    // The mounts are the container's own: the host sees none of them.
    assert!(!std::path::Path::new("/etc/shoal-test/conf/greeting.txt").exists());

    // An update reaches the mounted file.
    k.ok(&["apply", "-f", &cm("updated")]);
    super::wait_for(Duration::from_secs(30), "the update in the file", || {
        let l = logs();
        if l.contains("file updated") {
            Ok(())
        } else {
            Err(l)
        }
    });
    assert_eq!(status("reader")["restartCount"], 0, "updated in place");

    // An unwritable hostPath: the pod says why, the others run on.
    let bad = r#"apiVersion: v1
kind: Pod
metadata: {name: badhost}
spec:
  volumes:
  - name: h
    hostPath: {path: /proc/shoal-no-such-dir, type: DirectoryOrCreate}
  containers:
  - name: c
    image: none
    command: ["sleep", "3600"]
    volumeMounts: [{name: h, mountPath: /shoal-test-h}]
"#;
    let f = k.file("bad.yaml", bad);
    k.ok(&["apply", "-f", &f]);
    super::wait_for(
        Duration::from_secs(30),
        "the hostPath failure in the status",
        || {
            let msg = status("badhost")["state"]["waiting"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if msg.starts_with("MountVolume.SetUp failed for volume \"h\"") {
                Ok(())
            } else {
                Err(msg)
            }
        },
    );
    let before = logs().lines().filter(|l| l.starts_with("file ")).count();
    super::wait_for(Duration::from_secs(10), "reader still running", || {
        let n = logs().lines().filter(|l| l.starts_with("file ")).count();
        if n > before {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    k.ok(&["delete", "pod", "reader", "badhost", "--wait=false"]);
    super::wait_for(Duration::from_secs(60), "no sandbox left", || {
        let left = super::sandbox_leftovers();
        let pods = k.ok(&["get", "pods", "-o", "name"]);
        if left.is_empty() && pods.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} {pods}"))
        }
    });
}

#[test]
fn containers_of_a_pod_share_its_sandbox_and_bad_input_says_why() {
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: none
    command: ["python3", "-m", "http.server", "9000", "--bind", "127.0.0.1"]
    resources: {limits: {memory: 64Mi, cpu: 500m}}
  - name: client
    image: none
    command: ["sh", "-c", "for i in $(seq 30); do curl -s -o /dev/null --max-time 1 http://127.0.0.1:9000/ && echo REACHED && break; sleep 0.5; done; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: nocmd}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: none, command: ["/no/such/binary"]}
---
apiVersion: v1
kind: Pod
metadata: {name: badprobe}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: none
    command: ["sleep", "3600"]
    livenessProbe:
      httpGet: {port: nope}
      periodSeconds: 1
      failureThreshold: 1
"#;
    let f = k.file("duo.yaml", manifest);
    k.ok(&["apply", "-f", &f]);
    let get = |name: &str| -> Value {
        serde_json::from_str(&k.ok(&["get", "pod", name, "-o", "json"])).unwrap()
    };
    // localhost between the containers of one pod.
    super::wait_for(
        Duration::from_secs(40),
        "the client reaching its neighbour",
        || {
            let l = String::from_utf8_lossy(&k.run(&["logs", "duo", "-c", "client"]).stdout)
                .into_owned();
            if l.contains("REACHED") {
                Ok(())
            } else {
                Err(l)
            }
        },
    );
    if super::cni_sandboxes() {
        // One network and one IPC namespace for both, not the host's.
        let ns = |c: &str, kind: &str| {
            k.ok(&[
                "exec",
                "duo",
                "-c",
                c,
                "--",
                "readlink",
                &format!("/proc/self/ns/{kind}"),
            ])
        };
        for kind in ["net", "ipc"] {
            let (a, b) = (ns("server", kind), ns("client", kind));
            let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
            assert_eq!(a, b, "{kind}");
            assert_ne!(a.trim(), host.to_string_lossy(), "{kind} is the host's");
        }
        // The server's cgroup holds its limits.
        let pod = get("duo");
        let server = pod["status"]["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "server")
            .unwrap()
            .clone();
        let pid: u32 = server["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("process://"))
            .and_then(|p| p.parse().ok())
            .unwrap();
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let v1 = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p));
        let limit = match v1 {
            Some(path) => std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
            )),
            None => {
                let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
                std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max"))
            }
        }
        .unwrap();
        assert_eq!(limit.trim(), (64u64 << 20).to_string(), "{cgroups}");
    }
    // A command that does not exist, and a probe that cannot work: each
    // pod says why.
    super::wait_for(
        Duration::from_secs(30),
        "the reasons in the statuses",
        || {
            let nocmd = get("nocmd")["status"]["containerStatuses"][0].to_string();
            let bad = get("badprobe")["status"]["containerStatuses"][0].to_string();
            if nocmd.contains("StartError")
                && nocmd.contains("/no/such/binary")
                && bad.contains("no container port named \\\"nope\\\"")
            {
                Ok(())
            } else {
                Err(format!("{nocmd}\n{bad}"))
            }
        },
    );
    k.ok(&["delete", "pod", "duo", "nocmd", "badprobe", "--wait=false"]);
    super::wait_for(Duration::from_secs(60), "no sandbox left", || {
        let left = super::sandbox_leftovers();
        let pods = k.ok(&["get", "pods", "-o", "name"]);
        if left.is_empty() && pods.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} {pods}"))
        }
    });
}
