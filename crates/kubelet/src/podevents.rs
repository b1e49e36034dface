//! The Events a runtime records about a pod's containers (Pulling,
//! Pulled, Created, Started, BackOff, Failed), as upstream's kubelet does,
//! so `kubectl describe pod` and `kubectl get events` tell what happened.
//!
//! A runtime hands them to a bounded queue and goes on; one task records
//! them in order through the kubelet's `EventRecorder` (which folds
//! repeats into counts). A queue that is full drops the Event, said in
//! the log: Events never hold a pod up.

use tokio::sync::mpsc;

use shoal_model::events::{EventRecorder, EventType, ObjectRef};

use crate::PodConfig;

/// Events queued and not yet recorded, at most.
const QUEUE: usize = 1024;

struct Queued {
    pod: ObjectRef,
    ty: EventType,
    reason: &'static str,
    message: String,
}

/// Where a runtime's Events go (cheap to clone; the default records none).
#[derive(Clone, Default)]
pub struct PodEvents {
    tx: Option<mpsc::Sender<Queued>>,
}

impl PodEvents {
    /// Events recorded through `recorder`. Must be called within a Tokio
    /// runtime.
    pub fn new(recorder: EventRecorder) -> PodEvents {
        let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE);
        tokio::spawn(async move {
            while let Some(q) = rx.recv().await {
                if let Err(e) = recorder.record(&q.pod, q.ty, q.reason, &q.message).await {
                    tracing::debug!(pod = %q.pod.name, reason = q.reason, "recording an Event: {e}");
                }
            }
        });
        PodEvents { tx: Some(tx) }
    }

    /// A `Normal` Event about `pod`.
    pub fn normal(&self, pod: &PodConfig, reason: &'static str, message: String) {
        self.send(pod, EventType::Normal, reason, message);
    }

    /// A `Warning` Event about `pod`.
    pub fn warning(&self, pod: &PodConfig, reason: &'static str, message: String) {
        self.send(pod, EventType::Warning, reason, message);
    }

    fn send(&self, pod: &PodConfig, ty: EventType, reason: &'static str, message: String) {
        let Some(tx) = &self.tx else { return };
        let meta = &pod.pod.metadata;
        let object = ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        };
        let queued = Queued {
            pod: object,
            ty,
            reason,
            message,
        };
        if let Err(mpsc::error::TrySendError::Full(q)) = tx.try_send(queued) {
            tracing::warn!(pod = %q.pod.name, reason = q.reason, "the Event queue is full: dropping the Event");
        }
    }
}
