//! Container instances as the agent tracks them: the record that lets a
//! new agent adopt what an old one started (`<container>/state.json`), the
//! wait for a shim's end (as its parent, or through a pidfd), termination
//! (SIGTERM, then SIGKILL), and clean-up of what a runtime left behind.

use std::path::Path;
use std::time::Duration;

use super::ContainerState;

/// What survives an agent restart of one container (`<container>/state.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Persisted {
    pub(super) instance: u32,
    pub(super) restarts: u32,
    pub(super) shim_pid: Option<u32>,
    pub(super) pid: Option<u32>,
    pub(super) started_at: String,
    pub(super) last: Option<ContainerState>,
}

/// An instance a previous agent started, still running.
pub(super) struct Adopted {
    pub(super) waiter: Waiter,
    pub(super) pid: u32,
}

/// Waits for a shim to exit: as this agent's child, or through a pidfd
/// (a shim a previous agent started is not our child).
pub(super) enum Waiter {
    Child(tokio::process::Child),
    Pidfd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, u32),
}

impl Waiter {
    /// A waiter on `pid`, if that process is alive.
    pub(super) fn adopt(pid: u32) -> Option<Waiter> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open(2) takes a pid and flags; it returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the fd was just returned to us and is owned by nothing else.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the AsyncFd owns the fd and nothing replaces or closes it.
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        }
        .ok()?;
        Some(Waiter::Pidfd(afd, pid))
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            Waiter::Child(c) => c.id(),
            Waiter::Pidfd(_, pid) => Some(*pid),
        }
    }

    pub(super) async fn wait(&mut self) {
        match self {
            Waiter::Child(c) => {
                let _ = c.wait().await;
            }
            Waiter::Pidfd(fd, _) => {
                // A pidfd turns readable when its process exits.
                let _ = fd.readable().await;
            }
        }
    }
}

/// Kills (SIGKILL) every container and shim a runtime left under
/// `root`, at once and without waiting: for clusters torn down whole
/// (tests, or an abandoned data dir).
pub fn kill_leftovers_now(root: &Path) {
    for (_, p) in recorded(root) {
        // SAFETY: kill(2) with pids this runtime recorded.
        unsafe {
            if let Some(pid) = p.pid {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
            if let Some(shim) = p.shim_pid {
                libc::kill(shim as i32, libc::SIGKILL);
            }
        }
    }
}

/// Every container instance recorded under `root`, with its pod's
/// directory.
fn recorded(root: &Path) -> Vec<(std::path::PathBuf, Persisted)> {
    let mut out = Vec::new();
    let Ok(pods) = std::fs::read_dir(root) else {
        return out;
    };
    for pod in pods.flatten() {
        let Ok(containers) = std::fs::read_dir(pod.path()) else {
            continue;
        };
        for c in containers.flatten() {
            let saved = std::fs::read(c.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok());
            if let Some(p) = saved {
                out.push((pod.path(), p));
            }
        }
    }
    out
}

/// Stops every container a runtime left under `root` (SIGTERM, SIGKILL
/// after 5 s), tears down their sandboxes and removes the pods'
/// directories: what `shoal dev` does on Ctrl-C, since pods outlive their
/// agents otherwise.
pub async fn stop_leftovers(root: &Path, sandboxes: Option<&super::sandbox::Sandboxes>) {
    for (_, p) in recorded(root) {
        if let (Some(shim_pid), Some(pid)) = (p.shim_pid, p.pid) {
            if let Some(mut waiter) = Waiter::adopt(shim_pid) {
                terminate(&mut waiter, pid, Duration::from_secs(5)).await;
            }
        }
    }
    if let Ok(pods) = std::fs::read_dir(root) {
        for pod in pods.flatten() {
            if let Some(sbs) = sandboxes {
                sbs.destroy(&pod.file_name().to_string_lossy()).await;
            }
            super::volumes::remove_pod_dir(&pod.path());
        }
    }
}

/// SIGTERM to the container's process group, SIGKILL after `grace`; then
/// waits for its shim to record the end.
pub(super) async fn terminate(waiter: &mut Waiter, pid: u32, grace: Duration) {
    let group = -(pid as i32);
    // SAFETY: kill(2) with a process group id; no memory is touched.
    unsafe { libc::kill(group, libc::SIGTERM) };
    if tokio::time::timeout(grace, waiter.wait()).await.is_err() {
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        waiter.wait().await;
    }
}
