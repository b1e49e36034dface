//! Logs a container cannot turn against its node: a 20 MiB line with no
//! newline is cut into 16 KiB CRI records and `pods/log` streams it (never
//! one reply over the frame limit), `limitBytes` cuts it, and a container
//! writing `/dev/zero` forever holds its shim at a few MiB while the node
//! keeps answering.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::json;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn pod(name: &str, command: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "none", "command": ["sh", "-c", command]}]}
    }))
    .unwrap()
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid …; comm may hold spaces, so after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_lines_and_endless_output_stay_bounded_and_stream() {
    // A /dev/zero writer loads the machine: never beside a timed test.
    let _heavy = crate::timing_guard().await;
    let c = TestCluster::start_with(1, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k);

    // 9 MiB on one line (under the 10 MiB rotation, over the 8 MiB frame
    // a single reply could carry), then the container waits.
    let nine = 9 << 20;
    let cmd = format!("head -c {nine} /dev/zero | tr '\\000' a; echo; exec sleep 3600");
    pods.create(&PostParams::default(), &pod("nine", &cmd))
        .await
        .unwrap();
    let limited = LogParams {
        limit_bytes: Some(1000),
        ..LogParams::default()
    };
    let whole = |name: &'static str, len: usize| {
        let pods = pods.clone();
        let limited = limited.clone();
        async move {
            wait_until(Duration::from_secs(60), || {
                let pods = pods.clone();
                let limited = limited.clone();
                async move {
                    let logs = pods
                        .logs(name, &LogParams::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    if logs.len() < len || !logs.ends_with("a\n") {
                        return Err(format!("{} bytes so far", logs.len()));
                    }
                    let cut = pods.logs(name, &limited).await.map_err(|e| e.to_string())?;
                    if cut.len() == 1000 && cut.bytes().all(|b| b == b'a') {
                        Ok(())
                    } else {
                        Err(format!("limitBytes gave {} bytes", cut.len()))
                    }
                }
            })
            .await
            .unwrap();
            let logs = pods.logs(name, &LogParams::default()).await.unwrap();
            assert!(
                logs[..logs.len() - 1].bytes().all(|b| b == b'a'),
                "partial records joined"
            );
            assert_eq!(logs.matches('\n').count(), 1, "one line");
            logs.len()
        }
    };
    assert_eq!(whole("nine", nine + 1).await, nine + 1);
    // 20 MiB on one line: the file rotated (twice); what is left of the
    // line is shown, whole records joined.
    let cmd = "head -c 20971520 /dev/zero | tr '\\000' a; echo; exec sleep 3600";
    pods.create(&PostParams::default(), &pod("big", cmd))
        .await
        .unwrap();
    let shown = whole("big", 1).await;
    eprintln!("after the 20 MiB line's rotations, {shown} bytes are shown");

    // /dev/zero forever: no newline ever.
    pods.create(&PostParams::default(), &pod("zero", "exec cat /dev/zero"))
        .await
        .unwrap();
    let pid = wait_until(Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let p = serde_json::to_value(pods.get("zero").await.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            p.pointer("/status/containerStatuses/0/containerID")
                .and_then(|v| v.as_str())
                .and_then(|id| id.strip_prefix("process://"))
                .filter(|s| !s.is_empty())
                .map(|_| ())
                .ok_or_else(|| "not started".to_string())
        }
    })
    .await
    .map(|_| ());
    pid.unwrap();
    let p = serde_json::to_value(pods.get("zero").await.unwrap()).unwrap();
    let container: u32 = p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("process://"))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let shim = parent_of(container).expect("the container's shim");
    // The shim's memory, sampled until it has written past two rotations
    // (over 20 MiB without a newline, its old log overwritten once).
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let log_dir = c.config(1).data_dir.join("pods").join(&uid).join("c");
    let mut peak = 0;
    let mut rotations = 0;
    let mut last_old: Option<std::time::SystemTime> = None;
    let mut sample = || {
        peak = peak.max(rss_kib(shim));
        let old = std::fs::metadata(log_dir.join("0.log.1"))
            .and_then(|m| m.modified())
            .ok();
        if old.is_some() && old != last_old {
            rotations += 1;
            last_old = old;
        }
        rotations
    };
    wait_until(Duration::from_secs(30), || {
        let n = sample();
        async move {
            if n >= 2 {
                Ok(())
            } else {
                Err(format!("{n} rotations"))
            }
        }
    })
    .await
    .unwrap();
    eprintln!("the shim of a /dev/zero writer: peak RSS {peak} KiB");
    assert!(peak > 0, "the shim {shim} was seen");
    assert!(peak < 32 * 1024, "the shim holds {peak} KiB");
    // The node keeps answering, with a bounded log.
    // (The file rotates every 10 MiB: a read just after a rotation may
    // find less than 1,000 bytes in the new file.)
    wait_until(Duration::from_secs(10), || {
        let pods = pods.clone();
        let limited = limited.clone();
        async move {
            let cut = pods
                .logs("zero", &limited)
                .await
                .map_err(|e| e.to_string())?;
            if cut.len() == 1000 {
                Ok(())
            } else {
                Err(format!("{} bytes", cut.len()))
            }
        }
    })
    .await
    .unwrap();
    pods.delete("zero", &DeleteParams::default()).await.unwrap();
    pods.delete("big", &DeleteParams::default()).await.unwrap();
    pods.delete("nine", &DeleteParams::default()).await.unwrap();
}
