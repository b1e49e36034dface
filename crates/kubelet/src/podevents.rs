//! The Events a runtime records about a pod's containers (Pulling,
//! Pulled, Created, Started, BackOff, Unhealthy, Killing, Failed,
//! FailedMount), as upstream's kubelet does, so `kubectl describe pod`
//! and `kubectl get events` tell what happened.
//!
//! A runtime hands them to the kubelet's `EventRecorder::emit` and goes
//! on: its queue filters spam, aggregates series and writes in batches,
//! and drops an Event rather than hold a pod up.

use shoal_model::events::{EventRecorder, EventType, ObjectRef};

use crate::PodConfig;

/// Where a runtime's Events go (cheap to clone; the default records none).
#[derive(Clone, Default)]
pub struct PodEvents {
    recorder: Option<EventRecorder>,
}

impl PodEvents {
    /// Events recorded through `recorder`. Must be used within a Tokio
    /// runtime.
    pub fn new(recorder: EventRecorder) -> PodEvents {
        PodEvents {
            recorder: Some(recorder),
        }
    }

    /// The reference of an Event about `pod`.
    pub fn object_of(pod: &PodConfig) -> ObjectRef {
        let meta = &pod.pod.metadata;
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }

    /// A `Normal` Event about `pod`.
    pub fn normal(&self, pod: &PodConfig, reason: &'static str, message: String) {
        self.about(&Self::object_of(pod), EventType::Normal, reason, &message);
    }

    /// A `Warning` Event about `pod`.
    pub fn warning(&self, pod: &PodConfig, reason: &'static str, message: String) {
        self.about(&Self::object_of(pod), EventType::Warning, reason, &message);
    }

    /// An Event about the pod `object`.
    pub fn about(&self, object: &ObjectRef, ty: EventType, reason: &str, message: &str) {
        if let Some(r) = &self.recorder {
            r.emit(object, ty, reason, message);
        }
    }
}
