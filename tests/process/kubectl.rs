//! The real kubectl 1.33 (installed by scripts/kubectl.sh into .tools/,
//! passed as SHOAL_KUBECTL) against a 3-node `shoal dev` cluster: apply,
//! get in every output form, watch, describe, scale, label, annotate,
//! imperative creates, edit and delete, asserting what kubectl prints.
//! Without SHOAL_KUBECTL the tests say they did not run.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `shoal dev` cluster and a kubectl pointed at it.
pub(crate) struct Dev {
    kubectl: String,
    dir: PathBuf,
    child: Child,
    _tmp: tempfile::TempDir,
    /// Held while pods may have CNI sandboxes (after the cluster stops).
    _cni: Option<std::sync::MutexGuard<'static, ()>>,
}

impl Dev {
    fn start(nodes: usize) -> Option<Dev> {
        Self::start_with(nodes, "sim")
    }

    /// `start` with the nodes' pod runtime (`sim` or `process`).
    pub(crate) fn start_with(nodes: usize, runtime: &str) -> Option<Dev> {
        Self::start_with_env(nodes, runtime, &[])
    }

    /// `start_with`, the agents getting `env` too (`SHOAL_*` overrides).
    pub(crate) fn start_with_env(nodes: usize, runtime: &str, env: &[(&str, &str)]) -> Option<Dev> {
        let Ok(kubectl) = std::env::var("SHOAL_KUBECTL") else {
            eprintln!("SKIPPED: SHOAL_KUBECTL is not set (scripts/test.sh installs kubectl)");
            return None;
        };
        let cni = (runtime != "sim").then(super::cni_lock);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        let mut child = super::shoal()
            .envs(env.iter().copied())
            .args([
                "dev",
                "--runtime",
                runtime,
                "--nodes",
                &nodes.to_string(),
                "--data-dir",
            ])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l == "READY" => break,
                Ok(_) => {}
                Err(e) => panic!("shoal dev did not print READY: {e}"),
            }
        }
        let dev = Dev {
            kubectl,
            dir,
            child,
            _tmp: tmp,
            _cni: cni,
        };
        // The system namespaces appear once the store has a leader.
        super::wait_for(Duration::from_secs(30), "namespace default", || {
            let out = dev.run(&["get", "ns", "default", "-o", "name"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        });
        Some(dev)
    }

    /// The kubectl binary.
    pub(crate) fn kubectl(&self) -> &str {
        &self.kubectl
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", self.dir.parent().unwrap_or(Path::new("/tmp")));
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs kubectl, which must succeed; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, which must fail; returns stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub(crate) fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// The cluster's directory (node-K.toml, node-K.pid, kubeconfig).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn pid(&self, node: usize) -> i32 {
        let p = self.dir.join(format!("node-{node}.pid"));
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: a libc call with integer arguments only.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// The cells of the row whose first cell is `name`, split on runs of
/// spaces (header cells such as "NOMINATED NODE" hold one space).
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

fn header(table: &str) -> Vec<&str> {
    row(table, table.split_whitespace().next().unwrap_or(""))
}

const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
";

/// `kubectl version` shows the server's version and `kubectl
/// api-versions` every group.
#[test]
fn a_real_kubectl_connects() {
    let Some(k) = Dev::start(1) else { return };
    let v: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
    let git = v["serverVersion"]["gitVersion"].as_str().unwrap_or("");
    assert!(git.starts_with("v1.33.0+shoal-"), "{v}");
    let versions = k.ok(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "networking.k8s.io/v1",
        "coordination.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing: {versions}"
        );
    }
    let resources = k.ok(&["api-resources", "--api-group=apps"]);
    let deploy = row(&resources, "deployments");
    assert_eq!(
        deploy[1..],
        ["deploy", "apps/v1", "true", "Deployment"],
        "{resources}"
    );
}

#[test]
fn kubectl_apply_get_describe_scale_edit_delete() {
    let Some(k) = Dev::start(3) else { return };
    // apply: create, unchanged, then an image change patched by SMP.
    let app = k.file("app.yaml", APP);
    let out = k.ok(&["apply", "-f", &app]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["deployment.apps/web created", "service/web created"]
    );
    let out = k.ok(&["apply", "-f", &app]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["deployment.apps/web unchanged", "service/web unchanged"]
    );
    let v2 = k.file("app2.yaml", &APP.replace("nginx:1.14.2", "nginx:1.16.1"));
    let out = k.ok(&["apply", "-f", &v2]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let jp = "-o=jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}";
    assert_eq!(k.ok(&["get", "deploy", "web", jp]), "nginx:1.16.1 80 2");
    // Flow-style YAML.
    let flow = k.file(
        "flow.yaml",
        "{apiVersion: v1, kind: ConfigMap, metadata: {name: flow}, data: {a: '1'}}\n",
    );
    assert_eq!(
        k.ok(&["apply", "-f", &flow]).trim(),
        "configmap/flow created"
    );

    // get, in every form (once the controllers have rolled it out).
    k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let wide = k.ok(&["get", "deploy", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let r = row(&wide, "web");
    assert_eq!(
        (r[1], r[5], r[6], r[7]),
        ("2/2", "nginx", "nginx:1.16.1", "app=web"),
        "{wide}"
    );
    let svc = k.ok(&["get", "svc", "web"]);
    assert_eq!(
        header(&svc),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let r = row(&svc, "web");
    assert_eq!(
        (r[1], r[3], r[4]),
        ("ClusterIP", "<none>", "80/TCP"),
        "{svc}"
    );
    assert!(
        r[2].starts_with("10."),
        "a cluster IP from 10.96.0.0/12: {svc}"
    );
    let yaml = k.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("imagePullPolicy: IfNotPresent"),
        "defaults are shown: {yaml}"
    );
    assert!(yaml.contains("resourceVersion: \""), "{yaml}");
    let json: Value = serde_json::from_str(&k.ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(json["spec"]["replicas"], 2);
    assert_eq!(
        k.ok(&["get", "deploy", "-o", "name"]).trim(),
        "deployment.apps/web"
    );
    let labels = k.ok(&["get", "deploy", "--show-labels"]);
    assert_eq!(header(&labels).last(), Some(&"LABELS"));
    assert_eq!(row(&labels, "web").last(), Some(&"app=web"));
    let all_ns = k.ok(&["get", "svc", "-A"]);
    assert_eq!(header(&all_ns)[0], "NAMESPACE");
    assert!(
        all_ns
            .lines()
            .any(|l| l.starts_with("default") && l.contains(" web ")),
        "{all_ns}"
    );
    assert!(k
        .ok(&["get", "deploy", "-l", "app=web", "-o", "name"])
        .contains("deployment.apps/web"));
    let none = k.run(&["get", "deploy", "-l", "app=nope"]);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found in default namespace.")
    );
    let all = k.ok(&["get", "all"]);
    assert!(all.contains("service/web"), "{all}");
    assert!(all.contains("deployment.apps/web"), "{all}");

    // Read-your-writes through another node's context.
    assert_eq!(
        k.ok(&["--context", "node-2", "get", "deploy", "web", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );

    // A Table watch sees the scale.
    let mut watch = k
        .command(&["get", "deploy", "web", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    assert_eq!(
        k.ok(&["scale", "deploy", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the watch prints the scaled deployment");
        if l.starts_with("web") && l.contains("/3 ") {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();

    assert_eq!(
        k.ok(&["label", "deploy", "web", "tier=front"]).trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        k.ok(&["annotate", "deploy", "web", "note=hello"]).trim(),
        "deployment.apps/web annotated"
    );
    let jp = "-o=jsonpath={.spec.replicas} {.metadata.labels.tier} {.metadata.annotations.note}";
    assert_eq!(k.ok(&["get", "deploy", "web", jp]), "3 front hello");

    // Imperative creates (kubectl 1.33 sends them as protobuf).
    assert_eq!(
        k.ok(&["create", "configmap", "cfg", "--from-literal=a=b"])
            .trim(),
        "configmap/cfg created"
    );
    assert_eq!(k.ok(&["get", "cm", "cfg", "-o=jsonpath={.data.a}"]), "b");
    let cms = k.ok(&["get", "cm"]);
    assert_eq!(header(&cms), ["NAME", "DATA", "AGE"]);
    // kubectl pages a list through continue tokens (`--chunk-size`).
    let names = |out: &str| -> Vec<String> {
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let whole = names(&k.ok(&["get", "ns"]));
    let out = k.run(&["get", "ns", "--chunk-size=1", "-v=6"]);
    assert!(out.status.success());
    let paged = names(&String::from_utf8_lossy(&out.stdout));
    assert!(whole.len() >= 3, "{whole:?}");
    assert_eq!(paged, whole);
    // One request a namespace, each after the first going on from a token.
    let log = String::from_utf8_lossy(&out.stderr);
    let continued = log.lines().filter(|l| l.contains("continue=")).count();
    assert!(continued >= whole.len() - 1, "{log}");
    assert_eq!(row(&cms, "cfg")[1], "1");
    assert_eq!(
        k.ok(&[
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=pw=hunter2"
        ])
        .trim(),
        "secret/pw created"
    );
    let secrets = k.ok(&["get", "secret", "pw"]);
    assert_eq!(row(&secrets, "pw")[1..3], ["Opaque", "1"]);
    assert_eq!(
        k.ok(&["get", "secret", "pw", "-o=jsonpath={.data.pw}"]),
        "aHVudGVyMg=="
    );

    // edit with a scripted editor.
    let editor = k.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/replicas: 3/replicas: 4/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = k
        .command(&["edit", "deploy", "web"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web edited"
    );
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o=jsonpath={.spec.replicas}"]),
        "4"
    );

    // describe shows defaults and the object's Events.
    let uid = k.ok(&["get", "deploy", "web", "-o=jsonpath={.metadata.uid}"]);
    let event = k.file(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: web.scaled}}\ntype: Normal\nreason: ScalingReplicaSet\n\
             message: Scaled up replica set web-1 to 4\nsource: {{component: deployment-controller}}\ncount: 1\n\
             involvedObject: {{apiVersion: apps/v1, kind: Deployment, namespace: default, name: web, uid: {uid}}}\n"
        ),
    );
    k.ok(&["create", "-f", &event]);
    let d = k.ok(&["describe", "deploy", "web"]);
    for want in [
        "Replicas:               4 desired",
        "StrategyType:           RollingUpdate",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "nginx:1.16.1",
        "ScalingReplicaSet",
        "Scaled up replica set web-1 to 4",
        "deployment-controller",
    ] {
        assert!(d.contains(want), "describe lacks {want:?}:\n{d}");
    }

    // delete waits until gone; a missing object says so.
    assert_eq!(
        k.ok(&["delete", "deploy", "web"]).trim(),
        "deployment.apps \"web\" deleted"
    );
    assert!(k
        .fails(&["get", "deploy", "web"])
        .contains("deployments.apps \"web\" not found"));
    assert!(k
        .fails(&["delete", "svc", "nope"])
        .contains("services \"nope\" not found"));
    assert_eq!(
        k.ok(&["delete", "-f", &flow]).trim(),
        "configmap \"flow\" deleted"
    );
}

/// Bad input through kubectl: an invalid name and an unknown field are
/// refused with the field named, nothing is written, and the node stays up.
#[test]
fn kubectl_reports_invalid_objects_by_field() {
    let Some(k) = Dev::start(1) else { return };
    let bad = k.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\ndata: {a: b}\n",
    );
    let err = k.fails(&["apply", "-f", &bad]);
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
    let unknown = k.file(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\ndata: {a: b}\nbogus: 1\n",
    );
    let err = k.fails(&["apply", "-f", &unknown]);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    // --validate=warn: created, with the server's warning printed.
    let warned = k.run(&["apply", "--validate=warn", "-f", &unknown]);
    assert!(warned.status.success());
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(
        stderr.contains("Warning: unknown field \"bogus\""),
        "{stderr}"
    );
    k.ok(&["delete", "cm", "fine"]);
    let err = k.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    assert!(k.run(&["get", "cm", "fine"]).stdout.is_empty());
    assert!(k
        .ok(&["get", "ns", "default", "-o", "name"])
        .contains("namespace/default"));
}

/// With three API nodes, killing the one kubectl uses leaves its other
/// contexts serving at once, with everything written before.
#[test]
fn kubectl_other_contexts_serve_when_a_node_dies() {
    let Some(k) = Dev::start(3) else { return };
    k.ok(&["create", "configmap", "before", "--from-literal=a=1"]);
    // SAFETY: a libc call with integer arguments only.
    unsafe { libc::kill(k.pid(1), libc::SIGKILL) };
    let started = Instant::now();
    super::wait_for(Duration::from_secs(15), "node-2 serves", || {
        let out = k.run(&[
            "--context",
            "node-2",
            "get",
            "cm",
            "before",
            "-o=jsonpath={.data.a}",
        ]);
        if out.status.success() && out.stdout == b"1" {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    eprintln!(
        "node-2 served {:?} after node-1 was killed",
        started.elapsed()
    );
    assert_eq!(
        k.ok(&[
            "--context",
            "node-3",
            "create",
            "configmap",
            "after",
            "--from-literal=b=2"
        ])
        .trim(),
        "configmap/after created"
    );
    assert_eq!(
        k.ok(&[
            "--context",
            "node-2",
            "get",
            "cm",
            "after",
            "-o=jsonpath={.data.b}"
        ]),
        "2"
    );
}

/// `kubectl rollout status` returns when a rollout is done, `rollout
/// history` lists the revisions, `rollout undo` restores the previous
/// template and reuses its ReplicaSet (the pods run on sim kubelets).
#[test]
fn kubectl_rollout_status_history_undo() {
    let Some(k) = Dev::start(3) else { return };
    let app = k.file("app.yaml", APP);
    k.ok(&["apply", "-f", &app]);
    let status = |k: &Dev| k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status(&k).contains("deployment \"web\" successfully rolled out"));
    let first_rs = k.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o=jsonpath={.items[0].metadata.name}",
    ]);
    let v2 = k.file("app2.yaml", &APP.replace("nginx:1.14.2", "nginx:1.16.1"));
    k.ok(&["apply", "-f", &v2]);
    assert!(status(&k).contains("successfully rolled out"));
    let history = k.ok(&["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let pods = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o=jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(
        pods.split_whitespace().all(|i| i == "nginx:1.16.1"),
        "{pods}"
    );
    assert_eq!(
        k.ok(&["rollout", "undo", "deploy/web"]).trim(),
        "deployment.apps/web rolled back"
    );
    assert!(status(&k).contains("successfully rolled out"));
    let jp = "-o=jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}";
    assert_eq!(k.ok(&["get", "deploy", "web", jp]), "nginx:1.14.2 3");
    // The old ReplicaSet came back (no third one), holding every replica.
    let rs = k.ok(&["get", "rs", "-l", "app=web"]);
    assert_eq!(rs.lines().count(), 3, "two ReplicaSets: {rs}");
    let back = row(&rs, &first_rs);
    assert_eq!(back[1..4], ["2", "2", "2"], "{rs}");
    let ready = k.ok(&["get", "deploy", "web"]);
    assert_eq!(row(&ready, "web")[1], "2/2");
}
