//! A local cluster: real nodes in one process, on loopback. `shoal sim`
//! runs the control plane on one; the test harness (`shoal-harness`) wraps
//! it for the cluster tier.
//!
//! Each node runs on its own OS thread with its own actor system and tokio
//! runtime (`actor::local::run_system`), so nodes share no global state.
//! `kill` drops a node's runtime without any goodbye (a crash: sockets
//! close, the data dir lock is released); `stop` is the graceful shutdown.
//! Work that touches a node's transport runs on that node's runtime via
//! [`LocalCluster::on`], so connection tasks die with their node.
//!
//! Nodes bind port 0; a restarted node gets its previous ports back, so it
//! returns "as itself".

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::kubelet::config::PodNetwork;

use crate::config::{NodeConfig, Peer};
use crate::node::{Node, NodeHandle, NodeOptions};

/// A running in-process node.
pub struct LocalNode {
    pub handle: NodeHandle,
    rt: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalNode {
    fn halt(&mut self, graceful: bool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(graceful);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.halt(false);
    }
}

/// Starts one node on its own thread and waits until it is up.
pub fn spawn_node(cfg: NodeConfig) -> anyhow::Result<LocalNode> {
    spawn_node_with(cfg, NodeOptions::default())
}

/// `spawn_node` with start options (simulated disks, …).
pub fn spawn_node_with(cfg: NodeConfig, opts: NodeOptions) -> anyhow::Result<LocalNode> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<bool>();
    let name = cfg.name.clone();
    let threads = cfg.worker_threads;
    let thread = shoal_fabric::actor::local::run_system(&name, threads, move || async move {
        match Node::start_with(cfg, opts).await {
            Ok(node) => {
                let _ = tx.send(Ok((node.handle.clone(), tokio::runtime::Handle::current())));
                let graceful = stop_rx.await.unwrap_or(false);
                if graceful {
                    node.shutdown().await;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    })?;
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok((handle, rt))) => Ok(LocalNode {
            handle,
            rt,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => anyhow::bail!("node {name} did not start within 30s"),
    }
}

/// Writes a cluster's key material into `dir` and returns `n` test configs
/// (without peers; the cluster fills them in as nodes start).
pub fn cluster_configs(dir: &Path, n: usize) -> anyhow::Result<Vec<NodeConfig>> {
    let names: Vec<String> = (1..=n).map(crate::config::node_name).collect();
    cluster_configs_named(dir, &names)
}

/// [`cluster_configs`] for nodes of any names (the first three vote).
pub fn cluster_configs_named(dir: &Path, names: &[String]) -> anyhow::Result<Vec<NodeConfig>> {
    let cluster_id = format!("test-{}", shoal_fabric::pki::random_hex(4));
    shoal_fabric::pki::write_cluster_files_named(dir, &cluster_id, names)?;
    let voters: Vec<String> = names.iter().take(3).cloned().collect();
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut c = NodeConfig::for_test_named(dir, &cluster_id, i + 1, name);
            c.store.initial_voters = voters.clone();
            // In-process clusters run side by side in one test binary and
            // their nodes share names: pod sandboxes (bridge shoal-<n>)
            // would collide, so they keep host networking.
            c.kubelet.network = PodNetwork::Host;
            c
        })
        .collect())
}

/// Issues again, from the cluster's CA in `dir`, the certificate of every
/// node whose config names fewer than all roles, so that it certifies
/// exactly those (as `shoal init --workers` does).
pub fn certify_roles(dir: &Path, configs: &[NodeConfig]) -> anyhow::Result<()> {
    let mut ca = None;
    for c in configs {
        let roles = c
            .roles
            .iter()
            .filter_map(|r| crate::actor::Roles::named(r.as_str()))
            .fold(crate::actor::Roles::NONE, |a, r| a | r);
        if roles == crate::actor::Roles::ALL {
            continue;
        }
        let ca = match &mut ca {
            Some(ca) => ca,
            None => ca.insert(shoal_fabric::pki::ClusterCa::load(dir)?),
        };
        let cert = ca.issue_with_roles(&c.name, &[], roles)?;
        std::fs::write(&c.tls.cert, cert.cert_pem)?;
        crate::private::write(&c.tls.key, cert.key_pem.as_bytes())?;
    }
    Ok(())
}

/// An in-process cluster. Dropping it stops every node, then kills the
/// processes of pods that the process runtime left running (they outlive
/// an agent by design, not a test).
pub struct LocalCluster {
    pub dir: tempfile::TempDir,
    configs: Vec<NodeConfig>,
    options: Vec<NodeOptions>,
    nodes: Vec<Option<LocalNode>>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut() {
            drop(n.take());
        }
        for c in &self.configs {
            shoal_kubelet::process::kill_leftovers_now(&c.data_dir.join("pods"));
        }
        // Sandboxes of a cluster that gave its pods some (a test that set
        // kubelet.network): torn down on a thread of their own, as this may
        // run inside a Tokio runtime.
        let sandboxed: Vec<(
            shoal_kubelet::process::sandbox::Sandboxes,
            std::path::PathBuf,
        )> = self
            .configs
            .iter()
            .filter(|c| c.kubelet.network != PodNetwork::Host && c.kubelet.runtime.sandboxed())
            .filter_map(|c| {
                let slot = shoal_kubelet::load_slot(&c.data_dir)?;
                let sb = shoal_kubelet::process::sandbox::Sandboxes::for_mode(
                    c.kubelet.network,
                    &c.kubelet.pod_cidr,
                    &slot,
                    &c.data_dir,
                )
                .ok()??;
                Some((sb, c.data_dir.join("pods")))
            })
            .collect();
        if !sandboxed.is_empty() {
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    for (sb, pods) in &sandboxed {
                        shoal_kubelet::process::stop_leftovers(pods, Some(sb)).await;
                        sb.remove_bridge().await;
                    }
                });
            })
            .join();
        }
    }
}

impl LocalCluster {
    /// Starts `n` nodes; node k seeds from the nodes before it.
    pub fn start(n: usize) -> anyhow::Result<LocalCluster> {
        Self::start_with(n, |_| {})
    }

    pub fn start_with(n: usize, tweak: impl Fn(&mut NodeConfig)) -> anyhow::Result<LocalCluster> {
        Self::start_with_options(n, tweak, |_| NodeOptions::default())
    }

    /// Starts `n` nodes with per-node start options (kept for restarts).
    pub fn start_with_options(
        n: usize,
        tweak: impl Fn(&mut NodeConfig),
        options: impl Fn(usize) -> NodeOptions,
    ) -> anyhow::Result<LocalCluster> {
        let names: Vec<String> = (1..=n).map(crate::config::node_name).collect();
        Self::start_named(&names, tweak, options)
    }

    /// Starts one node per name (node k is `names[k - 1]`); node k seeds
    /// from the nodes before it.
    pub fn start_named(
        names: &[String],
        tweak: impl Fn(&mut NodeConfig),
        options: impl Fn(usize) -> NodeOptions,
    ) -> anyhow::Result<LocalCluster> {
        let n = names.len();
        shoal_fabric::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let mut configs = cluster_configs_named(dir.path(), names)?;
        for c in configs.iter_mut() {
            tweak(c);
        }
        certify_roles(dir.path(), &configs)?;
        let options = (1..=n).map(options).collect();
        let mut cluster = LocalCluster {
            dir,
            configs,
            options,
            nodes: Vec::new(),
        };
        for i in 1..=n {
            cluster.nodes.push(None);
            cluster.boot(i)?;
        }
        Ok(cluster)
    }

    fn boot(&mut self, i: usize) -> anyhow::Result<()> {
        let mut cfg = self.configs[i - 1].clone();
        cfg.peers = self
            .configs
            .iter()
            .filter(|c| c.name != cfg.name && c.listen.gossip.port() != 0)
            .map(|c| Peer {
                name: c.name.clone(),
                gossip: c.listen.gossip,
                quic: c.listen.quic,
                api: Some(c.listen.api),
            })
            .collect();
        let node = spawn_node_with(cfg, self.options[i - 1].clone())?;
        // Remember the real ports so a restart comes back on them.
        let c = &mut self.configs[i - 1];
        c.listen.api = node.handle.api_addr;
        c.listen.quic = node.handle.quic_addr;
        c.listen.gossip = node.handle.gossip_addr;
        self.nodes[i - 1] = Some(node);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn config(&self, i: usize) -> &NodeConfig {
        &self.configs[i - 1]
    }

    /// The number (1-based) of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.configs
            .iter()
            .position(|c| c.name == name)
            .map(|i| i + 1)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn node(&self, i: usize) -> &NodeHandle {
        &self.nodes[i - 1].as_ref().expect("node is running").handle
    }

    /// Cuts traffic between the nodes named in `a` and those in `b`, on
    /// every running node, for two minutes at most.
    pub fn partition(&self, a: &[String], b: &[String]) {
        self.add_fault(shoal_fabric::transport::faults::FaultSpec::Partition {
            a: a.to_vec(),
            b: b.to_vec(),
        });
    }

    /// Adds `rule` on every running node, for two minutes at most.
    pub fn add_fault(&self, rule: shoal_fabric::transport::faults::FaultSpec) {
        for i in 1..=self.nodes.len() {
            if self.is_running(i) {
                self.node(i)
                    .faults
                    .apply(shoal_fabric::transport::faults::ChaosCommand::Add {
                        rule: rule.clone(),
                        ttl_ms: Some(120_000),
                    })
                    .expect("a test's fault rule is valid");
            }
        }
    }

    /// Removes every fault rule on every running node.
    pub fn heal(&self) {
        for i in 1..=self.nodes.len() {
            if self.is_running(i) {
                self.node(i)
                    .faults
                    .apply(shoal_fabric::transport::faults::ChaosCommand::Heal)
                    .expect("heal is valid");
            }
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i - 1].is_some()
    }

    /// Crash: drops the node's runtime with no goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i - 1].take() {
            n.halt(false);
        }
    }

    /// Restart-safe shutdown.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i - 1].take() {
            n.halt(true);
        }
    }

    /// Starts a stopped or killed node again, with its data dir and ports.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.boot(i)
    }

    /// Runs `f` on node `i`'s runtime and returns its output.
    pub async fn on<F, Fut, R>(&self, i: usize, f: F) -> R
    where
        F: FnOnce(NodeHandle) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let node = self.nodes[i - 1].as_ref().expect("node is running");
        let h = node.handle.clone();
        node.rt
            .spawn(f(h))
            .await
            .expect("task on the node runtime panicked")
    }
}
