//! What a container's spec asks of the engine beyond its process: its
//! `securityContext` (over its pod's) as the engine's user, groups,
//! capabilities, privileges and security options; its volume mounts; and
//! its termination message file. What the engine cannot do is refused
//! with the reason in the container's status (`CreateContainerConfigError`),
//! never ignored.

use std::path::{Path, PathBuf};

use bollard::models::{Mount, MountType};
use k8s_openapi::api::core::v1::{Container, PodSecurityContext, SecurityContext};

/// The engine's side of a container's security context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSecurity {
    /// `uid[:gid]` or `user:gid` (None: the image's USER).
    pub user: Option<String>,
    pub group_add: Vec<String>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub readonly_rootfs: bool,
    pub security_opt: Vec<String>,
}

/// Whether `user` (an image's USER, `name[:group]` or `uid[:gid]`) is
/// root: Ok(true) for none, `root` or 0; Err for a name (it cannot be
/// checked without the image's passwd).
fn runs_as_root(user: &str) -> Result<bool, String> {
    let name = user.split(':').next().unwrap_or("");
    match name {
        "" | "root" => Ok(true),
        n => match n.parse::<u32>() {
            Ok(uid) => Ok(uid == 0),
            Err(_) => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({n}), cannot verify user is non-root"
            )),
        },
    }
}

/// The engine security of container `c` in a pod with context `pod`, run
/// from an image whose USER is `image_user`; Err is the
/// `CreateContainerConfigError` message.
pub fn security(
    pod: Option<&PodSecurityContext>,
    c: &Container,
    image_user: &str,
) -> Result<EngineSecurity, String> {
    let default = SecurityContext::default();
    let sc = c.security_context.as_ref().unwrap_or(&default);
    let pod_default = PodSecurityContext::default();
    let psc = pod.unwrap_or(&pod_default);
    if sc.se_linux_options.is_some() || psc.se_linux_options.is_some() {
        return Err("seLinuxOptions: this node applies no SELinux labels".into());
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return Err("procMount: only Default is supported".into());
    }
    if psc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err("sysctls: the docker runtime sets no per-pod sysctls".into());
    }
    let mut out = EngineSecurity::default();
    // seccomp and AppArmor as the kubelet asks them of a runtime: no
    // profile (or Unconfined) is unconfined, RuntimeDefault the engine's.
    let seccomp = sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref());
    match seccomp.map(|p| p.type_.as_str()) {
        None | Some("Unconfined") => out.security_opt.push("seccomp=unconfined".into()),
        Some("RuntimeDefault") => {}
        Some(other) => {
            return Err(format!(
                "seccompProfile {other}: not supported (Unconfined or RuntimeDefault)"
            ))
        }
    }
    let apparmor = sc
        .app_armor_profile
        .as_ref()
        .or(psc.app_armor_profile.as_ref());
    match apparmor.map(|p| p.type_.as_str()) {
        None | Some("RuntimeDefault") => {}
        Some("Unconfined") => out.security_opt.push("apparmor=unconfined".into()),
        Some(other) => {
            return Err(format!(
                "appArmorProfile {other}: not supported (Unconfined or RuntimeDefault)"
            ))
        }
    }
    let id = |v: Option<i64>, field: &str| -> Result<Option<u32>, String> {
        v.map(|n| u32::try_from(n).map_err(|_| format!("{field} {n} is not a valid id")))
            .transpose()
    };
    let uid = id(sc.run_as_user.or(psc.run_as_user), "runAsUser")?;
    let gid = id(sc.run_as_group.or(psc.run_as_group), "runAsGroup")?;
    if sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false) {
        let root =
            match uid {
                Some(0) => return Err(
                    "container's runAsUser breaks non-root policy (runAsNonRoot with runAsUser 0)"
                        .into(),
                ),
                Some(_) => false,
                None => runs_as_root(image_user)?,
            };
        if root {
            return Err("container has runAsNonRoot and image will run as root".into());
        }
    }
    out.user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => {
            let name = image_user.split(':').next().filter(|n| !n.is_empty());
            Some(format!("{}:{g}", name.unwrap_or("0")))
        }
        (None, None) => None,
    };
    for g in psc
        .supplemental_groups
        .iter()
        .flatten()
        .chain(psc.fs_group.iter())
    {
        out.group_add
            .push(id(Some(*g), "supplementalGroups")?.unwrap_or(0).to_string());
    }
    out.privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.as_ref();
    let names = |list: Option<&Vec<String>>| -> Vec<String> {
        list.into_iter()
            .flatten()
            .map(|n| n.strip_prefix("CAP_").unwrap_or(n).to_ascii_uppercase())
            .collect()
    };
    out.cap_add = names(caps.and_then(|c| c.add.as_ref()));
    out.cap_drop = names(caps.and_then(|c| c.drop.as_ref()));
    if out.privileged && !out.cap_drop.is_empty() {
        return Err("privileged with capabilities dropped: drop them without privileged".into());
    }
    let escalation = sc.allow_privilege_escalation.unwrap_or(true);
    if out.privileged && !escalation {
        return Err("privileged with allowPrivilegeEscalation false".into());
    }
    if !escalation {
        out.security_opt.push("no-new-privileges".into());
    }
    out.readonly_rootfs = sc.read_only_root_filesystem.unwrap_or(false);
    Ok(out)
}

/// The engine mounts of the process runtime's bind mounts.
pub fn mounts(binds: &[crate::process::sandbox::Mount]) -> Vec<Mount> {
    binds
        .iter()
        .map(|m| Mount {
            target: Some(m.target.display().to_string()),
            source: Some(m.source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect()
}

/// Where a container's process may write why it ended
/// (`terminationMessagePath`, default `/dev/termination-log`), and the
/// host file of instance `attempt` bound there, under the pod's `dir`.
pub fn termination_file(dir: &Path, c: &Container, attempt: u32) -> (String, PathBuf) {
    let target = c
        .termination_message_path
        .clone()
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| "/dev/termination-log".into());
    let host = dir
        .join("termination")
        .join(format!("{}-{attempt}", c.name));
    (target, host)
}

/// The most of a termination message kept (upstream's 4096 bytes).
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

/// The message in a termination file, at most its limit.
pub fn termination_message(host: &Path) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(host) {
        let _ = f.take(MAX_TERMINATION_MESSAGE as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sec(
        pod: serde_json::Value,
        c: serde_json::Value,
        user: &str,
    ) -> Result<EngineSecurity, String> {
        let pod: PodSecurityContext = serde_json::from_value(pod).unwrap();
        let mut c = c;
        c["name"] = json!("c");
        let c: Container = serde_json::from_value(c).unwrap();
        security(Some(&pod), &c, user)
    }

    #[test]
    fn a_security_context_becomes_the_engines() {
        let s = sec(
            json!({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000}),
            json!({"securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["CAP_chown"]}}}),
            "",
        )
        .unwrap();
        assert_eq!(s.user.as_deref(), Some("1000:3000"));
        assert_eq!(s.group_add, ["4000", "2000"]);
        assert_eq!(
            (s.cap_add.as_slice(), s.cap_drop.as_slice()),
            (&["NET_ADMIN".to_string()][..], &["CHOWN".to_string()][..])
        );
        assert!(s.readonly_rootfs);
        assert_eq!(s.security_opt, ["seccomp=unconfined", "no-new-privileges"]);
        // The container's context over the pod's; a group alone keeps the
        // image's user.
        let s = sec(
            json!({"runAsUser": 1}),
            json!({"securityContext": {"runAsUser": 2}}),
            "",
        )
        .unwrap();
        assert_eq!(s.user.as_deref(), Some("2"));
        let s = sec(json!({"runAsGroup": 7}), json!({}), "www:www").unwrap();
        assert_eq!(s.user.as_deref(), Some("www:7"));
        let s = sec(
            json!({"seccompProfile": {"type": "RuntimeDefault"}}),
            json!({"securityContext": {"privileged": true}}),
            "",
        )
        .unwrap();
        assert!(s.privileged && s.security_opt.is_empty());
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_image_as_upstream() {
        let non_root = json!({"runAsNonRoot": true});
        assert!(sec(non_root.clone(), json!({}), "")
            .unwrap_err()
            .contains("image will run as root"));
        assert!(sec(non_root.clone(), json!({}), "root").is_err());
        assert!(sec(non_root.clone(), json!({}), "0:0").is_err());
        assert!(sec(non_root.clone(), json!({}), "nginx")
            .unwrap_err()
            .contains("non-numeric user (nginx)"));
        assert!(sec(non_root.clone(), json!({}), "101").is_ok());
        assert!(sec(
            non_root.clone(),
            json!({"securityContext": {"runAsUser": 5}}),
            ""
        )
        .is_ok());
        assert!(sec(
            non_root,
            json!({"securityContext": {"runAsUser": 0}}),
            "101"
        )
        .unwrap_err()
        .contains("breaks non-root policy"));
    }

    #[test]
    fn what_the_engine_cannot_do_is_refused() {
        let refused = |pod: serde_json::Value, c: serde_json::Value| sec(pod, c, "").unwrap_err();
        assert!(refused(json!({"seLinuxOptions": {"level": "s0"}}), json!({})).contains("SELinux"));
        assert!(refused(json!({}), json!({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "x"}}})).contains("Localhost"));
        assert!(refused(
            json!({"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
            json!({})
        )
        .contains("sysctls"));
        assert!(refused(
            json!({}),
            json!({"securityContext": {"privileged": true, "allowPrivilegeEscalation": false}})
        )
        .contains("privileged"));
        assert!(
            refused(json!({}), json!({"securityContext": {"runAsUser": -1}}))
                .contains("not a valid id")
        );
    }

    #[test]
    fn the_termination_file_is_per_instance_at_the_asked_path() {
        let c: Container = serde_json::from_value(json!({"name": "web"})).unwrap();
        let (target, host) = termination_file(Path::new("/pods/u"), &c, 2);
        assert_eq!(target, "/dev/termination-log");
        assert_eq!(host, Path::new("/pods/u/termination/web-2"));
        let c: Container =
            serde_json::from_value(json!({"name": "web", "terminationMessagePath": "/tmp/why"}))
                .unwrap();
        assert_eq!(termination_file(Path::new("/p"), &c, 0).0, "/tmp/why");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m");
        std::fs::write(&f, "x".repeat(10_000)).unwrap();
        assert_eq!(termination_message(&f).len(), MAX_TERMINATION_MESSAGE);
        assert_eq!(termination_message(&dir.path().join("none")), "");
    }
}
