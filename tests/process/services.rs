//! Services that route (issue 21), end to end with kubectl 1.33 on a
//! 3-node `shoal dev` as root with pod sandboxes: the proxy's nftables
//! rules take a ClusterIP from a pod on another node to every ready
//! backend, follow scaling and readiness, answer NodePorts on every node's
//! own address, and keep `externalTrafficPolicy: Local` NodePorts to nodes
//! with a local endpoint. Without root there are no sandboxes and no
//! ClusterIP routing (the README's degraded mode): the test says SKIPPED.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kubectl::Dev;

/// Backends answer `GET /` with their pod name, and fail readiness while
/// the file `<dir>/<pod>.unready` exists.
fn backends(dir: &str) -> String {
    let server = format!(
        "import http.server,os\n\
         name=os.environ['POD_NAME']\n\
         class H(http.server.BaseHTTPRequestHandler):\n  \
           def do_GET(self):\n    \
             bad=self.path=='/ready' and os.path.exists('{dir}/'+name+'.unready')\n    \
             b=name.encode()\n    \
             self.send_response(503 if bad else 200);self.send_header('Content-Length',str(len(b)));self.end_headers();self.wfile.write(b)\n  \
           def log_message(self,*a): pass\n\
         http.server.ThreadingHTTPServer(('0.0.0.0',8000),H).serve_forever()\n"
    );
    let server = serde_json::to_string(&server).unwrap();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  replicas: 3
  selector:
    matchLabels: {{app: backend}}
  template:
    metadata:
      labels: {{app: backend}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: python:3
        command: ["python3", "-c", {server}]
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        ports: [{{name: http, containerPort: 8000}}]
        readinessProbe:
          httpGet: {{path: /ready, port: 8000}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  type: NodePort
  selector: {{app: backend}}
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: python:3
    command: ["python3", "-c", "import time\nwhile True: time.sleep(3600)"]
"#
    )
}

/// `n` GETs of `url` from the client pod; the answers counted by body
/// (failures as "error: …").
fn from_client(k: &Dev, url: &str, n: usize) -> BTreeMap<String, usize> {
    from_pod(k, "client", url, n)
}

fn from_pod(k: &Dev, pod: &str, url: &str, n: usize) -> BTreeMap<String, usize> {
    let script = format!(
        "import urllib.request,json\n\
         seen={{}}\n\
         for i in range({n}):\n  \
           try: a=urllib.request.urlopen('{url}',timeout=2).read().decode()\n  \
           except Exception as e: a='error: '+type(e).__name__\n  \
           seen[a]=seen.get(a,0)+1\n\
         print(json.dumps(seen))\n"
    );
    let out = k.ok(&["exec", pod, "--", "python3", "-c", &script]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("client said {out:?}: {e}"))
}

fn curl(url: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "2", url])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn names_of(k: &Dev, selector: &str) -> Vec<(String, String)> {
    super::kubectl_process::pods(k, selector)
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Each node's InternalIP, by node name.
pub(crate) fn internal_ips(k: &Dev) -> BTreeMap<String, String> {
    let nodes: Value = serde_json::from_str(&k.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let mut out = BTreeMap::new();
    for n in nodes["items"].as_array().unwrap() {
        let ip = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .unwrap()
            .to_string();
        out.insert(n["metadata"]["name"].as_str().unwrap().to_string(), ip);
    }
    out
}

/// Waits until `f` holds, returning how long that took.
fn timed(deadline: Duration, what: &str, f: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    super::wait_for(deadline, what, f);
    let took = start.elapsed();
    eprintln!("{what}: {took:?}");
    took
}

/// A pod `client` that idles, for `kubectl exec` to run clients in.
fn client_pod(k: &Dev) {
    k.ok(&[
        "run",
        "client",
        "--image=python:3",
        "--restart=Never",
        "--command",
        "--",
        "python3",
        "-c",
        "import time\nwhile True: time.sleep(3600)",
    ]);
}

/// A script run in the client pod, its output read line by line as it
/// comes.
struct Lines {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    fn exec(k: &Dev, script: &str) -> Lines {
        let mut child = k
            .command(&["exec", "client", "--", "python3", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        Lines { child, rx }
    }

    /// The next `n` lines; fails if they do not come within `deadline`.
    fn take(&mut self, n: usize, deadline: Duration) -> Vec<String> {
        let until = Instant::now() + deadline;
        (0..n)
            .map(|i| {
                self.rx
                    .recv_timeout(until.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|e| panic!("line {i} of {n} not within {deadline:?}: {e}"))
            })
            .collect()
    }

    /// The first line `who` accepts within `deadline`.
    fn first(&mut self, who: &dyn Fn(&str) -> bool, deadline: Duration) -> Option<String> {
        let until = Instant::now() + deadline;
        while let Ok(l) = self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if who(&l) {
                return Some(l);
            }
        }
        None
    }

    /// Waits for the script to end; the lines not read yet.
    fn finish(mut self) -> Vec<String> {
        let _ = self.child.wait();
        // The reader ends at the script's end of output.
        self.rx.iter().collect()
    }
}

#[test]
fn cluster_ips_and_node_ports_route_to_ready_endpoints() {
    if !super::cni_sandboxes() {
        eprintln!("SKIPPED: ClusterIPs are routed only with pod sandboxes (root)");
        return;
    }
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    let flags = tempfile::tempdir().unwrap();
    let flag_dir = flags.path().display().to_string();
    let manifest = k.file("backend.yaml", &backends(&flag_dir));
    k.ok(&["apply", "-f", &manifest]);
    k.ok(&["rollout", "status", "deploy/backend", "--timeout=90s"]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=60s",
    ]);

    // Each node publishes an address of its own (its bridge gateway).
    let addresses = internal_ips(&k);
    for ip in addresses.values() {
        assert!(ip.starts_with("10.88.") && ip.ends_with(".1"), "{ip}");
    }
    let distinct: std::collections::BTreeSet<_> = addresses.values().collect();
    assert_eq!(distinct.len(), 3, "{addresses:?}");

    let svc: Value = serde_json::from_str(&k.ok(&["get", "svc", "backend", "-o", "json"])).unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let url = format!("http://{cluster_ip}/");

    // From the client on node-1, 30 requests reach all three backends
    // (on every node, node-1's own included).
    let all: Vec<String> = names_of(&k, "app=backend")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(all.len(), 3);
    timed(
        Duration::from_secs(30),
        "all three backends answer the ClusterIP",
        || {
            let seen = from_client(&k, &url, 30);
            if all.iter().all(|n| seen.contains_key(n)) && seen.len() == 3 {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );

    // An address of the Service range that no Service holds: refused on
    // the node at once (kube-proxy drops it), from a pod and from the
    // host, instead of following the default route off the machine.
    let unallocated = "10.111.255.254";
    let probe = format!(
        "import socket,time\nt=time.time()\ntry:\n  socket.create_connection(('{unallocated}',80),timeout=5);print('connected')\nexcept OSError as e: print(type(e).__name__, round(time.time()-t,2))"
    );
    let out = k.ok(&["exec", "client", "--", "python3", "-c", &probe]);
    assert!(
        out.starts_with("ConnectionRefusedError"),
        "from a pod: {out}"
    );
    let err = curl(&format!("http://{unallocated}/")).expect_err("nothing answers");
    // curl's 7 is "couldn't connect" (refused), not a timeout (28).
    assert!(err.contains("(7)"), "from the host: {err}");

    // A backend reaches itself through its own Service (hairpin: the
    // bridge sends the packet back out of the port it came in by, and the
    // source is masqueraded so the answer returns the same way).
    let me = &all[1];
    let seen = from_pod(&k, me, &url, 30);
    assert!(seen.contains_key(me), "{me} never reached itself: {seen:?}");
    assert!(!seen.keys().any(|a| a.starts_with("error")), "{seen:?}");

    // NodePort on every node's address, from the host.
    for ip in addresses.values() {
        let body = curl(&format!("http://{ip}:{node_port}/"))
            .unwrap_or_else(|e| panic!("NodePort on {ip}: {e}"));
        assert!(all.contains(&body), "{ip}: {body}");
    }

    // A pod failing readiness gets no traffic.
    let sick = &all[0];
    std::fs::write(flags.path().join(format!("{sick}.unready")), b"").unwrap();
    timed(
        Duration::from_secs(30),
        "the unready backend leaves the rotation",
        || {
            let seen = from_client(&k, &url, 30);
            if !seen.contains_key(sick) && seen.len() == 2 {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );
    std::fs::remove_file(flags.path().join(format!("{sick}.unready"))).unwrap();

    // Scaling to 1 and back to 3 is live (bounds: 5-10x the medians in
    // docs/BENCHMARKS.md).
    k.ok(&["scale", "deploy/backend", "--replicas=1"]);
    let down = timed(
        Duration::from_secs(40),
        "scaled to 1: one backend answers",
        || {
            let left = names_of(&k, "app=backend");
            let seen = from_client(&k, &url, 20);
            match (&left[..], seen.len()) {
                ([(one, _)], 1) if seen.contains_key(one) => Ok(()),
                _ => Err(format!("pods {left:?}, answers {seen:?}")),
            }
        },
    );
    k.ok(&["scale", "deploy/backend", "--replicas=3"]);
    let up = timed(
        Duration::from_secs(40),
        "scaled to 3: three backends answer",
        || {
            let seen = from_client(&k, &url, 30);
            if seen.len() == 3 && seen.keys().all(|n| !n.starts_with("error")) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );
    assert!(
        down < Duration::from_secs(20) && up < Duration::from_secs(30),
        "down {down:?}, up {up:?}"
    );

    // externalTrafficPolicy: Local answers only where an endpoint is local.
    k.ok(&[
        "create",
        "deployment",
        "solo",
        "--image=python:3",
        "--",
        "python3",
        "-m",
        "http.server",
        "8001",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "solo",
        "--type=NodePort",
        "--port=80",
        "--target-port=8001",
        "--overrides",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    k.ok(&["rollout", "status", "deploy/solo", "--timeout=60s"]);
    let solo: Value = serde_json::from_str(&k.ok(&["get", "svc", "solo", "-o", "json"])).unwrap();
    let solo_port = solo["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let [(_, home)] = &names_of(&k, "app=solo")[..] else {
        panic!("one solo pod");
    };
    super::wait_for(
        Duration::from_secs(30),
        "the Local NodePort answers on its node only",
        || {
            for (node, ip) in &addresses {
                let r = curl(&format!("http://{ip}:{solo_port}/"));
                if (node == home) != r.is_ok() {
                    return Err(format!("{node} ({ip}): {r:?}"));
                }
            }
            Ok(())
        },
    );
}

const ROLLING: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 3
  strategy:
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  selector:
    matchLabels: {app: roll}
  template:
    metadata:
      labels: {app: roll}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: http
        image: python:3
        command: ["python3", "-m", "http.server", "8000"]
        ports: [{name: http, containerPort: 8000}]
        readinessProbe:
          tcpSocket: {port: 8000}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {command: ["sleep", "2"]}
---
apiVersion: v1
kind: Service
metadata:
  name: roll
spec:
  selector: {app: roll}
  ports: [{port: 80, targetPort: http}]
"#;

/// A client opening a new connection per request at 20 requests/s sees
/// no failure while the backends roll (readiness plus a preStop delay, the
/// usual pattern: a stopping pod leaves the rules before it stops
/// listening).
#[test]
fn a_rolling_update_loses_no_request() {
    if !super::cni_sandboxes() {
        eprintln!("SKIPPED: ClusterIPs are routed only with pod sandboxes (root)");
        return;
    }
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    let manifest = k.file("roll.yaml", ROLLING);
    k.ok(&["apply", "-f", &manifest]);
    client_pod(&k);
    k.ok(&["rollout", "status", "deploy/roll", "--timeout=90s"]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=60s",
    ]);
    // The client prints a line per request ("ok", or what failed) until
    // the test's marker file appears.
    let marker = format!("/tmp/shoal-roll-done-{}", std::process::id());
    let script = format!(
        "import urllib.request,time,os\n\
         while not os.path.exists('{marker}'):\n  \
           t=time.time()\n  \
           try: urllib.request.urlopen('http://roll/',timeout=2).read(); print('ok',flush=True)\n  \
           except Exception as e: print('bad',repr(e),flush=True)\n  \
           time.sleep(max(0,0.05-(time.time()-t)))\n"
    );
    let mut client = Lines::exec(&k, &script);
    // Requests before the roll, the roll, requests after it.
    let mut seen = client.take(20, Duration::from_secs(30));
    k.ok(&["set", "env", "deploy/roll", "ROLL=2"]);
    k.ok(&["rollout", "status", "deploy/roll", "--timeout=120s"]);
    seen.extend(client.take(20, Duration::from_secs(30)));
    std::fs::write(&marker, b"").unwrap();
    seen.extend(client.finish());
    let _ = std::fs::remove_file(&marker);
    let ok = seen.iter().filter(|l| *l == "ok").count();
    let bad: Vec<&String> = seen.iter().filter(|l| *l != "ok").collect();
    eprintln!(
        "rolling update: {ok} requests answered, {} failed",
        bad.len()
    );
    assert!(ok >= 40, "too few requests to tell: {seen:?}");
    assert!(
        bad.is_empty(),
        "{} of {} requests failed: {bad:?}",
        bad.len(),
        seen.len()
    );
    // Every pod is new.
    let pods = super::kubectl_process::pods(&k, "app=roll");
    let env_of = |p: &Value| {
        p.pointer("/spec/containers/0/env/0/value")
            .and_then(Value::as_str)
            .map(String::from)
    };
    assert!(
        pods.iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .all(|p| env_of(p).as_deref() == Some("2")),
        "{pods:?}"
    );
}

const UDP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 1
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: udp
        image: python:3
        command: ["python3", "-c", "import socket,os\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5353))\nn=os.environ['POD_NAME'].encode()\nwhile True:\n  d,a=s.recvfrom(512)\n  s.sendto(n,a)\n"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        readinessProbe:
          exec: {command: ["true"]}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{port: 53, targetPort: 5353, protocol: UDP}]
"#;

/// UDP has no connection to end: a client that keeps sending from one
/// port keeps its conntrack entry (and so its old endpoint) alive. When
/// the endpoint goes, the proxy deletes those entries, so the client's
/// next datagrams reach the new one.
#[test]
fn udp_flows_move_when_their_endpoint_goes() {
    if !super::cni_sandboxes() {
        eprintln!("SKIPPED: ClusterIPs are routed only with pod sandboxes (root)");
        return;
    }
    let Some(k) = Dev::start_with(2, "process") else {
        return;
    };
    let manifest = k.file("echo.yaml", UDP);
    k.ok(&["apply", "-f", &manifest]);
    client_pod(&k);
    k.ok(&["rollout", "status", "deploy/echo", "--timeout=90s"]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=60s",
    ]);
    let svc: Value = serde_json::from_str(&k.ok(&["get", "svc", "echo", "-o", "json"])).unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let [(first, _)] = &names_of(&k, "app=echo")[..] else {
        panic!("one echo pod");
    };
    // One socket, one source port, a datagram every 100 ms, each answer
    // printed as it comes, until the test's marker file appears.
    let marker = format!("/tmp/shoal-udp-done-{}", std::process::id());
    let script = format!(
        "import socket,os,sys\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0',40053))\n\
         s.settimeout(0.1)\n\
         while not os.path.exists('{marker}'):\n  \
           s.sendto(b'hi',('{ip}',53))\n  \
           try: print(s.recv(512).decode(),flush=True)\n  \
           except socket.timeout: pass\n"
    );
    let mut client = Lines::exec(&k, &script);
    let mut answered_by = |who: &dyn Fn(&str) -> bool, within: Duration| client.first(who, within);
    assert!(
        answered_by(&|l| l == first, Duration::from_secs(20)).is_some(),
        "the first endpoint never answered"
    );
    // The endpoint goes; its replacement must answer the same flow well
    // within UDP's conntrack timeout (30 s, renewed by every datagram).
    k.ok(&["delete", "pod", first, "--wait=false"]);
    let moved = answered_by(&|l| !l.is_empty() && l != first, Duration::from_secs(20));
    std::fs::write(&marker, b"").unwrap();
    client.finish();
    let _ = std::fs::remove_file(&marker);
    assert!(
        moved.is_some(),
        "the flow stayed with the gone endpoint {first}"
    );
}
