//! Volumes as the kubelet resolves them before a runtime sees the pod:
//! each `configMap`, `secret` and `projected` volume gets the files it
//! projects (path, bytes, mode), or why it cannot be set up (a missing
//! ConfigMap that is not optional, a missing key): the
//! [`PodConfig::projections`](crate::PodConfig) a runtime is handed. The
//! runtime writes them (`process::volumes`); the kubelet calls this again
//! when a ConfigMap or Secret changes, and the runtime rewrites the files.
//! A `persistentVolumeClaim` volume resolves to its bound volume's
//! directory on this node ([`volume_dir`]).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::Value;

use crate::{ProjectedFile, Projection};

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

/// The (volume, claim) names of the pod's `persistentVolumeClaim` volumes.
pub fn claims(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let claim = v.pointer("/persistentVolumeClaim/claimName")?.as_str()?;
            Some((v.get("name")?.as_str()?.to_string(), claim.to_string()))
        })
        .collect()
}

/// The directory of PersistentVolume `pv` on node `node`: its `hostPath`
/// or `local` path, if its node affinity (by hostname, as the local-path
/// provisioner pins volumes) admits this node.
pub fn volume_dir(pv: &Value, node: &str) -> Result<std::path::PathBuf, String> {
    let name = pv
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let hosts: Vec<&str> = pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("matchExpressions").and_then(Value::as_array))
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/hostname" && e["operator"] == "In")
        .filter_map(|e| e.get("values").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !hosts.is_empty() && !hosts.contains(&node) {
        return Err(format!(
            "persistentvolume {name:?} is on {}, not on this node",
            hosts.join(", ")
        ));
    }
    pv.pointer("/spec/hostPath/path")
        .or_else(|| pv.pointer("/spec/local/path"))
        .and_then(Value::as_str)
        .filter(|p| p.starts_with('/'))
        .map(std::path::PathBuf::from)
        .ok_or_else(|| format!("persistentvolume {name:?} has no hostPath or local path"))
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
fn files_of(volume: &Value, objects: &Objects) -> Result<Vec<ProjectedFile>, String> {
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
            files.push(ProjectedFile {
                path,
                data: k8s_openapi::ByteString(bytes.clone()),
                mode: mode as u32,
            });
        }
    }
    Ok(files)
}

/// Each ConfigMap, Secret and projected volume of the pod resolved
/// against `objects`, by volume name.
pub fn resolve(pod: &Value, objects: &Objects) -> BTreeMap<String, Projection> {
    let mut out = BTreeMap::new();
    for v in volumes(pod) {
        if sources(v).is_empty() {
            continue;
        }
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let projection = match files_of(v, objects) {
            Ok(files) => Projection::Files(files),
            Err(why) => Projection::Failed(why),
        };
        out.insert(name.to_string(), projection);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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

    fn files(r: &BTreeMap<String, Projection>, volume: &str) -> Vec<(String, Vec<u8>, u32)> {
        match &r[volume] {
            Projection::Files(files) => files
                .iter()
                .map(|f| (f.path.clone(), f.data.0.clone(), f.mode))
                .collect(),
            Projection::Failed(why) => panic!("volume {volume}: {why}"),
        }
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
        let all = files(&r, "all");
        assert_eq!(all.len(), 3);
        assert!(all.contains(&("bin".into(), vec![0, 1], 0o644)));
        assert_eq!(
            files(&r, "some"),
            vec![
                ("conf/a".into(), b"x=1".to_vec(), 0o600),
                ("b".into(), b"2".to_vec(), 0o400)
            ]
        );
        assert_eq!(
            files(&r, "s"),
            vec![("password".into(), b"s3cr3t".to_vec(), 0o440)]
        );
        assert!(!r.contains_key("e"), "an emptyDir projects nothing");
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
        let err = |v: &str| match &r[v] {
            Projection::Failed(why) => why.clone(),
            Projection::Files(f) => panic!("volume {v} projects {f:?}"),
        };
        assert_eq!(err("a"), "configmap \"gone\" not found");
        assert!(files(&r, "b").is_empty());
        assert_eq!(err("c"), "configmap \"app\" has no key \"nope\"");
        assert!(err("d").contains("must be relative"), "{}", err("d"));
    }
}
