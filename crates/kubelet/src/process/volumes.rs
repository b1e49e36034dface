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
//! volumes are always read-only. A volume that holds Secret data is a tmpfs
//! (as root), so its files never reach the node's disk.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeSource, Pod};

use super::sandbox::Mount;
use crate::volumes::safe_path;
use crate::{PodConfig, ProjectedFile, Projection, RuntimeError};

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

/// A volume's name, which becomes a directory name: a DNS-1123 label, as
/// the API checks too (a name like "/" would address the host's root).
fn checked_name(name: &str) -> Result<&str, String> {
    if shoal_fabric::config::is_dns1123_label(name) {
        Ok(name)
    } else {
        Err(failed(name, "the volume name is not a DNS-1123 label"))
    }
}

/// Sets up every volume of `pod` under `dir` (its pod directory): Ok(the
/// volumes by name) or the first failure. `write` false only computes the
/// paths (a pod adopted after an agent restart keeps its files).
pub fn set_up(
    dir: &Path,
    pod: &PodConfig,
    ip: &str,
    write: bool,
) -> Result<HashMap<String, Ready>, RuntimeError> {
    set_up_volumes(dir, pod, ip, write).map_err(RuntimeError::Config)
}

fn set_up_volumes(
    dir: &Path,
    pod: &PodConfig,
    ip: &str,
    write: bool,
) -> Result<HashMap<String, Ready>, String> {
    let mut out = HashMap::new();
    for v in pod.volumes() {
        let name = checked_name(&v.name)?;
        let own = dir.join("volumes").join(name);
        let ready = if v.empty_dir.is_some() {
            if write {
                std::fs::create_dir_all(&own).map_err(|e| failed(name, e))?;
                let _ = std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777));
            }
            Ready {
                source: own,
                read_only: false,
            }
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            if write {
                host_path(&path, h.type_.as_deref().unwrap_or("")).map_err(|e| failed(name, e))?;
            }
            Ready {
                source: path,
                read_only: false,
            }
        } else if let Some(projection) = pod.projections.get(name) {
            let files = match projection {
                Projection::Files(files) => files,
                Projection::Failed(why) => return Err(failed(name, why)),
            };
            if write {
                if holds_secrets(v) && super::sandbox::is_root() {
                    in_memory(&own).map_err(|e| failed(name, e))?;
                }
                write_atomic(&own, &owned(files)).map_err(|e| failed(name, e))?;
            }
            Ready {
                source: own,
                read_only: true,
            }
        } else if v.persistent_volume_claim.is_some() {
            let read_only = v
                .persistent_volume_claim
                .as_ref()
                .and_then(|c| c.read_only)
                .unwrap_or(false);
            match pod.claims.get(name) {
                Some(Ok(path)) => {
                    if write && !path.exists() {
                        // A new local volume (the local-path provisioner's
                        // directory is made on first use, open to any uid).
                        std::fs::create_dir_all(path).map_err(|e| failed(name, e))?;
                        let _ =
                            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777));
                    }
                    Ready {
                        source: path.clone(),
                        read_only,
                    }
                }
                Some(Err(why)) if write => return Err(failed(name, why)),
                None if write => return Err(failed(name, "the kubelet did not resolve its claim")),
                // An adopted pod's volume is mounted already.
                _ => Ready {
                    source: own,
                    read_only,
                },
            }
        } else if let Some(d) = &v.downward_api {
            if write {
                let files = downward(&pod.pod, d, ip).map_err(|e| failed(name, e))?;
                write_atomic(&own, &files).map_err(|e| failed(name, e))?;
            }
            Ready {
                source: own,
                read_only: true,
            }
        } else if v.config_map.is_some() || v.secret.is_some() || v.projected.is_some() {
            // An adopted pod's files are in place; its record holds none.
            if write {
                return Err(failed(name, "the kubelet did not resolve its files"));
            }
            Ready {
                source: own,
                read_only: true,
            }
        } else {
            return Err(failed(
                name,
                "the process runtime mounts emptyDir, hostPath, persistentVolumeClaim, configMap, secret, projected and downwardAPI volumes",
            ));
        };
        out.insert(name.to_string(), ready);
    }
    Ok(out)
}

/// Whether a volume projects a Secret's data.
fn holds_secrets(v: &k8s_openapi::api::core::v1::Volume) -> bool {
    v.secret.is_some()
        || v.projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .is_some_and(|s| s.iter().any(|x| x.secret.is_some()))
}

/// The size of a secret volume's tmpfs.
const SECRET_TMPFS: &str = "size=32m,mode=0755";

/// Mounts a tmpfs at `dir` (made if missing) unless one is there: a
/// secret volume's files live in memory, never on the node's disk.
fn in_memory(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_tmpfs(dir) {
        return Ok(());
    }
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("a NUL in the path"))?;
    let opts = std::ffi::CString::new(SECRET_TMPFS).map_err(std::io::Error::other)?;
    // SAFETY: mount(2) with C strings that live across the call.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            path.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            opts.as_ptr().cast(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `dir` is a tmpfs mount.
pub fn is_tmpfs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) into a zeroed local.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
    }
}

/// Unmounts what a pod's volumes hold (secret tmpfs) and removes its
/// directory.
pub fn remove_pod_dir(dir: &Path) {
    if let Ok(volumes) = std::fs::read_dir(dir.join("volumes")) {
        for v in volumes.flatten() {
            if let Ok(c) = std::ffi::CString::new(v.path().as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2(2) with a C string; a path that is no
                // mount point only fails.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Rewrites the projected volumes of `pod` (ConfigMaps or Secrets
/// changed): each swaps to its new files at once.
pub fn update(dir: &Path, pod: &PodConfig, ip: &str) -> Result<(), RuntimeError> {
    update_files(dir, pod, ip).map_err(RuntimeError::Host)
}

fn update_files(dir: &Path, pod: &PodConfig, ip: &str) -> Result<(), String> {
    for v in pod.volumes() {
        let name = checked_name(&v.name)?;
        let own = dir.join("volumes").join(name);
        let files = match (pod.projections.get(name), &v.downward_api) {
            (Some(Projection::Files(files)), _) => owned(files),
            (Some(Projection::Failed(why)), _) => return Err(failed(name, why)),
            (None, Some(d)) => downward(&pod.pod, d, ip).map_err(|e| failed(name, e))?,
            (None, None) => continue,
        };
        write_atomic(&own, &files).map_err(|e| failed(name, e))?;
    }
    Ok(())
}

/// A container's bind mounts from its `volumeMounts`.
pub fn mounts(
    container: &Container,
    ready: &HashMap<String, Ready>,
) -> Result<Vec<Mount>, RuntimeError> {
    mounts_of(container, ready).map_err(RuntimeError::Config)
}

fn mounts_of(container: &Container, ready: &HashMap<String, Ready>) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let (name, target) = (m.name.as_str(), m.mount_path.as_str());
        let Some(v) = ready.get(name) else {
            return Err(format!("volumeMount {name:?}: the pod has no such volume"));
        };
        if !target.starts_with('/') {
            return Err(format!(
                "volumeMount {name:?}: mountPath {target:?} must be absolute"
            ));
        }
        let mut source = v.source.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
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
            read_only: v.read_only || m.read_only.unwrap_or(false),
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

fn owned(files: &[ProjectedFile]) -> Files {
    files
        .iter()
        .map(|f| (f.path.clone(), f.data.0.clone(), f.mode))
        .collect()
}

/// The files of a downwardAPI volume: the pod's fields, as upstream
/// writes them (labels and annotations one `key="value"` a line).
fn downward(pod: &Pod, d: &DownwardAPIVolumeSource, ip: &str) -> Result<Files, String> {
    let mode = |m: Option<i32>| m.and_then(|m| u32::try_from(m).ok());
    let default_mode = mode(d.default_mode).unwrap_or(0o644);
    let meta = &pod.metadata;
    let map = |m: Option<&std::collections::BTreeMap<String, String>>| -> String {
        // A BTreeMap: sorted by key, as upstream writes them.
        m.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut out = Vec::new();
    for item in d.items.iter().flatten() {
        let path = item.path.as_str();
        if !safe_path(path) {
            return Err(format!("the path {path:?} must be relative, without .."));
        }
        let Some(field) = item.field_ref.as_ref().map(|f| f.field_path.as_str()) else {
            return Err(format!(
                "{path}: only fieldRef items are supported (resourceFieldRef is not)"
            ));
        };
        let value = match field {
            "metadata.name" => text(meta.name.as_ref()),
            "metadata.namespace" => text(meta.namespace.as_ref()),
            "metadata.uid" => text(meta.uid.as_ref()),
            "metadata.labels" => map(meta.labels.as_ref()),
            "metadata.annotations" => map(meta.annotations.as_ref()),
            "spec.nodeName" => text(spec.and_then(|s| s.node_name.as_ref())),
            "spec.serviceAccountName" => text(spec.and_then(|s| s.service_account_name.as_ref())),
            "status.podIP" => ip.to_string(),
            f => {
                let key = |prefix: &str| f.strip_prefix(prefix).and_then(|r| r.strip_suffix("']"));
                if let Some(k) = key("metadata.labels['") {
                    text(meta.labels.as_ref().and_then(|l| l.get(k)))
                } else if let Some(k) = key("metadata.annotations['") {
                    text(meta.annotations.as_ref().and_then(|a| a.get(k)))
                } else {
                    return Err(format!("{path}: unsupported fieldPath {f:?}"));
                }
            }
        };
        out.push((
            path.to_string(),
            value.into_bytes(),
            mode(item.mode).unwrap_or(default_mode),
        ));
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
        let pod = json!({"spec": {"containers": [], "volumes": [{"name": "h", "hostPath": {"path": "/proc/nope", "type": "DirectoryOrCreate"}}]}});
        let pod = PodConfig::of(&pod).unwrap();
        let err = set_up(dir.path(), &pod, "", true).unwrap_err();
        assert!(matches!(err, RuntimeError::Config(_)), "{err}");
        let err = err.to_string();
        assert!(
            err.starts_with("MountVolume.SetUp failed for volume \"h\": "),
            "{err}"
        );
    }

    /// The kubelet checks volume names again: a pod that reached it with
    /// a name like "/" sets nothing up (and chmods nothing).
    #[test]
    fn a_volume_name_that_is_not_a_label_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["/", "..", "/etc/cron.d", "a/b"] {
            let pod =
                json!({"spec": {"containers": [], "volumes": [{"name": name, "emptyDir": {}}]}});
            let pod = PodConfig::of(&pod).unwrap();
            let err = set_up(dir.path(), &pod, "", true).unwrap_err().to_string();
            assert!(err.contains("not a DNS-1123 label"), "{name}: {err}");
            assert!(update(dir.path(), &pod, "").is_err(), "{name}");
        }
        assert!(!dir.path().join("volumes").exists());
    }

    #[test]
    fn downward_api_files_hold_the_pods_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"b": "2", "a": "1"}}, "spec": {"containers": [], "nodeName": "node-1"}});
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let d = json!({"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}, "mode": 0o400},
            {"path": "a", "fieldRef": {"fieldPath": "metadata.labels['a']"}},
        ]});
        let d: DownwardAPIVolumeSource = serde_json::from_value(d).unwrap();
        let files = downward(&pod, &d, "10.88.1.2").unwrap();
        assert_eq!(files[0], ("name".into(), b"p".to_vec(), 0o644));
        assert_eq!(files[1].1, b"a=\"1\"\nb=\"2\"".to_vec());
        assert_eq!(files[2], ("ip".into(), b"10.88.1.2".to_vec(), 0o400));
        assert_eq!(files[3].1, b"1".to_vec());
    }
}
