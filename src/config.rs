//! Node configuration: one TOML file per node, written by `shoal init`.
//!
//! Loading goes file → environment overrides (`SHOAL_*`) → `validate()`.
//! Relative paths in the file are resolved against the file's directory, so a
//! cluster directory can be moved as a whole. Every field has a named default
//! except the ones that make a node itself (cluster id, name, addresses, TLS).
//! Tests build configs with [`NodeConfig::for_test`], which binds
//! `127.0.0.1:0` everywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What is wrong with a config, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid TOML for shoal: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A role a node can take. The API role is static (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the HTTPS API (kubectl and the shoal CLI talk to it).
    Api,
    /// May hold a store replica.
    Store,
    /// Runs pods (kubelet and proxy).
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Store => "store",
            Role::Worker => "worker",
        }
    }
}

/// Another node this node knows from the start (from `shoal init`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    pub gossip: SocketAddr,
    pub quic: SocketAddr,
    #[serde(default)]
    pub api: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// QUIC actor transport (UDP).
    pub quic: SocketAddr,
    /// SWIM gossip (UDP, AEAD).
    pub gossip: SocketAddr,
    /// HTTPS API.
    pub api: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub admin_token_file: PathBuf,
}

/// SWIM timing. See docs/ARCHITECTURE.md "Failure detection time" for the
/// formula these produce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gossip {
    pub key_file: PathBuf,
    pub probe_period_ms: u64,
    pub probe_rtt_ms: u64,
    /// Suspicion timeout for a cluster of up to 10 nodes; it grows with
    /// `log10(N)` beyond that.
    pub suspect_to_down_ms: u64,
    pub gossip_period_ms: u64,
    pub gossip_fanout: usize,
    /// How often a node with no live peers re-announces to its seeds, and
    /// how often every node re-announces to members it believes down.
    pub announce_period_ms: u64,
    pub max_packet_size: usize,
}

impl Default for Gossip {
    fn default() -> Self {
        Gossip {
            key_file: PathBuf::from("gossip.key"),
            probe_period_ms: 500,
            probe_rtt_ms: 200,
            suspect_to_down_ms: 2_000,
            gossip_period_ms: 200,
            gossip_fanout: 3,
            announce_period_ms: 1_000,
            max_packet_size: 1_200,
        }
    }
}

impl Gossip {
    pub fn probe_period(&self) -> Duration {
        Duration::from_millis(self.probe_period_ms)
    }
    pub fn probe_rtt(&self) -> Duration {
        Duration::from_millis(self.probe_rtt_ms)
    }
    /// Suspicion timeout for a cluster of `n` members: the configured value
    /// up to 10 nodes, then scaled by `log10(n)` as memberlist does.
    pub fn suspect_to_down(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        Duration::from_millis((self.suspect_to_down_ms as f64 * scale) as u64)
    }
    /// Upper bound on the time for every member to see a crash as `down`:
    /// one probe period to notice, a probe round trip plus indirect probes,
    /// the suspicion timeout, and a few gossip rounds to spread the verdict.
    pub fn down_detection_bound(&self, n: usize) -> Duration {
        self.probe_period() * 2
            + self.probe_rtt() * 2
            + self.suspect_to_down(n)
            + Duration::from_millis(self.gossip_period_ms) * 3
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transport {
    /// Largest envelope frame accepted or sent (at least 4 MiB).
    pub max_frame_bytes: usize,
    pub connect_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub keep_alive_ms: u64,
    /// Buffered events per subscription before the subscriber is cut off.
    pub subscription_buffer: usize,
    /// Mailbox capacity of local actors.
    pub mailbox_capacity: usize,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            max_frame_bytes: 8 * 1024 * 1024,
            connect_timeout_ms: 2_000,
            idle_timeout_ms: 10_000,
            keep_alive_ms: 2_000,
            subscription_buffer: 1_024,
            mailbox_capacity: 1_024,
        }
    }
}

/// Resources this node offers to pods; advertised in node metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u64;
        Capacity {
            cpu_millis: cpus * 1000,
            memory_bytes: 8 << 30,
            pods: 110,
        }
    }
}

/// The replicated store (Raft + redb).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The nodes that form the first Raft configuration (`shoal init`
    /// writes the first 3). The first of them initializes the cluster.
    pub initial_voters: Vec<String>,
    /// redb page cache per database, in MiB.
    pub cache_mb: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Log entries kept behind the newest snapshot (the rest are purged).
    pub logs_to_keep: u64,
    /// Revisions of history kept before automatic compaction.
    pub history_revisions: u64,
    /// The state machine is made durable at most this often (like etcd's
    /// backend batch interval); the fsynced Raft log replays what a crash
    /// lost. 0 makes every apply durable.
    pub apply_sync_ms: u64,
    /// Budget of one client write or read, forwarding included.
    pub request_timeout_ms: u64,
    /// Voters autopilot keeps when there are enough healthy nodes.
    pub voters: usize,
    /// A voter SWIM shows `down` this long is replaced (never shorter than
    /// a snapshot transfer or the gossip suspicion timeout).
    pub autopilot_down_after_ms: u64,
    /// 32-byte key (hex) sealing values under `/registry/secrets/`.
    pub secrets_key_file: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            initial_voters: Vec::new(),
            cache_mb: 64,
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every: 10_000,
            logs_to_keep: 1_000,
            history_revisions: 10_000,
            apply_sync_ms: 100,
            request_timeout_ms: 5_000,
            voters: 3,
            autopilot_down_after_ms: 30_000,
            secrets_key_file: PathBuf::from("secrets.key"),
        }
    }
}

/// The Kubernetes API of a node with the api role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeApiConfig {
    /// Cluster IPs of Services come from this range (.1 is kept for the
    /// API's own Service).
    pub service_cidr: String,
    /// NodePort Services take ports from this range.
    pub node_port_range: String,
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        KubeApiConfig {
            service_cidr: "10.96.0.0/12".into(),
            node_port_range: "30000-32767".into(),
        }
    }
}

/// The scheduler and controllers (run on the store leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneConfig {
    /// How long pods stay on a node found unreachable (membership `down`
    /// and its kubelet silent) before they are evicted, unless they
    /// tolerate it for another time. Never below the suspicion timeout.
    pub eviction_toleration_ms: u64,
    /// Evictions per second, cluster-wide.
    pub evictions_per_second: f64,
    /// "LeastAllocated" (spread, the default) or "MostAllocated" (bin packing).
    pub scoring: String,
    /// Share of feasible nodes to find before scoring (0: adaptive, as
    /// kube-scheduler's percentageOfNodesToScore).
    pub percentage_of_nodes_to_score: u32,
    /// Concurrent reconciles per controller.
    pub workers: usize,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            eviction_toleration_ms: 2_000,
            evictions_per_second: 200.0,
            scoring: "LeastAllocated".into(),
            percentage_of_nodes_to_score: 0,
            workers: 4,
        }
    }
}

/// The node agent of a worker node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeletConfig {
    /// "process" (the default: each container's command runs as a
    /// supervised process; pod dirs and logs under `<data_dir>/pods`) or
    /// "sim" (hollow pods, for scale runs).
    pub runtime: String,
    /// First restart back-off of a failing container, doubled per restart.
    pub restart_backoff_ms: u64,
    /// The back-off's cap.
    pub restart_backoff_max_ms: u64,
    /// The `shoal` binary whose `shim` subcommand runs each container
    /// instance (empty: this binary).
    pub shim: PathBuf,
    /// Pod networking of the process runtime: "cni" (a network namespace
    /// per pod through the CNI bridge plugin; needs root and the plugins),
    /// "host" (the host's network, a loopback address per pod) or "auto"
    /// (cni when it can).
    pub network: String,
    /// The pods' addresses: node n takes the nth /24 (it must not overlap
    /// a host route).
    pub pod_cidr: String,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            runtime: "process".into(),
            restart_backoff_ms: 10_000,
            restart_backoff_max_ms: 300_000,
            shim: PathBuf::new(),
            network: "auto".into(),
            pod_cidr: "10.88.0.0/16".into(),
        }
    }
}

fn default_worker_threads() -> usize {
    2
}

fn default_roles() -> Vec<Role> {
    vec![Role::Api, Role::Store, Role::Worker]
}
fn default_region() -> String {
    "local".into()
}
fn default_zone() -> String {
    "a".into()
}

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub cluster_id: String,
    /// `node-1` … `node-N`.
    pub name: String,
    pub data_dir: PathBuf,
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_zone")]
    pub zone: String,
    /// tokio worker threads of the node's runtime; 0 runs everything (actors,
    /// transport, gossip) on the one actor thread.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    pub listen: Listen,
    pub tls: Tls,
    pub auth: Auth,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub gossip: Gossip,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub capacity: Capacity,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub api: KubeApiConfig,
    #[serde(default)]
    pub control_plane: ControlPlaneConfig,
    #[serde(default)]
    pub kubelet: KubeletConfig,
}

impl NodeConfig {
    /// Loads, applies environment overrides, resolves paths and validates.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    /// `SHOAL_ZONE`, `SHOAL_REGION` and `SHOAL_DATA_DIR` override the file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(z) = get("SHOAL_ZONE") {
            self.zone = z;
        }
        if let Some(r) = get("SHOAL_REGION") {
            self.region = r;
        }
        if let Some(d) = get("SHOAL_DATA_DIR") {
            self.data_dir = PathBuf::from(d);
        }
        if let Some(r) = get("SHOAL_KUBELET_RUNTIME") {
            self.kubelet.runtime = r;
        }
        if let Some(n) = get("SHOAL_KUBELET_NETWORK") {
            self.kubelet.network = n;
        }
        if let Some(c) = get("SHOAL_KUBELET_POD_CIDR") {
            self.kubelet.pod_cidr = c;
        }
        Ok(())
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.auth.admin_token_file);
        fix(&mut self.gossip.key_file);
        fix(&mut self.store.secrets_key_file);
    }

    /// Checks the whole config; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_node_name(&self.name) {
            return Err(invalid(
                "name",
                format!("{:?} is not of the form node-N", self.name),
            ));
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 64 {
            return Err(invalid("cluster_id", "must be 1 to 64 characters"));
        }
        if self.roles.is_empty() {
            return Err(invalid("roles", "a node needs at least one role"));
        }
        if self.worker_threads > 64 {
            return Err(invalid("worker_threads", "at most 64"));
        }
        if self.zone.is_empty() {
            return Err(invalid("zone", "must not be empty"));
        }
        let g = &self.gossip;
        if g.probe_period_ms == 0 || g.probe_rtt_ms == 0 || g.probe_rtt_ms >= g.probe_period_ms {
            return Err(invalid(
                "gossip.probe_rtt_ms",
                "must be above 0 and below gossip.probe_period_ms",
            ));
        }
        if g.suspect_to_down_ms == 0 {
            return Err(invalid("gossip.suspect_to_down_ms", "must be above 0"));
        }
        if g.gossip_period_ms == 0 || g.gossip_fanout == 0 || g.announce_period_ms == 0 {
            return Err(invalid(
                "gossip.gossip_period_ms",
                "periods and fanout must be above 0",
            ));
        }
        if !(512..=65_000).contains(&g.max_packet_size) {
            return Err(invalid(
                "gossip.max_packet_size",
                "must be between 512 and 65000",
            ));
        }
        if self.transport.max_frame_bytes < 4 * 1024 * 1024 {
            return Err(invalid(
                "transport.max_frame_bytes",
                "must be at least 4 MiB",
            ));
        }
        let st = &self.store;
        if st.heartbeat_ms == 0
            || st.election_timeout_min_ms <= st.heartbeat_ms
            || st.election_timeout_max_ms <= st.election_timeout_min_ms
        {
            return Err(invalid(
                "store.election_timeout_min_ms",
                "need heartbeat < election min < election max",
            ));
        }
        if st.cache_mb == 0
            || st.snapshot_every == 0
            || st.history_revisions == 0
            || st.request_timeout_ms == 0
        {
            return Err(invalid(
                "store.cache_mb",
                "store sizes and periods must be above 0",
            ));
        }
        // A snapshot transfer may take install_snapshot_timeout (2 s).
        let floor = self.gossip.suspect_to_down_ms.max(2_000);
        if st.autopilot_down_after_ms < floor {
            return Err(invalid(
                "store.autopilot_down_after_ms",
                format!("must be at least {floor} (suspicion timeout, snapshot transfer)"),
            ));
        }
        if st.voters == 0 || st.voters % 2 == 0 {
            return Err(invalid("store.voters", "must be odd: 1, 3, 5, …"));
        }
        if let Some(v) = st.initial_voters.iter().find(|v| !is_node_name(v)) {
            return Err(invalid(
                "store.initial_voters",
                format!("{v:?} is not of the form node-N"),
            ));
        }
        if self.transport.subscription_buffer == 0 || self.transport.mailbox_capacity == 0 {
            return Err(invalid(
                "transport.subscription_buffer",
                "buffers must be above 0",
            ));
        }
        let cp = &self.control_plane;
        if cp.eviction_toleration_ms < self.gossip.suspect_to_down_ms {
            return Err(invalid(
                "control_plane.eviction_toleration_ms",
                format!(
                    "must be at least the suspicion timeout ({} ms)",
                    self.gossip.suspect_to_down_ms
                ),
            ));
        }
        if !(cp.evictions_per_second > 0.0) || cp.workers == 0 {
            return Err(invalid(
                "control_plane.evictions_per_second",
                "rates and workers must be above 0",
            ));
        }
        if cp.scoring != "LeastAllocated" && cp.scoring != "MostAllocated" {
            return Err(invalid(
                "control_plane.scoring",
                "LeastAllocated or MostAllocated",
            ));
        }
        if cp.percentage_of_nodes_to_score > 100 {
            return Err(invalid(
                "control_plane.percentage_of_nodes_to_score",
                "0 to 100",
            ));
        }
        if self.kubelet.runtime != "sim" && self.kubelet.runtime != "process" {
            return Err(invalid("kubelet.runtime", "sim or process"));
        }
        if !["auto", "cni", "host"].contains(&self.kubelet.network.as_str()) {
            return Err(invalid("kubelet.network", "auto, cni or host"));
        }
        if let Err(e) = crate::kubelet::process::sandbox::Net::parse(&self.kubelet.pod_cidr) {
            return Err(invalid(
                "kubelet.pod_cidr",
                &format!("an IPv4 network: {e}"),
            ));
        }
        if self.kubelet.restart_backoff_ms == 0
            || self.kubelet.restart_backoff_max_ms < self.kubelet.restart_backoff_ms
        {
            return Err(invalid(
                "kubelet.restart_backoff_ms",
                "above 0 and at most restart_backoff_max_ms",
            ));
        }
        if let Err(e) =
            crate::api::alloc::Ranges::new(&self.api.service_cidr, &self.api.node_port_range)
        {
            return Err(invalid("api.service_cidr", e));
        }
        for p in &self.peers {
            if !is_node_name(&p.name) {
                return Err(invalid(
                    "peers.name",
                    format!("{:?} is not of the form node-N", p.name),
                ));
            }
            if p.name == self.name {
                return Err(invalid("peers", "a node must not list itself as a peer"));
            }
        }
        Ok(())
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// A config for in-process tests: loopback, port 0 everywhere, fast
    /// gossip. `dir` holds the cluster files (see `pki::write_cluster_files`).
    pub fn for_test(cluster_dir: &Path, cluster_id: &str, index: usize) -> NodeConfig {
        let name = node_name(index);
        let any = "127.0.0.1:0".parse().expect("literal address");
        NodeConfig {
            cluster_id: cluster_id.into(),
            name: name.clone(),
            data_dir: cluster_dir.join(&name).join("data"),
            roles: default_roles(),
            region: default_region(),
            zone: ["a", "b", "c"][(index - 1) % 3].into(),
            worker_threads: default_worker_threads(),
            listen: Listen {
                quic: any,
                gossip: any,
                api: any,
            },
            tls: Tls {
                ca: cluster_dir.join("ca.pem"),
                cert: cluster_dir.join(&name).join("cert.pem"),
                key: cluster_dir.join(&name).join("key.pem"),
            },
            auth: Auth {
                admin_token_file: cluster_dir.join("admin.token"),
            },
            peers: Vec::new(),
            gossip: Gossip {
                key_file: cluster_dir.join("gossip.key"),
                ..Gossip::default()
            },
            transport: Transport::default(),
            capacity: Capacity::default(),
            store: StoreConfig {
                secrets_key_file: cluster_dir.join("secrets.key"),
                ..StoreConfig::default()
            },
            api: KubeApiConfig::default(),
            control_plane: ControlPlaneConfig::default(),
            // In-process clusters run hollow pods unless a test asks for
            // processes.
            kubelet: KubeletConfig {
                runtime: "sim".into(),
                ..KubeletConfig::default()
            },
        }
    }
}

/// `node-1` … `node-N`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// True for `node-N` with N a positive integer without leading zeros.
pub fn is_node_name(s: &str) -> bool {
    match s.strip_prefix("node-") {
        Some(n) => {
            !n.is_empty()
                && !n.starts_with('0')
                && n.len() <= 9
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(is_node_name("node-1"));
        assert!(is_node_name("node-42"));
        assert!(!is_node_name("node-0"));
        assert!(!is_node_name("node-01"));
        assert!(!is_node_name("node-"));
        assert!(!is_node_name("worker-1"));
    }

    #[test]
    fn round_trips_through_toml_and_validates() {
        let cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 2);
        let text = toml::to_string(&cfg).unwrap();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg, back);
        back.validate().unwrap();
        assert_eq!(back.zone, "b");
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.gossip.probe_rtt_ms = cfg.gossip.probe_period_ms;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("gossip.probe_rtt_ms"), "{err}");
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.name = "n1".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("`name`"));
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.transport.max_frame_bytes = 1024;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_frame_bytes"));
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.kubelet.runtime = "docker".into();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kubelet.runtime"));
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.kubelet.restart_backoff_max_ms = 1;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kubelet.restart_backoff_ms"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        let text = toml::to_string(&cfg).unwrap() + "\nbogus = 1\n";
        assert!(toml::from_str::<NodeConfig>(&text).is_err());
    }

    #[test]
    fn env_overrides_apply() {
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.apply_env(|k| (k == "SHOAL_ZONE").then(|| "z9".to_string()))
            .unwrap();
        assert_eq!(cfg.zone, "z9");
    }

    #[test]
    fn the_example_config_is_valid_and_complete() {
        let text = include_str!("../config/example-node.toml");
        let mut cfg: NodeConfig = toml::from_str(text).unwrap();
        cfg.resolve_paths(Path::new("/x"));
        cfg.validate().unwrap();
        assert_eq!(
            cfg.gossip,
            Gossip {
                key_file: PathBuf::from("/x/gossip.key"),
                ..Gossip::default()
            }
        );
        assert_eq!(cfg.transport, Transport::default());
        assert_eq!(cfg.kubelet, KubeletConfig::default());
        assert_eq!(
            cfg.store,
            StoreConfig {
                initial_voters: vec!["node-1".into(), "node-2".into(), "node-3".into()],
                secrets_key_file: PathBuf::from("/x/secrets.key"),
                ..StoreConfig::default()
            }
        );
    }

    #[test]
    fn default_detection_bound_is_under_five_seconds_for_ten_nodes() {
        let g = Gossip::default();
        assert!(
            g.down_detection_bound(10) < Duration::from_secs(5),
            "{:?}",
            g.down_detection_bound(10)
        );
        assert!(g.suspect_to_down(100) > g.suspect_to_down(10));
    }
}
