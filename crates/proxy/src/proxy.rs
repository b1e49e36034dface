//! The proxy's loop: it lists Services and EndpointSlices once, builds its
//! node's table in one transaction, then follows both with store watches
//! (pushed, nothing polls). Each change recomputes the [`Part`] of the one
//! Service it touches and applies the commands between the committed part
//! and the new one. The committed parts stay in memory: no sync reads the
//! kernel's table. A delta the kernel refuses is followed by a full build
//! from the desired state; a watch that breaks resumes from its last
//! revision on another replica, and only an expired one lists again.
//!
//! UDP has no connection to end: when a UDP endpoint goes, the conntrack
//! entries that still send a Service's traffic to it are deleted
//! (`conntrack -D`, from Debian's conntrack package), as kube-proxy does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};
use shoal_model::resources::{ENDPOINTSLICES, SERVICES};
use shoal_store::Store;

use crate::dns::Zone;
use crate::model::{service_ports, Proto, ServicePort};
use crate::nft::{delta, full, Netlink, Ops};
use crate::rules::{base, services_part, NodeNet, Part};

/// `namespace`, `name` of a Service.
type SvcKey = (String, String);

/// What the proxy has done, for its actor's `Status` and for tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Its tables' name (`<table>-<shard>`).
    pub table: String,
    /// The store revision its table reflects (0 before the first build).
    pub revision: u64,
    /// Services with rules in the table.
    pub services: usize,
    pub full_syncs: u64,
    pub partial_syncs: u64,
    pub failures: u64,
    /// Where the node's DNS answers, once it does.
    pub dns: Option<String>,
    /// Where the node's Ingress serves HTTP and HTTPS, once it does.
    #[serde(default)]
    pub ingress_http: Option<String>,
    #[serde(default)]
    pub ingress_https: Option<String>,
    /// Ingresses in the Ingress's routing table.
    #[serde(default)]
    pub ingresses: usize,
    /// The store revision the Ingress's table reflects.
    #[serde(default)]
    pub ingress_revision: u64,
}

/// The proxy's metrics, named as kube-proxy's (under `shoal_`).
#[derive(Clone)]
pub struct ProxyMetrics {
    pub sync_duration: Histogram,
    pub full_sync_duration: Histogram,
    pub partial_sync_duration: Histogram,
    pub last_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub sync_failures: Counter,
    pub service_changes: Counter,
    pub endpoint_changes: Counter,
    pub conntrack_flushes: Counter,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        let buckets = || {
            Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
            ])
        };
        ProxyMetrics {
            sync_duration: buckets(),
            full_sync_duration: buckets(),
            partial_sync_duration: buckets(),
            last_sync: Gauge::default(),
            sync_failures: Counter::default(),
            service_changes: Counter::default(),
            endpoint_changes: Counter::default(),
            conntrack_flushes: Counter::default(),
        }
    }
}

impl ProxyMetrics {
    pub fn register(&self, m: &shoal_fabric::metrics::Metrics) {
        let h = [
            (
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "Time to apply a sync of the rules",
                &self.sync_duration,
            ),
            (
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "Time to build the whole table",
                &self.full_sync_duration,
            ),
            (
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "Time to apply a delta",
                &self.partial_sync_duration,
            ),
        ];
        for (name, help, metric) in h {
            m.register(name, help, metric.clone());
        }
        m.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "When the rules were last applied (Unix seconds)",
            self.last_sync.clone(),
        );
        m.register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Transactions nft refused (each followed by a full build)",
            self.sync_failures.clone(),
        );
        m.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Service changes seen",
            self.service_changes.clone(),
        );
        m.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "EndpointSlice changes seen",
            self.endpoint_changes.clone(),
        );
        m.register(
            "kubeproxy_conntrack_flushes",
            "conntrack deletions for removed UDP endpoints",
            self.conntrack_flushes.clone(),
        );
    }
}

/// The proxy of one node.
pub struct Proxy {
    pub store: Store,
    /// The node's name (endpoints with this `nodeName` are local).
    pub node: String,
    pub net: NodeNet,
    /// Where the rules go; `None` without pod sandboxes (no ClusterIP
    /// routing, the README's degraded mode: DNS is still fed).
    pub nft: Option<Netlink>,
    /// The cluster DNS names this node answers.
    pub zone: Arc<std::sync::RwLock<Zone>>,
    pub metrics: ProxyMetrics,
    pub status: Arc<Mutex<Status>>,
}

/// What the proxy knows and what the kernel holds.
#[derive(Default)]
struct State {
    services: HashMap<SvcKey, Service>,
    /// EndpointSlices by (namespace, slice name), with their Service's name.
    slices: HashMap<SvcKey, (String, EndpointSlice)>,
    /// The names of each Service's slices (a sync reads one Service's
    /// slices; scanning all of them cost the number in the cluster).
    slices_by_service: HashMap<SvcKey, BTreeSet<String>>,
    /// The parts (and ports) the kernel holds, by Service.
    committed: HashMap<SvcKey, (Part, Vec<ServicePort>)>,
    /// Services changed since the last sync.
    dirty: BTreeSet<SvcKey>,
}

fn split_key(key: &[u8], prefix: &[u8]) -> Option<SvcKey> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix)?).ok()?;
    let (ns, name) = rest.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

impl State {
    /// Takes in one change of a Service or an EndpointSlice.
    fn apply(&mut self, key: &[u8], value: &[u8], metrics: &ProxyMetrics) {
        let (svc_prefix, slice_prefix) = (SERVICES.prefix(None), ENDPOINTSLICES.prefix(None));
        if let Some(k) = split_key(key, &svc_prefix) {
            metrics.service_changes.inc();
            match serde_json::from_slice::<Service>(value) {
                Ok(s) if !value.is_empty() => {
                    self.services.insert(k.clone(), s);
                }
                _ => {
                    self.services.remove(&k);
                }
            }
            self.dirty.insert(k);
        } else if let Some(k) = split_key(key, &slice_prefix) {
            metrics.endpoint_changes.inc();
            if let Some((svc, _)) = self.slices.remove(&k) {
                let owner = (k.0.clone(), svc);
                if let Some(names) = self.slices_by_service.get_mut(&owner) {
                    names.remove(&k.1);
                    if names.is_empty() {
                        self.slices_by_service.remove(&owner);
                    }
                }
                self.dirty.insert(owner);
            }
            if value.is_empty() {
                return;
            }
            if let Ok(s) = serde_json::from_slice::<EndpointSlice>(value) {
                if let Some(svc) = crate::model::service_of(&s) {
                    let owner = (k.0.clone(), svc.clone());
                    self.slices_by_service
                        .entry(owner.clone())
                        .or_default()
                        .insert(k.1.clone());
                    self.dirty.insert(owner);
                    self.slices.insert(k, (svc, s));
                }
            }
        }
    }

    /// The EndpointSlices of Service `k`.
    fn slices_of<'a>(&'a self, k: &'a SvcKey) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.slices_by_service
            .get(k)
            .into_iter()
            .flatten()
            .filter_map(move |name| self.slices.get(&(k.0.clone(), name.clone())))
            .map(|(_, s)| s)
    }

    /// The ports of Service `k` as the node `node` routes them.
    fn ports(&self, k: &SvcKey, node: &str) -> Vec<ServicePort> {
        let Some(svc) = self.services.get(k) else {
            return Vec::new();
        };
        service_ports(svc, self.slices_of(k), node)
    }

    /// Sets Service `k`'s DNS names in `zone`.
    fn name(&self, k: &SvcKey, zone: &mut Zone) {
        zone.set(&k.0, &k.1, self.services.get(k), self.slices_of(k));
    }
}

/// UDP endpoints in `old` that `new` no longer sends a port's traffic to,
/// with the addresses traffic reached them by: (service address or None
/// for a NodePort, port, endpoint).
fn gone_udp(
    old: &[ServicePort],
    new: &[ServicePort],
) -> Vec<(Option<std::net::Ipv4Addr>, u16, std::net::Ipv4Addr)> {
    let mut out = Vec::new();
    for o in old.iter().filter(|p| p.proto == Proto::Udp) {
        let still: BTreeSet<_> = new
            .iter()
            .filter(|n| n.id() == o.id())
            .flat_map(|n| n.endpoints.iter().map(|e| e.ip))
            .collect();
        for e in o.endpoints.iter().filter(|e| !still.contains(&e.ip)) {
            if let Some(ip) = o.cluster_ip {
                out.push((Some(ip), o.port, e.ip));
            }
            if let Some(np) = o.node_port {
                out.push((None, np, e.ip));
            }
        }
    }
    out
}

/// Deletes the UDP conntrack entries that DNAT to `ep` for a Service
/// address (or, for a NodePort, its port).
async fn flush_conntrack(
    target: Option<std::net::Ipv4Addr>,
    port: u16,
    ep: std::net::Ipv4Addr,
) -> Result<(), String> {
    let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
    if let Some(ip) = target {
        args.extend(["--orig-dst".into(), ip.to_string()]);
    }
    args.extend([
        "--orig-port-dst".into(),
        port.to_string(),
        "--dst-nat".into(),
        ep.to_string(),
    ]);
    let out = tokio::process::Command::new("conntrack")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("conntrack: {e}"))?;
    // Exit 1 with "0 flow entries" when none matched.
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("0 flow entries") {
        Ok(())
    } else {
        Err(format!(
            "conntrack {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Proxy {
    /// Runs the proxy, forever.
    pub async fn run(self) {
        let mut run = Run {
            base: base(&self.net),
            proxy: &self,
            state: State::default(),
        };
        let prefixes = [SERVICES.prefix(None), ENDPOINTSLICES.prefix(None)];
        let who = format!("proxy of {}", self.node);
        crate::follow::follow(&self.store, &who, &prefixes, &[], &mut run).await
    }

    fn zone(&self) -> std::sync::RwLockWriteGuard<'_, Zone> {
        self.zone.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `cmds` where rules go (nowhere without sandboxes).
    async fn apply(&self, cmds: &Ops) -> Result<(), crate::nft::NftError> {
        match &self.nft {
            Some(nft) => nft.apply(cmds).await,
            None => Ok(()),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds the whole table from what the proxy knows.
    async fn full_build(&self, state: &mut State, base: &Part, rev: u64) {
        let start = Instant::now();
        let keys: Vec<SvcKey> = state.services.keys().cloned().collect();
        let mut committed = HashMap::new();
        for k in keys {
            let ports = state.ports(&k, &self.node);
            committed.insert(k, (services_part(&self.net, &ports), ports));
        }
        // Every shard afresh, in one transaction.
        let mut cmds = Vec::new();
        for shard in 0..self.net.shards.max(1) {
            let parts = committed
                .iter()
                .filter(|((ns, name), _)| self.net.shard_of(ns, name) == shard)
                .map(|(_, (p, _))| p);
            cmds.extend(full(
                &self.net.shard_table(shard),
                std::iter::once(base).chain(parts),
            ));
        }
        {
            let mut zone = self.zone();
            *zone = Zone::new(zone.domain());
            for k in state.services.keys() {
                state.name(k, &mut zone);
            }
        }
        let mut pause = Duration::from_millis(200);
        while let Err(e) = self.apply(&cmds).await {
            self.metrics.sync_failures.inc();
            self.status().failures += 1;
            tracing::error!(node = %self.node, "proxy: building tables {}-*: {e}", self.net.table);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
        state.committed = committed;
        state.dirty.clear();
        let took = start.elapsed().as_secs_f64();
        self.metrics.full_sync_duration.observe(took);
        self.synced(took, rev, state.committed.len(), true);
    }

    fn synced(&self, took: f64, rev: u64, services: usize, full: bool) {
        self.metrics.sync_duration.observe(took);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.last_sync.set(now);
        let mut s = self.status();
        s.table = self.net.table.clone();
        s.revision = rev;
        s.services = services;
        if full {
            s.full_syncs += 1;
        } else {
            s.partial_syncs += 1;
        }
    }

    /// Applies the changes of the dirty Services as one transaction.
    async fn sync(&self, state: &mut State, base: &Part, rev: u64) {
        if state.dirty.is_empty() {
            self.status().revision = rev;
            return;
        }
        let start = Instant::now();
        let mut cmds: Ops = Vec::new();
        let mut next: BTreeMap<SvcKey, (Part, Vec<ServicePort>)> = BTreeMap::new();
        let empty = (Part::default(), Vec::new());
        let mut gone = Vec::new();
        let dirty = std::mem::take(&mut state.dirty);
        {
            let mut zone = self.zone();
            for k in &dirty {
                state.name(k, &mut zone);
            }
        }
        for k in dirty {
            let ports = state.ports(&k, &self.node);
            let part = services_part(&self.net, &ports);
            let old = state.committed.get(&k).unwrap_or(&empty);
            let table = self.net.shard_table(self.net.shard_of(&k.0, &k.1));
            cmds.extend(delta(&table, &old.0, &part));
            gone.extend(gone_udp(&old.1, &ports));
            next.insert(k, (part, ports));
        }
        if let Err(e) = self.apply(&cmds).await {
            self.metrics.sync_failures.inc();
            self.status().failures += 1;
            tracing::warn!(node = %self.node, "proxy: a delta was refused, building the table afresh: {e}");
            self.full_build(state, base, rev).await;
        } else {
            for (k, v) in next {
                if v.0 == Part::default() {
                    state.committed.remove(&k);
                } else {
                    state.committed.insert(k, v);
                }
            }
            let took = start.elapsed().as_secs_f64();
            tracing::debug!(node = %self.node, rev, "proxy: {} commands applied in {:.1} ms", cmds.len(), took * 1e3);
            self.metrics.partial_sync_duration.observe(took);
            self.synced(took, rev, state.committed.len(), false);
        }
        // Without rules there is no NAT, and no flow to forget.
        for (target, port, ep) in gone.into_iter().filter(|_| self.nft.is_some()) {
            self.metrics.conntrack_flushes.inc();
            if let Err(e) = flush_conntrack(target, port, ep).await {
                tracing::warn!(node = %self.node, "proxy: {e}");
            }
        }
    }
}

/// The proxy following Services and EndpointSlices.
struct Run<'a> {
    proxy: &'a Proxy,
    state: State,
    base: Part,
}

#[async_trait::async_trait]
impl crate::follow::Follower for Run<'_> {
    fn reset(&mut self) {
        self.state = State::default();
    }

    fn apply(&mut self, key: &[u8], value: &[u8]) {
        self.state.apply(key, value, &self.proxy.metrics);
    }

    async fn listed(&mut self, rev: u64) {
        self.proxy
            .full_build(&mut self.state, &self.base, rev)
            .await;
    }

    async fn changed(&mut self, rev: u64) {
        self.proxy.sync(&mut self.state, &self.base, rev).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: Vec<u8>, ns: &str, name: &str) -> Vec<u8> {
        let mut k = prefix;
        k.extend_from_slice(format!("{ns}/{name}").as_bytes());
        k
    }

    fn slice(name: &str, svc: &str, ip: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "a",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip]}],
        }))
        .unwrap()
    }

    fn addresses(state: &State, ns: &str, svc: &str) -> Vec<String> {
        let k = (ns.to_string(), svc.to_string());
        let mut out: Vec<String> = state
            .slices_of(&k)
            .flat_map(|s| s.endpoints.iter().flat_map(|e| e.addresses.clone()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_services_slices_follow_adds_moves_and_deletes() {
        let (m, mut st) = (ProxyMetrics::default(), State::default());
        let p = || ENDPOINTSLICES.prefix(None);
        st.apply(
            &key(p(), "a", "web-1"),
            &slice("web-1", "web", "10.0.0.1"),
            &m,
        );
        st.apply(
            &key(p(), "a", "web-2"),
            &slice("web-2", "web", "10.0.0.2"),
            &m,
        );
        st.apply(&key(p(), "a", "db-1"), &slice("db-1", "db", "10.0.0.3"), &m);
        assert_eq!(addresses(&st, "a", "web"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(addresses(&st, "a", "db"), ["10.0.0.3"]);
        assert!(addresses(&st, "b", "web").is_empty(), "another namespace");
        // A slice relabelled to another Service leaves the first.
        st.dirty.clear();
        st.apply(
            &key(p(), "a", "web-2"),
            &slice("web-2", "db", "10.0.0.2"),
            &m,
        );
        assert_eq!(addresses(&st, "a", "web"), ["10.0.0.1"]);
        assert_eq!(addresses(&st, "a", "db"), ["10.0.0.2", "10.0.0.3"]);
        let both: BTreeSet<SvcKey> = [("a".into(), "web".into()), ("a".into(), "db".into())].into();
        assert_eq!(st.dirty, both, "both Services are synced again");
        st.apply(&key(p(), "a", "web-1"), b"", &m);
        assert!(addresses(&st, "a", "web").is_empty());
        assert!(!st
            .slices_by_service
            .contains_key(&("a".into(), "web".into())));
    }
}
