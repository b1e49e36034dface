//! What the proxy routes, read from a Service and its EndpointSlices: one
//! [`ServicePort`] per port of the Service, each with the endpoints that
//! take its traffic, as kube-proxy's `ServicePortInfo` and `Endpoint` do.
//!
//! Which endpoints are used follows upstream (KEP-1669): ready ones; if
//! none is ready, the serving-and-terminating ones, so a rolling update
//! whose last pods are stopping still answers. `internalTrafficPolicy:
//! Local` narrows cluster traffic to endpoints on this node,
//! `externalTrafficPolicy: Local` narrows NodePort traffic the same way
//! (and keeps the client's address).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The name of the Service `slice` belongs to (its label).
pub fn service_of(slice: &EndpointSlice) -> Option<String> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
}

/// A transport protocol a Service port can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// Parses a Service's `protocol` (TCP when unset).
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// Its name in nftables rules.
    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node (`nodeName` is ours).
    pub local: bool,
}

/// One port of a Service as the proxy routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name ("" when the Service has one unnamed port).
    pub port_name: String,
    pub proto: Proto,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    /// Set for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `sessionAffinity: ClientIP`, with its timeout in seconds.
    pub affinity_secs: Option<u32>,
    /// The endpoints traffic may go to (see the module doc), sorted.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/name:port_name/proto`, unique among a cluster's ports.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.proto.nft(),
            self.port_name
        )
    }

    /// The endpoints cluster traffic goes to.
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| !self.internal_local || e.local)
            .collect()
    }

    /// The endpoints NodePort traffic goes to.
    pub fn external_endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| !self.external_local || e.local)
            .collect()
    }
}

/// The ports of `svc` with their endpoints from `slices` (those labelled
/// with its name), as seen from node `node`. ExternalName and headless
/// Services route nothing here (DNS answers for them).
pub fn service_ports<'a>(
    svc: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node: &str,
) -> Vec<ServicePort> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return Vec::new();
    }
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let with_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    if cluster_ip.is_none() && !with_node_ports {
        return Vec::new();
    }
    let slices: Vec<&EndpointSlice> = slices
        .into_iter()
        .filter(|s| s.address_type == "IPv4")
        .collect();
    let affinity_secs = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(10_800)
    });
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let (Some(proto), Ok(port)) = (Proto::parse(p.protocol.as_deref()), u16::try_from(p.port))
        else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        out.push(ServicePort {
            namespace: namespace.clone(),
            name: name.clone(),
            endpoints: endpoints_of(&slices, &port_name, proto, node),
            port_name,
            proto,
            cluster_ip,
            port,
            node_port: p
                .node_port
                .filter(|_| with_node_ports)
                .and_then(|n| u16::try_from(n).ok()),
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            affinity_secs,
        });
    }
    out
}

/// The endpoints of the port named `port_name` in `slices`: the ready
/// ones, else the serving-and-terminating ones.
pub(crate) fn endpoints_of(
    slices: &[&EndpointSlice],
    port_name: &str,
    proto: Proto,
    node: &str,
) -> Vec<Endpoint> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for s in slices {
        let Some(port) = s.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Proto::parse(p.protocol.as_deref()) == Some(proto)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for e in &s.endpoints {
            let c = e.conditions.as_ref();
            // Unset `ready` means ready, as upstream reads it.
            let is_ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let local = e.node_name.as_deref() == Some(node);
            for a in &e.addresses {
                let Ok(ip) = a.parse::<Ipv4Addr>() else {
                    continue;
                };
                let ep = Endpoint { ip, port, local };
                if is_ready && !is_terminating {
                    ready.insert(ep);
                } else if serving && is_terminating {
                    terminating.insert(ep);
                }
            }
        }
    }
    if ready.is_empty() {
        terminating.into_iter().collect()
    } else {
        ready.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec}),
        )
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web-1", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
        }))
        .unwrap()
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_only_when_none_is_ready() {
        let s = svc(json!({"clusterIP": "10.96.0.5", "type": "NodePort",
            "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP"}]}));
        let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
        let both = slice(
            json!([
                {"addresses": ["10.88.1.2"], "conditions": {"ready": true}, "nodeName": "a"},
                {"addresses": ["10.88.2.2"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "b"},
                {"addresses": ["10.88.2.3"], "conditions": {"ready": false, "serving": false}, "nodeName": "b"},
            ]),
            ports.clone(),
        );
        let sp = service_ports(&s, [&both], "b");
        assert_eq!(sp.len(), 2);
        let http = &sp[0];
        assert_eq!(
            (http.port, http.node_port, http.affinity_secs),
            (80, Some(30080), Some(10_800))
        );
        assert_eq!(
            http.endpoints,
            vec![Endpoint {
                ip: "10.88.1.2".parse().unwrap(),
                port: 8080,
                local: false
            }]
        );
        // Local external traffic on node b: no endpoint there.
        assert!(http.external_endpoints().is_empty());
        assert_eq!(http.cluster_endpoints().len(), 1);
        // The UDP port has no slice port of its name: no endpoints.
        assert!(sp[1].endpoints.is_empty());
        let stopping = slice(
            json!([{"addresses": ["10.88.2.2"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "b"}]),
            ports,
        );
        let sp = service_ports(&s, [&stopping], "b");
        assert_eq!(sp[0].endpoints.len(), 1);
        assert!(sp[0].endpoints[0].local);
    }

    #[test]
    fn headless_and_external_name_services_route_nothing_here() {
        let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert!(service_ports(&headless, [], "a").is_empty());
        let ext = svc(json!({"type": "ExternalName", "externalName": "example.org"}));
        assert!(service_ports(&ext, [], "a").is_empty());
        // A ClusterIP Service's nodePort field (left from a type change) is ignored.
        let plain =
            svc(json!({"clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30001}]}));
        assert_eq!(service_ports(&plain, [], "a")[0].node_port, None);
    }
}
