//! Configuration of a node's identity, transport and membership: the
//! sections of the node config (`shoal::config::NodeConfig`) that this
//! crate reads. Loading, environment overrides and validation of the whole
//! file live with `NodeConfig` in the `shoal` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A role a node can take. The API role is static: set in config, so the address in a
/// kubeconfig stays valid while store voters move.
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
    /// The address peers and clients reach this node at, when it listens
    /// on an unspecified address (`0.0.0.0`); by default each listen
    /// address is its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<std::net::IpAddr>,
}

impl Listen {
    /// The address others reach `bound` (one of this node's sockets) at.
    pub fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        match self.advertise {
            Some(ip) => SocketAddr::new(ip, bound.port()),
            None => bound,
        }
    }
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
    /// The admin token, read by nodes with the `api` role.
    pub admin_token_file: PathBuf,
    /// The token's SHA-256 (hex), which a node without the `api` role
    /// checks bearer tokens against instead: it never holds the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_sha256_file: Option<PathBuf>,
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
    /// Request streams (asks, subscriptions) a peer may have open on one
    /// connection at once; more wait for one to end (QUIC flow control).
    pub max_bidi_streams: u32,
    /// Ordered-tell streams a peer may have open on one connection.
    pub max_uni_streams: u32,
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
            max_bidi_streams: 256,
            max_uni_streams: 64,
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

/// `node-1` … `node-N`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// True for a valid node name: a DNS-1123 subdomain (lowercase letters,
/// digits, '-' and '.', starting and ending with a letter or digit, at most
/// 253 characters), as Kubernetes requires of Node names. Names carry no
/// meaning: `alpha`, `beta-2` and `node-7` are all just names.
pub fn is_node_name(s: &str) -> bool {
    is_dns1123_subdomain(s)
}

/// Is `s` a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63)? The
/// one implementation: node names here, object names in the object model.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Is `s` a DNS-1123 subdomain (dot-separated labels, ≤ 253)?
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}
