//! `shoal dev`: a local cluster of child `shoal agent` processes.
//!
//! Creates the cluster directory on first use (reuses it afterwards), starts
//! one agent per node with its log in `DIR/node-K.log` and its pid in
//! `DIR/node-K.pid`, writes `DIR/kubeconfig`, prints
//! `export KUBECONFIG=DIR/kubeconfig`, the pods' network mode (`network:
//! cni …` or `network: host …`, saying why when degraded), then `READY` once every node's
//! `/readyz` answers 200 and the cluster's own objects exist (the
//! `kubernetes` and `kube-dns` Services, the `shoal` IngressClass). Ctrl-C
//! (or SIGTERM) stops every child cleanly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::config::NodeConfig;
use crate::kubelet::config::{PodNetwork, RuntimeKind};
use crate::model::objects;

struct Agent {
    name: String,
    child: Child,
    pid_file: PathBuf,
}

fn existing_configs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for k in 1.. {
        let p = dir.join(format!("node-{k}.toml"));
        if !p.exists() {
            break;
        }
        found.push(p);
    }
    Ok(found)
}

/// The kubeconfig: one context per api node, current = node-1.
pub fn kubeconfig(dir: &Path, cfgs: &[NodeConfig], token: &str) -> serde_json::Value {
    let ca = dir.join("ca.pem");
    let clusters: Vec<_> = cfgs
        .iter()
        .map(|c| {
            json!({"name": format!("shoal-{}", c.name), "cluster": {
                "server": format!("https://{}", c.listen.api),
                "certificate-authority": ca.display().to_string(),
            }})
        })
        .collect();
    let contexts: Vec<_> = cfgs
        .iter()
        .map(|c| json!({"name": c.name, "context": {"cluster": format!("shoal-{}", c.name), "user": "shoal-admin"}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "contexts": contexts,
        "users": [{"name": "shoal-admin", "user": {"token": token}}],
        "current-context": cfgs.first().map(|c| c.name.clone()).unwrap_or_default(),
        "preferences": {},
    })
}

/// How `shoal dev` runs its nodes' pods.
pub struct Options {
    pub runtime: RuntimeKind,
    /// kubelet.network.
    pub network: PodNetwork,
    /// kubelet.pod_cidr.
    pub pod_cidr: String,
}

pub fn run(nodes: usize, data_dir: &Path, opts: &Options) -> anyhow::Result<()> {
    let fresh = !data_dir.exists() || std::fs::read_dir(data_dir)?.next().is_none();
    if fresh {
        super::init_cluster(
            data_dir,
            &super::InitOptions {
                nodes,
                zones: vec!["a".into(), "b".into(), "c".into()],
                hosts: Vec::new(),
                workers: 0,
            },
        )?;
        println!("created a {nodes}-node cluster in {}", data_dir.display());
    }
    let dir = data_dir
        .canonicalize()
        .with_context(|| format!("{}", data_dir.display()))?;
    let paths = existing_configs(&dir)?;
    if paths.is_empty() {
        bail!(
            "{} is not a shoal cluster directory (no node-1.toml); pick an empty or new --data-dir",
            dir.display()
        );
    }
    if !fresh && paths.len() != nodes {
        eprintln!(
            "note: reusing {} with its {} node(s); --nodes {} is ignored",
            dir.display(),
            paths.len(),
            nodes
        );
    }
    let mut cfgs = paths
        .iter()
        .map(|p| NodeConfig::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Nodes with sandboxes offer both the process and docker runtimes
    // (the default is `--runtime`) where the Docker Engine's socket is.
    let runtimes: Vec<RuntimeKind> = if opts.runtime.sandboxed()
        && (opts.runtime == RuntimeKind::Docker
            || cfgs
                .first()
                .is_some_and(|c| c.kubelet.docker_socket.exists()))
    {
        vec![RuntimeKind::Process, RuntimeKind::Docker]
    } else {
        Vec::new()
    };
    let runtimes_env = runtimes
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    for c in &mut cfgs {
        // As the agents will see them (the same variables).
        c.kubelet.runtime = opts.runtime;
        c.kubelet.runtimes = runtimes.clone();
        c.kubelet.network = opts.network;
        c.kubelet.pod_cidr = opts.pod_cidr.clone();
    }
    let token = crate::pki::read_token(&cfgs[0].auth.admin_token_file)?;
    let kube = dir.join("kubeconfig");
    // It holds the admin token: private from birth.
    crate::private::write(
        &kube,
        &serde_json::to_vec_pretty(&kubeconfig(&dir, &cfgs, &token))?,
    )?;

    super::client_runtime()?.block_on(async move {
        let exe = std::env::current_exe()?;
        let mut agents = Vec::new();
        // Without sandboxes the nodes share 127.0.0.1 and may not bind port
        // 53: each node's DNS gets a port of its own above 1023.
        let host_network = !opts.runtime.sandboxed()
            || matches!(
                crate::kubelet::process::sandbox::NetworkMode::resolve(opts.network),
                crate::kubelet::process::sandbox::NetworkMode::Host { .. }
            );
        for (i, (cfg, path)) in cfgs.iter().zip(&paths).enumerate() {
            let dns_port = if host_network { 10_053 + i as u16 } else { 53 };
            let (http, https) = if host_network {
                (18_080 + i as u16, 18_443 + i as u16)
            } else {
                (80, 443)
            };
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{}.log", cfg.name)))?;
            let child = Command::new(&exe)
                .arg("agent")
                .arg("--config")
                .arg(path)
                .env("SHOAL_KUBELET_RUNTIME", opts.runtime.as_str())
                .env("SHOAL_KUBELET_RUNTIMES", &runtimes_env)
                .env("SHOAL_KUBELET_NETWORK", opts.network.as_str())
                .env("SHOAL_KUBELET_POD_CIDR", &opts.pod_cidr)
                // The nodes share one kernel: each publishes its bridge's
                // gateway as its address (with sandboxes; else unused).
                .env("SHOAL_KUBELET_NODE_ADDRESS", "bridge")
                .env("SHOAL_KUBELET_DNS_PORT", dns_port.to_string())
                .env("SHOAL_KUBELET_INGRESS_HTTP_PORT", http.to_string())
                .env("SHOAL_KUBELET_INGRESS_HTTPS_PORT", https.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start the agent of {}", cfg.name))?;
            let pid_file = dir.join(format!("{}.pid", cfg.name));
            std::fs::write(&pid_file, format!("{}\n", child.id().unwrap_or(0)))?;
            agents.push(Agent {
                name: cfg.name.clone(),
                child,
                pid_file,
            });
        }
        println!("export KUBECONFIG={}", kube.display());
        // Which pod network the nodes got: a degraded mode says why here,
        // not only in a node's log.
        if opts.runtime.sandboxed() {
            let mode = crate::kubelet::process::sandbox::NetworkMode::resolve(opts.network);
            println!("{}", mode.describe(&opts.pod_cidr));
        } else {
            println!(
                "network: none (runtime {}: hollow pods, no processes)",
                opts.runtime
            );
        }
        let ready = wait_ready(&cfgs, &token, &mut agents);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = ready => {
                if let Err(e) = r {
                    stop_all(&mut agents, &cfgs).await;
                    return Err(e);
                }
            }
            _ = tokio::signal::ctrl_c() => { stop_all(&mut agents, &cfgs).await; return Ok(()); }
            _ = term.recv() => { stop_all(&mut agents, &cfgs).await; return Ok(()); }
        }
        println!("READY");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // A node that dies (killed on purpose, say) is reported once; the
        // others keep running, as a cluster losing a node should.
        let all_exited = async {
            let mut gone = vec![false; agents.len()];
            while gone.iter().any(|g| !g) {
                for (a, g) in agents.iter_mut().zip(gone.iter_mut()) {
                    if *g {
                        continue;
                    }
                    if let Ok(Some(status)) = a.child.try_wait() {
                        eprintln!("{} exited ({status}); the other nodes keep running", a.name);
                        *g = true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = all_exited => eprintln!("every node exited; stopping"),
        }
        stop_all(&mut agents, &cfgs).await;
        Ok(())
    })
}

async fn wait_ready(cfgs: &[NodeConfig], token: &str, agents: &mut [Agent]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<&NodeConfig> = cfgs.iter().collect();
    while !pending.is_empty() {
        if tokio::time::Instant::now() > deadline {
            let names: Vec<_> = pending.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "nodes not ready after 60s: {} (see their .log files)",
                names.join(", ")
            );
        }
        for a in agents.iter_mut() {
            if let Ok(Some(status)) = a.child.try_wait() {
                return Err(anyhow!(
                    "{} exited during start-up ({status}); see {}.log",
                    a.name,
                    a.name
                ));
            }
        }
        let mut still = Vec::new();
        for c in pending {
            let client =
                super::http::ApiClient::new(c.listen.api, &c.tls.ca, Some(token.to_string()))?;
            match client
                .request(Method::GET, "/readyz", None, Duration::from_secs(1))
                .await
            {
                Ok((StatusCode::OK, _)) => {}
                _ => still.push(c),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Then the cluster's own objects, which the API nodes create once the
    // store has a leader: a pod made right after READY gets the
    // `KUBERNETES_SERVICE_*` variables, and the Ingress class is there.
    let Some(c) = cfgs.first() else {
        return Ok(());
    };
    let client = super::http::ApiClient::new(c.listen.api, &c.tls.ca, Some(token.to_string()))?;
    let ((api_ns, api), (dns_ns, dns)) = (objects::KUBERNETES, objects::KUBE_DNS);
    for path in [
        format!("/api/v1/namespaces/{api_ns}/services/{api}"),
        format!("/api/v1/namespaces/{dns_ns}/services/{dns}"),
        format!(
            "/apis/networking.k8s.io/v1/ingressclasses/{}",
            objects::INGRESS_CLASS
        ),
    ] {
        loop {
            if tokio::time::Instant::now() > deadline {
                bail!("the cluster did not create {path} within 60s (see the nodes' .log files)");
            }
            match client
                .request(Method::GET, &path, None, Duration::from_secs(1))
                .await
            {
                Ok((StatusCode::OK, _)) => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// SIGTERM to every child, then SIGKILL for any still alive after 10 s.
/// Pods outlive their agents by design; the dev cluster stops them too.
async fn stop_all(agents: &mut [Agent], cfgs: &[NodeConfig]) {
    stop_agents(agents).await;
    // Only the process and docker runtimes make sandboxes: a sim cluster
    // must not touch the bridges another cluster on this machine uses.
    for cfg in cfgs.iter().filter(|c| c.kubelet.runtime.sandboxed()) {
        // The node's bridge is named after the /24 it registered with.
        let sandboxes = crate::kubelet::load_slot(&cfg.data_dir).and_then(|slot| {
            crate::kubelet::process::sandbox::Sandboxes::for_mode(
                cfg.kubelet.network,
                &cfg.kubelet.pod_cidr,
                &slot,
                &cfg.data_dir,
            )
            .ok()
            .flatten()
        });
        let offered = cfg.kubelet.offered().unwrap_or_default();
        if offered.contains(&RuntimeKind::Docker) {
            if let Some(slot) = crate::kubelet::load_slot(&cfg.data_dir) {
                crate::kubelet::docker::stop_leftovers(
                    &cfg.kubelet.docker_socket,
                    slot.index,
                    &cfg.data_dir.join("docker"),
                    sandboxes.as_ref(),
                )
                .await;
            }
        }
        if offered.contains(&RuntimeKind::Process) {
            crate::kubelet::process::stop_leftovers(&cfg.data_dir.join("pods"), sandboxes.as_ref())
                .await;
        }
        if let Some(sbs) = sandboxes {
            sbs.remove_bridge().await;
        }
    }
}

async fn stop_agents(agents: &mut [Agent]) {
    for a in agents.iter() {
        if let Some(pid) = a.child.id() {
            // SAFETY: sending a signal to our own child's pid.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for a in agents.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), a.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{} did not stop within 10s; killing it", a.name);
                let _ = a.child.kill().await;
            }
        }
        let _ = std::fs::remove_file(&a.pid_file);
    }
    println!("stopped {} agent(s)", agents.len());
}
