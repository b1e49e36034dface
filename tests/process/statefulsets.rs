//! kubectl 1.33 against a 2-node `shoal dev` with the process runtime: a
//! StatefulSet with a headless Service and a claim per pod. `kubectl
//! rollout status|history|undo statefulset` read the status and the
//! ControllerRevisions; `web-1.web.default.svc.cluster.local` resolves to
//! web-1's IP from web-0 (with pod sandboxes, as root); each pod's data is
//! still there after a rolling update replaced every pod.

use std::time::Duration;

use super::kubectl::Dev;

const WEB: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8000}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: python:3
        command: ["sh", "-c", "[ -f /data/who ] || echo $POD > /data/who; cd /data && exec python3 -m http.server 8000"]
        env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        ports: [{name: http, containerPort: 8000}]
        readinessProbe:
          tcpSocket: {port: 8000}
          periodSeconds: 1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// What each pod's claim holds (`/data/who`), by pod.
fn who(k: &Dev) -> Vec<String> {
    (0..3)
        .map(|i| {
            let pod = format!("web-{i}");
            k.ok(&["exec", &pod, "--", "cat", "/data/who"])
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn kubectl_rolls_a_stateful_set_out_and_back_and_its_pods_keep_names_and_data() {
    let Some(k) = Dev::start_with(2, "process") else {
        return;
    };
    let web = k.file("web.yaml", WEB);
    k.ok(&["apply", "-f", &web]);
    let r = k.run(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    if !r.status.success() {
        let dump = k.run(&["get", "pods,pvc,pv", "-o", "wide"]);
        let desc = k.run(&["describe", "pod", "web-1"]);
        let ev = k.run(&["get", "events"]);
        panic!(
            "{}\n{}\n{}",
            String::from_utf8_lossy(&dump.stdout),
            String::from_utf8_lossy(&desc.stdout),
            String::from_utf8_lossy(&ev.stdout)
        );
    }
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(out.contains("3 new pods have been updated"), "{out}");
    let pvc = k.ok(&[
        "get",
        "pvc",
        "-o=jsonpath={.items[*].metadata.name} {.items[*].status.phase}",
    ]);
    assert_eq!(
        pvc.trim(),
        "data-web-0 data-web-1 data-web-2 Bound Bound Bound"
    );
    assert_eq!(who(&k), ["web-0", "web-1", "web-2"]);

    // web-1's stable DNS name, from web-0 (pod sandboxes give pods the
    // cluster DNS; without them the name is not in the host's resolver).
    if super::cni_sandboxes() {
        let ip = k.ok(&["get", "pod", "web-1", "-o=jsonpath={.status.podIP}"]);
        let script =
            "import socket; print(socket.gethostbyname('web-1.web.default.svc.cluster.local'))";
        super::wait_for(
            Duration::from_secs(30),
            "web-1's DNS name from web-0",
            || {
                let out = k.run(&["exec", "web-0", "--", "python3", "-c", script]);
                let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (got == ip.trim()).then_some(()).ok_or(format!(
                    "{got:?} (want {ip}): {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            },
        );
    }

    // A rolling update replaces every pod; each keeps its claim and data.
    k.ok(&["set", "env", "statefulset/web", "GEN=2"]);
    let out = k.ok(&["rollout", "status", "statefulset/web", "--timeout=180s"]);
    assert!(out.contains("3 new pods have been updated"), "{out}");
    let gens = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o=jsonpath={.items[*].spec.containers[0].env[1].value}",
    ]);
    assert_eq!(
        gens.split_whitespace().collect::<Vec<_>>(),
        ["2", "2", "2"],
        "{gens}"
    );
    assert_eq!(who(&k), ["web-0", "web-1", "web-2"]);

    // History has both templates; undo brings the first back.
    let history = k.ok(&["rollout", "history", "statefulset/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions.len(), 2, "{history}");
    k.ok(&["rollout", "undo", "statefulset/web"]);
    k.ok(&["rollout", "status", "statefulset/web", "--timeout=180s"]);
    let envs = k.ok(&[
        "get",
        "statefulset",
        "web",
        "-o=jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(
        envs.trim(),
        "POD",
        "the GEN variable is gone after the undo"
    );
    super::wait_for(
        Duration::from_secs(60),
        "every pod back at the first template",
        || {
            let gens = k.ok(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o=jsonpath={.items[*].spec.containers[0].env[*].name}",
            ]);
            let n = gens.split_whitespace().filter(|n| *n == "GEN").count();
            (n == 0)
                .then_some(())
                .ok_or(format!("{n} pods still with GEN"))
        },
    );
    assert_eq!(who(&k), ["web-0", "web-1", "web-2"]);
}
