//! The endpoints of the Services that stand for the nodes themselves:
//! `kube-system/kube-dns` (every Ready node's cluster DNS) and
//! `default/kubernetes` (every Ready API node's API server), made from
//! what each node announces on its own Node (`shoal_model::announce`,
//! written once its listener is up). Clients that look the DNS or the API
//! up by those Services (kubeadm's and CoreDNS's manifests, client
//! libraries in pods) reach one through the Service's ClusterIP. One slice
//! per distinct port, managed by this controller; the Services themselves
//! are made at bootstrap.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_model::announce::{API_ADDRESS, DNS_ADDRESS};
use shoal_model::cache::Cache;
use shoal_model::objects::{KUBERNETES, KUBE_DNS};
use shoal_model::registry::Registry;
use shoal_model::resources::{ENDPOINTSLICES, NODES, SERVICES};

use super::endpoints::put;
use super::runtime::{Action, KeyFn, Reconciler};
use super::{delete_object, is_ready};
use crate::errors::ReconcileError;

const MANAGER: &str = "system-endpoints.shoal.io";

/// One such Service's controller.
pub struct SystemEndpoints {
    pub cache: Cache,
    pub registry: Registry,
    /// The Service (namespace, name).
    service: (&'static str, &'static str),
    /// The Node annotation its endpoints come from.
    annotation: &'static str,
    /// The slice's ports: (name, protocol), all on the announced port.
    ports: &'static [(&'static str, &'static str)],
    name: &'static str,
}

impl SystemEndpoints {
    /// `kube-system/kube-dns`: the nodes' DNS, UDP and TCP.
    pub fn kube_dns(cache: Cache, registry: Registry) -> SystemEndpoints {
        SystemEndpoints {
            cache,
            registry,
            service: KUBE_DNS,
            annotation: DNS_ADDRESS,
            ports: &[("dns", "UDP"), ("dns-tcp", "TCP")],
            name: "kube-dns-endpoints",
        }
    }

    /// `default/kubernetes`: the API nodes' API servers.
    pub fn kubernetes(cache: Cache, registry: Registry) -> SystemEndpoints {
        SystemEndpoints {
            cache,
            registry,
            service: KUBERNETES,
            annotation: API_ADDRESS,
            ports: &[("https", "TCP")],
            name: "kubernetes-endpoints",
        }
    }
}

/// What the Ready nodes announce under `annotation`, by port: (node,
/// address).
pub fn listeners(nodes: &[Arc<Value>], annotation: &str) -> BTreeMap<u16, Vec<(String, String)>> {
    let mut by_port: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| is_ready(n)) {
        let at = n
            .pointer(&format!(
                "/metadata/annotations/{}",
                annotation.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        if let Some(at) = at {
            let name = shoal_model::objects::name_of(n).to_string();
            by_port
                .entry(at.port())
                .or_default()
                .push((name, at.ip().to_string()));
        }
    }
    for eps in by_port.values_mut() {
        eps.sort();
    }
    by_port
}

/// The slice of `service`'s listeners on `port`, with `ports` (name,
/// protocol).
fn slice(
    service: (&str, &str),
    ports: &[(&str, &str)],
    port: u16,
    eps: &[(String, String)],
) -> Value {
    let (ns, svc) = service;
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-{port}"), "namespace": ns, "labels": {
            "kubernetes.io/service-name": svc,
            "endpointslice.kubernetes.io/managed-by": MANAGER,
        }},
        "addressType": "IPv4",
        "ports": ports.iter().map(|(name, proto)| json!({"name": name, "port": port, "protocol": proto}))
            .collect::<Vec<_>>(),
        "endpoints": eps.iter().map(|(node, ip)| json!({
            "addresses": [ip], "nodeName": node,
            "conditions": {"ready": true, "serving": true, "terminating": false},
        })).collect::<Vec<_>>(),
    })
}

impl SystemEndpoints {
    async fn sync(&self) -> Result<Action, ReconcileError> {
        let (ns, name) = self.service;
        let managed = |s: &Value| {
            s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by")
                .and_then(Value::as_str)
                == Some(MANAGER)
                && s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(name)
        };
        let (have, _) = self.cache.list(&ENDPOINTSLICES.prefix(Some(ns)), managed);
        let mut want = BTreeMap::new();
        if self.cache.get(&SERVICES.key(ns, name)).is_some() {
            let (nodes, _) = self.cache.list(&NODES.prefix(None), |_| true);
            for (port, eps) in listeners(&nodes, self.annotation) {
                let s = slice(self.service, self.ports, port, &eps);
                want.insert(shoal_model::objects::name_of(&s).to_string(), s);
            }
        }
        let mut written = 0;
        let mut result = Ok(Action::Done);
        for old in &have {
            if !want.contains_key(shoal_model::objects::name_of(old)) {
                match delete_object(&self.registry, &ENDPOINTSLICES, old, None).await {
                    Ok(rv) => written = written.max(rv.unwrap_or(0)),
                    Err(e) => result = Err(e),
                }
            }
        }
        for (slice_name, s) in want {
            let current = have
                .iter()
                .find(|h| shoal_model::objects::name_of(h) == slice_name);
            match put(
                &self.registry,
                &ENDPOINTSLICES,
                ns,
                current.map(|a| &**a),
                s,
            )
            .await
            {
                Ok(rv) => written = written.max(rv),
                Err(e) => result = Err(e),
            }
        }
        super::runtime::settle(&self.cache, written, result).await
    }
}

impl Reconciler for SystemEndpoints {
    fn name(&self) -> &'static str {
        self.name
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let (ns, name) = self.service;
        let annotation = self.annotation;
        let one = format!("{ns}/{name}");
        let always: KeyFn = {
            let one = one.clone();
            Arc::new(move |_| vec![one.clone()])
        };
        // A node's readiness or announcement, not its heartbeats.
        let nodes: KeyFn = Arc::new(move |e| {
            let seen = |n: &Value| {
                (
                    is_ready(n),
                    n.pointer("/metadata/annotations")
                        .and_then(|a| a.get(annotation))
                        .cloned(),
                )
            };
            let deleted = matches!(e.kind, shoal_model::cache::Kind::Deleted);
            if !deleted && e.prev.as_ref().is_some_and(|p| seen(p) == seen(&e.object)) {
                return Vec::new();
            }
            vec![one.clone()]
        });
        let ours: KeyFn = {
            let always = always.clone();
            Arc::new(move |e| {
                if shoal_model::objects::namespace_of(&e.object) == ns
                    && (shoal_model::objects::name_of(&e.object) == name
                        || e.object
                            .pointer("/metadata/labels/kubernetes.io~1service-name")
                            .and_then(Value::as_str)
                            == Some(name))
                {
                    always(e)
                } else {
                    Vec::new()
                }
            })
        };
        vec![
            (NODES.prefix(None), nodes),
            (SERVICES.prefix(Some(ns)), ours.clone()),
            (ENDPOINTSLICES.prefix(Some(ns)), ours),
        ]
    }

    fn reconcile(
        self: Arc<Self>,
        _key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move { self.sync().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_nodes_announcing_a_listener_are_the_endpoints() {
        // (The API's announcements work alike, under their own annotation.)
        let node = |name: &str, ready: &str, at: Option<&str>| {
            let mut n = json!({"metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}});
            if let Some(at) = at {
                n["metadata"]["annotations"] = json!({DNS_ADDRESS: at});
            }
            Arc::new(n)
        };
        let nodes = vec![
            node("b", "True", Some("10.88.1.1:53")),
            node("a", "True", Some("10.88.0.1:53")),
            node("c", "False", Some("10.88.2.1:53")),
            node("d", "True", None),
            node("e", "True", Some("127.0.0.1:10054")),
        ];
        let l = listeners(&nodes, DNS_ADDRESS);
        assert_eq!(
            l[&53],
            vec![
                ("a".to_string(), "10.88.0.1".to_string()),
                ("b".to_string(), "10.88.1.1".to_string())
            ]
        );
        assert_eq!(l[&10054], vec![("e".to_string(), "127.0.0.1".to_string())]);
        let s = slice(KUBE_DNS, &[("dns", "UDP"), ("dns-tcp", "TCP")], 53, &l[&53]);
        assert_eq!(s["metadata"]["name"], "kube-dns-53");
        assert_eq!(s["endpoints"][1]["addresses"][0], "10.88.1.1");
        assert_eq!(s["ports"][0]["protocol"], "UDP");
    }
}
