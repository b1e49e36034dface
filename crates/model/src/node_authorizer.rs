//! The node authorizer: what a node without the `api` role may ask of the
//! store (the [`PeerPolicy`] every node installs), after upstream's Node
//! authorizer and NodeRestriction admission. A kubelet:
//!
//! - writes its own Node, its pod-CIDR claim, the status of the pods bound
//!   to it (nothing else of them) and their final removal, and Events;
//! - reads a Secret or a ConfigMap only by key, and only one that a pod
//!   bound to it uses (env, envFrom, a volume or a projection), or a
//!   Secret an Ingress names for TLS (its Ingress controller serves it);
//!   never a list of them;
//! - watches Secrets and ConfigMaps with their values emptied: it learns
//!   that one changed and reads it by key.
//!
//! Nodes with the `store` role write without this policy (the control
//! plane follows the Raft leader onto them); only `api` nodes read
//! everything (see `shoal_store::access`).

use std::collections::BTreeSet;

use serde_json::Value;
use shoal_fabric::actor::{Caller, Roles};
use shoal_store::access::{covers, PeerPolicy};
use shoal_store::command::{KeyValue, Op, Txn};
use shoal_store::ReadRequest;

use crate::resources::{CONFIGMAPS, EVENTS, INGRESSES, NODES, PODS, SECRETS};

/// The policy of every node (see the module doc).
pub struct NodeAuthorizer;

/// The Secrets and ConfigMaps a pod uses, as (kind, name): from env,
/// envFrom, volumes and projected volumes.
pub fn references(pod: &Value) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &'static str, name: Option<&Value>| {
        if let Some(n) = name.and_then(Value::as_str) {
            out.insert((kind, n.to_string()));
        }
    };
    let spec = &pod["spec"];
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                add("ConfigMap", e.pointer("/configMapRef/name"));
                add("Secret", e.pointer("/secretRef/name"));
            }
            for e in c["env"].as_array().into_iter().flatten() {
                add("ConfigMap", e.pointer("/valueFrom/configMapKeyRef/name"));
                add("Secret", e.pointer("/valueFrom/secretKeyRef/name"));
            }
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add("Secret", v.pointer("/secret/secretName"));
        add("ConfigMap", v.pointer("/configMap/name"));
        for s in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add("Secret", s.pointer("/secret/name"));
            add("ConfigMap", s.pointer("/configMap/name"));
        }
    }
    out
}

/// The node a pod is bound to.
fn node_of(pod: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(pod).ok()?;
    v.pointer("/spec/nodeName")?.as_str().map(str::to_string)
}

/// A stored pod without what its status writes change (the status, the
/// resourceVersion and managedFields).
fn but_status(pod: &[u8]) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(pod).ok()?;
    v.as_object_mut()?.remove("status");
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    Some(v)
}

/// `(namespace, name)` of a namespaced key under `prefix`.
fn split_key<'a>(key: &'a [u8], prefix: &[u8]) -> Option<(&'a str, &'a str)> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix)?).ok()?;
    let (ns, name) = rest.split_once('/')?;
    (!name.contains('/')).then_some((ns, name))
}

impl NodeAuthorizer {
    fn op(
        &self,
        node: &str,
        op: &Op,
        current: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), String> {
        let key = op.key();
        let shown = String::from_utf8_lossy(key);
        let refuse = |why: &str| Err(format!("node {node} may not write {shown}: {why}"));
        if key == NODES.key("", node).as_slice() {
            return Ok(());
        }
        if key.starts_with(NODES.prefix(None).as_slice()) {
            return refuse("it is another node");
        }
        if key.starts_with(crate::podcidr::CLAIMS.as_bytes()) {
            let held_by_other = current(key).is_some_and(|v| v != node.as_bytes());
            let claims_for_other = matches!(op, Op::Put { value, .. } if value != node.as_bytes());
            if held_by_other || claims_for_other {
                return refuse("a pod CIDR claim of another node");
            }
            return Ok(());
        }
        if key.starts_with(PODS.prefix(None).as_slice()) {
            if let Op::Put { value, .. } = op {
                if node_of(value).as_deref() != Some(node) {
                    return refuse("the pod is not bound to it");
                }
            }
            if let Some(now) = current(key) {
                if node_of(&now).as_deref() != Some(node) {
                    return refuse("the stored pod is not bound to it");
                }
                if let Op::Put { value, .. } = op {
                    if but_status(value).is_none() || but_status(value) != but_status(&now) {
                        return refuse("a kubelet changes only a pod's status");
                    }
                }
            } else if matches!(op, Op::Put { .. }) {
                return refuse("a kubelet does not create pods");
            }
            return Ok(());
        }
        if key.starts_with(EVENTS.prefix(None).as_slice()) && matches!(op, Op::Put { .. }) {
            return Ok(());
        }
        refuse("a node writes only its Node, its pods and Events")
    }

    /// Whether a pod bound to `node` in `ns` uses `(kind, name)`.
    fn used_by_a_pod_of(
        node: &str,
        ns: &str,
        kind: &str,
        name: &str,
        scan: &mut dyn FnMut(&[u8]) -> Vec<KeyValue>,
    ) -> bool {
        scan(&PODS.prefix(Some(ns))).iter().any(|kv| {
            // Most pods of a large namespace are another node's: skip
            // parsing the ones that do not mention both names.
            let mentions = |s: &str| kv.value.windows(s.len()).any(|w| w == s.as_bytes());
            if !mentions(node) || !mentions(name) {
                return false;
            }
            let Ok(pod) = serde_json::from_slice::<Value>(&kv.value) else {
                return false;
            };
            pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
                && references(&pod)
                    .iter()
                    .any(|(k, n)| *k == kind && n == name)
        })
    }
}

impl NodeAuthorizer {
    /// Whether an Ingress in `ns` names Secret `name` for TLS (every
    /// node's Ingress controller serves its certificate).
    fn named_by_an_ingress(
        ns: &str,
        name: &str,
        scan: &mut dyn FnMut(&[u8]) -> Vec<KeyValue>,
    ) -> bool {
        scan(&INGRESSES.prefix(Some(ns))).iter().any(|kv| {
            serde_json::from_slice::<Value>(&kv.value).is_ok_and(|i| {
                i.pointer("/spec/tls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|t| t["secretName"] == name)
            })
        })
    }
}

impl PeerPolicy for NodeAuthorizer {
    fn write(
        &self,
        caller: &Caller,
        txn: &Txn,
        current: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), String> {
        if !caller.roles.contains(Roles::WORKER) {
            return Err(format!(
                "{} (roles: {}) may not write to the store",
                caller.node, caller.roles
            ));
        }
        for op in txn.success.iter().chain(&txn.failure) {
            self.op(&caller.node, op, current)?;
        }
        Ok(())
    }

    fn read(
        &self,
        caller: &Caller,
        req: &ReadRequest,
        scan: &mut dyn FnMut(&[u8]) -> Vec<KeyValue>,
    ) -> Result<(), String> {
        for (res, kind) in [(&SECRETS, "Secret"), (&CONFIGMAPS, "ConfigMap")] {
            let prefix = res.prefix(None);
            if !covers(req, &prefix) {
                continue;
            }
            if req.prefix {
                return Err(format!(
                    "node {} may not list {kind}s: it reads those its pods use, by name",
                    caller.node
                ));
            }
            let Some((ns, name)) = split_key(&req.key, &prefix) else {
                return Err(format!("node {} may not read {kind} keys", caller.node));
            };
            let for_ingress = kind == "Secret" && Self::named_by_an_ingress(ns, name, scan);
            if !caller.roles.contains(Roles::WORKER)
                || !(for_ingress || Self::used_by_a_pod_of(&caller.node, ns, kind, name, scan))
            {
                return Err(format!(
                    "node {} runs no pod that uses {kind} {ns}/{name}",
                    caller.node
                ));
            }
        }
        Ok(())
    }

    fn hides(&self, _caller: &Caller, key: &[u8]) -> bool {
        key.starts_with(&SECRETS.prefix(None)) || key.starts_with(&CONFIGMAPS.prefix(None))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(node: &str, secret: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}
                ]}],
                "volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "cm"}}]}}]
            }
        }))
        .unwrap()
    }

    fn kv(key: &[u8], value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value,
            create_rev: 1,
            mod_rev: 1,
            version: 1,
        }
    }

    #[test]
    fn a_kubelet_reads_the_secrets_and_config_maps_of_its_own_pods_only() {
        let w = Caller::new("w1", Roles::WORKER);
        let pods = [kv(&PODS.key("ns", "p"), pod("w1", "mine"))];
        let mut scan = |prefix: &[u8]| {
            pods.iter()
                .filter(|kv| kv.key.starts_with(prefix))
                .cloned()
                .collect()
        };
        let read = |key: Vec<u8>, scan: &mut dyn FnMut(&[u8]) -> Vec<KeyValue>| {
            NodeAuthorizer.read(&w, &ReadRequest::key(key), scan)
        };
        assert!(read(SECRETS.key("ns", "mine"), &mut scan).is_ok());
        assert!(read(CONFIGMAPS.key("ns", "cm"), &mut scan).is_ok());
        let err = read(SECRETS.key("ns", "other"), &mut scan).unwrap_err();
        assert!(
            err.contains("runs no pod that uses Secret ns/other"),
            "{err}"
        );
        assert!(read(SECRETS.key("ns2", "mine"), &mut scan).is_err());
        assert!(read(PODS.key("ns", "p"), &mut scan).is_ok());
        for prefix in [
            "/registry/",
            "/registry/secrets/",
            "/registry/configmaps/ns/",
        ] {
            let r = NodeAuthorizer.read(&w, &ReadRequest::prefix(prefix), &mut scan);
            assert!(r.is_err(), "{prefix}");
        }
        // The same pod on another node gives w2 nothing.
        let w2 = Caller::new("w2", Roles::WORKER);
        let r = NodeAuthorizer.read(&w2, &ReadRequest::key(SECRETS.key("ns", "mine")), &mut scan);
        assert!(r.is_err());
        assert!(NodeAuthorizer.hides(&w, &SECRETS.key("ns", "mine")));
        assert!(!NodeAuthorizer.hides(&w, &PODS.key("ns", "p")));
    }

    #[test]
    fn any_node_reads_the_tls_secrets_ingresses_name_and_only_those() {
        let w = Caller::new("w1", Roles::WORKER);
        let ing = serde_json::to_vec(&json!({
            "metadata": {"name": "i", "namespace": "ns"},
            "spec": {"tls": [{"hosts": ["a.example"], "secretName": "cert"}]}
        }))
        .unwrap();
        let objects = [kv(&INGRESSES.key("ns", "i"), ing)];
        let mut scan = |prefix: &[u8]| {
            objects
                .iter()
                .filter(|kv| kv.key.starts_with(prefix))
                .cloned()
                .collect()
        };
        let mut read = |key: Vec<u8>| NodeAuthorizer.read(&w, &ReadRequest::key(key), &mut scan);
        assert!(read(SECRETS.key("ns", "cert")).is_ok());
        assert!(read(SECRETS.key("ns", "other")).is_err());
        assert!(
            read(SECRETS.key("ns2", "cert")).is_err(),
            "another namespace's"
        );
        assert!(
            read(CONFIGMAPS.key("ns", "cert")).is_err(),
            "a ConfigMap of that name"
        );
    }

    #[test]
    fn a_kubelet_writes_its_node_its_pods_and_events_only() {
        let w = Caller::new("w1", Roles::WORKER);
        let mine = PODS.key("ns", "mine");
        let theirs = PODS.key("ns", "theirs");
        let mut current = |key: &[u8]| {
            if key == mine.as_slice() {
                Some(pod("w1", "s"))
            } else if key == theirs.as_slice() {
                Some(pod("w2", "s"))
            } else {
                None
            }
        };
        let mut write = |txn: Txn| NodeAuthorizer.write(&w, &txn, &mut current);
        assert!(write(Txn::put(NODES.key("", "w1"), "{}")).is_ok());
        assert!(write(Txn::put(NODES.key("", "w2"), "{}")).is_err());
        assert!(write(Txn::put(mine.clone(), pod("w1", "s"))).is_ok());
        let mut with_status: Value = serde_json::from_slice(&pod("w1", "s")).unwrap();
        with_status["status"] = json!({"phase": "Running"});
        let status_only = serde_json::to_vec(&with_status).unwrap();
        assert!(write(Txn::put(mine.clone(), status_only)).is_ok());
        // Its own pod's spec (another Secret, say): refused.
        let err = write(Txn::put(mine.clone(), pod("w1", "other"))).unwrap_err();
        assert!(err.contains("only a pod's status"), "{err}");
        assert!(write(Txn::delete(mine.clone(), None)).is_ok());
        // Moving a pod elsewhere, touching another node's, creating one.
        assert!(write(Txn::put(mine.clone(), pod("w2", "s"))).is_err());
        assert!(write(Txn::put(theirs.clone(), pod("w1", "s"))).is_err());
        assert!(write(Txn::delete(theirs.clone(), None)).is_err());
        assert!(write(Txn::put(PODS.key("ns", "new"), pod("w1", "s"))).is_err());
        assert!(write(Txn::put(EVENTS.key("ns", "e"), "{}")).is_ok());
        assert!(write(Txn::put(SECRETS.key("ns", "s"), "{}")).is_err());
        assert!(write(Txn::put("/alloc/podcidrs/10.80.1.0", "w1")).is_ok());
        assert!(write(Txn::put("/alloc/podcidrs/10.80.1.0", "w2")).is_err());
        assert!(write(Txn::put("/alloc/serviceips/10.96.0.1", "x")).is_err());
        // Without the worker role, nothing.
        let api_less = Caller::new("s", Roles::NONE);
        let r = NodeAuthorizer.write(&api_less, &Txn::put(NODES.key("", "s"), "{}"), &mut |_| {
            None
        });
        assert!(r.is_err());
    }
}
