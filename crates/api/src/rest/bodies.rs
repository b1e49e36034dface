//! Request bodies other than JSON: Kubernetes protobuf (Go zero values pruned) and YAML.

use super::*;

/// Fields whose values are user data (maps): Go's zero values inside
/// them are real values and stay.
pub(super) const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "matchLabels",
    "nodeSelector",
    "selector",
];

/// Drops the empty strings, `false`s and nulls a Go client writes for
/// every plain (non-pointer) field of a protobuf body, so that defaulting
/// sees them as unset, as it would in the JSON the same client sends
/// (where they are `omitempty`). Numbers stay: a zero replica count is
/// meaningful.
pub fn prune_go_zero_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, child| {
                MAP_FIELDS.contains(&k.as_str())
                    || !matches!(child, Value::Null | Value::Bool(false))
                        && child.as_str() != Some("")
            });
            for (k, child) in m.iter_mut() {
                if !MAP_FIELDS.contains(&k.as_str()) {
                    prune_go_zero_values(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(prune_go_zero_values),
        _ => {}
    }
}

/// A Kubernetes protobuf body (kubectl 1.33 sends its imperative creates
/// so) as the JSON the rest of the server works on.
pub(super) fn from_protobuf(body: &[u8]) -> ApiResult<Bytes> {
    let mut v = crate::protobuf::decode(body).map_err(|e| {
        ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"))
    })?;
    prune_go_zero_values(&mut v);
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// A YAML body (Kubernetes accepts `application/yaml` for creates and
/// updates) as JSON.
pub(super) fn from_yaml(body: &[u8]) -> ApiResult<Bytes> {
    let v: Value = serde_saphyr::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}
