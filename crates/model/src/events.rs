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
    pub fn as_str(self) -> &'static str {
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
    /// The queue of [`EventRecorder::emit`], its task started on first use.
    sink: Arc<std::sync::OnceLock<sink::Sink>>,
    /// False: `emit` records nothing (`shoal sim --no-events`).
    on: bool,
}

mod sink;
pub use sink::{SinkStats, AGGREGATE_AFTER, SPAM_BURST};

/// Attempts of a count update racing another recorder.
const RETRIES: usize = 8;

impl EventRecorder {
    pub fn new(writer: Arc<dyn Writer>, component: &str, host: &str) -> EventRecorder {
        EventRecorder {
            store: writer,
            component: component.to_string(),
            host: host.to_string(),
            sink: Arc::default(),
            on: true,
        }
    }

    /// This recorder, emitting only if `on` (a cluster with Events off
    /// still answers `record`, which tests and callers wait for).
    pub fn enabled(mut self, on: bool) -> EventRecorder {
        self.on = on;
        self
    }

    /// Queues an Event and returns at once, as upstream's broadcaster: one
    /// task per recorder filters spam (a token bucket per object: 25, then
    /// one per 5 minutes), aggregates a series of similar Events (the same
    /// reason with ten different messages within 10 minutes becomes one
    /// "(combined from similar events)" Event), folds repeats into counts
    /// without reading the store, and writes what queued meanwhile
    /// together, so the store commits them as one batch. A full queue
    /// drops the Event (counted in [`EventRecorder::stats`]). Must be called
    /// within a Tokio runtime.
    pub fn emit(&self, obj: &ObjectRef, ty: EventType, reason: &str, message: &str) {
        if !self.on {
            return;
        }
        let sink = self.sink.get_or_init(|| sink::Sink::start(self.clone()));
        sink.push(obj.clone(), ty, reason, message);
    }

    /// What [`EventRecorder::emit`] did so far.
    pub fn stats(&self) -> SinkStats {
        self.sink.get().map(sink::Sink::stats).unwrap_or_default()
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

    /// A new Event named `name` in `ns` (count 1, both timestamps `now`).
    #[allow(clippy::too_many_arguments)]
    fn fresh(
        &self,
        obj: &ObjectRef,
        ty: EventType,
        reason: &str,
        message: &str,
        name: &str,
        ns: &str,
        now: &str,
    ) -> Value {
        json!({
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
        })
    }

    /// The namespace an Event about `obj` lives in (those of
    /// cluster-scoped objects, Nodes, in `default`).
    fn namespace_for(obj: &ObjectRef) -> &str {
        if obj.namespace.is_empty() {
            "default"
        } else {
            &obj.namespace
        }
    }

    /// Records that `reason` happened to `obj` (a new Event, or one more
    /// of the same) and waits for the write. Returns the Event's count.
    pub async fn record(
        &self,
        obj: &ObjectRef,
        ty: EventType,
        reason: &str,
        message: &str,
    ) -> Result<u64, ClientError> {
        let name = self.event_name(obj, ty, reason, message);
        let (ev, _) = self.fold(obj, ty, reason, message, &name, 1, None).await?;
        Ok(ev.get("count").and_then(Value::as_u64).unwrap_or(1))
    }

    /// Adds `n` to the count of the Event `name` (made if absent), guarded
    /// by its mod_rev. `known` is the Event as this recorder last wrote
    /// it: tried first without a read; a conflict reads and tries again.
    /// Returns the Event as written and its revision.
    #[allow(clippy::too_many_arguments)]
    async fn fold(
        &self,
        obj: &ObjectRef,
        ty: EventType,
        reason: &str,
        message: &str,
        name: &str,
        n: u64,
        mut known: Option<(Value, u64)>,
    ) -> Result<(Value, u64), ClientError> {
        let events = &resources::EVENTS;
        let ns = Self::namespace_for(obj);
        let key = events.key(ns, name);
        // A name this recorder has not written is most likely new: the
        // first try creates it without reading (the create is guarded; if
        // another recorder made it, the next try reads).
        let mut fresh_first = known.is_none();
        for _ in 0..RETRIES {
            let now = super::objects::now();
            let current = match known.take() {
                Some(k) => Some(k),
                None if std::mem::take(&mut fresh_first) => None,
                None => match self
                    .store
                    .read(ReadRequest::key(key.clone()))
                    .await?
                    .kvs
                    .first()
                {
                    Some(kv) => Some((
                        serde_json::from_slice(&kv.value)
                            .map_err(|e| ClientError::Invalid(e.to_string()))?,
                        kv.mod_rev,
                    )),
                    None => None,
                },
            };
            let (value, mod_rev) = match current {
                Some((mut ev, mod_rev)) => {
                    let count = ev.get("count").and_then(Value::as_u64).unwrap_or(1) + n;
                    ev["count"] = json!(count);
                    ev["lastTimestamp"] = json!(now);
                    ev["message"] = json!(message);
                    (ev, mod_rev)
                }
                None => {
                    let mut ev = self.fresh(obj, ty, reason, message, name, ns, &now);
                    ev["count"] = json!(n.max(1));
                    (ev, 0)
                }
            };
            let bytes =
                serde_json::to_vec(&value).map_err(|e| ClientError::Invalid(e.to_string()))?;
            let txn = if mod_rev == 0 {
                Txn::create(key.clone(), bytes)
            } else {
                Txn::update(key.clone(), bytes, mod_rev)
            };
            let done = self.store.write(txn).await?;
            if done.succeeded {
                return Ok((value, done.revision));
            }
        }
        Err(ClientError::Conflict {
            key: String::from_utf8_lossy(&key).into_owned(),
            expected: 0,
        })
    }
}
