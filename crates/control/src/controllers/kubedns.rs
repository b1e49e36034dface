//! The `kube-system/kube-dns` Service's endpoints: every Ready node's
//! cluster DNS, as the node announces it on its Node
//! (`dns.shoal.io/address`, written once its listener is up). Clients that
//! look the DNS up by that Service (as kubeadm's and CoreDNS's manifests
//! do) reach one through its ClusterIP; pods themselves ask their own
//! node (see shoal_kubelet::process::dns). One slice per distinct port,
//! managed by this controller; the Service itself is made at bootstrap.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_model::cache::Cache;
use shoal_model::objects::{KUBE_DNS, NODE_DNS_ANNOTATION};
use shoal_model::registry::Registry;
use shoal_model::resources::{ENDPOINTSLICES, NODES, SERVICES};

use super::endpoints::put;
use super::runtime::{Action, KeyFn, Reconciler};
use super::{delete_object, is_ready};
use crate::errors::ReconcileError;

const MANAGER: &str = "kube-dns.shoal.io";

pub struct KubeDnsController {
    pub cache: Cache,
    pub registry: Registry,
}

/// The DNS listeners of the Ready nodes, by port: (node, address).
pub fn listeners(nodes: &[Arc<Value>]) -> BTreeMap<u16, Vec<(String, String)>> {
    let mut by_port: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| is_ready(n)) {
        let at = n
            .pointer(&format!(
                "/metadata/annotations/{}",
                NODE_DNS_ANNOTATION.replace('/', "~1")
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

/// The slice of the listeners on `port`.
fn slice(port: u16, eps: &[(String, String)]) -> Value {
    let (ns, svc) = KUBE_DNS;
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-{port}"), "namespace": ns, "labels": {
            "kubernetes.io/service-name": svc,
            "endpointslice.kubernetes.io/managed-by": MANAGER,
        }},
        "addressType": "IPv4",
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
        "endpoints": eps.iter().map(|(node, ip)| json!({
            "addresses": [ip], "nodeName": node,
            "conditions": {"ready": true, "serving": true, "terminating": false},
        })).collect::<Vec<_>>(),
    })
}

impl KubeDnsController {
    async fn sync(&self) -> Result<Action, ReconcileError> {
        let (ns, name) = KUBE_DNS;
        let managed = |s: &Value| {
            s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by")
                .and_then(Value::as_str)
                == Some(MANAGER)
        };
        let (have, _) = self.cache.list(&ENDPOINTSLICES.prefix(Some(ns)), managed);
        let mut want = BTreeMap::new();
        if self.cache.get(&SERVICES.key(ns, name)).is_some() {
            let (nodes, _) = self.cache.list(&NODES.prefix(None), |_| true);
            for (port, eps) in listeners(&nodes) {
                let s = slice(port, &eps);
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

impl Reconciler for KubeDnsController {
    fn name(&self) -> &'static str {
        "kube-dns-endpoints"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let (ns, name) = KUBE_DNS;
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
                        .and_then(|a| a.get(NODE_DNS_ANNOTATION))
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
        let node = |name: &str, ready: &str, at: Option<&str>| {
            let mut n = json!({"metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}});
            if let Some(at) = at {
                n["metadata"]["annotations"] = json!({NODE_DNS_ANNOTATION: at});
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
        let l = listeners(&nodes);
        assert_eq!(
            l[&53],
            vec![
                ("a".to_string(), "10.88.0.1".to_string()),
                ("b".to_string(), "10.88.1.1".to_string())
            ]
        );
        assert_eq!(l[&10054], vec![("e".to_string(), "127.0.0.1".to_string())]);
        let s = slice(53, &l[&53]);
        assert_eq!(s["metadata"]["name"], "kube-dns-53");
        assert_eq!(s["endpoints"][1]["addresses"][0], "10.88.1.1");
        assert_eq!(s["ports"][0]["protocol"], "UDP");
    }
}
