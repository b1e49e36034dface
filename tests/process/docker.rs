//! The docker runtime through kubectl 1.33 on `shoal dev --runtime docker`
//! (root, the CNI plugins and this machine's Docker Engine; the images
//! come from scripts/images.sh, nothing is pulled): a Deployment of an
//! image with no command runs the image's CMD and becomes Ready; `kubectl
//! exec` (output, stdin, exit code) goes through the engine; a pod on
//! the other node reaches both pods by IP and their Service by its DNS
//! name; deleting everything leaves no engine container, network
//! namespace or veth behind.

use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;
use super::kubectl_process::pods;

/// The engine containers of the pod with `uid` (any state).
fn containers_of(uid: &str) -> Vec<String> {
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
