//! The `[api]` section of the node config.

use serde::{Deserialize, Serialize};

/// The Kubernetes API of a node with the api role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeApiConfig {
    /// Cluster IPs of Services come from this range (.1 is kept for the
    /// API's own Service).
    pub service_cidr: String,
    /// NodePort Services take ports from this range.
    pub node_port_range: String,
    /// Open connections to the API port, in all. Held to half the
    /// process's descriptor limit (raised to its hard limit at start).
    pub max_connections: usize,
    /// Open connections from one client address. At either cap the
    /// oldest connection that has not sent a request yet is closed to make
    /// room; when every one has, the new connection is refused.
    pub max_connections_per_ip: usize,
    /// The TLS handshake must finish within this.
    pub tls_handshake_timeout_ms: u64,
    /// A request's headers must arrive within this (and the first request
    /// within this of the handshake): slow or silent clients are closed.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (a
    /// watch is in flight for as long as it runs).
    pub idle_timeout_ms: u64,
    /// Watches one client address may hold open at once; more are 429.
    pub max_watches_per_client: usize,
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        KubeApiConfig {
            service_cidr: "10.96.0.0/12".into(),
            node_port_range: "30000-32767".into(),
            max_connections: 4096,
            max_connections_per_ip: 1024,
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 90_000,
            max_watches_per_client: 1024,
        }
    }
}
