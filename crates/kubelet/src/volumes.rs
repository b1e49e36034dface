//! Volumes as the kubelet resolves them before a runtime sees the pod:
//! each `configMap`, `secret` and `projected` volume gets the files it
//! projects (path, bytes, mode) under a private key, or why it cannot be
//! set up (a missing ConfigMap that is not optional, a missing key). The
//! runtime writes them (`process::volumes`); the kubelet calls this again
//! when a ConfigMap or Secret changes, and the runtime rewrites the files.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::{json, Value};

/// On a resolved volume: the files it projects, `[{"path", "data"
/// (base64), "mode"}]`.
pub const FILES: &str = "x-shoal-files";
/// On a resolved volume: why it cannot be set up.
pub const ERROR: &str = "x-shoal-volume-error";

/// The default mode of projected files (upstream: 0644).
const DEFAULT_MODE: u64 = 0o644;

/// ConfigMaps and Secrets by (kind, name) in the pod's namespace, as
/// stored (None: not found).
pub type Objects = BTreeMap<(&'static str, String), Option<Value>>;

/// One source of files: a ConfigMap or Secret with its items.
struct Source<'a> {
    kind: &'static str,
    name: String,
    spec: &'a Value,
}

fn sources(volume: &Value) -> Vec<Source<'_>> {
    let mut out = Vec::new();
    if let Some(cm) = volume.get("configMap") {
        let name = cm.get("name").and_then(Value::as_str).unwrap_or("");
        out.push(Source {
            kind: "ConfigMap",
            name: name.to_string(),
            spec: cm,
        });
    }
    if let Some(s) = volume.get("secret") {
        let name = s.get("secretName").and_then(Value::as_str).unwrap_or("");
        out.push(Source {
            kind: "Secret",
            name: name.to_string(),
            spec: s,
        });
    }
    for p in volume
        .pointer("/projected/sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (field, kind) in [("configMap", "ConfigMap"), ("secret", "Secret")] {
            if let Some(s) = p.get(field) {
                let name = s.get("name").and_then(Value::as_str).unwrap_or("");
                out.push(Source {
                    kind,
                    name: name.to_string(),
                    spec: s,
                });
            }
        }
    }
    out
}

fn volumes(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The (kind, name) of every ConfigMap and Secret the pod's volumes name.
pub fn referenced(pod: &Value) -> BTreeSet<(&'static str, String)> {
    volumes(pod)
        .flat_map(sources)
        .map(|s| (s.kind, s.name))
        .collect()
}

/// An object's data as bytes by key (ConfigMap `data` and `binaryData`;
/// Secret `data` decoded, and `stringData`).
fn bytes_of(kind: &str, obj: &Value) -> BTreeMap<String, Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |f: &str| {
        obj.get(f)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?)))
            .collect::<Vec<_>>()
    };
    let mut out = BTreeMap::new();
    let (text, encoded) = if kind == "Secret" {
        ("stringData", "data")
    } else {
        ("data", "binaryData")
    };
    for (k, v) in field(encoded) {
        if let Ok(bytes) = b64.decode(v) {
            out.insert(k, bytes);
        }
    }
    for (k, v) in field(text) {
        out.insert(k, v.as_bytes().to_vec());
    }
    out
}

/// Whether a projected path is acceptable: relative, without `..`.
pub fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != ".." && c != ".")
}

/// The files of one volume, or why it cannot be set up.
fn files_of(volume: &Value, objects: &Objects) -> Result<Vec<Value>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let volume_mode = volume
        .pointer("/projected/defaultMode")
        .and_then(Value::as_u64);
    let mut files = Vec::new();
    for s in sources(volume) {
        let optional = s
            .spec
            .get("optional")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let lower = s.kind.to_lowercase();
        let Some(Some(obj)) = objects.get(&(s.kind, s.name.clone())) else {
            if optional {
                continue;
            }
            return Err(format!("{lower} {:?} not found", s.name));
        };
        let data = bytes_of(s.kind, obj);
        let default_mode = s
            .spec
            .get("defaultMode")
            .and_then(Value::as_u64)
            .or(volume_mode)
            .unwrap_or(DEFAULT_MODE);
        let items: Vec<(String, String, u64)> = match s.spec.get("items").and_then(Value::as_array)
        {
            Some(items) => items
                .iter()
                .map(|i| {
                    let key = i.get("key").and_then(Value::as_str).unwrap_or("");
                    let path = i.get("path").and_then(Value::as_str).unwrap_or(key);
                    let mode = i
                        .get("mode")
                        .and_then(Value::as_u64)
                        .unwrap_or(default_mode);
                    (key.to_string(), path.to_string(), mode)
                })
                .collect(),
            None => data
                .keys()
                .map(|k| (k.clone(), k.clone(), default_mode))
                .collect(),
        };
        for (key, path, mode) in items {
            let Some(bytes) = data.get(&key) else {
                if optional {
                    continue;
                }
                return Err(format!("{lower} {:?} has no key {key:?}", s.name));
            };
            if !safe_path(&path) {
                return Err(format!(
                    "the path {path:?} of key {key:?} must be relative, without .."
                ));
            }
            if mode > 0o777 {
                return Err(format!("mode {mode:o} of {path:?} is not a file mode"));
            }
            files.push(json!({"path": path, "data": b64.encode(bytes), "mode": mode}));
        }
    }
    Ok(files)
}

/// The pod with each ConfigMap, Secret and projected volume resolved
/// against `objects`: its files under [`FILES`], or [`ERROR`].
pub fn resolve(pod: &Value, objects: &Objects) -> Value {
    let mut out = pod.clone();
    let Some(list) = out
        .pointer_mut("/spec/volumes")
        .and_then(Value::as_array_mut)
    else {
        return out;
    };
    for v in list {
        if sources(v).is_empty() {
            continue;
        }
        match files_of(v, objects) {
            Ok(files) => v[FILES] = json!(files),
            Err(why) => v[ERROR] = json!(why),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Objects {
        let mut o = Objects::new();
        o.insert(
            ("ConfigMap", "app".into()),
            Some(json!({"data": {"a.conf": "x=1", "b": "2"}, "binaryData": {"bin": "AAE="}})),
        );
        o.insert(
            ("Secret", "pw".into()),
            Some(json!({"data": {"password": "czNjcjN0"}})),
        );
        o.insert(("ConfigMap", "gone".into()), None);
        o
    }

    fn files(pod: &Value, i: usize) -> Vec<(String, Vec<u8>, u64)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        pod["spec"]["volumes"][i][FILES]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_string(),
                    b64.decode(f["data"].as_str().unwrap()).unwrap(),
                    f["mode"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn config_map_and_secret_volumes_project_their_keys_with_modes() {
        let pod = json!({"spec": {"volumes": [
            {"name": "all", "configMap": {"name": "app"}},
            {"name": "some", "configMap": {"name": "app", "defaultMode": 0o600,
                "items": [{"key": "a.conf", "path": "conf/a"}, {"key": "b", "path": "b", "mode": 0o400}]}},
            {"name": "s", "secret": {"secretName": "pw", "defaultMode": 0o440}},
            {"name": "e", "emptyDir": {}},
        ]}});
        let r = resolve(&pod, &objects());
        let all = files(&r, 0);
        assert_eq!(all.len(), 3);
        assert!(all.contains(&("bin".into(), vec![0, 1], 0o644)));
        assert_eq!(
            files(&r, 1),
            vec![
                ("conf/a".into(), b"x=1".to_vec(), 0o600),
                ("b".into(), b"2".to_vec(), 0o400)
            ]
        );
        assert_eq!(
            files(&r, 2),
            vec![("password".into(), b"s3cr3t".to_vec(), 0o440)]
        );
        assert!(r["spec"]["volumes"][3].get(FILES).is_none());
        assert_eq!(
            referenced(&pod),
            [
                ("ConfigMap", "app".to_string()),
                ("Secret", "pw".to_string())
            ]
            .into()
        );
    }

    #[test]
    fn missing_sources_and_keys_are_errors_unless_optional() {
        let pod = json!({"spec": {"volumes": [
            {"name": "a", "configMap": {"name": "gone"}},
            {"name": "b", "configMap": {"name": "gone", "optional": true}},
            {"name": "c", "configMap": {"name": "app", "items": [{"key": "nope", "path": "x"}]}},
            {"name": "d", "configMap": {"name": "app", "items": [{"key": "b", "path": "../etc/passwd"}]}},
        ]}});
        let r = resolve(&pod, &objects());
        let err = |i: usize| {
            r["spec"]["volumes"][i][ERROR]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(err(0), "configmap \"gone\" not found");
        assert!(files(&r, 1).is_empty());
        assert_eq!(err(2), "configmap \"app\" has no key \"nope\"");
        assert!(err(3).contains("must be relative"), "{}", err(3));
    }
}
