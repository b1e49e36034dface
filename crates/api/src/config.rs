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
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        KubeApiConfig {
            service_cidr: "10.96.0.0/12".into(),
            node_port_range: "30000-32767".into(),
        }
    }
}
