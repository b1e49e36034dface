//! The `[kubelet]` section of the node config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
