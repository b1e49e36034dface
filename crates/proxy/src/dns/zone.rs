//! The cluster's DNS names, after the Kubernetes DNS specification (and
//! CoreDNS's `kubernetes` plugin), kept from the Services and
//! EndpointSlices the proxy is pushed:
//!
//! - `<svc>.<ns>.svc.<domain>`: A of the ClusterIP; for a headless Service
//!   the A records of its ready endpoints; for ExternalName a CNAME;
//! - `<host>.<svc>.<ns>.svc.<domain>`: an endpoint of a headless Service,
//!   `<host>` its `hostname` (a pod's `hostname` with `subdomain` = the
//!   Service) or its address with dashes;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for named ports;
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A a.b.c.d.
//!
//! A name under the domain that holds no record of the asked type but
//! exists (or has names below it) is NODATA; one that does not exist is
//! NXDOMAIN. Names outside the domain are not ours ([`Answer::Outside`]).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::Proto;

/// The record types the zone answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    A,
    Aaaa,
    Srv,
    Cname,
    Any,
    /// Anything else (TXT, MX, …): NODATA where the name exists.
    Other,
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Fully qualified, without the final dot.
    pub target: String,
    /// The target's address, for the additional section.
    pub address: Option<Ipv4Addr>,
}

/// What the zone says of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    A(Vec<Ipv4Addr>),
    /// The name is an alias (ExternalName), fully qualified.
    Cname(String),
    Srv(Vec<Srv>),
    NoData,
    NxDomain,
    /// Not under the cluster domain: forward it.
    Outside,
}

/// What one Service contributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    cluster_ip: Option<Ipv4Addr>,
    headless: bool,
    external_name: Option<String>,
    /// Ready endpoints: (host label, address).
    endpoints: Vec<(String, Ipv4Addr)>,
    /// Named ports: (name, proto) → (service port, endpoint port).
    ports: BTreeMap<(String, &'static str), (u16, Option<u16>)>,
}

/// The zone of one cluster domain.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    domain: String,
    services: HashMap<(String, String), Entry>,
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Zone {
    /// An empty zone for `domain` (such as `cluster.local`).
    pub fn new(domain: &str) -> Zone {
        Zone {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            services: HashMap::new(),
        }
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// How many Services have names.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Sets the names of Service `namespace/name` from `svc` and its
    /// slices (`None` removes them).
    pub fn set<'a>(
        &mut self,
        namespace: &str,
        name: &str,
        svc: Option<&Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) {
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        let Some(spec) = svc.and_then(|s| s.spec.as_ref()) else {
            self.services.remove(&key);
            return;
        };
        let mut e = Entry::default();
        match spec.type_.as_deref() {
            Some("ExternalName") => {
                e.external_name = spec
                    .external_name
                    .as_deref()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
            }
            _ => match spec.cluster_ip.as_deref() {
                Some("None") => e.headless = true,
                Some(ip) => e.cluster_ip = ip.parse().ok(),
                None => {}
            },
        }
        let mut endpoint_ports: HashMap<(String, &'static str), u16> = HashMap::new();
        for s in slices.into_iter().filter(|s| s.address_type == "IPv4") {
            for p in s.ports.iter().flatten() {
                if let (Some(proto), Some(port)) = (
                    Proto::parse(p.protocol.as_deref()),
                    p.port.and_then(|p| u16::try_from(p).ok()),
                ) {
                    endpoint_ports.insert((p.name.clone().unwrap_or_default(), proto.nft()), port);
                }
            }
            for ep in &s.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<Ipv4Addr>() {
                        let host = ep
                            .hostname
                            .clone()
                            .map(|h| h.to_ascii_lowercase())
                            .unwrap_or_else(|| dashed(ip));
                        e.endpoints.push((host, ip));
                    }
                }
            }
        }
        e.endpoints.sort();
        e.endpoints.dedup();
        for p in spec.ports.iter().flatten() {
            let (Some(name), Some(proto)) = (p.name.as_ref(), Proto::parse(p.protocol.as_deref()))
            else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let key = (name.to_ascii_lowercase(), proto.nft());
            let ep_port = endpoint_ports.get(&(name.clone(), proto.nft())).copied();
            if let Ok(port) = u16::try_from(p.port) {
                e.ports.insert(key, (port, ep_port));
            }
        }
        self.services.insert(key, e);
    }

    /// What the zone answers for `name` (any case, with or without the
    /// final dot) and type `ask`.
    pub fn lookup(&self, name: &str, ask: Ask) -> Answer {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let Some(rel) = (if name == self.domain {
            Some("")
        } else {
            name.strip_suffix(&format!(".{}", self.domain))
        }) else {
            return Answer::Outside;
        };
        let labels: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('.').collect()
        };
        match labels.as_slice() {
            // The domain itself, `svc.<domain>`, `pod.<domain>`.
            [] | ["svc"] | ["pod"] => Answer::NoData,
            [ns, "svc"] => self.namespace_exists(ns),
            [ns, "pod"] => self.namespace_exists(ns),
            [ip, _ns, "pod"] => match ip.replace('-', ".").parse::<Ipv4Addr>() {
                Ok(a) => only(ask, Ask::A, Answer::A(vec![a])),
                Err(_) => Answer::NxDomain,
            },
            [svc, ns, "svc"] => self.service(ns, svc, ask),
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                self.srv(ns, svc, &port[1..], &proto[1..], ask)
            }
            // `_<proto>.<svc>…`: a name with SRV names below it.
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                match self.services.get(&(ns.to_string(), svc.to_string())) {
                    Some(e) if e.ports.keys().any(|(_, p)| *p == &proto[1..]) => Answer::NoData,
                    _ => Answer::NxDomain,
                }
            }
            [host, svc, ns, "svc"] => {
                let Some(e) = self.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Answer::NxDomain;
                };
                let ips: Vec<Ipv4Addr> = e
                    .endpoints
                    .iter()
                    .filter(|(h, _)| h == host)
                    .map(|(_, ip)| *ip)
                    .collect();
                if ips.is_empty() || !e.headless {
                    Answer::NxDomain
                } else {
                    only(ask, Ask::A, Answer::A(ips))
                }
            }
            _ => Answer::NxDomain,
        }
    }

    fn namespace_exists(&self, ns: &str) -> Answer {
        if self.services.keys().any(|(n, _)| n == ns) {
            Answer::NoData
        } else {
            Answer::NxDomain
        }
    }

    fn service(&self, ns: &str, svc: &str, ask: Ask) -> Answer {
        let Some(e) = self.services.get(&(ns.to_string(), svc.to_string())) else {
            return Answer::NxDomain;
        };
        if let Some(target) = &e.external_name {
            // Every type gets the alias, as CoreDNS answers.
            return Answer::Cname(target.clone());
        }
        let mut ips = match (e.cluster_ip, e.headless) {
            (Some(ip), _) => vec![ip],
            (None, true) => e.endpoints.iter().map(|(_, ip)| *ip).collect(),
            (None, false) => Vec::new(),
        };
        ips.sort();
        ips.dedup();
        if ips.is_empty() {
            return Answer::NoData;
        }
        only(ask, Ask::A, Answer::A(ips))
    }

    fn srv(&self, ns: &str, svc: &str, port: &str, proto: &str, ask: Ask) -> Answer {
        let Some(e) = self.services.get(&(ns.to_string(), svc.to_string())) else {
            return Answer::NxDomain;
        };
        let Some(&(svc_port, ep_port)) = e
            .ports
            .iter()
            .find(|((n, p), _)| n == port && *p == proto)
            .map(|(_, v)| v)
        else {
            return Answer::NxDomain;
        };
        let base = format!("{svc}.{ns}.svc.{}", self.domain);
        let records = if e.headless {
            e.endpoints
                .iter()
                .map(|(host, ip)| Srv {
                    priority: 0,
                    weight: 100,
                    port: ep_port.unwrap_or(svc_port),
                    target: format!("{host}.{base}"),
                    address: Some(*ip),
                })
                .collect()
        } else {
            vec![Srv {
                priority: 0,
                weight: 100,
                port: svc_port,
                target: base,
                address: e.cluster_ip,
            }]
        };
        if records.is_empty() {
            return Answer::NoData;
        }
        only(ask, Ask::Srv, Answer::Srv(records))
    }
}

/// `answer` if `ask` is `kind` (or ANY), else NODATA.
fn only(ask: Ask, kind: Ask, answer: Answer) -> Answer {
    if ask == kind || ask == Ask::Any {
        answer
    } else {
        Answer::NoData
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn zone() -> Zone {
        let mut z = Zone::new("cluster.local.");
        let web = svc(json!({"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}}));
        z.set("default", "web", Some(&web), []);
        let db = svc(json!({"metadata": {"namespace": "prod", "name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}));
        let eps = slice(json!({"metadata": {"name": "db-0"}, "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5433, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.88.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.88.2.6"], "conditions": {"ready": true}},
            {"addresses": ["10.88.2.7"], "conditions": {"ready": false}},
        ]}));
        z.set("prod", "db", Some(&db), [&eps]);
        let ext = svc(
            json!({"metadata": {"namespace": "default", "name": "search"},
            "spec": {"type": "ExternalName", "externalName": "search.example.org."}}),
        );
        z.set("default", "search", Some(&ext), []);
        z
    }

    #[test]
    fn services_resolve_as_the_dns_spec_says() {
        let z = zone();
        let a = |ips: &[&str]| Answer::A(ips.iter().map(|i| i.parse().unwrap()).collect());
        assert_eq!(
            z.lookup("web.default.svc.cluster.local.", Ask::A),
            a(&["10.96.0.10"])
        );
        assert_eq!(
            z.lookup("WEB.Default.svc.cluster.local", Ask::A),
            a(&["10.96.0.10"])
        );
        // Headless: the ready endpoints; each by its hostname or dashed address.
        assert_eq!(
            z.lookup("db.prod.svc.cluster.local", Ask::A),
            a(&["10.88.1.5", "10.88.2.6"])
        );
        assert_eq!(
            z.lookup("db-0.db.prod.svc.cluster.local", Ask::A),
            a(&["10.88.1.5"])
        );
        assert_eq!(
            z.lookup("10-88-2-6.db.prod.svc.cluster.local", Ask::A),
            a(&["10.88.2.6"])
        );
        assert_eq!(
            z.lookup("10-88-2-7.db.prod.svc.cluster.local", Ask::A),
            Answer::NxDomain
        );
        // SRV: the ClusterIP's port, or each endpoint's.
        let Answer::Srv(srv) = z.lookup("_http._tcp.web.default.svc.cluster.local", Ask::Srv)
        else {
            panic!("no SRV")
        };
        assert_eq!(
            (srv[0].port, srv[0].target.as_str()),
            (80, "web.default.svc.cluster.local")
        );
        let Answer::Srv(srv) = z.lookup("_pg._tcp.db.prod.svc.cluster.local", Ask::Srv) else {
            panic!("no SRV")
        };
        assert_eq!(srv.len(), 2);
        assert!(
            srv.iter()
                .any(|s| (s.port, s.target.as_str()) == (5433, "db-0.db.prod.svc.cluster.local")),
            "{srv:?}"
        );
        assert_eq!(
            z.lookup("_pg._udp.db.prod.svc.cluster.local", Ask::Srv),
            Answer::NxDomain
        );
        // ExternalName: a CNAME whatever the type.
        assert_eq!(
            z.lookup("search.default.svc.cluster.local", Ask::A),
            Answer::Cname("search.example.org".into())
        );
        // Pods by address.
        assert_eq!(
            z.lookup("10-88-1-5.prod.pod.cluster.local", Ask::A),
            a(&["10.88.1.5"])
        );
    }

    #[test]
    fn missing_names_are_nxdomain_and_existing_ones_nodata() {
        let z = zone();
        assert_eq!(
            z.lookup("nope.default.svc.cluster.local", Ask::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.lookup("web.nope.svc.cluster.local", Ask::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.lookup("a.b.c.d.e.f.cluster.local", Ask::A),
            Answer::NxDomain
        );
        // The name exists, the type does not.
        assert_eq!(
            z.lookup("web.default.svc.cluster.local", Ask::Aaaa),
            Answer::NoData
        );
        assert_eq!(
            z.lookup("web.default.svc.cluster.local", Ask::Other),
            Answer::NoData
        );
        assert_eq!(
            z.lookup("default.svc.cluster.local", Ask::A),
            Answer::NoData
        );
        assert_eq!(z.lookup("svc.cluster.local", Ask::A), Answer::NoData);
        assert_eq!(z.lookup("cluster.local", Ask::A), Answer::NoData);
        assert_eq!(
            z.lookup("_tcp.web.default.svc.cluster.local", Ask::A),
            Answer::NoData
        );
        // Not ours.
        assert_eq!(z.lookup("example.org", Ask::A), Answer::Outside);
        assert_eq!(z.lookup("notcluster.local", Ask::A), Answer::Outside);
        // Removed.
        let mut z = z;
        z.set("default", "web", None, []);
        assert_eq!(
            z.lookup("web.default.svc.cluster.local", Ask::A),
            Answer::NxDomain
        );
    }
}
