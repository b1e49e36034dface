//! Container environments, as the kubelet builds them before a container
//! starts: `envFrom` (ConfigMaps and Secrets, with a prefix), then `env`
//! (literal values, `configMapKeyRef`, `secretKeyRef`, and the `fieldRef`s
//! the kubelet knows), later entries overriding earlier ones, and
//! `$(VAR)` references expanded as upstream does (`$$` escapes).
//!
//! The runtime gets the pod with every container's `env` made literal,
//! except `status.podIP`/`status.podIPs` field references, which only the
//! runtime knows when it starts the pod. A container whose configuration
//! cannot be resolved (a missing ConfigMap, Secret or key that is not
//! optional) is named in [`Resolved::errors`] with the reason instead; the
//! runtime refuses to start it with `CreateContainerConfigError`, as
//! upstream.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::{json, Value};

/// ConfigMaps and Secrets by (kind, name) in the pod's namespace: their
/// data as text (Secret values decoded).
pub type Sources = BTreeMap<(&'static str, String), BTreeMap<String, String>>;

/// The (kind, name) of every ConfigMap and Secret the pod's environments
/// name.
pub fn referenced(pod: &Value) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    for c in containers(pod) {
        for e in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
                if let Some(n) = e.pointer(&format!("/{field}/name")).and_then(Value::as_str) {
                    out.insert((kind, n.to_string()));
                }
            }
        }
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
                if let Some(n) = e
                    .pointer(&format!("/valueFrom/{field}/name"))
                    .and_then(Value::as_str)
                {
                    out.insert((kind, n.to_string()));
                }
            }
        }
    }
    out
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
}

/// A ConfigMap's or Secret's data as text.
pub fn data_of(kind: &str, obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if kind == "Secret" {
        for (k, v) in obj
            .get("data")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(bytes) = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            {
                out.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        for (k, v) in obj
            .get("stringData")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    } else {
        for (k, v) in obj
            .get("data")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    out
}

/// What the kubelet knows for `fieldRef`s.
pub struct Node<'a> {
    pub name: &'a str,
    pub host_ip: &'a str,
    /// The Services whose variables the pod's containers get (see
    /// [`service_vars`]): `kubernetes` from `default`, and with
    /// `enableServiceLinks` those of the pod's namespace.
    pub services: &'a [ServiceEnv],
}

/// A Service as the variables it gives pods show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEnv {
    pub name: String,
    pub cluster_ip: String,
    /// (name, port, protocol), in the Service's order.
    pub ports: Vec<(String, i64, String)>,
}

impl ServiceEnv {
    /// `svc`'s variables' source, if it has a cluster IP and a port.
    pub fn of(svc: &Value) -> Option<ServiceEnv> {
        let ip = svc.pointer("/spec/clusterIP")?.as_str()?;
        if ip.is_empty() || ip == "None" {
            return None;
        }
        let ports: Vec<(String, i64, String)> = svc
            .pointer("/spec/ports")?
            .as_array()?
            .iter()
            .filter_map(|p| {
                Some((
                    p.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    p.get("port")?.as_i64()?,
                    p.get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP")
                        .to_string(),
                ))
            })
            .collect();
        let name = svc.pointer("/metadata/name")?.as_str()?.to_string();
        (!ports.is_empty()).then(|| ServiceEnv {
            name,
            cluster_ip: ip.to_string(),
            ports,
        })
    }
}

/// Upstream's Service variables, in its order: `{SVC}_SERVICE_HOST`,
/// `{SVC}_SERVICE_PORT` (the first port), `{SVC}_SERVICE_PORT_{NAME}` for
/// named ports, then the Docker-link ones (`{SVC}_PORT`,
/// `{SVC}_PORT_{port}_{PROTO}` and its `_PROTO`, `_PORT`, `_ADDR`).
pub fn service_vars(services: &[ServiceEnv]) -> Vec<(String, String)> {
    let var = |s: &str| s.to_uppercase().replace('-', "_");
    let mut out = Vec::new();
    for s in services {
        let n = var(&s.name);
        let ip = &s.cluster_ip;
        out.push((format!("{n}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{n}_SERVICE_PORT"), s.ports[0].1.to_string()));
        for (name, port, _) in &s.ports {
            if !name.is_empty() {
                out.push((format!("{n}_SERVICE_PORT_{}", var(name)), port.to_string()));
            }
        }
        for (i, (_, port, proto)) in s.ports.iter().enumerate() {
            let proto = proto.to_lowercase();
            let url = format!("{proto}://{ip}:{port}");
            if i == 0 {
                out.push((format!("{n}_PORT"), url.clone()));
            }
            let p = format!("{n}_PORT_{port}_{}", proto.to_uppercase());
            out.push((p.clone(), url));
            out.push((format!("{p}_PROTO"), proto));
            out.push((format!("{p}_PORT"), port.to_string()));
            out.push((format!("{p}_ADDR"), ip.clone()));
        }
    }
    out
}

/// A `fieldRef`'s value; None for the pod IP (the runtime's) or an
/// unknown path.
fn field(pod: &Value, path: &str, node: &Node) -> Option<String> {
    let meta = |k: &str| {
        pod.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
    };
    let keyed = |map: &str, p: &str| -> Option<String> {
        let key = p
            .strip_prefix(&format!("metadata.{map}['"))?
            .strip_suffix("']")?;
        Some(
            pod.pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    match path {
        "metadata.name" => meta("name").map(String::from),
        "metadata.namespace" => Some(meta("namespace").unwrap_or("default").to_string()),
        "metadata.uid" => meta("uid").map(String::from),
        "spec.nodeName" => Some(node.name.to_string()),
        "spec.serviceAccountName" => Some(
            pod.pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
        ),
        "status.hostIP" | "status.hostIPs" => Some(node.host_ip.to_string()),
        p => keyed("labels", p).or_else(|| keyed("annotations", p)),
    }
}

/// The longest value `$(VAR)` expansion may make: the kernel's own limit
/// on one argument or environment string (`MAX_ARG_STRLEN`, 32 pages), so
/// nothing longer could be exec'd anyway. Without it, forty env entries
/// that each reference the one before twice make a value of 2^40 bytes.
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// The most one container's environment may hold, names and values
/// together: half of the kernel's usual `ARG_MAX` (2 MiB), the rest left
/// to its arguments.
pub const MAX_ENV_BYTES: usize = 1024 * 1024;

/// A `$(VAR)` expansion that would pass [`MAX_VALUE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("$(VAR) expansion makes a value over {MAX_VALUE_BYTES} bytes")]
pub struct TooLong;

/// `$(NAME)` references in `s` replaced from `vars` (unknown ones kept
/// as written, `$$` for a literal `$`), as upstream's expansion; refused
/// once the result passes [`MAX_VALUE_BYTES`].
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> Result<String, TooLong> {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE_BYTES));
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        if out.len() > MAX_VALUE_BYTES {
            return Err(TooLong);
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if out.len() > MAX_VALUE_BYTES {
        return Err(TooLong);
    }
    Ok(out)
}

/// One container's environment, or why it cannot be built.
fn container_env(
    c: &Value,
    pod: &Value,
    sources: &Sources,
    node: &Node,
) -> Result<Vec<Value>, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut out_pod_ip: Vec<Value> = Vec::new();
    fn put(vars: &mut BTreeMap<String, String>, order: &mut Vec<String>, k: String, v: String) {
        if vars.insert(k.clone(), v).is_none() {
            order.push(k);
        }
    }
    // The Services' variables come first: the container's own override
    // them and may refer to them as $(VAR).
    for (k, v) in service_vars(node.services) {
        put(&mut vars, &mut order, k, v);
    }
    for e in c
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let prefix = e.get("prefix").and_then(Value::as_str).unwrap_or("");
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let Some(r) = e.get(field) else { continue };
            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
            match sources.get(&(kind, name.to_string())) {
                Some(data) => {
                    for (k, v) in data {
                        put(&mut vars, &mut order, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => return Err(format!("{} {name:?} not found", kind.to_lowercase())),
            }
        }
    }
    for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        if let Some(v) = e.get("value").and_then(Value::as_str) {
            let v = expand(v, &vars).map_err(|e| format!("env {name}: {e}"))?;
            put(&mut vars, &mut order, name.to_string(), v);
            continue;
        }
        let Some(from) = e.get("valueFrom") else {
            put(&mut vars, &mut order, name.to_string(), String::new());
            continue;
        };
        if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            if path == "status.podIP" || path == "status.podIPs" {
                // The runtime fills it in.
                vars.remove(name);
                order.retain(|k| k != name);
                out_pod_ip.push(e.clone());
                continue;
            }
            match field(pod, path, node) {
                Some(v) => put(&mut vars, &mut order, name.to_string(), v),
                None => return Err(format!("unsupported fieldPath {path:?} for {name}")),
            }
            continue;
        }
        let mut found = false;
        for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
            let Some(r) = from.get(field) else { continue };
            found = true;
            let src = r.get("name").and_then(Value::as_str).unwrap_or("");
            let key = r.get("key").and_then(Value::as_str).unwrap_or("");
            let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
            match sources.get(&(kind, src.to_string())).map(|d| d.get(key)) {
                Some(Some(v)) => put(&mut vars, &mut order, name.to_string(), v.clone()),
                _ if optional => {}
                Some(None) => {
                    return Err(format!(
                        "couldn't find key {key} in {} {src}",
                        kind.to_lowercase()
                    ))
                }
                None => return Err(format!("{} {src:?} not found", kind.to_lowercase())),
            }
        }
        if !found {
            return Err(format!("unsupported valueFrom for {name}"));
        }
    }
    let total: usize = vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > MAX_ENV_BYTES {
        return Err(format!(
            "the environment holds {total} bytes, over the limit of {MAX_ENV_BYTES}"
        ));
    }
    let mut env: Vec<Value> = order
        .iter()
        .map(|k| json!({"name": k, "value": vars[k]}))
        .collect();
    env.extend(out_pod_ip);
    Ok(env)
}

/// A pod with its environments resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The pod, each container's `env` literal where it could be made so.
    pub pod: Value,
    /// By container name: why its environment cannot be built.
    pub errors: BTreeMap<String, String>,
}

/// The pod with every container's environment made literal (see the
/// module docs). `$(VAR)` in `command` and `args` is the runtime's to
/// expand: only it knows every value (the pod IP).
pub fn resolve(pod: &Value, sources: &Sources, node: &Node) -> Resolved {
    let mut out = pod.clone();
    let mut errors = BTreeMap::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = out
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs.iter_mut() {
            match container_env(c, pod, sources, node) {
                Ok(env) => {
                    c["env"] = json!(env);
                    if let Some(m) = c.as_object_mut() {
                        m.remove("envFrom");
                    }
                }
                Err(why) => {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    errors.insert(name.to_string(), why);
                }
            }
        }
    }
    Resolved { pod: out, errors }
}

/// Each container's environment from a pod [`resolve`] made literal, by
/// container name (typed, as a runtime takes it).
pub fn literal_envs(resolved: &Value) -> BTreeMap<String, Vec<k8s_openapi::api::core::v1::EnvVar>> {
    let mut out = BTreeMap::new();
    for c in containers(resolved) {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let env = c
            .get("env")
            .cloned()
            .and_then(|e| serde_json::from_value(e).ok())
            .unwrap_or_default();
        out.insert(name.to_string(), env);
    }
    out
}

#[cfg(test)]
mod tests;
