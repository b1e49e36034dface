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

/// Decodes a request body: JSON (kubectl sends JSON; YAML is not an
/// accepted content type), an object of `res`'s kind.
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
    use k8s_openapi::api::{apps, batch, coordination, core, discovery, networking};
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
fn has_generation(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" | "Ingress"
    )
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
        // Only the status (and nothing else) changes through /status.
        let mut out = old.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        super::defaults::apply(res.kind, &mut out);
        validate(res, &out)?;
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

/// Is `s` a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63)?
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Is `s` a DNS-1123 subdomain (dot-separated labels, ≤ 253)?
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Is `s` a DNS-1035 label (a DNS-1123 label starting with a letter)?
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Is `s` a valid label value (≤ 63, alphanumerics with `-_.` inside)?
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// Is `s` a qualified name (`[prefix/]name`, as label and annotation
/// keys are)?
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Validation common to every kind, then the kind's own.
pub fn validate(res: &Resource, obj: &Value) -> ApiResult<()> {
    let name = name_of(obj);
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else {
        let (ok, msg) = match res.kind {
            "Namespace" => (is_dns1123_label(name), LABEL_MSG),
            "Service" => (is_dns1035_label(name), DNS1035_MSG),
            _ => (is_dns1123_subdomain(name), SUBDOMAIN_MSG),
        };
        if !ok {
            causes.push(Cause::invalid("metadata.name", name, msg));
        }
    }
    for (k, v) in labels_of(obj) {
        if !is_qualified_name(&k) {
            causes.push(Cause::invalid(
                "metadata.labels",
                &k,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        if !is_label_value(&v) {
            causes.push(Cause::invalid(
                "metadata.labels",
                &v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
    }
    if let Some(a) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for k in a.keys() {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    k,
                    "must be a qualified name",
                ));
            }
        }
    }
    validate_kind(res.kind, obj, &mut causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, name, causes))
    }
}

fn validate_kind(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    match kind {
        "Pod" => validate_pod_spec(obj.get("spec"), "spec", causes),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" => {
            validate_workload(kind, obj, causes)
        }
        "Service" => validate_service(obj, causes),
        _ => {}
    }
}

fn validate_workload(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64) {
        if r < 0 {
            causes.push(Cause::invalid(
                "spec.replicas",
                &r.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    let template = spec.and_then(|s| s.get("template"));
    let selector = spec.and_then(|s| s.get("selector"));
    match selector {
        None | Some(Value::Null) if kind != "Job" => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let empty = sel.as_object().is_none_or(|m| {
                m.get("matchLabels")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                    && m.get("matchExpressions")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty)
            });
            if empty && kind != "Job" {
                causes.push(Cause::invalid(
                    "spec.selector",
                    "{}",
                    "empty selector is invalid for deployment",
                ));
            } else if let Some(t) = template {
                if !label_selector_matches(sel, &labels_of(t)) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &serde_json::to_string(&labels_of(t)).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        _ => {}
    }
    match template {
        None | Some(Value::Null) => causes.push(Cause::required("spec.template")),
        Some(t) => {
            validate_pod_spec(t.get("spec"), "spec.template.spec", causes);
            let policy = t.pointer("/spec/restartPolicy").and_then(Value::as_str);
            let allowed: &[&str] = if kind == "Job" {
                &["OnFailure", "Never"]
            } else {
                &["Always"]
            };
            if let Some(p) = policy {
                if !allowed.contains(&p) {
                    causes.push(Cause::not_supported(
                        "spec.template.spec.restartPolicy",
                        p,
                        allowed,
                    ));
                }
            }
        }
    }
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(at));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        causes.push(Cause::required(format!("{at}.containers")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let p = format!("{at}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                causes.push(Cause::required(format!("{p}.name")));
            } else if !is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{p}.name"), name, LABEL_MSG));
            } else if !seen.insert(name.to_string()) {
                causes.push(Cause::duplicate(format!("{p}.name"), name));
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                causes.push(Cause::required(format!("{p}.image")));
            }
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for (j, port) in ports.iter().enumerate() {
                    let n = port
                        .get("containerPort")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if !(1..=65535).contains(&n) {
                        causes.push(Cause::invalid(
                            format!("{p}.ports[{j}].containerPort"),
                            &n.to_string(),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                    check_protocol(port, &format!("{p}.ports[{j}].protocol"), causes);
                }
            }
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        const POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
        if !POLICIES.contains(&p) {
            causes.push(Cause::not_supported(
                format!("{at}.restartPolicy"),
                p,
                POLICIES,
            ));
        }
    }
}

fn check_protocol(port: &Value, field: &str, causes: &mut Vec<Cause>) {
    const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
    if let Some(p) = port.get("protocol").and_then(Value::as_str) {
        if !PROTOCOLS.contains(&p) {
            causes.push(Cause::not_supported(field, p, PROTOCOLS));
        }
    }
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !TYPES.contains(&ty) {
        causes.push(Cause::not_supported("spec.type", ty, TYPES));
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    if ty != "ExternalName" && ports.is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.ports"));
    }
    let ports = ports.cloned().unwrap_or_default();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let n = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&n) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &n.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        check_protocol(p, &format!("spec.ports[{i}].protocol"), causes);
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        } else if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::find;

    fn deployments() -> &'static Resource {
        find("apps", "v1", "deployments").unwrap()
    }

    fn deployment(name: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.14.2"}]}}}
        })
    }

    #[test]
    fn names_follow_dns_rules() {
        assert!(is_dns1123_subdomain("web-1.example"));
        assert!(!is_dns1123_subdomain("Web"));
        assert!(!is_dns1123_subdomain("-web"));
        assert!(!is_dns1123_subdomain("web_1"));
        assert!(is_dns1123_label("a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1035_label("svc-1"));
        assert!(!is_dns1035_label("1svc"));
        assert_eq!(new_uid().len(), 36);
        assert_eq!(&new_uid()[14..15], "4");
    }

    #[test]
    fn create_sets_server_metadata_and_validates() {
        let d = prepare_create(deployments(), "default", deployment("web")).unwrap();
        assert_eq!(d["metadata"]["namespace"], "default");
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(d["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        let e = prepare_create(deployments(), "default", deployment("Bad_Name")).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(e.details.unwrap()["causes"][0]["field"], "metadata.name");
        let mut bad = deployment("web");
        bad["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        let e = prepare_create(deployments(), "default", bad).unwrap_err();
        assert!(
            e.message
                .contains("`selector` does not match template `labels`"),
            "{}",
            e.message
        );
        let mut other_ns = deployment("web");
        other_ns["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(
            prepare_create(deployments(), "default", other_ns)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn generation_moves_with_the_spec_only() {
        let res = deployments();
        let old = prepare_create(res, "default", deployment("web")).unwrap();
        let mut labels_only = old.clone();
        labels_only["metadata"]["labels"]["extra"] = json!("1");
        let n = prepare_update(res, None, &old, labels_only).unwrap();
        assert_eq!(n["metadata"]["generation"], 1);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        let n = prepare_update(res, None, &old, scaled).unwrap();
        assert_eq!(n["metadata"]["generation"], 2);
        assert_eq!(n["metadata"]["uid"], old["metadata"]["uid"]);
        // The main resource ignores status; /status ignores the rest.
        let mut with_status = old.clone();
        with_status["status"] = json!({"replicas": 2});
        with_status["spec"]["replicas"] = json!(9);
        let n = prepare_update(res, None, &old, with_status.clone()).unwrap();
        assert!(n.get("status").is_none());
        let s = prepare_update(res, Some("status"), &old, with_status).unwrap();
        assert_eq!(
            (
                s["status"]["replicas"].as_i64(),
                s["spec"]["replicas"].as_i64()
            ),
            (Some(2), Some(2))
        );
    }

    #[test]
    fn unknown_fields_are_found_by_the_typed_round_trip() {
        let res = deployments();
        let mut d = deployment("web");
        d["spec"]["replicaz"] = json!(3);
        d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        d["metadata"]["creationTimestamp"] = Value::Null;
        let w = check_fields(res, &d, FieldValidation::Warn).unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        let e = check_fields(res, &d, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("unknown field \"spec.replicaz\""),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("spec.template.spec.containers[0].imagee"),
            "{}",
            e.message
        );
        assert!(check_fields(res, &d, FieldValidation::Ignore)
            .unwrap()
            .is_empty());
        assert!(
            check_fields(res, &deployment("web"), FieldValidation::Strict)
                .unwrap()
                .is_empty()
        );
        // Wrong types are a decode error (400).
        let mut wrong = deployment("web");
        wrong["spec"]["replicas"] = json!("two");
        assert_eq!(
            check_fields(res, &wrong, FieldValidation::Ignore)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn decoding_reports_the_parse_error() {
        let e = decode(deployments(), b"{\"kind\": ").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("EOF"), "{}", e.message);
        assert_eq!(decode(deployments(), b"[1]").unwrap_err().code, 400);
        let e = decode(deployments(), br#"{"apiVersion":"v1","kind":"Pod"}"#).unwrap_err();
        assert_eq!(e.code, 400);
    }
}
