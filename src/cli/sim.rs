//! `shoal sim --nodes N --pods P [--deployments D] [--json]`: the real
//! control plane against hollow nodes, in one process. Three nodes hold
//! the real store (Raft on disk in a temporary directory), the API, the
//! scheduler and the controllers; a fleet of N sim kubelets registers N
//! Nodes and runs the pods bound to them. The workload is created through
//! the HTTPS API as D Deployments; a watch measures every pod from its
//! creation to Running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use std::sync::Arc;

use crate::config::Role;
use crate::kubelet::fleet::Fleet;
use crate::kubelet::NodeSpec;
use crate::local::LocalCluster;
use crate::model::cache::{CacheEvent, Kind, Start};

pub struct SimOptions {
    pub nodes: usize,
    pub pods: usize,
    pub deployments: usize,
    pub json: bool,
    /// Whether Events are recorded.
    pub events: bool,
    /// The workload is one DaemonSet (a pod on every node; `pods` is the
    /// node count) instead of Deployments.
    pub daemonset: bool,
    /// The workload is StatefulSets with a claim per pod instead of
    /// Deployments.
    pub statefulsets: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimReport {
    pub nodes: usize,
    pub pods: usize,
    pub deployments: usize,
    /// The workload was one DaemonSet (`--daemonset`).
    pub daemonset: bool,
    /// The workload was StatefulSets with claims (`--statefulsets`).
    pub statefulsets: bool,
    /// Claims Bound at the end (one per StatefulSet pod), and when the
    /// last one was (null without `--statefulsets`).
    pub claims_bound: usize,
    pub seconds_to_all_claims_bound: Option<f64>,
    pub pods_running: usize,
    pub seconds_to_all_running: f64,
    pub schedule_pods_per_s: f64,
    pub startup_p50_ms: f64,
    pub startup_p99_ms: f64,
    pub api_mutation_p99_ms: f64,
    pub peak_rss_bytes: u64,
    /// Distinct pods the watch saw (more than `pods`: some were replaced).
    pub pods_created: usize,
    /// Raft entries the store applied (writes share entries: fewer is
    /// better batching).
    pub raft_entries: u64,
    /// Whether Events were recorded, and how many the store held at the end.
    pub events: bool,
    pub events_stored: usize,
    /// Distinct `spec.podCIDR`s among the Node objects (one per node).
    pub pod_cidrs: usize,
    /// Watch caches the three nodes ran (the API node's, and the leader's
    /// if another node led at some point).
    pub watch_caches: usize,
    /// Every second since the workload's create: pods seen, bound and
    /// Running by then (where the time went: creation, scheduling or
    /// start-up).
    pub timeline: Vec<[usize; 3]>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The process's peak resident set (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// An apps/v1 workload of `kind` named `name` (with `replicas` for a
/// Deployment) whose pods request a little of each node.
fn workload(kind: &str, name: &str, replicas: Option<usize>) -> Value {
    let mut body = json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "sim",
                                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
    });
    if let Some(r) = replicas {
        body["spec"]["replicas"] = json!(r);
    }
    if kind == "StatefulSet" {
        body["spec"]["serviceName"] = json!(name);
        body["spec"]["podManagementPolicy"] = json!("Parallel");
        body["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
        body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
    }
    body
}

/// POSTs `body` to apps/v1 `plural` in `default`; returns the milliseconds
/// it took.
async fn create(
    client: &super::http::ApiClient,
    plural: &str,
    body: &Value,
) -> anyhow::Result<f64> {
    let sent = Instant::now();
    let path = format!("/apis/apps/v1/namespaces/default/{plural}");
    let bytes = serde_json::to_vec(body)?;
    let (code, text) = client
        .request(Method::POST, &path, Some(bytes), Duration::from_secs(30))
        .await?;
    if code != StatusCode::CREATED {
        bail!(
            "creating {plural}: {code}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(sent.elapsed().as_secs_f64() * 1000.0)
}

/// Waits until `want` claims are Bound (pushed by a cache watch).
async fn wait_claims_bound(
    cache: &crate::model::cache::Cache,
    want: usize,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let claims = &crate::model::resources::PERSISTENTVOLUMECLAIMS;
    let bound = |c: &Value| c.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    let mut w = cache
        .watch(&claims.prefix(None), Start::Snapshot)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut state: HashMap<Vec<u8>, bool> = w
        .initial
        .iter()
        .map(|e| (e.key.clone(), bound(&e.object)))
        .collect();
    let mut last = w.rev;
    while state.values().filter(|b| **b).count() < want {
        tokio::select! {
            b = w.live.recv() => match b {
                Ok(b) => {
                    for e in w.mine(&b).filter(|e| e.rev > last) {
                        state.insert(e.key.clone(), e.kind != Kind::Deleted && bound(&e.object));
                    }
                    last = last.max(b.rev);
                }
                Err(_) => {
                    w = cache.watch(&claims.prefix(None), Start::Snapshot).map_err(|e| anyhow::anyhow!(e))?;
                    state = w.initial.iter().map(|e| (e.key.clone(), bound(&e.object))).collect();
                    last = w.rev;
                }
            },
            _ = tokio::time::sleep_until(deadline) => bail!("claims not all Bound in time"),
        }
    }
    Ok(())
}

pub fn run(mut opts: SimOptions) -> anyhow::Result<()> {
    if opts.nodes == 0 || opts.pods == 0 || opts.deployments == 0 {
        bail!("--nodes, --pods and --deployments must be above 0");
    }
    if opts.daemonset {
        opts.pods = opts.nodes;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(simulate(&opts))?;
    if opts.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} nodes, {} pods ({} Deployments): {} Running after {:.1} s\n\
             scheduling {:.0} pods/s, startup p50 {:.0} ms p99 {:.0} ms, API mutation p99 {:.1} ms, peak RSS {} MiB ({} watch caches), {} Events stored",
            report.nodes,
            report.pods,
            report.deployments,
            report.pods_running,
            report.seconds_to_all_running,
            report.schedule_pods_per_s,
            report.startup_p50_ms,
            report.startup_p99_ms,
            report.api_mutation_p99_ms,
            report.peak_rss_bytes >> 20,
            report.watch_caches,
            report.events_stored
        );
    }
    if report.pods_running < report.pods {
        bail!(
            "only {} of {} pods Running within {:?}",
            report.pods_running,
            report.pods,
            opts.timeout
        );
    }
    Ok(())
}

async fn simulate(opts: &SimOptions) -> anyhow::Result<SimReport> {
    // Node 1 serves the API; the other two hold store replicas and start
    // a watch cache only if they come to lead (the control plane reads it).
    let cluster = LocalCluster::start_with(3, |c| {
        c.control_plane.events = opts.events;
        // More nodes than the default /12 has /24s: a /10 (CGNAT space,
        // clear of the service range).
        if opts.nodes > 4096 {
            c.kubelet.pod_cidr = "100.64.0.0/10".into();
        }
        c.roles = if c.name == "node-1" {
            vec![Role::Api, Role::Store]
        } else {
            vec![Role::Store]
        }
    })?;
    let handle = cluster.node(1).clone();
    let token = std::fs::read_to_string(&cluster.config(1).auth.admin_token_file)?;
    let client = super::http::ApiClient::new(
        handle.api_addr,
        &cluster.config(1).tls.ca,
        Some(token.trim().to_string()),
    )?;
    // The API is up once the system namespaces exist.
    let started = Instant::now();
    loop {
        let r = client
            .request(
                Method::GET,
                "/api/v1/namespaces/default",
                None,
                Duration::from_secs(5),
            )
            .await;
        if matches!(r, Ok((StatusCode::OK, _))) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the API did not come up: {r:?}");
        }
        // Back-off while the store elects its first leader.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod_range = crate::model::podcidr::PodCidrs::new(&cluster.config(1).kubelet.pod_cidr)
        .map_err(|e| anyhow::anyhow!("kubelet.pod_cidr: {e}"))?;
    let mut fleet = Fleet {
        events: opts.events,
        pod_range,
        slots: Default::default(),
        store: handle.store.clone(),
        cache: handle.cache.clone(),
        nodes: (1..=opts.nodes)
            .map(|i| NodeSpec {
                name: format!("sim-{i}"),
                address: format!(
                    "10.{}.{}.{}",
                    200 + (i >> 16) % 50,
                    (i >> 8) & 0xff,
                    i & 0xff
                ),
                region: "sim".into(),
                zone: format!("z{}", i % 3),
                milli_cpu: 32_000,
                memory_bytes: 256 << 30,
                pods: 110,
            })
            .collect(),
    };
    fleet
        .register()
        .await
        .map_err(|e| anyhow::anyhow!("registering sim nodes: {}", e.message))?;
    tokio::spawn(fleet.run());

    // Watch every pod: first seen, bound, Running.
    let pods = &crate::model::resources::PODS;
    let mut w = handle
        .cache
        .watch(&pods.prefix(None), Start::Snapshot)
        .map_err(|e| anyhow::anyhow!(e))?;
    let bar = if opts.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(opts.pods as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} pods Running ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );

    // The workload, through the API, while the watch below is read (a
    // watch left unread while 150,000 pods are created would lag).
    let t0 = Instant::now();
    let per = opts.pods / opts.deployments;
    let deployments = if opts.daemonset { 0 } else { opts.deployments };
    let extra = opts.pods % opts.deployments;
    let daemonset = opts.daemonset;
    let (kind, plural) = if opts.statefulsets {
        ("StatefulSet", "statefulsets")
    } else {
        ("Deployment", "deployments")
    };
    let mut creator = tokio::spawn(async move {
        let mut mutation_ms = Vec::new();
        if daemonset {
            let body = workload("DaemonSet", "sim-ds", None);
            mutation_ms.push(create(&client, "daemonsets", &body).await?);
        }
        for d in 0..deployments {
            let replicas = per + usize::from(d < extra);
            let body = workload(kind, &format!("sim-{d}"), Some(replicas));
            mutation_ms.push(create(&client, plural, &body).await?);
        }
        anyhow::Ok(mutation_ms)
    });
    let mut mutation_ms: Option<Vec<f64>> = None;

    let mut first_seen: HashMap<Vec<u8>, Instant> = HashMap::new();
    let mut bound_at: Vec<Instant> = Vec::new();
    let mut startup_ms: Vec<f64> = Vec::new();
    let mut running: HashMap<Vec<u8>, bool> = HashMap::new();
    let mut n_running = 0usize;
    let mut timeline: Vec<[usize; 3]> = Vec::new();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut last = w.rev;
    let mut events: Vec<Arc<CacheEvent>> = std::mem::take(&mut w.initial);
    loop {
        let now = Instant::now();
        for e in events.drain(..) {
            if e.kind == Kind::Deleted {
                if running.remove(&e.key) == Some(true) {
                    n_running -= 1;
                }
                continue;
            }
            first_seen.entry(e.key.clone()).or_insert(now);
            let bound_now = e
                .object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let bound_before = e
                .prev
                .as_deref()
                .and_then(|p| p.pointer("/spec/nodeName"))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if bound_now && !bound_before {
                bound_at.push(now);
            }
            let is_running =
                e.object.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
            let was = running.insert(e.key.clone(), is_running).unwrap_or(false);
            if is_running && !was {
                n_running += 1;
                let since = first_seen.get(&e.key).copied().unwrap_or(now);
                startup_ms.push(now.duration_since(since).as_secs_f64() * 1000.0);
                bar.inc(1);
            } else if was && !is_running {
                n_running -= 1;
            }
        }
        while t0.elapsed() >= Duration::from_secs(timeline.len() as u64 + 1) {
            timeline.push([first_seen.len(), bound_at.len(), n_running]);
        }
        if n_running >= opts.pods && mutation_ms.is_some() {
            timeline.push([first_seen.len(), bound_at.len(), n_running]);
            break;
        }
        tokio::select! {
            b = w.live.recv() => match b {
                Ok(b) => {
                    events.extend(w.mine(&b).filter(|e| e.rev > last).cloned());
                    last = last.max(b.rev);
                }
                Err(_) => {
                    // Fell behind: resume from the last revision seen, or,
                    // past the cache's window, from a fresh snapshot.
                    w = match handle.cache.watch(&pods.prefix(None), Start::After(last)) {
                        Ok(w) => w,
                        Err(_) => handle
                            .cache
                            .watch(&pods.prefix(None), Start::Snapshot)
                            .map_err(|e| anyhow::anyhow!(e))?,
                    };
                    events = std::mem::take(&mut w.initial);
                    last = last.max(w.rev);
                }
            },
            r = &mut creator, if mutation_ms.is_none() => {
                mutation_ms = Some(r.context("the workload task")??);
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    bar.finish_and_clear();
    let all_running = t0.elapsed().as_secs_f64();
    // StatefulSets: also until every claim is Bound (hollow pods mount
    // nothing, so Running does not wait for it; a real kubelet would).
    let claims_bound_s = if opts.statefulsets {
        wait_claims_bound(&handle.cache, opts.pods, deadline).await?;
        Some(t0.elapsed().as_secs_f64())
    } else {
        None
    };
    startup_ms.sort_by(|a, b| a.total_cmp(b));
    let mut mutation_ms = mutation_ms.unwrap_or_default();
    mutation_ms.sort_by(|a, b| a.total_cmp(b));
    let schedule_rate = match (bound_at.first(), bound_at.last()) {
        (Some(a), Some(b)) if bound_at.len() > 1 && b > a => {
            bound_at.len() as f64 / b.duration_since(*a).as_secs_f64()
        }
        _ => bound_at.len() as f64 / all_running.max(1e-3),
    };
    let report = SimReport {
        nodes: opts.nodes,
        pods: opts.pods,
        deployments: opts.deployments,
        daemonset: opts.daemonset,
        statefulsets: opts.statefulsets,
        seconds_to_all_claims_bound: claims_bound_s,
        claims_bound: {
            let claims = &crate::model::resources::PERSISTENTVOLUMECLAIMS;
            handle
                .cache
                .list(&claims.prefix(None), |c| {
                    c.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
                })
                .0
                .len()
        },
        pods_running: n_running,
        seconds_to_all_running: all_running,
        schedule_pods_per_s: schedule_rate,
        startup_p50_ms: percentile(&startup_ms, 0.50),
        startup_p99_ms: percentile(&startup_ms, 0.99),
        api_mutation_p99_ms: percentile(&mutation_ms, 0.99),
        peak_rss_bytes: peak_rss_bytes(),
        pods_created: first_seen.len(),
        raft_entries: handle.store.status().applied_index,
        events: opts.events,
        events_stored: {
            let events = &crate::model::resources::EVENTS;
            handle.cache.list(&events.prefix(None), |_| true).0.len()
        },
        pod_cidrs: {
            let nodes = &crate::model::resources::NODES;
            let (list, _) = handle.cache.list(&nodes.prefix(None), |_| true);
            list.iter()
                .filter_map(|n| {
                    n.pointer("/spec/podCIDR")
                        .and_then(serde_json::Value::as_str)
                })
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        },
        watch_caches: (1..=3)
            .filter(|&i| cluster.node(i).cache.is_started())
            .count(),
        timeline,
    };
    drop(cluster);
    Ok(report)
}
