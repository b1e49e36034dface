//! Node configuration: one TOML file per node, written by `shoal init`.
//!
//! Loading goes file → environment overrides (`SHOAL_*`) → `validate()`.
//! Relative paths in the file are resolved against the file's directory, so a
//! cluster directory can be moved as a whole. Every field has a named default
//! except the ones that make a node itself (cluster id, name, addresses, TLS).
//! Tests build configs with [`NodeConfig::for_test`], which binds
//! `127.0.0.1:0` everywhere.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use shoal_api::config::KubeApiConfig;
pub use shoal_control::config::ControlPlaneConfig;
pub use shoal_fabric::config::{
    is_node_name, node_name, Auth, Capacity, Gossip, Listen, Peer, Role, Tls, Transport,
};
pub use shoal_kubelet::config::KubeletConfig;
pub use shoal_store::config::StoreConfig;

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
    /// Any DNS-1123 name (`shoal init` writes `node-1` … `node-N`).
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
            self.kubelet.runtime = r.parse().map_err(|e| invalid("SHOAL_KUBELET_RUNTIME", e))?;
        }
        if let Some(list) = get("SHOAL_KUBELET_RUNTIMES") {
            self.kubelet.runtimes = list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid("SHOAL_KUBELET_RUNTIMES", e))?;
        }
        if let Some(s) = get("SHOAL_KUBELET_DOCKER_SOCKET") {
            self.kubelet.docker_socket = PathBuf::from(s);
        }
        if let Some(n) = get("SHOAL_KUBELET_NETWORK") {
            self.kubelet.network = n.parse().map_err(|e| invalid("SHOAL_KUBELET_NETWORK", e))?;
        }
        if let Some(p) = get("SHOAL_KUBELET_DNS_PORT") {
            self.kubelet.dns_port = p
                .parse()
                .map_err(|e| invalid("SHOAL_KUBELET_DNS_PORT", format!("{p:?}: {e}")))?;
        }
        for (var, port) in [
            (
                "SHOAL_KUBELET_INGRESS_HTTP_PORT",
                &mut self.kubelet.ingress_http_port,
            ),
            (
                "SHOAL_KUBELET_INGRESS_HTTPS_PORT",
                &mut self.kubelet.ingress_https_port,
            ),
        ] {
            if let Some(p) = get(var) {
                *port = p.parse().map_err(|e| invalid(var, format!("{p:?}: {e}")))?;
            }
        }
        if let Some(t) = get("SHOAL_KUBELET_INGRESS_THREADS") {
            self.kubelet.ingress_threads = t
                .parse()
                .map_err(|e| invalid("SHOAL_KUBELET_INGRESS_THREADS", format!("{t:?}: {e}")))?;
        }
        if let Some(u) = get("SHOAL_KUBELET_DNS_UPSTREAMS") {
            self.kubelet.dns_upstreams = u
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(a) = get("SHOAL_KUBELET_NODE_ADDRESS") {
            self.kubelet.node_address = a
                .parse()
                .map_err(|e| invalid("SHOAL_KUBELET_NODE_ADDRESS", e))?;
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
        if let Some(p) = self.auth.admin_token_sha256_file.as_mut() {
            fix(p);
        }
        fix(&mut self.gossip.key_file);
        fix(&mut self.store.secrets_key_file);
    }

    /// Checks the whole config; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_node_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?} is not a DNS-1123 name (lowercase letters, digits, '-' and '.')",
                    self.name
                ),
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
        self.kubelet
            .offered()
            .map_err(|e| invalid("kubelet.runtimes", e))?;
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
        let l = &self.listen;
        let unspecified = [l.quic, l.gossip, l.api]
            .iter()
            .any(|a| a.ip().is_unspecified());
        if unspecified && self.listen.advertise.is_none() {
            return Err(invalid(
                "listen.advertise",
                "a node listening on an unspecified address (0.0.0.0) must advertise the address peers reach it at",
            ));
        }
        if self.listen.advertise.is_some_and(|a| a.is_unspecified()) {
            return Err(invalid(
                "listen.advertise",
                "must be a reachable address, not 0.0.0.0",
            ));
        }
        if self.transport.max_bidi_streams == 0 || self.transport.max_uni_streams == 0 {
            return Err(invalid(
                "transport.max_bidi_streams",
                "max_bidi_streams and max_uni_streams must be above 0",
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
        if st.watch_leaderless_ms < 2 * st.election_timeout_max_ms {
            return Err(invalid(
                "store.watch_leaderless_ms",
                "must be at least two election timeouts (store.election_timeout_max_ms)",
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
        if st.voters == 0 || st.voters.is_multiple_of(2) {
            return Err(invalid("store.voters", "must be odd: 1, 3, 5, …"));
        }
        if let Some(v) = st.initial_voters.iter().find(|v| !is_node_name(v)) {
            return Err(invalid(
                "store.initial_voters",
                format!("{v:?} is not a DNS-1123 name"),
            ));
        }
        // A voter without the store role would hold a replica without the
        // secrets key, and serve its readers sealed Secrets.
        if st.initial_voters.contains(&self.name) && !self.has_role(Role::Store) {
            return Err(invalid(
                "store.initial_voters",
                format!(
                    "names this node ({}), whose roles lack \"store\"",
                    self.name
                ),
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
        // Written so that NaN is refused too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(cp.evictions_per_second > 0.0) || cp.workers == 0 {
            return Err(invalid(
                "control_plane.evictions_per_second",
                "rates and workers must be above 0",
            ));
        }
        if cp.percentage_of_nodes_to_score > 100 {
            return Err(invalid(
                "control_plane.percentage_of_nodes_to_score",
                "0 to 100",
            ));
        }
        for u in &self.kubelet.dns_upstreams {
            if u.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    "kubelet.dns_upstreams",
                    format!("{u:?} is not an address:port"),
                ));
            }
        }
        if !is_node_name(&self.kubelet.cluster_domain) {
            return Err(invalid(
                "kubelet.cluster_domain",
                format!("{:?} is not a DNS name", self.kubelet.cluster_domain),
            ));
        }
        if let Err(e) = crate::model::podcidr::PodCidrs::new(&self.kubelet.pod_cidr) {
            return Err(invalid(
                "kubelet.pod_cidr",
                format!("an IPv4 network of /8 to /24: {e}"),
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
            crate::model::alloc::Ranges::new(&self.api.service_cidr, &self.api.node_port_range)
        {
            return Err(invalid("api.service_cidr", e.to_string()));
        }
        let a = &self.api;
        if a.max_connections == 0 || a.max_connections_per_ip == 0 {
            return Err(invalid(
                "api.max_connections",
                "max_connections and max_connections_per_ip must be above 0",
            ));
        }
        if a.tls_handshake_timeout_ms == 0
            || a.header_read_timeout_ms == 0
            || a.idle_timeout_ms == 0
        {
            return Err(invalid(
                "api.header_read_timeout_ms",
                "tls_handshake_timeout_ms, header_read_timeout_ms and idle_timeout_ms must be above 0",
            ));
        }
        for p in &self.peers {
            if !is_node_name(&p.name) {
                return Err(invalid(
                    "peers.name",
                    format!("{:?} is not a DNS-1123 name", p.name),
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
        Self::for_test_named(cluster_dir, cluster_id, index, &node_name(index))
    }

    /// [`NodeConfig::for_test`] for a node named `name`.
    pub fn for_test_named(
        cluster_dir: &Path,
        cluster_id: &str,
        index: usize,
        name: &str,
    ) -> NodeConfig {
        let name = name.to_string();
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
                advertise: None,
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
                admin_token_sha256_file: None,
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
                runtime: crate::kubelet::config::RuntimeKind::Sim,
                // No cluster DNS (nor proxy) unless a test asks for one:
                // in-process nodes run side by side on 127.0.0.1.
                dns_port: 0,
                // Nor an Ingress (the ports would clash).
                ingress_http_port: 0,
                ingress_https_port: 0,
                ..KubeletConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn node_names() {
        // Any DNS-1123 name: the name carries no meaning.
        for ok in [
            "node-1",
            "node-0",
            "alpha",
            "beta-2",
            "c",
            "worker-1",
            "eu-1.rack-4",
        ] {
            assert!(is_node_name(ok), "{ok}");
        }
        for bad in [
            "",
            "node-",
            "-a",
            "Alpha",
            "a_b",
            "a..b",
            "a.",
            &"x".repeat(64),
        ] {
            assert!(!is_node_name(bad), "{bad:?}");
        }
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
        cfg.name = "N_1".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("`name`"));
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.kubelet.pod_cidr = "10.9.0.0/25".into(); // not even one node's /24
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kubelet.pod_cidr"));
        // A worker-only node among the initial voters.
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.store.initial_voters = vec![cfg.name.clone()];
        cfg.roles = vec![Role::Worker];
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("store.initial_voters") && err.contains("store"),
            "{err}"
        );
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        cfg.transport.max_frame_bytes = 1024;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_frame_bytes"));
        // A runtime or network outside the choices: refused when read,
        // naming the variable (the TOML spelling is checked by serde).
        let mut cfg = NodeConfig::for_test(Path::new("/tmp/x"), "c1", 1);
        let err = cfg
            .apply_env(|k| (k == "SHOAL_KUBELET_RUNTIME").then(|| "kata".to_string()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SHOAL_KUBELET_RUNTIME") && err.contains("process, sim or docker"),
            "{err}"
        );
        let err = cfg
            .apply_env(|k| (k == "SHOAL_KUBELET_NETWORK").then(|| "bridge".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto, cni or host"), "{err}");
        let text = toml::to_string(&cfg)
            .unwrap()
            .replace("runtime = \"sim\"", "runtime = \"kata\"");
        assert!(text.contains("runtime = \"kata\""), "{text}");
        let err = toml::from_str::<NodeConfig>(&text).unwrap_err().to_string();
        assert!(err.contains("kata"), "{err}");
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
