//! LoadBalancer Services without a cloud: such a Service routes as a
//! NodePort on every node (the proxy treats both alike), and this
//! controller writes its `status.loadBalancer.ingress` naming the Ready
//! nodes' InternalIPs, as bare-metal load balancers (MetalLB's L2 mode,
//! k3s's ServiceLB) report node addresses. A Service that is no longer a
//! LoadBalancer has its ingress cleared. Nodes joining, leaving or
//! changing readiness re-run every LoadBalancer Service.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_model::cache::Cache;
use shoal_model::registry::Registry;
use shoal_model::resources::{NODES, SERVICES};

use super::runtime::{Action, KeyFn, Reconciler};
use super::{is_ready, update_status};
use crate::errors::ReconcileError;

pub struct LoadBalancerController {
    pub cache: Cache,
    pub registry: Registry,
}

fn is_load_balancer(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
}

/// The InternalIPs of the Ready nodes, sorted.
pub(super) fn node_addresses(cache: &Cache) -> Vec<String> {
    let (nodes, _) = cache.list(&NODES.prefix(None), is_ready);
    let ips: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .cloned()
        })
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["address"].as_str().map(String::from))
        .collect();
    ips.into_iter().collect()
}

/// Whether a Node's change can change [`node_addresses`]: its readiness
/// or addresses changed, or it went (not a heartbeat).
pub(super) fn addresses_changed(e: &shoal_model::cache::CacheEvent) -> bool {
    let seen = |n: &Value| (is_ready(n), n.pointer("/status/addresses").cloned());
    let deleted = matches!(e.kind, shoal_model::cache::Kind::Deleted);
    deleted || e.prev.as_ref().is_none_or(|p| seen(p) != seen(&e.object))
}

/// The status `svc` should have, given the nodes' addresses.
pub fn wanted_status(svc: &Value, addresses: &[String]) -> Value {
    let mut status = svc.get("status").cloned().unwrap_or_else(|| json!({}));
    let ingress: Vec<Value> = if is_load_balancer(svc) {
        addresses
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect()
    } else {
        Vec::new()
    };
    status["loadBalancer"] = if ingress.is_empty() {
        json!({})
    } else {
        json!({"ingress": ingress})
    };
    status
}

impl LoadBalancerController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(svc) = self.cache.get(&SERVICES.key(ns, name)) else {
            return Ok(Action::Done);
        };
        let status = wanted_status(&svc, &node_addresses(&self.cache));
        let written = update_status(&self.registry, &SERVICES, &svc, status).await;
        super::runtime::settle(
            &self.cache,
            written.as_ref().map_or(0, |w| w.unwrap_or(0)),
            written.map(|_| Action::Done),
        )
        .await
    }
}

impl Reconciler for LoadBalancerController {
    fn name(&self) -> &'static str {
        "service-lb"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let own: KeyFn = Arc::new(|e| vec![super::runtime::key_of(&e.object)]);
        let cache = self.cache.clone();
        // Only a change to a node's readiness or addresses matters (not
        // its heartbeats).
        let nodes: KeyFn = Arc::new(move |e| {
            if !addresses_changed(e) {
                return Vec::new();
            }
            let (svcs, _) = cache.list(&SERVICES.prefix(None), is_load_balancer);
            svcs.iter().map(|s| super::runtime::key_of(s)).collect()
        });
        vec![(SERVICES.prefix(None), own), (NODES.prefix(None), nodes)]
    }

    fn reconcile(
        self: Arc<Self>,
        key: String,
    ) -> BoxFuture<'static, Result<Action, ReconcileError>> {
        Box::pin(async move { self.sync(&key).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancers_name_the_nodes_and_others_nothing() {
        let ips = vec!["10.88.0.1".to_string(), "10.88.1.1".to_string()];
        let lb = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(
            wanted_status(&lb, &ips),
            json!({"loadBalancer": {"ingress": [
                {"ip": "10.88.0.1", "ipMode": "VIP"}, {"ip": "10.88.1.1", "ipMode": "VIP"}]}})
        );
        // A former LoadBalancer is cleared; other status fields stay.
        let was = json!({"spec": {"type": "ClusterIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.88.0.1"}]}, "conditions": []}});
        assert_eq!(
            wanted_status(&was, &ips),
            json!({"loadBalancer": {}, "conditions": []})
        );
        // No Ready node: no ingress.
        assert_eq!(wanted_status(&lb, &[]), json!({"loadBalancer": {}}));
    }
}
