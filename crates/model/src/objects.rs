//! What the API server does to an object between the request body and the
//! store: decoding (a 400 carrying the parse error), unknown-field checks
//! for `fieldValidation`, server-set metadata (`uid`, `creationTimestamp`,
//! `generation` bumped on spec changes only, `resourceVersion` = the
//! store's mod_rev), the spec/status split of the `status` subresource,
//! Kubernetes' defaults for the fields kubectl and `describe` show, and
//! validation with field-named causes (422).
//!
//! Objects are `serde_json::Value`s throughout: stored as JSON, served
//! as JSON. The typed k8s-openapi structs are used to decode each kind,
//! which both rejects wrong types and exposes unknown fields: whatever
//! the typed round trip drops was not a field of the kind.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::errors::{ApiError, ApiResult, Cause};
use super::resources::Resource;
use super::selectors::{label_selector_matches, labels_of};

mod validation;

pub use validation::*;

/// `fieldValidation`: what to do with fields the kind does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> ApiResult<FieldValidation> {
        match s {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
            ))),
        }
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The Service clients look the cluster DNS up by (`kube-system/kube-dns`).
pub const KUBE_DNS: (&str, &str) = ("kube-system", "kube-dns");

/// The built-in Ingress controller's IngressClass (made the default at
/// bootstrap) and its controller name.
pub const INGRESS_CLASS: &str = "shoal";
pub const INGRESS_CONTROLLER: &str = "shoal.io/ingress";
/// The annotation marking an IngressClass as the default.
pub const DEFAULT_INGRESS_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation older Ingresses name their class by.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The built-in local-path provisioner's StorageClass (the default, made
/// at bootstrap), and the Node annotation where each kubelet announces the
/// directory its local volumes live under.
pub const LOCAL_CLASS: &str = "shoal-local";
pub const LOCAL_PATH_ANNOTATION: &str = "storage.shoal.io/local-path";

/// The RuntimeClasses made at bootstrap, one per runtime a kubelet may
/// offer; each class's handler is its name.
pub const RUNTIME_CLASSES: &[&str] = &["process", "docker"];
/// The label prefix a node carries for each runtime handler it offers
/// now (`runtime.shoal.io/docker=true`), dropped while that runtime does
/// not answer; the built-in RuntimeClasses select nodes by it.
pub const RUNTIME_LABEL_PREFIX: &str = "runtime.shoal.io/";

/// The built-in RuntimeClass for `handler`: its pods go to nodes that
/// offer the handler now.
pub fn runtime_class(handler: &str) -> Value {
    json!({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": handler},
        "handler": handler,
        "scheduling": {"nodeSelector": {format!("{RUNTIME_LABEL_PREFIX}{handler}"): "true"}},
    })
}

/// Whether an Ingress is the built-in controller's, given its
/// `spec.ingressClassName` and its class annotation: class `shoal` by the
/// field, else by the annotation, else (neither set) when `shoal` is the
/// default class.
pub fn ingress_is_shoals(
    field: Option<&str>,
    annotation: Option<&str>,
    shoal_is_default: bool,
) -> bool {
    match (field, annotation) {
        (Some(c), _) | (None, Some(c)) => c == INGRESS_CLASS,
        (None, None) => shoal_is_default,
    }
}
/// The Service pods reach the API by (`default/kubernetes`).
pub const KUBERNETES: (&str, &str) = ("default", "kubernetes");

/// The finalizer of a delete with `propagationPolicy: Orphan`: the garbage
/// collector releases the dependents, then removes it.
pub const ORPHAN: &str = "orphan";
/// The finalizer of a foreground delete: the garbage collector deletes the
/// blocking dependents first, then removes it.
pub const FOREGROUND: &str = "foregroundDeletion";

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `generateName` suffixes use upstream's alphabet (no vowels, no 0/1/3).
pub fn random_suffix(n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Decodes a request body as JSON, an object of `res`'s kind. The API
/// converts YAML and protobuf bodies to JSON before this (`rest::serve`).
pub fn decode(res: &Resource, body: &[u8]) -> ApiResult<Value> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    check_type(res, &v)?;
    Ok(v)
}

/// An object's `apiVersion` and `kind` must be the resource's (absent
/// ones are filled in).
fn check_type(res: &Resource, v: &Value) -> ApiResult<()> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or(res.kind);
    let av = v.get("apiVersion").and_then(Value::as_str);
    if kind != res.kind || av.is_some_and(|a| a != res.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            av.map_or_else(|| kind.to_string(), |a| format!("{a}, {kind}")),
            format_args!("{}, {}", res.api_version(), res.kind)
        )));
    }
    Ok(())
}

fn rt<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

/// The object through its k8s-openapi type: wrong field types are an
/// error; fields the type lacks are gone.
fn typed(kind: &str, v: Value) -> Result<Value, String> {
    use k8s_openapi::api::{
        apps, batch, coordination, core, discovery, networking, node, policy, storage,
    };
    match kind {
        "Namespace" => rt::<core::v1::Namespace>(v),
        "Node" => rt::<core::v1::Node>(v),
        "Pod" => rt::<core::v1::Pod>(v),
        "Service" => rt::<core::v1::Service>(v),
        "Endpoints" => rt::<core::v1::Endpoints>(v),
        "ConfigMap" => rt::<core::v1::ConfigMap>(v),
        "Secret" => rt::<core::v1::Secret>(v),
        "ServiceAccount" => rt::<core::v1::ServiceAccount>(v),
        "Event" => rt::<core::v1::Event>(v),
        "Deployment" => rt::<apps::v1::Deployment>(v),
        "ReplicaSet" => rt::<apps::v1::ReplicaSet>(v),
        "DaemonSet" => rt::<apps::v1::DaemonSet>(v),
        "StatefulSet" => rt::<apps::v1::StatefulSet>(v),
        "Job" => rt::<batch::v1::Job>(v),
        "Ingress" => rt::<networking::v1::Ingress>(v),
        "EndpointSlice" => rt::<discovery::v1::EndpointSlice>(v),
        "Lease" => rt::<coordination::v1::Lease>(v),
        "RuntimeClass" => rt::<node::v1::RuntimeClass>(v),
        "PersistentVolume" => rt::<core::v1::PersistentVolume>(v),
        "PersistentVolumeClaim" => rt::<core::v1::PersistentVolumeClaim>(v),
        "StorageClass" => rt::<storage::v1::StorageClass>(v),
        "PodDisruptionBudget" => rt::<policy::v1::PodDisruptionBudget>(v),
        _ => Ok(v),
    }
}

/// The dotted paths of fields in `input` that `known` (its typed round
/// trip) lacks. Nulls are not fields; list elements are `field[i]`.
pub fn unknown_fields(input: &Value, known: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, known, String::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, known: &Value, path: String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    None if !v.is_null() => out.push(p),
                    None => {}
                    Some(kv) => walk_unknown(v, kv, p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk_unknown(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks `obj` against its kind: wrong types are a 400 (as upstream's
/// decoder), unknown fields a 422 under Strict or warnings under Warn.
/// Returns the warnings.
pub fn check_fields(res: &Resource, obj: &Value, fv: FieldValidation) -> ApiResult<Vec<String>> {
    let mut probe = obj.clone();
    if let Some(o) = probe.as_object_mut() {
        o.insert("apiVersion".into(), json!(res.api_version()));
        o.insert("kind".into(), json!(res.kind));
    }
    let known = typed(res.kind, probe.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    let unknown = unknown_fields(&probe, &known);
    match fv {
        FieldValidation::Ignore => Ok(vec![]),
        _ if unknown.is_empty() => Ok(vec![]),
        FieldValidation::Warn => Ok(unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect()),
        FieldValidation::Strict => {
            let name = name_of(obj);
            let causes = unknown
                .iter()
                .map(|f| Cause {
                    reason: "FieldValueInvalid",
                    field: f.clone(),
                    message: format!("unknown field {f:?}"),
                })
                .collect();
            let mut e = ApiError::invalid(res, name, causes);
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            e.message = format!("strict decoding error: {}", list.join(", "));
            Err(e)
        }
    }
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata`, created if absent.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Sets `metadata.resourceVersion` (objects are stored without it: it is
/// the key's mod_rev).
pub fn with_rv(mut obj: Value, rev: u64) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
    obj
}

/// The bytes an object is stored as: its JSON without `resourceVersion`
/// (that is the key's mod_rev).
pub fn stored_bytes(obj: &Value) -> Vec<u8> {
    let mut stored = obj.clone();
    if let Some(m) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    // A Value always serializes.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The resourceVersion an object carries (None if absent or empty).
pub fn rv_of(obj: &Value) -> ApiResult<Option<u64>> {
    match obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}"))),
    }
}

/// Kinds whose metadata.generation tracks spec changes.
const GENERATION_KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "Job",
];

fn has_generation(kind: &str) -> bool {
    GENERATION_KINDS.contains(&kind) || kind == "Ingress" || kind == "PodDisruptionBudget"
}

/// Kinds that keep the status a create carries (Nodes report their own).
fn keeps_status_on_create(kind: &str) -> bool {
    matches!(kind, "Node" | "Event" | "Endpoints" | "EndpointSlice")
}

/// Server-set metadata, defaults and validation for a create into `ns`.
pub fn prepare_create(res: &Resource, ns: &str, mut obj: Value) -> ApiResult<Value> {
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    let uid = new_uid();
    {
        let m = meta_mut(&mut obj);
        if res.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let named = m
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !named {
            if let Some(g) = m.get("generateName").and_then(Value::as_str) {
                let name = format!("{g}{}", random_suffix(5));
                m.insert("name".into(), json!(name));
            }
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now()));
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("managedFields");
        m.remove("selfLink");
        if has_generation(res.kind) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if res.has("status") && !keeps_status_on_create(res.kind) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    super::defaults::on_create(res.kind, &mut obj, &uid);
    super::defaults::apply(res.kind, &mut obj);
    validate(res, &obj)?;
    Ok(obj)
}

/// Merges an update of `old` into what is stored: server-set metadata is
/// kept, the spec/status split applies (`sub` is "status" for the status
/// subresource), and generation follows the spec.
pub fn prepare_update(
    res: &Resource,
    sub: Option<&str>,
    old: &Value,
    mut new: Value,
) -> ApiResult<Value> {
    new["apiVersion"] = json!(res.api_version());
    new["kind"] = json!(res.kind);
    if name_of(&new) != name_of(old) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            name_of(&new),
            name_of(old)
        )));
    }
    if res.namespaced && !namespace_of(&new).is_empty() && namespace_of(&new) != namespace_of(old) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if sub == Some("status") {
        // Only the status (and nothing else) changes through /status. The
        // rest is the stored object, defaulted and validated when it was
        // written, and these rules do not look at status: nothing to re-run.
        let mut out = old.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return Ok(out);
    }
    if res.has("status") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    {
        let m = meta_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        m.remove("resourceVersion");
        m.remove("managedFields");
        m.remove("selfLink");
        if m.remove("generateName").is_some() {
            if let Some(og) = old_meta.get("generateName") {
                m.insert("generateName".into(), og.clone());
            }
        }
    }
    super::defaults::apply(res.kind, &mut new);
    // A deleting object takes no new finalizers.
    if old_meta.get("deletionTimestamp").is_some() {
        let before = finalizers(old);
        if finalizers(&new).iter().any(|f| !before.contains(f)) {
            return Err(ApiError::invalid(
                res,
                name_of(old),
                vec![Cause {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message:
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                }],
            ));
        }
    }
    if has_generation(res.kind) && new.get("spec") != old.get("spec") {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    validate(res, &new)?;
    let mut causes = Vec::new();
    validation::validate_update(res.kind, old, &new, &mut causes);
    if !causes.is_empty() {
        return Err(ApiError::invalid(res, name_of(&new), causes));
    }
    Ok(new)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
