//! The `[kubelet]` section of the node config, with its typed choices
//! (the runtime, the pod network), each parsed once from TOML, the
//! environment or the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which runtime runs a node's pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Each container's command runs as a supervised process (pod dirs and
    /// logs under `<data_dir>/pods`).
    #[default]
    Process,
    /// Hollow pods that report Running at once (scale runs).
    Sim,
    /// Images, through the Docker Engine (`docker`): a pause container per
    /// pod on the node's CNI bridge (needs root and the CNI plugins).
    Docker,
}

impl RuntimeKind {
    /// Whether the runtime's pods get the node's CNI sandboxes (bridge,
    /// pod subnet, service rules).
    pub fn sandboxed(self) -> bool {
        matches!(self, RuntimeKind::Process | RuntimeKind::Docker)
    }
}

/// How the process runtime networks its pods (`kubelet.network`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PodNetwork {
    /// `cni` when it can (root and the plugins), else `host`.
    #[default]
    Auto,
    /// A network namespace per pod through the CNI bridge plugin; an agent
    /// without root or the plugins refuses to start.
    Cni,
    /// The host's network, a loopback address per pod.
    Host,
}

/// Which address a node publishes as its InternalIP (`kubelet.node_address`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NodeAddress {
    /// The address the agent advertises to its peers.
    #[default]
    Advertised,
    /// Its pod bridge's gateway (`.1` of its /24): `shoal dev`, whose
    /// nodes share one kernel and one loopback address, gives each node an
    /// address of its own this way (NodePorts answer on it).
    Bridge,
}

macro_rules! names {
    ($t:ty, $what:literal, $($v:ident => $s:literal),+) => {
        impl $t {
            /// Its name in config files, flags and environment variables.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)+
                    other => Err(format!(concat!("{:?} is not ", $what), other)),
                }
            }
        }
    };
}

names!(RuntimeKind, "process, sim or docker", Process => "process", Sim => "sim", Docker => "docker");
names!(PodNetwork, "auto, cni or host", Auto => "auto", Cni => "cni", Host => "host");
names!(NodeAddress, "advertised or bridge", Advertised => "advertised", Bridge => "bridge");

/// The node agent of a worker node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeletConfig {
    /// The node's default runtime, which runs the pods that name no
    /// RuntimeClass: `process` (the default), `docker` or `sim`.
    pub runtime: RuntimeKind,
    /// Further runtimes the node offers beside its default, for pods whose
    /// RuntimeClass names them (`process` and `docker`; `sim` runs alone).
    /// `shoal dev` offers both where the Docker Engine's socket exists.
    pub runtimes: Vec<RuntimeKind>,
    /// The Docker Engine's socket (the docker runtime).
    pub docker_socket: PathBuf,
    /// First restart back-off of a failing container, doubled per restart.
    pub restart_backoff_ms: u64,
    /// The back-off's cap.
    pub restart_backoff_max_ms: u64,
    /// The `shoal` binary whose `shim` subcommand runs each container
    /// instance (empty: this binary).
    pub shim: PathBuf,
    /// Pod networking of the process runtime: `auto` (the default), `cni`
    /// or `host`.
    pub network: PodNetwork,
    /// The cluster's pod range: each Node is given one /24 of it when it
    /// registers (`spec.podCIDR`). The default /12 holds 4,096 nodes; it
    /// must not overlap a host route.
    pub pod_cidr: String,
    /// The node's InternalIP: `advertised` (the default) or `bridge` (its
    /// pod bridge's gateway; only with pod sandboxes).
    pub node_address: NodeAddress,
    /// The cluster's DNS domain (`<svc>.<ns>.svc.<domain>`).
    pub cluster_domain: String,
    /// Where the node's DNS forwards names outside the cluster (`ip:port`
    /// each); empty: the host's `/etc/resolv.conf`.
    pub dns_upstreams: Vec<String>,
    /// The node's DNS port: on the bridge gateway with sandboxes, on the
    /// node's own address without (where port 53 needs root: give a port
    /// above 1023; `shoal dev` gives its i-th node, from 0, port 10053 + i).
    /// 0: no DNS on this node (and, without sandboxes, no proxy at all).
    pub dns_port: u16,
    /// The Ingress controller's HTTP port on the node's address (0: off;
    /// `shoal dev` without sandboxes gives its i-th node 18080 + i).
    pub ingress_http_port: u16,
    /// Its HTTPS port (0: off; `shoal dev` without sandboxes: 18443 + i).
    pub ingress_https_port: u16,
    /// Threads of the Ingress's data plane (0: one per core).
    pub ingress_threads: usize,
}

impl KubeletConfig {
    /// The runtimes the node offers: its default first, then the others
    /// once each; Err when `sim` is combined with another (hollow pods
    /// cannot share a node with real ones).
    pub fn offered(&self) -> Result<Vec<RuntimeKind>, String> {
        let mut all = vec![self.runtime];
        for r in &self.runtimes {
            if !all.contains(r) {
                all.push(*r);
            }
        }
        if all.len() > 1 && all.contains(&RuntimeKind::Sim) {
            return Err(format!(
                "kubelet.runtimes: the sim runtime runs alone (the node offers {})",
                all.iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(all)
    }
}

/// The default pod range: a /12 cut into /24s (`shoal dev` uses
/// 10.88.0.0/16 of it).
pub const DEFAULT_POD_CIDR: &str = "10.80.0.0/12";

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            runtime: RuntimeKind::Process,
            runtimes: Vec::new(),
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            restart_backoff_ms: 10_000,
            restart_backoff_max_ms: 300_000,
            shim: PathBuf::new(),
            network: PodNetwork::Auto,
            pod_cidr: DEFAULT_POD_CIDR.into(),
            node_address: NodeAddress::Advertised,
            cluster_domain: "cluster.local".into(),
            dns_upstreams: Vec::new(),
            dns_port: 53,
            ingress_http_port: 80,
            ingress_https_port: 443,
            ingress_threads: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_from_their_names_and_nothing_else() {
        for k in [RuntimeKind::Process, RuntimeKind::Sim, RuntimeKind::Docker] {
            assert_eq!(k.as_str().parse::<RuntimeKind>(), Ok(k));
        }
        for n in [PodNetwork::Auto, PodNetwork::Cni, PodNetwork::Host] {
            assert_eq!(n.as_str().parse::<PodNetwork>(), Ok(n));
        }
        assert_eq!(
            "kata".parse::<RuntimeKind>(),
            Err("\"kata\" is not process, sim or docker".into())
        );
        assert!("Host".parse::<PodNetwork>().is_err());
        // The TOML spelling is the same.
        let c: KubeletConfig = toml::from_str("runtime = \"sim\"\nnetwork = \"host\"").unwrap();
        assert_eq!((c.runtime, c.network), (RuntimeKind::Sim, PodNetwork::Host));
        assert!(toml::from_str::<KubeletConfig>("runtime = \"kata\"").is_err());
    }

    #[test]
    fn a_node_offers_its_default_runtime_first_and_sim_alone() {
        let c: KubeletConfig =
            toml::from_str("runtime = \"docker\"\nruntimes = [\"process\", \"docker\"]").unwrap();
        assert_eq!(
            c.offered(),
            Ok(vec![RuntimeKind::Docker, RuntimeKind::Process])
        );
        assert_eq!(
            KubeletConfig::default().offered(),
            Ok(vec![RuntimeKind::Process])
        );
        let c: KubeletConfig =
            toml::from_str("runtime = \"sim\"\nruntimes = [\"process\"]").unwrap();
        assert!(c.offered().unwrap_err().contains("sim runtime runs alone"));
    }
}
