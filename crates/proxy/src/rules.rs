//! The nftables rules of one node, as data: a fixed [`base`] (hook chains,
//! the verdict maps, masquerading) and one [`Part`] per Service port,
//! after kube-proxy's nftables mode (KEP-3866), with fewer chains (see
//! [`service_part`]):
//!
//! ```text
//! nat-prerouting ─ iifname <bridge> ─► services ─ ip daddr . l4proto . dport vmap @service-ips
//!                └ ip daddr <node>  ─► nodeports ─ l4proto . dport vmap @service-nodeports
//! @service-ips       ─► service-<id>  (mark non-pod sources) ┐
//! @service-nodeports ─► external-<id> (mark unless Local)     ┴─ mark clients that are endpoints
//!                       (hairpin), remembered clients to their endpoint (affinity), then
//!                       numgen random mod (N-i) == 0 ─ dnat to the i-th endpoint
//! nat-postrouting ─► masquerading ─ masquerade what was marked
//! filter-{forward,output} ─ ct state new ─► @no-endpoint-services ─► reject
//! ```
//!
//! Every chain and map element a Service port needs is named after the
//! port (`namespace/name/proto/port`), so two ports never share one and a
//! change to one Service touches only its own objects ([`crate::nft`]
//! turns two parts into the commands between them).
//!
//! A rule is a list of [`Stmt`]: the few statements these rules use, as
//! data. [`crate::nft`] writes them as netlink expressions (what the
//! proxy sends the kernel) and as libnftables JSON (what `nft` reads, to
//! check the two against each other).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::{Endpoint, Proto, ServicePort};

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `meta iifname "<name>"`.
    Iifname(String),
    /// `ip daddr <addr>`.
    Daddr(Ipv4Addr),
    /// `ip saddr <addr>`.
    Saddr(Ipv4Addr),
    /// `ip saddr != <addr>/<len>`.
    SaddrNotIn(Ipv4Addr, u8),
    /// `ip daddr <addr>/<len>`.
    DaddrIn(Ipv4Addr, u8),
    /// `ip saddr @<set>`.
    SaddrInSet(String),
    /// `ct state new`.
    CtNew,
    /// `meta l4proto <proto>`.
    L4proto(Proto),
    /// `numgen random mod <n> 0`: true once in `n`.
    OneIn(u32),
    /// `meta mark & <bits> == 0`.
    MarkClear(u32),
    /// `meta mark set meta mark | <bits>`.
    MarkSet(u32),
    /// `meta mark set meta mark ^ <bits>`.
    MarkFlip(u32),
    /// `[ip daddr .] meta l4proto . th dport vmap @<map>` (the address
    /// when the map's key has one).
    Vmap(MapName),
    /// `jump <chain>`.
    Jump(String),
    /// `return`.
    Return,
    /// `reject` (ICMP port unreachable).
    Reject,
    /// `masquerade fully-random`.
    Masquerade,
    /// `update @<set> { ip saddr timeout <secs>s }`.
    Remember(String, u32),
    /// `dnat to <addr>:<port>`.
    Dnat(Ipv4Addr, u16),
}

/// One rule: its statements.
pub type Rule = Vec<Stmt>;

/// The packet mark that asks for masquerading (kube-proxy's 0x4000).
pub const MASQ_MARK: u32 = 0x4000;

/// The verdict maps of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapName {
    /// `ipv4_addr . inet_proto . inet_service : verdict`.
    ServiceIps,
    /// `inet_proto . inet_service : verdict`.
    NodePorts,
    /// `ipv4_addr . inet_proto . inet_service : verdict`: Services without endpoints.
    NoEndpoints,
}

impl MapName {
    pub const ALL: [MapName; 3] = [
        MapName::ServiceIps,
        MapName::NodePorts,
        MapName::NoEndpoints,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MapName::ServiceIps => "service-ips",
            MapName::NodePorts => "service-nodeports",
            MapName::NoEndpoints => "no-endpoint-services",
        }
    }

    /// The key's types, as nft names them.
    pub fn key_types(self) -> &'static [&'static str] {
        if self.has_addr() {
            &["ipv4_addr", "inet_proto", "inet_service"]
        } else {
            &["inet_proto", "inet_service"]
        }
    }

    /// Whether the key starts with the destination address.
    pub fn has_addr(self) -> bool {
        self != MapName::NodePorts
    }
}

/// A map element's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Ip(Ipv4Addr, Proto, u16),
    Port(Proto, u16),
}

/// A chain: its hook (base chains only) and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDef {
    pub hook: Option<Hook>,
    pub rules: Vec<Rule>,
}

/// A base chain's type, hook and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    pub nat: bool,
    pub hook: HookPoint,
    pub prio: i32,
}

/// Where a base chain hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    Prerouting,
    Output,
    Postrouting,
    Forward,
}

/// What one Service port (or the base) puts in the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    pub chains: BTreeMap<String, ChainDef>,
    /// Map elements: (map, key) → the chain they go to.
    pub elements: BTreeMap<(MapName, Key), String>,
    /// Client-affinity sets (dynamic, with per-element timeouts).
    pub sets: BTreeSet<String>,
}

/// How many tables a node's Services are spread over by default.
pub const DEFAULT_SHARDS: u32 = 16;

/// The node a table belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    /// The node's tables' name (`ip` family): its Services are spread
    /// over `shards` tables `<table>-<k>`, each with the base chains. The
    /// kernel validates, and `nft` lists, the whole table a transaction
    /// touches, so a change costs the size of one shard, not of all
    /// Services (a packet's first lookups pass every shard's hooks; the
    /// first DNAT wins).
    pub table: String,
    /// How many tables (at least 1).
    pub shards: u32,
    /// The node's pod bridge: traffic from its pods enters here.
    pub bridge: String,
    /// The node's address (NodePorts answer on it).
    pub node_ip: Ipv4Addr,
    /// The cluster's pod range: traffic from elsewhere is masqueraded.
    pub pod_cidr: (Ipv4Addr, u8),
    /// The cluster's Service range: a new connection still addressed to
    /// it after DNAT (no Service holds the address, or not that port) is
    /// rejected on the node, never routed off it.
    pub service_cidr: Option<(Ipv4Addr, u8)>,
}

impl NodeNet {
    /// The table of shard `k`.
    pub fn shard_table(&self, k: u32) -> String {
        format!("{}-{k}", self.table)
    }

    /// The shard Service `namespace/name` lives in (all its ports).
    pub fn shard_of(&self, namespace: &str, name: &str) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (namespace, name).hash(&mut h);
        (h.finish() % u64::from(self.shards.max(1))) as u32
    }
}

// The base chains.

const MARK_CHAIN: &str = "mark-for-masquerade";
const SERVICES: &str = "services";
const NODEPORTS: &str = "nodeports";
const MASQUERADING: &str = "masquerading";
const ENDPOINTS_CHECK: &str = "endpoints-check";
const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
/// Where Services without endpoints go: rejected, so clients fail fast.
pub const REJECT: &str = "reject-chain";

fn hooked(nat: bool, hook: HookPoint, prio: i32, rules: Vec<Rule>) -> ChainDef {
    ChainDef {
        hook: Some(Hook { nat, hook, prio }),
        rules,
    }
}

fn plain(rules: Vec<Rule>) -> ChainDef {
    ChainDef { hook: None, rules }
}

fn jump(chain: &str) -> Stmt {
    Stmt::Jump(chain.to_string())
}

/// The chains every node's table has, whatever its Services.
pub fn base(net: &NodeNet) -> Part {
    let to_node_ports = vec![Stmt::Daddr(net.node_ip), jump(NODEPORTS)];
    let new_conn = || vec![Stmt::CtNew, jump(ENDPOINTS_CHECK)];
    // After DNAT: forward comes after prerouting's NAT; locally made
    // packets need a hook after output's NAT (-100).
    let unallocated = net
        .service_cidr
        .map(|_| vec![Stmt::CtNew, jump(CLUSTER_IPS_CHECK)]);
    let mut chains = BTreeMap::new();
    // dstnat is -100, srcnat 100, filter 0.
    chains.insert(
        "nat-prerouting".to_string(),
        hooked(
            true,
            HookPoint::Prerouting,
            -100,
            vec![
                vec![Stmt::Iifname(net.bridge.clone()), jump(SERVICES)],
                to_node_ports.clone(),
            ],
        ),
    );
    chains.insert(
        "nat-output".to_string(),
        hooked(
            true,
            HookPoint::Output,
            -100,
            vec![vec![jump(SERVICES)], to_node_ports],
        ),
    );
    chains.insert(
        "nat-postrouting".to_string(),
        hooked(
            true,
            HookPoint::Postrouting,
            100,
            vec![vec![jump(MASQUERADING)]],
        ),
    );
    chains.insert(
        "filter-forward".to_string(),
        hooked(
            false,
            HookPoint::Forward,
            -110,
            std::iter::once(new_conn())
                .chain(unallocated.clone())
                .collect(),
        ),
    );
    if let (Some((ip, len)), Some(rule)) = (net.service_cidr, unallocated) {
        chains.insert(
            "filter-output-post-dnat".to_string(),
            hooked(false, HookPoint::Output, -90, vec![rule]),
        );
        // kube-proxy drops these; a reject fails the client at once.
        chains.insert(
            CLUSTER_IPS_CHECK.to_string(),
            plain(vec![vec![Stmt::DaddrIn(ip, len), Stmt::Reject]]),
        );
    }
    chains.insert(
        "filter-output".to_string(),
        hooked(false, HookPoint::Output, -110, vec![new_conn()]),
    );
    chains.insert(
        SERVICES.to_string(),
        plain(vec![vec![Stmt::Vmap(MapName::ServiceIps)]]),
    );
    chains.insert(
        NODEPORTS.to_string(),
        plain(vec![vec![Stmt::Vmap(MapName::NodePorts)]]),
    );
    chains.insert(
        ENDPOINTS_CHECK.to_string(),
        plain(vec![vec![Stmt::Vmap(MapName::NoEndpoints)]]),
    );
    chains.insert(REJECT.to_string(), plain(vec![vec![Stmt::Reject]]));
    chains.insert(
        MARK_CHAIN.to_string(),
        plain(vec![vec![Stmt::MarkSet(MASQ_MARK)]]),
    );
    chains.insert(
        MASQUERADING.to_string(),
        plain(vec![
            vec![Stmt::MarkClear(MASQ_MARK), Stmt::Return],
            vec![Stmt::MarkFlip(MASQ_MARK)],
            vec![Stmt::Masquerade],
        ]),
    );
    Part {
        chains,
        ..Part::default()
    }
}

// One Service port.

fn affinity_set(id: &str, e: &Endpoint) -> String {
    format!("affinity-{id}__{}/{}", e.ip, e.port)
}

/// The statements that send a packet to `e` (and remember its client,
/// with affinity).
fn to_endpoint(sp: &ServicePort, id: &str, e: &Endpoint) -> Vec<Stmt> {
    let mut out = Vec::new();
    if let Some(secs) = sp.affinity_secs {
        out.push(Stmt::Remember(affinity_set(id, e), secs));
    }
    out.push(Stmt::Dnat(e.ip, e.port));
    out
}

/// The rules that pick one of `eps` and DNAT to it: a client that is one
/// of them is marked for masquerading (it may reach itself: hairpin), a
/// client remembered by an endpoint goes there again (affinity), then
/// one rule per endpoint takes the i-th with probability 1/(N-i), so each
/// gets 1/N, as iptables' `statistic` chains did.
///
/// No chain per endpoint and no anonymous `numgen … vmap` (kube-proxy's
/// nftables mode has both): `nft` lists every chain of the ruleset before
/// each transaction, and the kernel's loop check walks every set of the
/// table for each chain it visits, so both made every change cost the size
/// of the whole table (docs/BENCHMARKS.md, "Services").
fn pick(sp: &ServicePort, id: &str, eps: &[&Endpoint], rules: &mut Vec<Rule>) {
    for e in eps {
        rules.push(vec![Stmt::Saddr(e.ip), jump(MARK_CHAIN)]);
    }
    if sp.affinity_secs.is_some() {
        for e in eps {
            let mut rule = vec![
                Stmt::L4proto(sp.proto),
                Stmt::SaddrInSet(affinity_set(id, e)),
            ];
            rule.extend(to_endpoint(sp, id, e));
            rules.push(rule);
        }
    }
    let n = eps.len() as u32;
    for (i, e) in eps.iter().enumerate() {
        let left = n - i as u32;
        let mut rule = vec![Stmt::L4proto(sp.proto)];
        if left > 1 {
            rule.push(Stmt::OneIn(left));
        }
        rule.extend(to_endpoint(sp, id, e));
        rules.push(rule);
    }
}

/// The chains, map elements and sets of one Service port on `net`'s node:
/// `service-<id>` for its ClusterIP, `external-<id>` for its NodePort,
/// each picking among the endpoints its traffic policy allows.
pub fn service_part(net: &NodeNet, sp: &ServicePort) -> Part {
    let id = sp.id();
    let mut part = Part::default();
    let internal = if sp.internal_local {
        sp.endpoints.iter().filter(|e| e.local).collect()
    } else {
        sp.endpoints.iter().collect::<Vec<_>>()
    };
    let external = if sp.external_local {
        sp.endpoints.iter().filter(|e| e.local).collect()
    } else {
        sp.endpoints.iter().collect::<Vec<_>>()
    };
    let mut used: BTreeSet<&Endpoint> = BTreeSet::new();
    if let Some(ip) = sp.cluster_ip {
        let key = Key::Ip(ip, sp.proto, sp.port);
        if internal.is_empty() {
            part.elements
                .insert((MapName::NoEndpoints, key), REJECT.to_string());
        } else {
            let mut rules = vec![vec![
                Stmt::SaddrNotIn(net.pod_cidr.0, net.pod_cidr.1),
                jump(MARK_CHAIN),
            ]];
            pick(sp, &id, &internal, &mut rules);
            let chain = format!("service-{id}");
            part.chains.insert(chain.clone(), plain(rules));
            part.elements.insert((MapName::ServiceIps, key), chain);
            used.extend(internal.iter().copied());
        }
    }
    if let Some(node_port) = sp.node_port.filter(|_| !external.is_empty()) {
        let mut rules = Vec::new();
        if !sp.external_local {
            rules.push(vec![jump(MARK_CHAIN)]);
        }
        pick(sp, &id, &external, &mut rules);
        let chain = format!("external-{id}");
        part.chains.insert(chain.clone(), plain(rules));
        part.elements
            .insert((MapName::NodePorts, Key::Port(sp.proto, node_port)), chain);
        used.extend(external.iter().copied());
    }
    if sp.affinity_secs.is_some() {
        part.sets.extend(used.iter().map(|e| affinity_set(&id, e)));
    }
    part
}

/// The parts of a Service's ports together (what one Service puts in the
/// table).
pub fn services_part(net: &NodeNet, ports: &[ServicePort]) -> Part {
    let mut part = Part::default();
    for sp in ports {
        let p = service_part(net, sp);
        part.chains.extend(p.chains);
        part.elements.extend(p.elements);
        part.sets.extend(p.sets);
    }
    part
}
