//! Pod sandboxes as root: a network namespace per pod wired by the real
//! CNI plugins (`bridge` + `host-local` + `loopback`, invoked per the CNI
//! spec), an IPC namespace shared by the pod's containers, and cgroups
//! with the containers' cpu and memory limits.
//!
//! ```text
//! node ── bridge shoal-<i> (gateway .1 of the node's /24, the i-th of kubelet.pod_cidr, given at registration)
//!             ├─ veth ─► netns shoal-<n>-<uid> (eth0 10.88.n.x, lo) ◄─ setns by the shim
//!             └─ ...
//! host: FORWARD accept for the pod CIDR (Docker's policy drops), one MASQUERADE
//!       rule for what leaves it; IPAM files under <data_dir>/cni
//! ```
//!
//! Everything a sandbox holds is named after the pod's uid (netns, IPC
//! file, cgroups, CNI container id), so tearing one down is idempotent and
//! works from names alone, also for what a previous agent left behind.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod host;

use crate::config::PodNetwork;
use crate::RuntimeError;
use shoal_model::podcidr::PodSlot;
use shoal_model::quantity::Quantity;

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub const CNI_PLUGINS: &str = "/usr/lib/cni";
/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Where the pods' IPC namespaces are pinned.
const IPC_DIR: &str = "/run/shoal/ipc";

/// How a pod's sandbox is set up, for the shim (`shoal shim --sandbox`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enter {
    /// The network namespace to join (a file under /run/netns).
    pub netns: Option<PathBuf>,
    /// The IPC namespace to join (a pinned nsfs file).
    pub ipc: Option<PathBuf>,
    /// `cgroup.procs` files the container joins.
    pub cgroups: Vec<PathBuf>,
    /// Bind mounts into the container's own mount namespace.
    pub mounts: Vec<Mount>,
    /// The container's user, groups, capabilities and root mount.
    #[serde(default)]
    pub security: super::security::Security,
}

/// One bind mount of a volume at a container's mountPath.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// What one pod's sandbox holds (saved in its `pod.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub netns: String,
    pub ip: String,
}

/// The sandboxes of one node.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    /// The index of the node's /24 in the pod range (names its bridge,
    /// namespaces and cgroups).
    node: u32,
    /// The whole pod CIDR (every node's /24 is in it).
    cidr: Net,
    /// This node's /24.
    subnet: Net,
    plugins: PathBuf,
    ipam_dir: PathBuf,
    /// The cgroup directories pods go under, one per hierarchy
    /// (`memory` and `cpu` on v1; one directory on v2), if writable.
    cgroups: Vec<(Controller, PathBuf)>,
    /// The cluster's DNS domain (pods' search list).
    cluster_domain: String,
}

/// A cgroup hierarchy and which limits it takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Controller {
    MemoryV1,
    CpuV1,
    V2,
}

/// An IPv4 network: base address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Net {
    base: u32,
    prefix: u8,
}

impl Net {
    /// Parses `a.b.c.d/len` (host bits must be zero).
    pub(crate) fn parse(s: &str) -> Result<Net, String> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let ip: std::net::Ipv4Addr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: bad prefix length"))?;
        let net = Net {
            base: u32::from(ip),
            prefix,
        };
        if net.base & !net.mask() != 0 {
            return Err(format!("{s:?}: host bits are set"));
        }
        Ok(net)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Net) -> bool {
        let m = self.mask() & other.mask();
        self.base & m == other.base & m
    }

    fn addr(&self, host: u32) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(self.base | host)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Runs a command; its stdout, or why it failed.
async fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The CNI plugins pod sandboxes need, all present in [`CNI_PLUGINS`].
fn have_plugins() -> bool {
    let plugins = Path::new(CNI_PLUGINS);
    ["bridge", "host-local", "loopback"]
        .iter()
        .all(|p| plugins.join(p).exists())
}

/// The pod network a node gets for `kubelet.network` on this machine, as
/// a console names it: `shoal dev` prints it, so a degraded cluster says
/// so where its user looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A network namespace per pod on the node's CNI bridge.
    Cni,
    /// The host's network with a loopback address per pod; `why` says why
    /// (and what to install or run for sandboxes), `None` when asked for.
    Host { why: Option<String> },
}

impl NetworkMode {
    /// What `kubelet.network = mode` gives here (`cni` is taken as asked:
    /// an agent that cannot honour it refuses to start, saying why).
    pub fn resolve(mode: PodNetwork) -> NetworkMode {
        match mode {
            PodNetwork::Host => NetworkMode::Host { why: None },
            PodNetwork::Auto if !is_root() => NetworkMode::Host {
                why: Some(
                    "shoal runs without root and pod sandboxes need it (run as root: sudo ./scripts/dev.sh)".into(),
                ),
            },
            PodNetwork::Auto if !have_plugins() => NetworkMode::Host {
                why: Some(format!(
                    "the CNI plugins bridge, host-local and loopback are not in {CNI_PLUGINS} (install Debian's containernetworking-plugins, as ./scripts/dev.sh does)"
                )),
            },
            _ => NetworkMode::Cni,
        }
    }

    /// One line for a console: the mode, and for host networking what it
    /// means and why it was chosen.
    pub fn describe(&self, pod_cidr: &str) -> String {
        match self {
            NetworkMode::Cni => format!(
                "network: cni (each pod has its own network namespace and an address from its node's /24 of {pod_cidr})"
            ),
            NetworkMode::Host { why: None } => "network: host (asked for: pods share the host's network, each with a loopback IP 127.<node>.x.y)".into(),
            NetworkMode::Host { why: Some(why) } => format!(
                "network: host (degraded: pods share the host's network, each with a loopback IP 127.<node>.x.y, so two pods cannot listen on one port; why: {why})"
            ),
        }
    }
}

impl Sandboxes {
    /// Whether `kubelet.network` gives pods sandboxes on this machine
    /// (`auto`: when root and the plugins are installed; `cni`: required,
    /// an error says what is missing; `host`: never). Checked when a node
    /// starts, before it has its pod CIDR.
    pub fn wanted(mode: PodNetwork) -> Result<bool, RuntimeError> {
        Self::wanted_why(mode).map_err(RuntimeError::Unsupported)
    }

    fn wanted_why(mode: PodNetwork) -> Result<bool, String> {
        let have = have_plugins();
        match mode {
            PodNetwork::Host => Ok(false),
            PodNetwork::Auto => Ok(is_root() && have),
            PodNetwork::Cni if !is_root() => Err("kubelet.network = cni needs root".into()),
            PodNetwork::Cni if !have => Err(format!(
                "kubelet.network = cni needs the CNI plugins bridge, host-local and loopback in {CNI_PLUGINS} (Debian: containernetworking-plugins)"
            )),
            PodNetwork::Cni => Ok(true),
        }
    }

    /// The sandboxes of the node holding `slot` of `pod_cidr`, if
    /// `kubelet.network` gives pods sandboxes here (see [`Sandboxes::wanted`]).
    pub fn for_mode(
        mode: PodNetwork,
        pod_cidr: &str,
        slot: &PodSlot,
        data_dir: &Path,
    ) -> Result<Option<Sandboxes>, RuntimeError> {
        if !Sandboxes::wanted(mode)? {
            return Ok(None);
        }
        Self::for_slot(pod_cidr, slot, data_dir)
            .map(Some)
            .map_err(RuntimeError::Unsupported)
    }

    fn for_slot(pod_cidr: &str, slot: &PodSlot, data_dir: &Path) -> Result<Sandboxes, String> {
        let plugins = PathBuf::from(CNI_PLUGINS);
        let cidr = Net::parse(pod_cidr).map_err(|e| format!("kubelet.pod_cidr {e}"))?;
        let subnet = Net::parse(&slot.cidr).map_err(|e| format!("the node's pod CIDR {e}"))?;
        if !cidr.overlaps(&subnet) {
            return Err(format!(
                "the node's pod CIDR {} is not in kubelet.pod_cidr {cidr}",
                slot.cidr
            ));
        }
        let node = slot.index;
        Ok(Sandboxes {
            node,
            cidr,
            subnet,
            plugins,
            ipam_dir: data_dir.join("cni"),
            cgroups: cgroup_parents(node),
            cluster_domain: "cluster.local".into(),
        })
    }

    /// With `domain` as the cluster's DNS domain (`kubelet.cluster_domain`).
    pub fn with_cluster_domain(mut self, domain: &str) -> Sandboxes {
        self.cluster_domain = domain.to_string();
        self
    }

    /// The cluster's DNS domain.
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// This node's pod subnet.
    pub fn subnet(&self) -> Net {
        self.subnet
    }

    fn bridge(&self) -> String {
        format!("shoal-{}", self.node)
    }

    /// The network namespace of pod `uid`.
    pub fn netns_of(&self, uid: &str) -> String {
        format!("shoal-{}-{uid}", self.node)
    }

    /// Where the network namespace of pod `uid` is mounted.
    pub fn netns_path(&self, uid: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(self.netns_of(uid))
    }

    fn ipc_of(&self, uid: &str) -> PathBuf {
        Path::new(IPC_DIR).join(self.netns_of(uid))
    }

    /// Checks the host and prepares it, once at start: the pod CIDR must
    /// not overlap a host route; the forward and masquerade rules; IPAM
    /// records of pods that are gone (not in `keep`) are dropped, and so
    /// are their network namespaces.
    pub async fn prepare(&self, keep: &[String]) -> Result<(), RuntimeError> {
        self.prepare_host(keep).await.map_err(RuntimeError::Host)
    }

    /// The CNI network configuration of this node.
    fn netconf(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.bridge(),
            "type": "bridge",
            "bridge": self.bridge(),
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet.to_string(), "gateway": self.subnet.addr(1).to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            }
        })
    }

    /// Invokes a CNI plugin (`command` ADD or DEL) for pod `uid`.
    async fn cni(
        &self,
        command: &str,
        uid: &str,
        ifname: &str,
        conf: &Value,
    ) -> Result<Value, String> {
        use tokio::io::AsyncWriteExt;
        let plugin = conf.get("type").and_then(Value::as_str).unwrap_or("");
        let netns = Path::new(NETNS_DIR).join(self.netns_of(uid));
        let mut child = tokio::process::Command::new(self.plugins.join(plugin))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", uid)
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugins)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("CNI plugin {plugin}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(conf.to_string().as_bytes()).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("CNI plugin {plugin}: {e}"))?;
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() {
            Ok(result)
        } else {
            let msg = result
                .get("msg")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            Err(format!("CNI {command} {plugin}: {msg}"))
        }
    }

    /// Creates pod `uid`'s sandbox: its network namespace with an address
    /// of the node's subnet, its IPC namespace and its cgroups.
    pub async fn create(&self, uid: &str) -> Result<Sandbox, RuntimeError> {
        self.create_host(uid).await.map_err(RuntimeError::Host)
    }

    async fn create_host(&self, uid: &str) -> Result<Sandbox, String> {
        let sandbox = self.wire(uid, None).await?;
        let ipc = self.ipc_of(uid);
        if !is_pinned(&ipc) {
            std::fs::create_dir_all(IPC_DIR).map_err(|e| format!("{IPC_DIR}: {e}"))?;
            std::fs::write(&ipc, b"").map_err(|e| format!("{}: {e}", ipc.display()))?;
            let pin = format!("--ipc={}", ipc.display());
            run("unshare", &[&pin, "true"]).await?;
        }
        Ok(sandbox)
    }

    /// Gives pod `uid` the network namespace of process `holder` (a
    /// docker sandbox's pause process), named and wired as the process
    /// runtime's own: mounted under /run/netns, then CNI ADD.
    pub async fn wire_process(&self, uid: &str, holder: u32) -> Result<Sandbox, RuntimeError> {
        self.wire(uid, Some(holder))
            .await
            .map_err(RuntimeError::Host)
    }

    /// The pod's network namespace (a new one, or `holder`'s), with `lo`
    /// up and `eth0` on the node's bridge with an address of its subnet.
    async fn wire(&self, uid: &str, holder: Option<u32>) -> Result<Sandbox, String> {
        let netns = self.netns_of(uid);
        if !Path::new(NETNS_DIR).join(&netns).exists() {
            match holder {
                None => run("ip", &["netns", "add", &netns]).await?,
                Some(pid) => run("ip", &["netns", "attach", &netns, &pid.to_string()]).await?,
            };
        }
        let lo = json!({"cniVersion": "1.0.0", "name": "shoal-lo", "type": "loopback"});
        self.cni("ADD", uid, "lo", &lo).await?;
        let result = self.cni("ADD", uid, "eth0", &self.netconf()).await?;
        let ip = result
            .pointer("/ips/0/address")
            .and_then(Value::as_str)
            .and_then(|a| a.split('/').next())
            .ok_or_else(|| format!("CNI ADD bridge: no address in its result {result}"))?
            .to_string();
        Ok(Sandbox { netns, ip })
    }

    /// What a container of pod `uid` joins: the pod's namespaces and its
    /// own cgroups (created here, with the container's limits). A limit
    /// that cannot be set is an error: the container must not run
    /// unlimited.
    pub fn enter(&self, uid: &str, container: &Container) -> Result<Enter, RuntimeError> {
        let name = container.name.as_str();
        let CgroupLimits {
            memory_bytes: memory,
            cpu_quota_us: cpu,
        } = CgroupLimits::of(container);
        if (memory.is_some() || cpu.is_some()) && self.cgroups.is_empty() {
            return Err(RuntimeError::Host(
                "the container has resource limits and this node has no writable cgroup to enforce them"
                    .into(),
            ));
        }
        let mut cgroups = Vec::new();
        for (ctl, parent) in &self.cgroups {
            let dir = parent.join(uid).join(name);
            std::fs::create_dir_all(&dir).map_err(|e| {
                RuntimeError::Host(format!("creating the cgroup {}: {e}", dir.display()))
            })?;
            let write = |file: &str, value: String| {
                std::fs::write(dir.join(file), &value).map_err(|e| {
                    RuntimeError::Host(format!(
                        "setting the cgroup limit {}/{file} to {value}: {e}",
                        dir.display()
                    ))
                })
            };
            match ctl {
                Controller::MemoryV1 => {
                    if let Some(m) = memory {
                        write("memory.limit_in_bytes", m.to_string())?;
                    }
                }
                Controller::CpuV1 => {
                    if let Some(q) = cpu {
                        write("cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                        write("cpu.cfs_quota_us", q.to_string())?;
                    }
                }
                Controller::V2 => {
                    if let Some(m) = memory {
                        write("memory.max", m.to_string())?;
                    }
                    if let Some(q) = cpu {
                        write("cpu.max", format!("{q} {CPU_PERIOD_US}"))?;
                    }
                }
            }
            cgroups.push(dir.join("cgroup.procs"));
        }
        Ok(Enter {
            netns: Some(Path::new(NETNS_DIR).join(self.netns_of(uid))),
            ipc: Some(self.ipc_of(uid)),
            cgroups,
            mounts: Vec::new(),
            security: Default::default(),
        })
    }

    /// Tears pod `uid`'s sandbox down (idempotent; its processes are gone):
    /// CNI DEL, the network namespace (and its veth), the IPC namespace,
    /// the cgroups.
    pub async fn destroy(&self, uid: &str) {
        let netns = self.netns_of(uid);
        if Path::new(NETNS_DIR).join(&netns).exists() {
            if let Err(e) = self.cni("DEL", uid, "eth0", &self.netconf()).await {
                tracing::warn!(pod = %uid, "{e}");
            }
            if let Err(e) = run("ip", &["netns", "del", &netns]).await {
                tracing::warn!(pod = %uid, "{e}");
            }
        } else {
            // No namespace left: release its address all the same.
            let _ = self.cni("DEL", uid, "eth0", &self.netconf()).await;
        }
        let ipc = self.ipc_of(uid);
        if is_pinned(&ipc) {
            let _ = run("umount", &[&ipc.display().to_string()]).await;
        }
        let _ = std::fs::remove_file(&ipc);
        for (_, parent) in &self.cgroups {
            let dir = parent.join(uid);
            if let Ok(children) = std::fs::read_dir(&dir) {
                for c in children.flatten() {
                    if c.path().is_dir() {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Whether `path` is a pinned namespace (an nsfs mount).
fn is_pinned(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// The period of the CFS quota written for a cpu limit, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts (1ms), as upstream's kubelet.
const MIN_QUOTA_US: u64 = 1_000;

/// The cgroup limits of one container, from its `resources.limits`, read
/// with the one quantity parser the scheduler also uses: memory in bytes
/// (rounded up), and the cpu limit as a CFS quota per 100ms period
/// (upstream's `MilliCPUToQuota`: millicores × 100, at least 1ms). A
/// missing, malformed or non-positive limit sets nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    pub memory_bytes: Option<u64>,
    pub cpu_quota_us: Option<u64>,
}

impl CgroupLimits {
    pub fn of(container: &Container) -> CgroupLimits {
        let limit = |name: &str| -> Option<Quantity> {
            let v = container.resources.as_ref()?.limits.as_ref()?.get(name)?;
            let q = Quantity::parse(&v.0).ok()?;
            (q > Quantity::zero(q.format())).then_some(q)
        };
        CgroupLimits {
            memory_bytes: limit("memory").and_then(|q| u64::try_from(q.value()).ok()),
            cpu_quota_us: limit("cpu")
                .and_then(|q| u64::try_from(q.milli_value()).ok())
                .map(|milli| milli.saturating_mul(CPU_PERIOD_US / 1000).max(MIN_QUOTA_US)),
        }
    }
}

/// The writable cgroup directories pods of node `node` go under: beside
/// this agent's own cgroup, in each hierarchy.
fn cgroup_parents(node: u32) -> Vec<(Controller, PathBuf)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path_of = |pred: &dyn Fn(&str) -> bool| {
        own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            pred(ctl).then(|| path.trim_start_matches('/').to_string())
        })
    };
    let root = Path::new("/sys/fs/cgroup");
    let leaf = format!("shoal-{node}");
    let mut out = Vec::new();
    if root.join("cgroup.controllers").exists() {
        // Pure v2: one hierarchy; the controllers are enabled down the way.
        if let Some(p) = path_of(&|c| c.is_empty()) {
            let parent = root.join(p).join(&leaf);
            if std::fs::create_dir_all(&parent).is_ok() {
                let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory");
                out.push((Controller::V2, parent));
            }
        }
        return out;
    }
    for (ctl, name) in [(Controller::MemoryV1, "memory"), (Controller::CpuV1, "cpu")] {
        let Some(p) = path_of(&|c| c.split(',').any(|x| x == name)) else {
            continue;
        };
        let parent = root.join(name).join(p).join(&leaf);
        if std::fs::create_dir_all(&parent).is_ok() {
            out.push((ctl, parent));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_mode_says_why_it_is_degraded() {
        assert_eq!(
            NetworkMode::resolve(PodNetwork::Host),
            NetworkMode::Host { why: None }
        );
        assert_eq!(NetworkMode::resolve(PodNetwork::Cni), NetworkMode::Cni);
        let auto = NetworkMode::resolve(PodNetwork::Auto);
        if is_root() && have_plugins() {
            assert_eq!(auto, NetworkMode::Cni);
        } else {
            assert!(
                matches!(auto, NetworkMode::Host { why: Some(_) }),
                "{auto:?}"
            );
        }
        let why = NetworkMode::Host {
            why: Some("no plugins".into()),
        };
        let line = why.describe("10.88.0.0/16");
        assert!(line.starts_with("network: host (degraded: "), "{line}");
        assert!(line.ends_with("why: no plugins)"), "{line}");
        assert_eq!(
            NetworkMode::Cni.describe("10.9.0.0/16"),
            "network: cni (each pod has its own network namespace and an address from its node's /24 of 10.9.0.0/16)"
        );
    }

    #[test]
    fn networks_parse_and_overlap() {
        let cidr = Net::parse("10.88.0.0/16").unwrap();
        assert!(Net::parse("10.88.0.1/16").is_err(), "host bits");
        assert!(Net::parse("10.88.0.0/33").is_err());
        assert!(Net::parse("nonsense").is_err());
        assert!(cidr.overlaps(&Net::parse("10.0.0.0/8").unwrap()));
        assert!(cidr.overlaps(&Net::parse("10.88.7.9").unwrap()));
        assert!(!cidr.overlaps(&Net::parse("172.17.0.0/16").unwrap()));
    }

    /// A limit that cannot be set fails the container's entry, as does a
    /// limit with no cgroup to hold it: never an unlimited container.
    #[test]
    fn a_cgroup_that_cannot_be_set_up_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let sbs = |cgroups: Vec<(Controller, PathBuf)>| Sandboxes {
            node: 1,
            cidr: Net::parse("10.80.0.0/12").unwrap(),
            subnet: Net::parse("10.80.1.0/24").unwrap(),
            plugins: dir.path().join("plugins"),
            ipam_dir: dir.path().join("ipam"),
            cgroups,
            cluster_domain: "cluster.local".into(),
        };
        let limited: Container = serde_json::from_value(
            json!({"name": "c", "resources": {"limits": {"memory": "64Mi"}}}),
        )
        .unwrap();
        let free: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        let e = sbs(Vec::new()).enter("u", &limited).unwrap_err();
        assert!(e.to_string().contains("no writable cgroup"), "{e}");
        assert!(sbs(Vec::new()).enter("u", &free).is_ok());
        // memory.max is a directory here: writing the limit fails.
        let parent = dir.path().join("cg");
        std::fs::create_dir_all(parent.join("u/c/memory.max")).unwrap();
        let e = sbs(vec![(Controller::V2, parent.clone())])
            .enter("u", &limited)
            .unwrap_err();
        assert!(e.to_string().contains("memory.max"), "{e}");
        // A writable one takes the limit.
        std::fs::remove_dir(parent.join("u/c/memory.max")).unwrap();
        let entry = sbs(vec![(Controller::V2, parent.clone())])
            .enter("u", &limited)
            .unwrap();
        assert_eq!(entry.cgroups, vec![parent.join("u/c/cgroup.procs")]);
        let max = std::fs::read_to_string(parent.join("u/c/memory.max")).unwrap();
        assert_eq!(max, "67108864");
    }

    #[test]
    fn cgroup_limits_read_quantities_as_kubernetes_writes_them() {
        let c = |limits: Value| -> Container {
            serde_json::from_value(json!({"name": "c", "resources": {"limits": limits}})).unwrap()
        };
        let l = CgroupLimits::of(&c(json!({"memory": "128Mi", "cpu": "500m"})));
        assert_eq!(l.memory_bytes, Some(134_217_728));
        assert_eq!(l.cpu_quota_us, Some(50_000));
        let l = CgroupLimits::of(&c(json!({"memory": "1000", "cpu": "2"})));
        assert_eq!(
            (l.memory_bytes, l.cpu_quota_us),
            (Some(1000), Some(200_000))
        );
        // Exponents and fractions, which the old float reader refused.
        let l = CgroupLimits::of(&c(json!({"memory": "129e6", "cpu": "1.5"})));
        assert_eq!(
            (l.memory_bytes, l.cpu_quota_us),
            (Some(129_000_000), Some(150_000))
        );
        // The kernel's smallest quota; nothing for junk or zero.
        let l = CgroupLimits::of(&c(json!({"cpu": "1m", "memory": "12 parsecs"})));
        assert_eq!((l.memory_bytes, l.cpu_quota_us), (None, Some(1_000)));
        assert_eq!(
            CgroupLimits::of(&c(json!({"cpu": "0"}))),
            CgroupLimits::default()
        );
        assert_eq!(
            CgroupLimits::of(&serde_json::from_value(json!({"name": "c"})).unwrap()),
            CgroupLimits::default()
        );
    }
}
