//! The control-plane half of the built-in Ingress controller (the data
//! plane runs on every node, `shoal_proxy::ingress`): once per cluster,
//! following the leader, it writes each `shoal` Ingress's
//! `status.loadBalancer.ingress` naming the Ready nodes' InternalIPs (every
//! node serves every Ingress), and records a Warning Event
//! (`MissingTLSSecret`) on an Ingress whose TLS Secret is missing or not a
//! usable `kubernetes.io/tls` Secret, while the nodes serve the default
//! certificate for its hosts. Ingresses of other classes are another
//! controller's and are left alone.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use shoal_model::cache::Cache;
use shoal_model::events::ObjectRef;
use shoal_model::objects::{
    ingress_is_shoals, DEFAULT_INGRESS_CLASS_ANNOTATION, INGRESS_CLASS, INGRESS_CLASS_ANNOTATION,
};
use shoal_model::registry::Registry;
use shoal_model::resources::{INGRESSCLASSES, INGRESSES, NODES, SECRETS};

use super::loadbalancer::node_addresses;
use super::runtime::{key_of, Action, KeyFn, Reconciler};
use super::update_status;
use crate::errors::ReconcileError;

pub struct IngressController {
    pub cache: Cache,
    pub registry: Registry,
}

/// Whether the `shoal` IngressClass exists and is the default.
fn shoal_is_default(cache: &Cache) -> bool {
    cache
        .get(&INGRESSCLASSES.key("", INGRESS_CLASS))
        .is_some_and(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT_INGRESS_CLASS_ANNOTATION))
                == Some(&json!("true"))
        })
}

/// Whether `ing` is the built-in controller's.
pub fn is_ours(ing: &Value, shoal_is_default: bool) -> bool {
    ingress_is_shoals(
        ing.pointer("/spec/ingressClassName")
            .and_then(Value::as_str),
        ing.pointer("/metadata/annotations")
            .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION))
            .and_then(Value::as_str),
        shoal_is_default,
    )
}

/// The status `ing` should have, given the nodes' addresses.
pub fn wanted_status(ing: &Value, addresses: &[String]) -> Value {
    let mut status = ing.get("status").cloned().unwrap_or_else(|| json!({}));
    status["loadBalancer"] = if addresses.is_empty() {
        json!({})
    } else {
        json!({"ingress": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()})
    };
    status
}

/// Why the TLS Secret `name` of `ns` cannot serve, if it cannot. A value
/// this node may not see (empty) is taken as usable.
fn secret_problem(cache: &Cache, ns: &str, name: &str) -> Option<String> {
    let Some(secret) = cache.get(&SECRETS.key(ns, name)) else {
        return Some(format!("Secret {ns}/{name} does not exist"));
    };
    let data = secret.get("data");
    let missing: Vec<&str> = ["tls.crt", "tls.key"]
        .into_iter()
        .filter(|k| data.and_then(|d| d.get(*k)).is_none())
        .collect();
    (data.is_some() && !missing.is_empty())
        .then(|| format!("Secret {ns}/{name} has no {}", missing.join(" or ")))
}

impl IngressController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let Some(ing) = self.cache.get(&INGRESSES.key(ns, name)) else {
            return Ok(Action::Done);
        };
        if !is_ours(&ing, shoal_is_default(&self.cache)) {
            return Ok(Action::Done);
        }
        let status = wanted_status(&ing, &node_addresses(&self.cache));
        let written = update_status(&self.registry, &INGRESSES, &ing, status).await;
        let problems: Vec<String> = ing
            .pointer("/spec/tls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let secret = t["secretName"].as_str()?;
                let hosts = t["hosts"].as_array().map_or(String::new(), |h| {
                    h.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                secret_problem(&self.cache, ns, secret)
                    .map(|p| format!("{p}: hosts [{hosts}] are served the default certificate"))
            })
            .collect();
        let rev = written.as_ref().map_or(0, |w| w.unwrap_or(0));
        let result = match written {
            Err(e) => Err(e),
            Ok(_) if !problems.is_empty() => Err(ReconcileError::invalid(
                Some(ObjectRef::of(&ing)),
                "MissingTLSSecret",
                problems.join("; "),
            )),
            Ok(_) => Ok(Action::Done),
        };
        super::runtime::settle(&self.cache, rev, result).await
    }
}

impl Reconciler for IngressController {
    fn name(&self) -> &'static str {
        "ingress"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let own: KeyFn = Arc::new(|e| vec![key_of(&e.object)]);
        let all = |cache: Cache| -> Vec<String> {
            let (ings, _) = cache.list(&INGRESSES.prefix(None), |_| true);
            ings.iter().map(|i| key_of(i)).collect()
        };
        let cache = self.cache.clone();
        // A node's readiness or addresses (not its heartbeats).
        let nodes: KeyFn = Arc::new(move |e| {
            if !super::loadbalancer::addresses_changed(e) {
                return Vec::new();
            }
            all(cache.clone())
        });
        let cache = self.cache.clone();
        let classes: KeyFn = Arc::new(move |_| all(cache.clone()));
        let cache = self.cache.clone();
        // A Secret: the Ingresses of its namespace that name it.
        let secrets: KeyFn = Arc::new(move |e| {
            let ns = shoal_model::objects::namespace_of(&e.object);
            let name = shoal_model::objects::name_of(&e.object);
            let (ings, _) = cache.list(&INGRESSES.prefix(Some(ns)), |i| {
                i.pointer("/spec/tls")
                    .and_then(Value::as_array)
                    .is_some_and(|ts| ts.iter().any(|t| t["secretName"] == name))
            });
            ings.iter().map(|i| key_of(i)).collect()
        });
        vec![
            (INGRESSES.prefix(None), own),
            (NODES.prefix(None), nodes),
            (INGRESSCLASSES.prefix(None), classes),
            (SECRETS.prefix(None), secrets),
        ]
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
    fn the_status_names_the_nodes_and_classes_pick_the_controller() {
        let ips = vec!["10.88.0.1".to_string(), "10.88.1.1".to_string()];
        let ing = json!({"spec": {}, "status": {"other": 1}});
        assert_eq!(
            wanted_status(&ing, &ips),
            json!({"other": 1, "loadBalancer": {"ingress": [{"ip": "10.88.0.1"}, {"ip": "10.88.1.1"}]}})
        );
        assert_eq!(
            wanted_status(&ing, &[]),
            json!({"other": 1, "loadBalancer": {}})
        );
        assert!(is_ours(&ing, true));
        assert!(!is_ours(&ing, false));
        let nginx = json!({"spec": {"ingressClassName": "nginx"}});
        assert!(!is_ours(&nginx, true));
        let annotated =
            json!({"metadata": {"annotations": {"kubernetes.io/ingress.class": "shoal"}}});
        assert!(is_ours(&annotated, false));
    }
}
