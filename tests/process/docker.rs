//! The docker runtime through kubectl 1.33 on `shoal dev --runtime docker`
//! (root, the CNI plugins and this machine's Docker Engine; the images
//! come from scripts/images.sh, nothing is pulled): a Deployment of an
//! image with no command runs the image's CMD and becomes Ready; `kubectl
//! exec` (output, stdin, exit code) goes through the engine; a pod on
//! the other node reaches both pods by IP and their Service by its DNS
//! name; deleting everything leaves no engine container, network
//! namespace or veth behind. On `shoal dev` with the process default,
//! pods of the `docker` and `process` RuntimeClasses run side by side on
//! one node, and the engine's socket going away (a relay in front of it)
//! marks the node, keeps new docker pods off it, and heals. A claim of
//! the default class is mounted into engine containers and outlives them.

use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;
use super::kubectl_process::pods;

/// The engine containers of the pod with `uid` (any state).
pub(super) fn containers_of(uid: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=io.kubernetes.pod.uid={uid}"))
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_image_deployment_runs_its_cmd_and_is_reached_by_ip_and_service_name() {
    if !super::cni_sandboxes() {
        eprintln!("SKIPPED: the docker runtime needs root and the CNI plugins");
        return;
    }
    let Some(k) = Dev::start_with(2, "docker") else {
        return;
    };
    // No command: busybox httpd, the image's CMD, serves on 8080.
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=shoal-test/web:1",
        "--replicas=2",
    ]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let web = pods(&k, "app=web");
    assert_eq!(web.len(), 2);
    let mut uids = Vec::new();
    let mut ips = Vec::new();
    for p in &web {
        let id = p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap_or_default();
        assert!(id.starts_with("docker://"), "{id}");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        uids.push(p["metadata"]["uid"].as_str().unwrap().to_string());
        ips.push(p["status"]["podIP"].as_str().unwrap().to_string());
        // The pod's containers: its pause and its app container.
        assert_eq!(containers_of(uids.last().unwrap()).len(), 2);
    }
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);

    // kubectl exec through the engine: output, stdin, the exit code.
    let first = web[0]["metadata"]["name"].as_str().unwrap();
    let page = k.ok(&["exec", first, "--", "cat", "/www/index.html"]);
    assert_eq!(page.trim(), "shoal-test web");
    let mut upper = k
        .command(&["exec", "-i", first, "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = upper.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").unwrap();
    } // closed: tr sees the end of its input
    let out = upper.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "THROUGH STDIN");
    let exit = k.run(&["exec", first, "--", "sh", "-c", "exit 3"]);
    assert_eq!(exit.status.code(), Some(3), "{exit:?}");

    // A pod on node-2 fetches both pods by IP (whichever nodes they are
    // on) and the Service by name through the cluster DNS.
    let script = format!(
        "wget -q -O- http://web.default.svc.cluster.local/ && wget -q -O- http://{}:8080/ && wget -q -O- http://{}:8080/",
        ips[0], ips[1]
    );
    let overrides = r#"{"spec": {"nodeName": "node-2"}}"#;
    k.ok(&[
        "run",
        "probe",
        "--image=shoal-test/busybox:1",
        "--restart=Never",
        "--overrides",
        overrides,
        "--command",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    super::wait_for(Duration::from_secs(90), "the probe pod to finish", || {
        let p: Value = serde_json::from_str(&k.ok(&["get", "pod", "probe", "-o", "json"])).unwrap();
        match p["status"]["phase"].as_str() {
            Some("Succeeded") => Ok(()),
            Some("Failed") => panic!("the probe failed: {}", k.ok(&["logs", "probe"])),
            other => Err(format!("phase {other:?}")),
        }
    });
    let logs = k.ok(&["logs", "probe"]);
    assert_eq!(logs.matches("shoal-test web").count(), 3, "{logs}");
    // Followed, the logs of an ended container are all there, then end.
    let followed = k.ok(&["logs", "-f", "probe"]);
    assert_eq!(followed, logs);
    let probe: Value = serde_json::from_str(&k.ok(&["get", "pod", "probe", "-o", "json"])).unwrap();
    uids.push(probe["metadata"]["uid"].as_str().unwrap().to_string());

    // A private registry (scripts/registry.sh: basic auth on 127.0.0.1):
    // an Always pull with the pod's imagePullSecrets, Pulling and Pulled
    // Events; without the secret the pull is refused; a registry that does
    // not answer gives ErrImagePull, then ImagePullBackOff.
    uids.extend(private_registry_pulls(&k));
    // Upstream's reasons for images that cannot be had, and OOMKilled.
    uids.extend(failures_as_upstream(&k));
    // A claim of the default class mounted into engine containers.
    uids.extend(claim_outlives_its_pods(&k));

    // Deleting the pods leaves nothing of them on the engine or the host.
    k.ok(&["delete", "deployment", "web"]);
    k.ok(&["delete", "pod", "probe"]);
    super::wait_for(
        Duration::from_secs(60),
        "the pods' containers to go",
        || {
            let left: Vec<String> = uids.iter().flat_map(|u| containers_of(u)).collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("containers left: {left:?}"))
            }
        },
    );
    super::wait_for(Duration::from_secs(30), "the pods' sandboxes to go", || {
        let left: Vec<String> = super::sandbox_leftovers()
            .into_iter()
            .filter(|n| uids.iter().any(|u| n.ends_with(u.as_str())) || n.starts_with("veth"))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?}"))
        }
    });
}

const CLAIMED: &str = r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000}
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
  containers:
  - name: c
    image: shoal-test/busybox:1
    command: ["sh", "-c", "echo kept > /data/f"]
    volumeMounts: [{name: data, mountPath: /data}]
"#;

/// A claim of the default class (`shoal-local`) mounted into a docker
/// pod: a non-root container writes to it, a second pod reads what the
/// first wrote, the file is in the volume's directory on the host, and
/// deleting the claim removes the directory. Returns the pods' uids.
fn claim_outlives_its_pods(k: &Dev) -> Vec<String> {
    let claimed = k.file("claimed.yaml", CLAIMED);
    k.ok(&["apply", "-f", &claimed]);
    let done = |name: &str| {
        super::wait_for(Duration::from_secs(90), &format!("{name} done"), || {
            let p = pod_json(k, name);
            match p["status"]["phase"].as_str() {
                Some("Succeeded") => Ok(p),
                Some("Failed") => panic!("{name} failed: {}", p["status"]),
                _ => Err(format!("status {}", p["status"])),
            }
        })
    };
    let writer = done("writer");
    let reader = CLAIMED
        .split("---")
        .nth(1)
        .unwrap()
        .replace("name: writer", "name: reader")
        .replace("echo kept > /data/f", "cat /data/f");
    let reader_file = k.file("reader.yaml", &reader);
    k.ok(&["apply", "-f", &reader_file]);
    let reader = done("reader");
    assert_eq!(k.ok(&["logs", "reader"]).trim(), "kept");
    let pv = k.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let pv: Value = serde_json::from_str(&k.ok(&["get", "pv", &pv, "-o", "json"])).unwrap();
    let dir = pv["spec"]["local"]["path"]
        .as_str()
        .or(pv["spec"]["hostPath"]["path"].as_str())
        .unwrap_or_else(|| panic!("the volume's directory: {pv}"))
        .to_string();
    let on_host = std::fs::read_to_string(std::path::Path::new(&dir).join("f")).unwrap();
    assert_eq!(on_host.trim(), "kept", "in {dir}");
    k.ok(&["delete", "pod", "writer", "reader"]);
    k.ok(&["delete", "pvc", "data"]);
    super::wait_for(
        Duration::from_secs(60),
        "the volume's directory to go",
        || {
            if std::path::Path::new(&dir).exists() {
                Err(format!("{dir} is still there"))
            } else {
                Ok(())
            }
        },
    );
    [writer, reader]
        .iter()
        .map(|p| {
            p["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The local registry scripts/registry.sh runs (address, user, password).
fn registry() -> (String, String, String) {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let addr = format!("127.0.0.1:{}", var("SHOAL_REGISTRY_PORT", "5055"));
    let up = std::net::TcpStream::connect(&addr).is_ok();
    assert!(
        up,
        "no registry at {addr}: run ./scripts/registry.sh (scripts/test.sh does)"
    );
    (
        addr,
        var("SHOAL_REGISTRY_USER", "shoal"),
        var("SHOAL_REGISTRY_PASSWORD", "shoal-test"),
    )
}

/// The reasons of the Events about pod `name`, in order.
fn event_reasons(k: &Dev, name: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name}");
    let list: Value = serde_json::from_str(&k.ok(&[
        "get",
        "events",
        "--field-selector",
        &selector,
        "--sort-by=.firstTimestamp",
        "-o",
        "json",
    ]))
    .unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The first container's waiting reason of pod `name`.
fn waiting_reason(k: &Dev, name: &str) -> String {
    let p = pod_json(k, name);
    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Images that cannot be had and a container over its memory limit, as
/// upstream shows them, and two containers of a pod talking over
/// localhost; returns the uids of the pods made.
fn failures_as_upstream(k: &Dev) -> Vec<String> {
    let manifest = k.file(
        "failures.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  containers: [{name: c, image: "shoal-test/absent:1", imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: badname}
spec:
  containers: [{name: c, image: "Not//Valid:tag"}]
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  containers:
  - name: c
    image: "shoal-test/busybox:1"
    command: ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived"]
    resources: {limits: {memory: 24Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  restartPolicy: Never
  containers:
  - {name: web, image: "shoal-test/web:1"}
  - name: client
    image: "shoal-test/busybox:1"
    command: ["sh", "-c", "until wget -q -O- http://127.0.0.1:8080/; do sleep 0.5; done"]
"#,
    );
    k.ok(&["apply", "-f", &manifest]);
    for (pod, reason) in [
        ("never", "ErrImageNeverPull"),
        ("badname", "InvalidImageName"),
    ] {
        super::wait_for(Duration::from_secs(60), &format!("{pod} {reason}"), || {
            match waiting_reason(k, pod).as_str() {
                r if r == reason => Ok(()),
                other => Err(format!("waiting {other:?}")),
            }
        });
    }
    super::wait_for(
        Duration::from_secs(90),
        "hog OOMKilled and restarted",
        || {
            let p = pod_json(k, "hog");
            let c = &p["status"]["containerStatuses"][0];
            let oom = c["lastState"]["terminated"]["reason"] == "OOMKilled";
            if oom && c["restartCount"].as_i64().unwrap_or(0) >= 1 {
                Ok(())
            } else {
                Err(format!("{c}"))
            }
        },
    );
    // Two containers of one pod talk over localhost.
    super::wait_for(Duration::from_secs(60), "duo's client done", || {
        let p = pod_json(k, "duo");
        match p["status"]["containerStatuses"][1]["state"]["terminated"]["exitCode"].as_i64() {
            Some(0) => Ok(()),
            other => Err(format!("client's exit {other:?}: {}", p["status"])),
        }
    });
    let said = k.ok(&["logs", "duo", "-c", "client"]);
    assert!(said.contains("shoal-test web"), "{said}");
    let uids = ["never", "badname", "hog", "duo"]
        .iter()
        .map(|n| {
            pod_json(k, n)["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    k.ok(&["delete", "pod", "never", "badname", "hog", "duo"]);
    uids
}

/// Pulls through the private registry; returns the uids of the pods made.
fn private_registry_pulls(k: &Dev) -> Vec<String> {
    let (addr, user, password) = registry();
    k.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={addr}"),
        &format!("--docker-username={user}"),
        &format!("--docker-password={password}"),
    ]);
    let image = format!("{addr}/shoal-test/web:1");
    let pod = |name: &str, image: &str, secret: bool| {
        let secrets = if secret {
            r#"[{"name": "regcred"}]"#
        } else {
            "[]"
        };
        format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
                "spec": {{"imagePullSecrets": {secrets}, "containers": [{{"name": "web",
                "image": "{image}", "imagePullPolicy": "Always"}}]}}}}"#
        )
    };
    let closed = {
        // A port nothing listens on: bound, then let go.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let files = [
        k.file("private.json", &pod("private", &image, true)),
        k.file("no-secret.json", &pod("no-secret", &image, false)),
        k.file(
            "nowhere.json",
            &pod("nowhere", &format!("127.0.0.1:{closed}/x:1"), true),
        ),
    ];
    for f in &files {
        k.ok(&["apply", "-f", f]);
    }
    wait_running(k, "private");
    super::wait_for(Duration::from_secs(30), "Pulling and Pulled Events", || {
        let reasons = event_reasons(k, "private");
        let pulling = reasons
            .iter()
            .any(|r| r.starts_with("Pulling") && r.contains(&image));
        let pulled = reasons
            .iter()
            .any(|r| r.starts_with("Pulled Successfully pulled"));
        let started = reasons.iter().any(|r| r.starts_with("Started"));
        if pulling && pulled && started {
            Ok(())
        } else {
            Err(format!("events {reasons:?}"))
        }
    });
    super::wait_for(
        Duration::from_secs(60),
        "the pull without a secret to fail",
        || match waiting_reason(k, "no-secret").as_str() {
            "ErrImagePull" | "ImagePullBackOff" => Ok(()),
            other => Err(format!("waiting {other:?}")),
        },
    );
    let failed = event_reasons(k, "no-secret");
    assert!(
        failed
            .iter()
            .any(|r| r.starts_with("Failed Failed to pull image")),
        "{failed:?}"
    );
    super::wait_for(
        Duration::from_secs(60),
        "ImagePullBackOff",
        || match waiting_reason(k, "nowhere").as_str() {
            "ImagePullBackOff" => Ok(()),
            other => Err(format!("waiting {other:?}")),
        },
    );
    let back_off = event_reasons(k, "nowhere");
    assert!(
        back_off
            .iter()
            .any(|r| r.starts_with("BackOff Back-off pulling")),
        "{back_off:?}"
    );
    // The other pods run on.
    assert_eq!(pod_json(k, "private")["status"]["phase"], "Running");
    let uids = ["private", "no-secret", "nowhere"]
        .iter()
        .map(|n| {
            pod_json(k, n)["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    k.ok(&["delete", "pod", "private", "no-secret", "nowhere"]);
    uids
}

/// The Node's `runtime.shoal.io/docker` label and its
/// ContainerRuntimeUnhealthy condition (status, message).
fn docker_on_node(k: &Dev, node: &str) -> (bool, String, String) {
    let out = k.run(&["get", "node", node, "-o", "json"]);
    let n: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let labelled = n["metadata"]["labels"]["runtime.shoal.io/docker"] == "true";
    let cond = n["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "ContainerRuntimeUnhealthy"))
        .cloned()
        .unwrap_or_default();
    let text = |f: &str| cond[f].as_str().unwrap_or_default().to_string();
    (labelled, text("status"), text("message"))
}

fn pod_json(k: &Dev, name: &str) -> Value {
    serde_json::from_str(&k.ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

fn wait_running(k: &Dev, name: &str) -> Value {
    super::wait_for(
        Duration::from_secs(90),
        &format!("pod {name} running"),
        || {
            let p = pod_json(k, name);
            let ready = p["status"]["containerStatuses"][0]["ready"] == true;
            if p["status"]["phase"] == "Running" && ready {
                Ok(p)
            } else {
                Err(format!("status {}", p["status"]))
            }
        },
    )
}

#[test]
fn runtime_classes_choose_the_runtime_and_an_engine_outage_marks_the_node() {
    use shoal_fabric::testing::UnixRelay;
    if !super::cni_sandboxes() {
        eprintln!("SKIPPED: the docker runtime needs root and the CNI plugins");
        return;
    }
    // The node reaches the engine through a relay the test takes away.
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("docker.sock");
    let real = std::path::Path::new("/var/run/docker.sock");
    let mut relay = UnixRelay::start(&socket, real).unwrap();
    let env = [("SHOAL_KUBELET_DOCKER_SOCKET", socket.to_str().unwrap())];
    // The process runtime is the default; docker is offered beside it.
    let Some(k) = Dev::start_with_env(1, "process", &env) else {
        return;
    };
    let classes = k.ok(&["get", "runtimeclass"]);
    for class in ["docker", "process"] {
        let row = classes
            .lines()
            .find(|l| l.starts_with(class))
            .unwrap_or_else(|| panic!("no RuntimeClass {class}: {classes}"));
        assert_eq!(row.split_whitespace().nth(1), Some(class), "{classes}");
    }
    super::wait_for(
        Duration::from_secs(60),
        "node-1 to offer docker",
        || match docker_on_node(&k, "node-1") {
            (true, s, _) if s == "False" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Pods of both runtimes side by side on the one node.
    let manifest = k.file(
        "pods.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: in-docker}
spec:
  runtimeClassName: docker
  containers: [{name: web, image: "shoal-test/web:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: in-process}
spec:
  runtimeClassName: process
  containers: [{name: main, image: none, command: [sleep, "3600"]}]
"#,
    );
    k.ok(&["apply", "-f", &manifest]);
    let docker_pod = wait_running(&k, "in-docker");
    let process_pod = wait_running(&k, "in-process");
    let id = |p: &Value| {
        p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let docker_id = id(&docker_pod);
    assert!(docker_id.starts_with("docker://"), "{docker_id}");
    assert!(!id(&process_pod).starts_with("docker://"), "{process_pod}");
    assert_eq!(docker_pod["spec"]["nodeName"], "node-1");
    assert_eq!(process_pod["spec"]["nodeName"], "node-1");
    // The node lists its images (status.images).
    let node: Value =
        serde_json::from_str(&k.ok(&["get", "node", "node-1", "-o", "json"])).unwrap();
    let images = node["status"]["images"].to_string();
    assert!(images.contains("shoal-test/web:1"), "{images}");
    // The class's scheduling was merged into the pod (RuntimeClass admission).
    assert_eq!(
        docker_pod["spec"]["nodeSelector"]["runtime.shoal.io/docker"],
        "true"
    );
    // A class that does not exist is refused at admission.
    let refused = k.fails(&[
        "run",
        "nope",
        "--image=shoal-test/busybox:1",
        "--overrides",
        r#"{"spec": {"runtimeClassName": "nope"}}"#,
    ]);
    assert!(
        refused.contains("RuntimeClass \"nope\" not found"),
        "{refused}"
    );

    // The engine's socket goes: the node says so and loses its label,
    // a new docker pod is not scheduled, and the node serves on.
    relay.stop();
    super::wait_for(
        Duration::from_secs(30),
        "node-1 to be marked",
        || match docker_on_node(&k, "node-1") {
            (false, s, m) if s == "True" && m.contains("docker.sock") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    k.ok(&[
        "run",
        "later",
        "--image=shoal-test/busybox:1",
        "--overrides",
        r#"{"spec": {"runtimeClassName": "docker"}}"#,
        "--command",
        "--",
        "sleep",
        "3600",
    ]);
    k.ok(&[
        "run",
        "meanwhile",
        "--image=none",
        "--overrides",
        r#"{"spec": {"runtimeClassName": "process"}}"#,
        "--command",
        "--",
        "sleep",
        "3600",
    ]);
    wait_running(&k, "meanwhile");
    super::wait_for(Duration::from_secs(30), "later to be unschedulable", || {
        let p = pod_json(&k, "later");
        let cond = p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .unwrap_or_default();
        let msg = cond["message"].as_str().unwrap_or_default();
        if cond["status"] == "False" && msg.contains("node affinity/selector") {
            Ok(())
        } else {
            Err(format!("{cond}"))
        }
    });

    // It comes back: the label and condition recover, the waiting pod
    // runs, and the docker pod that ran through it was never restarted.
    relay = UnixRelay::start(&socket, real).unwrap();
    super::wait_for(
        Duration::from_secs(30),
        "node-1 to recover",
        || match docker_on_node(&k, "node-1") {
            (true, s, _) if s == "False" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let later = wait_running(&k, "later");
    assert!(id(&later).starts_with("docker://"), "{later}");
    let docker_pod = pod_json(&k, "in-docker");
    assert_eq!(id(&docker_pod), docker_id);
    assert_eq!(
        docker_pod["status"]["containerStatuses"][0]["restartCount"],
        0
    );

    let uids: Vec<String> = ["in-docker", "later"]
        .iter()
        .map(|n| {
            pod_json(&k, n)["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    k.ok(&[
        "delete",
        "pod",
        "in-docker",
        "in-process",
        "later",
        "meanwhile",
    ]);
    super::wait_for(
        Duration::from_secs(60),
        "the docker pods' containers to go",
        || {
            let left: Vec<String> = uids.iter().flat_map(|u| containers_of(u)).collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("containers left: {left:?}"))
            }
        },
    );
    drop(k);
    drop(relay);
}
