//! Events, recorded the way Kubernetes components record them: one
//! helper (`EventRecorder`) that every component (scheduler, controllers,
//! kubelets) uses to say what happened to an object, so that
//! `kubectl describe` lists it.
//!
//! Repeats are folded like upstream's event correlator: the same object,
//! type, reason, message and source give the same Event (its name is
//! `{object}.{hash}`, a stable hash of those), whose `count` goes up and
//! whose `lastTimestamp` moves; the update is guarded by the Event's
//! resourceVersion, so recorders on different nodes never lose a count.

use serde_json::{json, Value};

use std::sync::Arc;

use super::resources;
use super::writer::Writer;
use shoal_store::command::Txn;
use shoal_store::{ClientError, ReadRequest};

/// The object an Event is about (`involvedObject`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    /// The reference to a stored JSON object.
    pub fn of(obj: &Value) -> ObjectRef {
        let s = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        ObjectRef {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
            uid: s("/metadata/uid"),
        }
    }
}

/// `Normal` or `Warning`, as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records Events for one component on one node, through its writer (a
/// control-plane component's Events are fenced like its other writes).
#[derive(Clone)]
pub struct EventRecorder {
    store: Arc<dyn Writer>,
    component: String,
    host: String,
}

/// Attempts of a count update racing another recorder.
const RETRIES: usize = 8;

impl EventRecorder {
    pub fn new(writer: Arc<dyn Writer>, component: &str, host: &str) -> EventRecorder {
        EventRecorder {
            store: writer,
            component: component.to_string(),
            host: host.to_string(),
        }
    }

    /// The name of the Event these fields fold into.
    fn event_name(&self, obj: &ObjectRef, ty: EventType, reason: &str, message: &str) -> String {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [
            obj.kind.as_str(),
            &obj.namespace,
            &obj.name,
            &obj.uid,
            ty.as_str(),
            reason,
            message,
            &self.component,
            &self.host,
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        let digest = h.finish();
        format!("{}.{}", obj.name, hex::encode(&digest.as_ref()[..8]))
    }

    /// Records that `reason` happened to `obj` (a new Event, or one more
    /// of the same). Returns the Event's count.
    pub async fn record(
        &self,
        obj: &ObjectRef,
        ty: EventType,
        reason: &str,
        message: &str,
    ) -> Result<u64, ClientError> {
        let events = &resources::EVENTS;
        // Events of cluster-scoped objects (Nodes) live in `default`.
        let ns = if obj.namespace.is_empty() {
            "default"
        } else {
            &obj.namespace
        };
        let name = self.event_name(obj, ty, reason, message);
        let key = events.key(ns, &name);
        for _ in 0..RETRIES {
            let now = super::objects::now();
            let current = self.store.read(ReadRequest::key(key.clone())).await?;
            let (value, mod_rev, count) = match current.kvs.first() {
                Some(kv) => {
                    let mut ev: Value = serde_json::from_slice(&kv.value)
                        .map_err(|e| ClientError::Invalid(e.to_string()))?;
                    let count = ev.get("count").and_then(Value::as_u64).unwrap_or(1) + 1;
                    ev["count"] = json!(count);
                    ev["lastTimestamp"] = json!(now);
                    (ev, kv.mod_rev, count)
                }
                None => {
                    let ev = json!({
                        "apiVersion": "v1",
                        "kind": "Event",
                        "metadata": {
                            "name": name, "namespace": ns,
                            "uid": super::objects::new_uid(), "creationTimestamp": now,
                        },
                        "involvedObject": {
                            "apiVersion": obj.api_version, "kind": obj.kind,
                            "namespace": obj.namespace, "name": obj.name, "uid": obj.uid,
                        },
                        "type": ty.as_str(),
                        "reason": reason,
                        "message": message,
                        "source": {"component": self.component, "host": self.host},
                        "reportingComponent": self.component,
                        "reportingInstance": self.host,
                        "firstTimestamp": now,
                        "lastTimestamp": now,
                        "count": 1,
                    });
                    (ev, 0, 1)
                }
            };
            let bytes =
                serde_json::to_vec(&value).map_err(|e| ClientError::Invalid(e.to_string()))?;
            let txn = if mod_rev == 0 {
                Txn::create(key.clone(), bytes)
            } else {
                Txn::update(key.clone(), bytes, mod_rev)
            };
            if self.store.write(txn).await?.succeeded {
                return Ok(count);
            }
        }
        Err(ClientError::Conflict {
            key: String::from_utf8_lossy(&key).into_owned(),
            expected: 0,
        })
    }
}
