//! A pod's volumes on the node, for the process runtime: `emptyDir` under
//! the pod's directory, `hostPath` with its type checks, and the files of
//! `configMap`, `secret`, `projected` and `downwardAPI` volumes written
//! the way upstream's atomic writer does, so an update swaps every file at
//! once and is seen through the mount:
//!
//! ```text
//! <pod>/volumes/<name>/..2026_12_04_21_40_00.123/   the files of one version
//!                     ..data -> ..2026_12_04_21_40_00.123 (renamed over: atomic)
//!                     <key>  -> ..data/<key>
//! ```
//!
//! Each container's `volumeMounts` become bind mounts (`sandbox::Mount`)
//! that its shim makes in the container's own mount namespace; projected
//! volumes are always read-only.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use super::sandbox::Mount;
use crate::volumes::{safe_path, ERROR, FILES};
use crate::RuntimeError;

/// One volume ready to be mounted.
#[derive(Debug, Clone)]
pub struct Ready {
    pub source: PathBuf,
    /// Projected volumes are read-only whatever the mount says.
    pub read_only: bool,
}

/// Why a volume cannot be set up, as upstream words it.
fn failed(name: &str, why: impl std::fmt::Display) -> String {
    format!("MountVolume.SetUp failed for volume {name:?}: {why}")
}

fn volumes(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Sets up every volume of `pod` under `dir` (its pod directory): Ok(the
/// volumes by name) or the first failure. `write` false only computes the
/// paths (a pod adopted after an agent restart keeps its files).
pub fn set_up(
    dir: &Path,
    pod: &Value,
    ip: &str,
    write: bool,
) -> Result<HashMap<String, Ready>, RuntimeError> {
    set_up_volumes(dir, pod, ip, write).map_err(RuntimeError::Config)
}

fn set_up_volumes(
    dir: &Path,
    pod: &Value,
    ip: &str,
    write: bool,
) -> Result<HashMap<String, Ready>, String> {
    let mut out = HashMap::new();
    for v in volumes(pod) {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some(why) = v.get(ERROR).and_then(Value::as_str) {
            return Err(failed(name, why));
        }
        let own = dir.join("volumes").join(name);
        let ready = if v.get("emptyDir").is_some() {
            if write {
                std::fs::create_dir_all(&own).map_err(|e| failed(name, e))?;
                let _ = std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777));
            }
            Ready {
                source: own,
                read_only: false,
            }
        } else if let Some(h) = v.get("hostPath") {
            let path = PathBuf::from(h.get("path").and_then(Value::as_str).unwrap_or(""));
            let kind = h.get("type").and_then(Value::as_str).unwrap_or("");
            if write {
                host_path(&path, kind).map_err(|e| failed(name, e))?;
            }
            Ready {
                source: path,
                read_only: false,
            }
        } else if let Some(files) = v.get(FILES).and_then(Value::as_array) {
            if write {
                let files = decode(files).map_err(|e| failed(name, e))?;
                write_atomic(&own, &files).map_err(|e| failed(name, e))?;
            }
            Ready {
                source: own,
                read_only: true,
            }
        } else if let Some(d) = v.get("downwardAPI") {
            if write {
                let files = downward(pod, d, ip).map_err(|e| failed(name, e))?;
                write_atomic(&own, &files).map_err(|e| failed(name, e))?;
            }
            Ready {
                source: own,
                read_only: true,
            }
        } else {
            return Err(failed(
                name,
                "the process runtime mounts emptyDir, hostPath, configMap, secret, projected and downwardAPI volumes",
            ));
        };
        out.insert(name.to_string(), ready);
    }
    Ok(out)
}

/// Rewrites the projected volumes of `pod` (ConfigMaps or Secrets
/// changed): each swaps to its new files at once.
pub fn update(dir: &Path, pod: &Value, ip: &str) -> Result<(), RuntimeError> {
    update_files(dir, pod, ip).map_err(RuntimeError::Host)
}

fn update_files(dir: &Path, pod: &Value, ip: &str) -> Result<(), String> {
    for v in volumes(pod) {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let own = dir.join("volumes").join(name);
        let files = if let Some(files) = v.get(FILES).and_then(Value::as_array) {
            decode(files)
        } else if let Some(d) = v.get("downwardAPI") {
            downward(pod, d, ip)
        } else {
            continue;
        };
        let files = files.map_err(|e| failed(name, e))?;
        write_atomic(&own, &files).map_err(|e| failed(name, e))?;
    }
    Ok(())
}

/// A container's bind mounts from its `volumeMounts`.
pub fn mounts(
    container: &Value,
    ready: &HashMap<String, Ready>,
) -> Result<Vec<Mount>, RuntimeError> {
    mounts_of(container, ready).map_err(RuntimeError::Config)
}

fn mounts_of(container: &Value, ready: &HashMap<String, Ready>) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for m in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        let target = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
        let Some(v) = ready.get(name) else {
            return Err(format!("volumeMount {name:?}: the pod has no such volume"));
        };
        if !target.starts_with('/') {
            return Err(format!(
                "volumeMount {name:?}: mountPath {target:?} must be absolute"
            ));
        }
        let mut source = v.source.clone();
        if let Some(sub) = m
            .get("subPath")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            if !safe_path(sub) {
                return Err(format!(
                    "volumeMount {name:?}: subPath {sub:?} must be relative, without .."
                ));
            }
            source = source.join(sub);
        }
        out.push(Mount {
            source,
            target: PathBuf::from(target),
            read_only: v.read_only || m.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// Checks (and for the `...OrCreate` types makes) a hostPath.
fn host_path(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    if !path.is_absolute() {
        return Err(format!("hostPath {} must be absolute", path.display()));
    }
    let meta = std::fs::metadata(path);
    let is =
        |f: &dyn Fn(&std::fs::FileType) -> bool| meta.as_ref().is_ok_and(|m| f(&m.file_type()));
    let ok = match kind {
        "" => return Ok(()),
        "DirectoryOrCreate" => {
            if !is(&|t| t.is_dir()) {
                std::fs::create_dir_all(path)
                    .and_then(|_| {
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    })
                    .map_err(|e| format!("creating the directory {}: {e}", path.display()))?;
            }
            true
        }
        "FileOrCreate" => {
            if !is(&|t| t.is_file()) {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("creating the file {}: {e}", path.display()))?;
            }
            true
        }
        "Directory" => is(&|t| t.is_dir()),
        "File" => is(&|t| t.is_file()),
        "Socket" => is(&|t| t.is_socket()),
        "CharDevice" => is(&|t| t.is_char_device()),
        "BlockDevice" => is(&|t| t.is_block_device()),
        other => return Err(format!("unknown hostPath type {other:?}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "hostPath type check failed: {} is not a {kind}",
            path.display()
        ))
    }
}

type Files = Vec<(String, Vec<u8>, u32)>;

fn decode(files: &[Value]) -> Result<Files, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    files
        .iter()
        .map(|f| {
            let path = f
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let data = b64
                .decode(f.get("data").and_then(Value::as_str).unwrap_or(""))
                .map_err(|e| format!("{path}: {e}"))?;
            let mode = f.get("mode").and_then(Value::as_u64).unwrap_or(0o644) as u32;
            Ok((path, data, mode))
        })
        .collect()
}

/// The files of a downwardAPI volume: the pod's fields, as upstream
/// writes them (labels and annotations one `key="value"` a line).
fn downward(pod: &Value, d: &Value, ip: &str) -> Result<Files, String> {
    let default_mode = d
        .get("defaultMode")
        .and_then(Value::as_u64)
        .unwrap_or(0o644) as u32;
    let map = |m: Option<&Value>| -> String {
        let mut lines: Vec<String> = m
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    serde_json::to_string(v.as_str().unwrap_or("")).unwrap_or_default()
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    };
    let mut out = Vec::new();
    for item in d
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = item.get("path").and_then(Value::as_str).unwrap_or("");
        if !safe_path(path) {
            return Err(format!("the path {path:?} must be relative, without .."));
        }
        let Some(field) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
            return Err(format!(
                "{path}: only fieldRef items are supported (resourceFieldRef is not)"
            ));
        };
        let text = |p: &str| {
            pod.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let value = match field {
            "metadata.name" => text("/metadata/name"),
            "metadata.namespace" => text("/metadata/namespace"),
            "metadata.uid" => text("/metadata/uid"),
            "metadata.labels" => map(pod.pointer("/metadata/labels")),
            "metadata.annotations" => map(pod.pointer("/metadata/annotations")),
            "spec.nodeName" => text("/spec/nodeName"),
            "spec.serviceAccountName" => text("/spec/serviceAccountName"),
            "status.podIP" => ip.to_string(),
            f => {
                let key = |prefix: &str| {
                    f.strip_prefix(prefix)
                        .and_then(|r| r.strip_suffix("']"))
                        .map(String::from)
                };
                if let Some(k) = key("metadata.labels['") {
                    text(&format!("/metadata/labels/{k}"))
                } else if let Some(k) = key("metadata.annotations['") {
                    text(&format!("/metadata/annotations/{k}"))
                } else {
                    return Err(format!("{path}: unsupported fieldPath {f:?}"));
                }
            }
        };
        let mode = item
            .get("mode")
            .and_then(Value::as_u64)
            .map_or(default_mode, |m| m as u32);
        out.push((path.to_string(), value.into_bytes(), mode));
    }
    Ok(out)
}

/// Writes `files` into `dir` atomically (see the module's doc): a new
/// timestamped directory, `..data` renamed onto it, a symlink per
/// top-level name, and the old version removed.
pub fn write_atomic(dir: &Path, files: &Files) -> std::io::Result<()> {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let stamp = jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let version = format!("..{stamp}");
    let vdir = dir.join(&version);
    std::fs::create_dir_all(&vdir)?;
    let mut top = std::collections::BTreeSet::new();
    for (path, data, mode) in files {
        let p = vdir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
        if let Some(first) = path.split('/').next() {
            top.insert(first.to_string());
        }
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&version, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link)?;
        }
    }
    // Names of the old version that are gone now, and the old version.
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old.filter(|o| *o != Path::new(&version)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_atomic_writer_swaps_versions_and_drops_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("v");
        write_atomic(
            &v,
            &vec![
                ("a".into(), b"1".to_vec(), 0o600),
                ("d/b".into(), b"2".to_vec(), 0o644),
            ],
        )
        .unwrap();
        assert_eq!(std::fs::read(v.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(v.join("d/b")).unwrap(), b"2");
        let mode = std::fs::metadata(v.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_atomic(&v, &vec![("a".into(), b"one".to_vec(), 0o644)]).unwrap();
        assert_eq!(std::fs::read(v.join("a")).unwrap(), b"one");
        assert!(std::fs::symlink_metadata(v.join("d")).is_err(), "d is gone");
        let versions = std::fs::read_dir(&v)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..2"))
            .count();
        assert_eq!(versions, 1, "the old version is removed");
    }

    #[test]
    fn host_paths_are_type_checked_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made");
        host_path(&made, "DirectoryOrCreate").unwrap();
        assert!(made.is_dir());
        let err = host_path(&made, "File").unwrap_err();
        assert!(err.contains("is not a File"), "{err}");
        let err =
            host_path(Path::new("/proc/shoal-cannot-create"), "DirectoryOrCreate").unwrap_err();
        assert!(err.contains("creating the directory"), "{err}");
        let pod = json!({"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/proc/nope", "type": "DirectoryOrCreate"}}]}});
        let err = set_up(dir.path(), &pod, "", true).unwrap_err();
        assert!(matches!(err, RuntimeError::Config(_)), "{err}");
        let err = err.to_string();
        assert!(
            err.starts_with("MountVolume.SetUp failed for volume \"h\": "),
            "{err}"
        );
    }

    #[test]
    fn downward_api_files_hold_the_pods_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"b": "2", "a": "1"}}, "spec": {"nodeName": "node-1"}});
        let d = json!({"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}, "mode": 0o400},
            {"path": "a", "fieldRef": {"fieldPath": "metadata.labels['a']"}},
        ]});
        let files = downward(&pod, &d, "10.88.1.2").unwrap();
        assert_eq!(files[0], ("name".into(), b"p".to_vec(), 0o644));
        assert_eq!(files[1].1, b"a=\"1\"\nb=\"2\"".to_vec());
        assert_eq!(files[2], ("ip".into(), b"10.88.1.2".to_vec(), 0o400));
        assert_eq!(files[3].1, b"1".to_vec());
    }
}
