//! Kubernetes API errors: every failure of the REST surface is an
//! `ApiError`, answered as a `Status` object with the code, reason and
//! message kubectl and kube-rs expect (`NotFound` → 404, `AlreadyExists`
//! and `Conflict` → 409, `Invalid` → 422 with field causes, `Expired` /
//! `Gone` → 410, ...).

use serde_json::{json, Value};

use super::resources::Resource;
use shoal_store::ClientError;

/// One field of an Invalid error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value:?}: {why}"),
        }
    }

    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        }
    }

    pub fn forbidden(field: impl Into<String>, why: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {why}"),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Cause {
        Cause {
            reason: "FieldValueNotFound",
            field: field.into(),
            message: format!("Not found: {value:?}"),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value:?}"),
        }
    }
}

/// A failed API request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// A LIST's continue token to go on with (410 on an expired one).
    pub list_continue: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            list_continue: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found(res: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
            list_continue: None,
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", res.qualified()),
            )
        }
    }

    pub fn already_exists(res: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
            list_continue: None,
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", res.qualified()),
            )
        }
    }

    /// 403: a create in a namespace being deleted (NamespaceLifecycle).
    pub fn namespace_terminating(res: &Resource, name: &str, ns: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": name, "kind": res.plural, "causes": [{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"),
                "field": "metadata.namespace",
            }]})),
            list_continue: None,
            ..ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    res.qualified()
                ),
            )
        }
    }

    pub fn conflict(res: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
            list_continue: None,
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                     please apply your changes to the latest version and try again",
                    res.qualified()
                ),
            )
        }
    }

    /// 422 naming every invalid field.
    pub fn invalid(res: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
        let text: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let message = if text.len() == 1 {
            format!("{} {name:?} is invalid: {}", res.qualified_kind(), text[0])
        } else {
            format!(
                "{} {name:?} is invalid: [{}]",
                res.qualified_kind(),
                text.join(", ")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        ApiError {
            details: Some(json!({
                "name": name, "group": res.group, "kind": res.kind, "causes": causes,
            })),
            ..ApiError::new(422, "Invalid", message)
        }
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn status(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        if let Some(c) = &self.list_continue {
            body["metadata"]["continue"] = Value::String(c.clone());
        }
        body
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> ApiError {
        match e {
            ClientError::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            ClientError::TooLarge(m) => ApiError::new(413, "RequestEntityTooLarge", m),
            ClientError::Timeout | ClientError::LeaderChanged => {
                ApiError::new(504, "Timeout", e.to_string())
            }
            ClientError::Invalid(m) => ApiError::bad_request(m),
            // A control-plane write from a deposed leader: its writer must
            // tell this apart from unavailability (it stops, not retries).
            ClientError::Fenced => ApiError::new(503, "Fenced", e.to_string()),
            ClientError::Conflict { .. } => ApiError::new(409, "Conflict", e.to_string()),
            ClientError::Forbidden(_) => ApiError::new(403, "Forbidden", e.to_string()),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}
