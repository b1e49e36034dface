//! A container's `securityContext` (over its pod's), as the process
//! runtime applies it: the user, group and supplementary groups it runs
//! as, `runAsNonRoot`, `allowPrivilegeEscalation: false` (no_new_privs),
//! capabilities dropped from the bounding set, `readOnlyRootFilesystem`
//! (the root mount read-only in the container's own mount namespace,
//! volumes bound writable after) and `privileged`. The shim applies them
//! between fork and exec. What it cannot do is refused with the reason in
//! the container's status, never ignored.

use k8s_openapi::api::core::v1::{Capabilities, Container, PodSecurityContext, SecurityContext};
use serde::{Deserialize, Serialize};

/// What the shim sets up for the container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// setuid/setgid to these (None: stay root, as a container of an image
    /// with no USER).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Supplementary groups (`supplementalGroups`, `fsGroup`).
    pub groups: Vec<u32>,
    /// PR_SET_NO_NEW_PRIVS.
    pub no_new_privs: bool,
    /// Capability numbers dropped from the bounding set.
    pub drop_caps: Vec<u32>,
    /// The root mount read-only.
    pub read_only_root: bool,
}

impl Security {
    /// Whether anything is asked (the shim needs root for all of it).
    pub fn is_set(&self) -> bool {
        *self != Security::default()
    }
}

/// The capabilities by upstream's names (`CAP_` optional), in number order
/// (linux/capability.h).
const CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn cap_number(name: &str) -> Option<u32> {
    let name = name.strip_prefix("CAP_").unwrap_or(name);
    CAPS.iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .map(|i| i as u32)
}

fn caps(list: Option<&Vec<String>>) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for name in list.into_iter().flatten() {
        if name.eq_ignore_ascii_case("ALL") {
            out.extend(0..CAPS.len() as u32);
        } else {
            out.push(cap_number(name).ok_or_else(|| format!("unknown capability {name:?}"))?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn id(v: Option<i64>, field: &str) -> Result<Option<u32>, String> {
    v.map(|n| u32::try_from(n).map_err(|_| format!("{field} {n} is not a valid id")))
        .transpose()
}

/// The security settings of `c` in a pod with `pod` (its pod-level
/// context); Err is the `CreateContainerConfigError` message.
pub fn of(pod: Option<&PodSecurityContext>, c: &Container) -> Result<Security, String> {
    let default = SecurityContext::default();
    let sc = c.security_context.as_ref().unwrap_or(&default);
    let pod_default = PodSecurityContext::default();
    let psc = pod.unwrap_or(&pod_default);
    // What the process runtime cannot do is refused, not ignored.
    if sc.se_linux_options.is_some() || psc.se_linux_options.is_some() {
        return Err("seLinuxOptions: the process runtime applies no SELinux labels".into());
    }
    let seccomp = sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref());
    if seccomp.is_some_and(|p| p.type_ != "Unconfined") {
        return Err(
            "seccompProfile: the process runtime applies no seccomp profile (only Unconfined)"
                .into(),
        );
    }
    let apparmor = sc
        .app_armor_profile
        .as_ref()
        .or(psc.app_armor_profile.as_ref());
    if apparmor.is_some_and(|p| p.type_ != "Unconfined") {
        return Err(
            "appArmorProfile: the process runtime applies no AppArmor profile (only Unconfined)"
                .into(),
        );
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return Err("procMount: only Default is supported".into());
    }
    if psc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err("sysctls: the process runtime sets no per-pod sysctls".into());
    }
    let uid = id(sc.run_as_user.or(psc.run_as_user), "runAsUser")?;
    let gid = id(sc.run_as_group.or(psc.run_as_group), "runAsGroup")?;
    let non_root = sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false);
    if non_root && uid.unwrap_or(0) == 0 {
        return Err(match uid {
            Some(_) => "container's runAsUser breaks non-root policy (runAsNonRoot with runAsUser 0)".into(),
            None => "container has runAsNonRoot and image will run as root (set runAsUser to a non-zero id)".into(),
        });
    }
    let mut groups = Vec::new();
    for g in psc
        .supplemental_groups
        .iter()
        .flatten()
        .chain(psc.fs_group.iter())
    {
        groups.push(id(Some(*g), "supplementalGroups")?.unwrap_or(0));
    }
    let privileged = sc.privileged.unwrap_or(false);
    let no_caps = Capabilities::default();
    let requested = sc.capabilities.as_ref().unwrap_or(&no_caps);
    let added = caps(requested.add.as_ref())?;
    let mut drop_caps = caps(requested.drop.as_ref())?;
    if privileged && !drop_caps.is_empty() {
        return Err("privileged with capabilities dropped: drop them without privileged".into());
    }
    drop_caps.retain(|c| !added.contains(c));
    if !added.is_empty() && uid.is_some_and(|u| u != 0) {
        return Err(
            "capabilities.add for a non-root user needs ambient capabilities, which the process runtime does not set"
                .into(),
        );
    }
    let escalation = sc.allow_privilege_escalation.unwrap_or(true);
    if privileged && !escalation {
        return Err("privileged with allowPrivilegeEscalation false".into());
    }
    Ok(Security {
        uid,
        gid,
        groups,
        no_new_privs: !escalation,
        drop_caps,
        read_only_root: sc.read_only_root_filesystem.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sec(pod: serde_json::Value, c: serde_json::Value) -> Result<Security, String> {
        let pod: PodSecurityContext = serde_json::from_value(pod).unwrap();
        let mut c = c;
        c["name"] = json!("c");
        let c: Container = serde_json::from_value(c).unwrap();
        of(Some(&pod), &c)
    }

    #[test]
    fn contexts_merge_and_what_cannot_be_done_is_refused() {
        let s = sec(
            json!({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000}),
            json!({"securityContext": {"runAsUser": 1001, "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}}),
        )
        .unwrap();
        assert_eq!((s.uid, s.gid), (Some(1001), Some(3000)));
        assert_eq!(s.groups, vec![4000, 2000]);
        assert!(s.no_new_privs && s.read_only_root);
        assert_eq!(s.drop_caps.len(), CAPS.len());
        // Drop ALL, add one back (root).
        let s = sec(
            json!({}),
            json!({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}),
        )
        .unwrap();
        assert!(!s.drop_caps.contains(&10) && s.drop_caps.contains(&12));
        assert_eq!(sec(json!({}), json!({})).unwrap(), Security::default());
        let refused = [
            (json!({"runAsNonRoot": true}), json!({}), "runAsNonRoot"),
            (
                json!({}),
                json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0}}),
                "non-root",
            ),
            (
                json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                json!({}),
                "seccomp",
            ),
            (
                json!({}),
                json!({"securityContext": {"seLinuxOptions": {"level": "s0"}}}),
                "SELinux",
            ),
            (
                json!({}),
                json!({"securityContext": {"capabilities": {"drop": ["NOPE"]}}}),
                "unknown capability",
            ),
            (
                json!({"runAsUser": 1000}),
                json!({"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}),
                "ambient",
            ),
            (
                json!({"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
                json!({}),
                "sysctls",
            ),
        ];
        for (pod, c, why) in refused {
            let e = sec(pod.clone(), c.clone()).unwrap_err();
            assert!(e.contains(why), "{pod} {c}: {e}");
        }
        // runAsNonRoot with a non-root user is fine.
        assert!(sec(json!({"runAsNonRoot": true, "runAsUser": 1000}), json!({})).is_ok());
    }
}
