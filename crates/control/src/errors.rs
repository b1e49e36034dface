//! The control plane's typed error: why a reconcile (or a fenced write of
//! the scheduler or a controller) did not finish. The controller runtime
//! acts on the variant, as kube-runtime's error policy would:
//!
//! | variant       | the key                                        |
//! |---------------|------------------------------------------------|
//! | `Conflict`    | runs again at once, on the newer object        |
//! | `Fenced`      | is dropped: this node no longer leads          |
//! | `Unavailable` | comes back after an exponential back-off       |
//! | `Invalid`     | gets a Warning Event; no retry until it changes |

use shoal_model::cache::CacheError;
use shoal_model::errors::ApiError;
use shoal_model::events::ObjectRef;
use shoal_store::ClientError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// The object changed under a guarded write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The write was proposed under a fence token that no longer leads.
    #[error("fenced: this node no longer leads the control plane")]
    Fenced,
    /// The store (or the cache) cannot answer now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The object cannot be reconciled as it is (a refused child, say).
    #[error("{reason}: {message}")]
    Invalid {
        /// What the Warning Event is about, when known.
        object: Option<ObjectRef>,
        reason: String,
        message: String,
    },
}

impl ReconcileError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ReconcileError::Conflict(_) | ReconcileError::Unavailable(_)
        )
    }

    /// An `Invalid` about `object`.
    pub fn invalid(object: Option<ObjectRef>, reason: &str, message: impl Into<String>) -> Self {
        ReconcileError::Invalid {
            object,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// The same error about `object` if it did not name one.
    pub fn about(self, obj: &serde_json::Value) -> Self {
        match self {
            ReconcileError::Invalid {
                object: None,
                reason,
                message,
            } => ReconcileError::Invalid {
                object: Some(ObjectRef::of(obj)),
                reason,
                message,
            },
            other => other,
        }
    }
}

impl From<ClientError> for ReconcileError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Conflict { .. } => ReconcileError::Conflict(e.to_string()),
            ClientError::Fenced => ReconcileError::Fenced,
            ClientError::Invalid(_) | ClientError::TooLarge(_) | ClientError::Forbidden(_) => {
                ReconcileError::invalid(None, "FailedWrite", e.to_string())
            }
            ClientError::NotLeader { .. }
            | ClientError::NoQuorum
            | ClientError::Timeout
            | ClientError::LeaderChanged
            | ClientError::Compacted { .. }
            | ClientError::Unavailable(_) => ReconcileError::Unavailable(e.to_string()),
        }
    }
}

impl From<CacheError> for ReconcileError {
    /// The cache behind or stopped: the store's answer is not known yet.
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Store(c) => c.into(),
            other => ReconcileError::Unavailable(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for ReconcileError {
    /// An object that does not decode as its kind.
    fn from(e: serde_json::Error) -> Self {
        ReconcileError::invalid(None, "InvalidObject", e.to_string())
    }
}

impl From<ApiError> for ReconcileError {
    /// An object the API rules refuse (validation, a missing namespace)
    /// is invalid; a 409 is a conflict; a 5xx is unavailability.
    fn from(e: ApiError) -> Self {
        match e.code {
            _ if e.reason == "Fenced" => ReconcileError::Fenced,
            409 => ReconcileError::Conflict(e.message),
            500.. => ReconcileError::Unavailable(e.message),
            _ => ReconcileError::invalid(None, e.reason, e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_api_errors_map_to_what_the_queue_does() {
        let conflict = ClientError::Conflict {
            key: "k".into(),
            expected: 3,
        };
        assert!(matches!(conflict.into(), ReconcileError::Conflict(_)));
        assert_eq!(
            ReconcileError::from(ClientError::Fenced),
            ReconcileError::Fenced
        );
        assert!(matches!(
            ClientError::NoQuorum.into(),
            ReconcileError::Unavailable(_)
        ));
        assert!(matches!(
            ClientError::Invalid("x".into()).into(),
            ReconcileError::Invalid { .. }
        ));
        let missing_ns = ApiError::new(404, "NotFound", "namespaces \"x\" not found");
        let e = ReconcileError::from(missing_ns).about(&serde_json::json!({
            "kind": "ReplicaSet", "metadata": {"name": "r", "namespace": "x"}}));
        match &e {
            ReconcileError::Invalid { object, reason, .. } => {
                assert_eq!(object.as_ref().unwrap().name, "r");
                assert_eq!(reason, "NotFound");
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_retryable());
        assert!(ReconcileError::Conflict(String::new()).is_retryable());
        assert!(!ReconcileError::Fenced.is_retryable());
        // Through the registry a fenced write is an ApiError; it stays fenced.
        let via_api = ApiError::from(ClientError::Fenced);
        assert_eq!(ReconcileError::from(via_api), ReconcileError::Fenced);
    }
}
