//! Secrets on a worker's disk: a pod reads a Secret as an env var and as a
//! volume. No file under the cluster and data directories that holds the
//! secret value or a key can be read by another user; the adoption record
//! (`pod.json`) holds no resolved value at all. After an agent SIGKILL and
//! restart, a new instance of the container still gets its secret (the
//! kubelet resolves the adopted pod again).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;
use super::kubectl_process::{alive, pid_of};

/// Whether another user could read `file`: it grants group or others
/// read, and every directory from `root` (exclusive) down to it lets them
/// through.
fn readable_by_others(root: &Path, file: &Path) -> bool {
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    if mode(file) & 0o044 == 0 {
        return false;
    }
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root {
            return true;
        }
        if mode(d) & 0o011 == 0 {
            return false;
        }
        dir = d.parent();
    }
    true
}

/// Every regular file under `dir` (tmpfs and proc mounts included, sockets
/// and the like skipped).
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
fn secrets_and_keys_are_private_on_disk_and_resolved_again_on_adoption() {
    // Two nodes: `shoal dev` stops (and cleans up) once every agent exits.
    let Some(k) = Dev::start_with(2, "process") else {
        return;
    };
    let value = format!("s3cr3t-{}", shoal::pki::random_hex(8));
    let manifest = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: "{value}"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: holder}}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 1
  volumes:
  - name: creds
    secret: {{secretName: creds}}
  containers:
  - name: c
    image: none
    command: ["sh", "-c", "echo \"pass=$PASS file=$(cat /etc/creds/password)\"; exec sleep 3600"]
    env:
    - name: PASS
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    volumeMounts:
    - {{name: creds, mountPath: /etc/creds}}
"#
    );
    let f = k.file("secret.yaml", &manifest);
    k.ok(&["apply", "-f", &f]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/holder",
        "--timeout=60s",
    ]);
    let expect = format!("pass={value} file={value}");
    super::wait_for(Duration::from_secs(20), "the secret in the log", || {
        let logs = k.ok(&["logs", "holder"]);
        if logs.contains(&expect) {
            Ok(())
        } else {
            Err(logs)
        }
    });

    // On disk: every file that holds the value or a key is private.
    let root = k.dir();
    let data = root.join("node-2/data");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data dir");
    let mut all = Vec::new();
    files(root, &mut all);
    let mut holding = 0;
    for f in &all {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "secret.yaml" {
            continue; // this test's own manifest
        }
        let key = [
            "ca.key",
            "key.pem",
            "admin.token",
            "secrets.key",
            "gossip.key",
            "kubeconfig",
        ]
        .contains(&name.as_str());
        let bytes = std::fs::read(f).unwrap_or_default();
        let holds = bytes.windows(value.len()).any(|w| w == value.as_bytes());
        if key || holds {
            holding += 1;
            assert!(
                !readable_by_others(root, f),
                "{} ({:o}) can be read by another user",
                f.display(),
                std::fs::metadata(f).unwrap().permissions().mode()
            );
        }
        if name == "pod.json" {
            assert!(!holds, "{} holds the secret value", f.display());
            let m = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600, "{}", f.display());
        }
    }
    assert!(holding >= 6, "keys and the secret's files were found");
    // The secret volume is a tmpfs: its files are in memory only.
    let pod: Value = serde_json::from_str(&k.ok(&["get", "pod", "holder", "-o", "json"])).unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let volume = data.join("pods").join(&uid).join("volumes/creds");
    assert!(
        shoal::kubelet::process::volumes::is_tmpfs(&volume),
        "{} is not a tmpfs",
        volume.display()
    );

    // The agent is SIGKILLed and started again; the container's process is
    // then killed: its new instance gets the secret again.
    let pid = pid_of(&pod).unwrap();
    let agent = k.pid(2);
    // SAFETY: SIGKILL to the agent process shoal dev started.
    unsafe { libc::kill(agent, libc::SIGKILL) };
    super::wait_for(Duration::from_secs(10), "the agent gone", || {
        if alive(agent) {
            Err("alive".to_string())
        } else {
            Ok(())
        }
    });
    let _agent = super::agent_restart::Agent::restart(&k, 2);
    super::wait_for(Duration::from_secs(30), "the pod adopted", || {
        // Two voters, one restarting: the store answers once it is back.
        let p = get_pod(&k)?;
        if pid_of(&p) == Some(pid) && p["status"]["containerStatuses"][0]["ready"] == true {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });
    // SAFETY: SIGKILL to the container process the agent started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    super::wait_for(
        Duration::from_secs(60),
        "a new instance with the secret",
        || {
            let p = get_pod(&k)?;
            let restarted = p["status"]["containerStatuses"][0]["restartCount"] == 1;
            let logs = k.run(&["logs", "holder"]);
            let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
            if restarted && logs.contains(&expect) {
                Ok(())
            } else {
                Err(format!("{} / {logs}", p["status"]))
            }
        },
    );
    // Deleted: its tmpfs is unmounted with its directory.
    k.ok(&["delete", "pod", "holder", "--wait=true", "--timeout=60s"]);
    super::wait_for(Duration::from_secs(30), "the tmpfs gone", || {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if mounts.contains(&uid) {
            Err(format!("still mounted: {}", volume.display()))
        } else {
            Ok(())
        }
    });
}

/// The pod `holder`, or kubectl's error (a store without quorum while an
/// agent restarts answers 503; the caller's wait retries).
fn get_pod(k: &Dev) -> Result<Value, String> {
    let out = k.run(&["get", "pod", "holder", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}
