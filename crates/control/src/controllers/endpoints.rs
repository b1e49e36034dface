//! The Endpoints and EndpointSlice controllers, as one reconciler keyed by
//! Service: for a Service with a selector, the pods it selects that have
//! an address become
//!
//! - its `Endpoints` (v1, same name): ready pods in `addresses`, the others
//!   in `notReadyAddresses` (all ready with `publishNotReadyAddresses`),
//!   terminating pods left out, one subset per distinct set of resolved
//!   ports;
//! - its `EndpointSlice`s (discovery.k8s.io/v1), at most 100 endpoints
//!   each, labelled `kubernetes.io/service-name`, managed by
//!   `endpointslice-controller.k8s.io`, owned by the Service, with
//!   upstream's `ready` / `serving` / `terminating` conditions (terminating
//!   pods stay, not ready).
//!
//! A named `targetPort` resolves per pod to the container port of that name
//! (a pod without it is left out of that port). A Service without a
//! selector is left alone (its Endpoints and slices are the user's);
//! headless Services get endpoints like any other. Writes go through the
//! registry under the control plane's fence.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::registry::Registry;
use shoal_model::resources::{ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES};

use super::runtime::{Action, KeyFn, Reconciler};
use super::{create_object, delete_object, is_ready, update_object};
use crate::errors::ReconcileError;

/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_PER_SLICE: usize = 100;
/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

pub struct EndpointsController {
    pub cache: Cache,
    pub registry: Registry,
}

/// The Service's `spec.selector`, if it has a non-empty one.
fn selector_of(svc: &Value) -> Option<&Map<String, Value>> {
    svc.pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
}

/// Whether `pod` carries every label of `sel`.
fn selects(sel: &Map<String, Value>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// One resolved port of an endpoint: (name, port, protocol).
type Port = (String, i64, String);

/// The Service's ports resolved against `pod` (a named targetPort by the
/// pod's container port of that name; missing ones are left out).
fn ports_for(svc: &Value, pod: &Value) -> Vec<Port> {
    let mut out = Vec::new();
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let protocol = p
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        let target = p.get("targetPort").or_else(|| p.get("port"));
        let port = match target {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse::<i64>().ok().or_else(|| named_port(pod, s)),
            _ => None,
        };
        if let Some(port) = port {
            out.push((name, port, protocol));
        }
    }
    out
}

/// The container port of `pod` named `name`.
fn named_port(pod: &Value, name: &str) -> Option<i64> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
        .get("containerPort")?
        .as_i64()
}

/// One pod as an endpoint.
struct Endpoint<'a> {
    pod: &'a Value,
    ip: String,
    ready: bool,
    terminating: bool,
    ports: Vec<Port>,
    /// The pod's `hostname` when its `subdomain` is this Service (its DNS
    /// name `<hostname>.<svc>.<ns>.svc.<domain>`), as upstream sets it.
    hostname: Option<String>,
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": objects::namespace_of(pod),
        "name": objects::name_of(pod),
        "uid": pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
    })
}

fn ports_json(ports: &[Port], named: bool) -> Vec<Value> {
    ports
        .iter()
        .map(|(name, port, protocol)| {
            let mut p = json!({"port": port, "protocol": protocol});
            if named || !name.is_empty() {
                p["name"] = json!(name);
            }
            p
        })
        .collect()
}

/// The Endpoints object's `subsets`: one per distinct port set.
fn subsets(eps: &[Endpoint<'_>], publish_not_ready: bool) -> Vec<Value> {
    let mut by_ports: BTreeMap<Vec<Port>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for e in eps.iter().filter(|e| !e.terminating) {
        let mut addr = json!({"ip": e.ip, "targetRef": target_ref(e.pod)});
        if let Some(n) = e.pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            addr["nodeName"] = json!(n);
        }
        if let Some(h) = &e.hostname {
            addr["hostname"] = json!(h);
        }
        let entry = by_ports.entry(e.ports.clone()).or_default();
        if e.ready || publish_not_ready {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    by_ports
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let mut s = json!({"ports": ports_json(&ports, false)});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect()
}

/// The slices' contents: per distinct port set, endpoints in pages of at
/// most [`MAX_PER_SLICE`].
fn slices(eps: &[Endpoint<'_>], publish_not_ready: bool) -> Vec<(Vec<Value>, Vec<Value>)> {
    let mut by_ports: BTreeMap<Vec<Port>, Vec<Value>> = BTreeMap::new();
    for e in eps {
        let ready = (e.ready || publish_not_ready) && !e.terminating;
        let mut ep = json!({
            "addresses": [e.ip],
            "conditions": {"ready": ready, "serving": e.ready || publish_not_ready, "terminating": e.terminating},
            "targetRef": target_ref(e.pod),
        });
        if let Some(n) = e.pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            ep["nodeName"] = json!(n);
        }
        if let Some(h) = &e.hostname {
            ep["hostname"] = json!(h);
        }
        by_ports.entry(e.ports.clone()).or_default().push(ep);
    }
    let mut out = Vec::new();
    for (ports, eps) in by_ports {
        for chunk in eps.chunks(MAX_PER_SLICE) {
            out.push((ports_json(&ports, true), chunk.to_vec()));
        }
    }
    out
}

impl EndpointsController {
    async fn sync(&self, key: &str) -> Result<Action, ReconcileError> {
        let mut written = 0;
        let result = self.sync_writing(key, &mut written).await;
        super::runtime::settle(&self.cache, written, result).await
    }

    async fn sync_writing(&self, key: &str, written: &mut u64) -> Result<Action, ReconcileError> {
        let (ns, name) = super::runtime::split_key(key)?;
        let svc = self.cache.get(&SERVICES.key(ns, name));
        // This controller names a Service's slices `<svc>-<n>`: only keys
        // under `<ns>/<svc>-` are read, not every slice in the namespace
        // (at 10,000 slices the scan was most of a write's latency).
        let service_label = format!("/metadata/labels/{}", SERVICE_NAME.replace('/', "~1"));
        let managed_label = format!("/metadata/labels/{}", MANAGED_BY.replace('/', "~1"));
        let mut prefix = ENDPOINTSLICES.prefix(Some(ns));
        prefix.extend_from_slice(format!("{name}-").as_bytes());
        let (owned, _) = self.cache.list(&prefix, |s| {
            s.pointer(&service_label).and_then(Value::as_str) == Some(name)
                && s.pointer(&managed_label).and_then(Value::as_str) == Some(CONTROLLER)
        });
        let endpoints = self.cache.get(&ENDPOINTS.key(ns, name));
        let Some(svc) = svc.filter(|s| selector_of(s).is_some()) else {
            // Gone, or without a selector: what this controller made goes
            // (a selector-less Service's own Endpoints are the user's).
            for s in owned {
                if let Some(rv) = delete_object(&self.registry, &ENDPOINTSLICES, &s, None).await? {
                    *written = (*written).max(rv);
                }
            }
            let gone = self.cache.get(&SERVICES.key(ns, name)).is_none();
            if let (true, Some(e)) = (gone, endpoints) {
                if let Some(rv) = delete_object(&self.registry, &ENDPOINTS, &e, None).await? {
                    *written = (*written).max(rv);
                }
            }
            return Ok(Action::Done);
        };
        let sel = selector_of(&svc).expect("filtered above");
        let (pods, _) = self.cache.list(&PODS.prefix(Some(ns)), |p| {
            selects(sel, p)
                && p.pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .is_some_and(|ip| !ip.is_empty())
                && !matches!(
                    p.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                )
        });
        let eps: Vec<Endpoint<'_>> = pods
            .iter()
            .map(|p| Endpoint {
                pod: p,
                ip: p["status"]["podIP"].as_str().unwrap_or("").to_string(),
                ready: is_ready(p),
                terminating: p.pointer("/metadata/deletionTimestamp").is_some(),
                ports: ports_for(&svc, p),
                hostname: p
                    .pointer("/spec/hostname")
                    .and_then(Value::as_str)
                    .filter(|_| p.pointer("/spec/subdomain").and_then(Value::as_str) == Some(name))
                    .map(String::from),
            })
            .collect();
        let publish = svc
            .pointer("/spec/publishNotReadyAddresses")
            .and_then(Value::as_bool)
            .unwrap_or(false);

        // Endpoints (v1).
        let labels = svc
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        let want = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "subsets": subsets(&eps, publish),
        });
        *written =
            (*written).max(put(&self.registry, &ENDPOINTS, ns, endpoints.as_deref(), want).await?);

        // EndpointSlices: the n-th of this Service is `<svc>-<n>`.
        let uid = svc.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
        let wanted = slices(&eps, publish);
        let mut names = Vec::new();
        for (i, (ports, endpoints)) in wanted.into_iter().enumerate() {
            let slice_name = format!("{name}-{i}");
            let want = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name, "namespace": ns,
                    "labels": {SERVICE_NAME: name, MANAGED_BY: CONTROLLER},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                        "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            });
            let have = owned.iter().find(|s| objects::name_of(s) == slice_name);
            *written = (*written).max(
                put(
                    &self.registry,
                    &ENDPOINTSLICES,
                    ns,
                    have.map(|a| &**a),
                    want,
                )
                .await?,
            );
            names.push(slice_name);
        }
        for s in owned
            .iter()
            .filter(|s| !names.iter().any(|n| n == objects::name_of(s)))
        {
            if let Some(rv) = delete_object(&self.registry, &ENDPOINTSLICES, s, None).await? {
                *written = (*written).max(rv);
            }
        }
        Ok(Action::Done)
    }
}

/// Creates `want`, or updates `have` to it unless nothing changed (labels,
/// owners and every top-level field but metadata).
pub(super) async fn put(
    registry: &Registry,
    res: &shoal_model::resources::Resource,
    ns: &str,
    have: Option<&Value>,
    want: Value,
) -> Result<u64, ReconcileError> {
    let Some(have) = have else {
        return create_object(registry, res, ns, want).await;
    };
    let mut next = have.clone();
    let mut changed = false;
    for (k, v) in want.as_object().into_iter().flatten() {
        if k == "metadata" {
            for field in ["labels", "ownerReferences"] {
                if let Some(v) = v.get(field) {
                    if next["metadata"].get(field) != Some(v) {
                        next["metadata"][field] = v.clone();
                        changed = true;
                    }
                }
            }
        } else if next.get(k) != Some(v) {
            next[k.as_str()] = v.clone();
            changed = true;
        }
    }
    if !changed {
        return Ok(0);
    }
    update_object(registry, res, &next).await
}

impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoints"
    }

    fn watches(&self) -> Vec<(Vec<u8>, KeyFn)> {
        let own: KeyFn = Arc::new(|e| vec![super::runtime::key_of(&e.object)]);
        // A pod change enqueues every Service of its namespace that
        // selects it, before or after the change.
        let cache = self.cache.clone();
        let pods: KeyFn = Arc::new(move |e| {
            let ns = objects::namespace_of(&e.object).to_string();
            let (svcs, _) = cache.list(&SERVICES.prefix(Some(&ns)), |s| {
                selector_of(s).is_some_and(|sel| {
                    selects(sel, &e.object) || e.prev.as_ref().is_some_and(|p| selects(sel, p))
                })
            });
            svcs.iter().map(|s| super::runtime::key_of(s)).collect()
        });
        // A slice changed by someone else is put back.
        let slices: KeyFn = Arc::new(|e| {
            e.object
                .pointer(&format!(
                    "/metadata/labels/{}",
                    SERVICE_NAME.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .map(|svc| vec![format!("{}/{svc}", objects::namespace_of(&e.object))])
                .unwrap_or_default()
        });
        vec![
            (SERVICES.prefix(None), own.clone()),
            (PODS.prefix(None), pods),
            (ENDPOINTSLICES.prefix(None), slices),
            (ENDPOINTS.prefix(None), own),
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

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i64) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        })
    }

    #[test]
    fn named_ports_resolve_per_pod_and_readiness_splits_addresses() {
        let svc = json!({"spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "m", "port": 9, "targetPort": 9100}]}});
        let a = pod("a", "10.0.0.1", true, "http", 8080);
        let b = pod("b", "10.0.0.2", false, "http", 8080);
        let c = pod("c", "10.0.0.3", true, "http", 8081);
        assert_eq!(
            ports_for(&svc, &a),
            vec![
                ("http".into(), 8080, "TCP".into()),
                ("m".into(), 9100, "TCP".into())
            ]
        );
        let eps: Vec<Endpoint<'_>> = [&a, &b, &c]
            .iter()
            .map(|p| Endpoint {
                pod: p,
                ip: p["status"]["podIP"].as_str().unwrap().into(),
                ready: is_ready(p),
                terminating: false,
                hostname: None,
                ports: ports_for(&svc, p),
            })
            .collect();
        let s = subsets(&eps, false);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0]["addresses"][0]["ip"], "10.0.0.1");
        assert_eq!(s[0]["notReadyAddresses"][0]["ip"], "10.0.0.2");
        assert_eq!(s[1]["addresses"][0]["ip"], "10.0.0.3");
        assert_eq!(s[1]["ports"][0]["port"], 8081);
        let published = subsets(&eps, true);
        assert!(published[0].get("notReadyAddresses").is_none());
        assert!(selects(selector_of(&svc).unwrap(), &a));
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints_and_keep_terminating_ones() {
        let svc = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let pods: Vec<Value> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                    "x",
                    1,
                )
            })
            .collect();
        let mut eps: Vec<Endpoint<'_>> = pods
            .iter()
            .map(|p| Endpoint {
                pod: p,
                ip: p["status"]["podIP"].as_str().unwrap().into(),
                ready: true,
                terminating: false,
                hostname: None,
                ports: ports_for(&svc, p),
            })
            .collect();
        eps[0].terminating = true;
        let s = slices(&eps, false);
        assert_eq!(
            s.iter().map(|(_, e)| e.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(
            s[0].1[0]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert_eq!(s[0].0[0]["port"], 80);
        // The Endpoints object leaves terminating pods out.
        let subs = subsets(&eps, false);
        assert_eq!(subs[0]["addresses"].as_array().unwrap().len(), 249);
    }
}
