//! A process-runtime pod's set-up before its containers run: its network
//! (a sandbox created with back-off until it works, upstream's
//! FailedCreatePodSandBox) and its volumes (set up, then bound into each
//! container's mounts), and the record a later agent adopts it from.

use super::*;

/// A pod's network as it launches: known (an IP, and the sandbox that
/// holds it if any), or a sandbox still to create.
pub(super) enum Net {
    Ready(String, Option<sandbox::Sandbox>),
    Pending,
}

/// What a later agent adopts a pod from (`<dir>/pod.json`, mode 0600): the
/// pod as stored (no resolved environment, no projected file: no secret
/// value), its IP and its sandbox.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Saved {
    pub(super) pod: PodConfig,
    pub(super) ip: String,
    #[serde(default)]
    pub(super) sandbox: Option<sandbox::Sandbox>,
}

impl Saved {
    /// Writes the record atomically, private from birth (a failure only
    /// costs adoption, and is logged).
    pub(super) fn write(&self, dir: &Path) {
        let written = shoal_fabric::private::dir(dir).and_then(|()| {
            let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
            shoal_fabric::private::write(&dir.join("pod.json"), &bytes)
        });
        if let Err(e) = written {
            tracing::warn!(dir = %dir.display(), "recording the pod for adoption: {e}");
        }
    }
}

/// Records a pod for a later agent to adopt.
pub(super) fn save_pod(dir: &Path, pod: &PodConfig, ip: &str, sandbox: Option<&sandbox::Sandbox>) {
    Saved {
        pod: pod.unresolved(),
        ip: ip.to_string(),
        sandbox: sandbox.cloned(),
    }
    .write(dir);
}

/// Sets a pod's volumes up before its containers start.
pub(super) struct Volumes {
    /// With sandboxes: the node's DNS address and the cluster domain, for
    /// the pod's own resolv.conf and hosts files.
    pub(super) net_files: Option<(std::net::Ipv4Addr, String)>,
    pub(super) dir: PathBuf,
    pub(super) pod: PodConfig,
    /// False for an adopted pod: its files are there already.
    pub(super) write: bool,
    pub(super) ctrs: Vec<Arc<Mutex<Ctr>>>,
    pub(super) changes: broadcast::Sender<String>,
    pub(super) uid: String,
    pub(super) stop: watch::Receiver<Option<Duration>>,
}

impl Volumes {
    /// Sets the volumes up and gives each container its mounts; false
    /// when they cannot be (every container waits, saying why, until the
    /// pod stops).
    pub(super) async fn mount<'a>(
        &mut self,
        ip: &str,
        mut sups: impl Iterator<Item = &'a mut Supervisor>,
    ) -> bool {
        let ready = match volumes::set_up(&self.dir, &self.pod, ip, self.write) {
            Ok(r) => r,
            Err(why) => {
                let why = why.to_string();
                tracing::info!(pod = %self.uid, "{why}");
                // Upstream's kubelet says so once per attempt, about the pod.
                if let Some(first) = sups.next() {
                    first.event(true, "FailedMount", &why);
                }
                for c in &self.ctrs {
                    lock(c).state = ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: why.clone(),
                    };
                }
                let _ = self.changes.send(self.uid.clone());
                let _ = self.stop.wait_for(Option::is_some).await;
                return false;
            }
        };
        let net_files = match self.net_files(ip) {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(pod = %self.uid, "the pod's resolv.conf and hosts: {why}");
                Vec::new()
            }
        };
        for sup in sups {
            match volumes::mounts(&sup.spec, &ready).map(|mut m| {
                m.extend(net_files.iter().cloned());
                m
            }) {
                Ok(m) if !m.is_empty() && !sandbox::is_root() => {
                    sup.config_error = Some(
                        "volume mounts need root (a mount namespace of the container's own); this agent is not root"
                            .into(),
                    );
                }
                Ok(m) => sup.mounts = m,
                Err(why) => sup.config_error = Some(why.to_string()),
            }
        }
        true
    }
}

impl Volumes {
    /// Writes the pod's resolv.conf and hosts (sandboxed pods not on the
    /// host's network) and gives their mounts over the host's.
    fn net_files(&self, ip: &str) -> Result<Vec<sandbox::Mount>, String> {
        let Some((nameserver, domain)) = &self.net_files else {
            return Ok(Vec::new());
        };
        let pod = &self.pod.pod;
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
        {
            return Ok(Vec::new());
        }
        let etc = self.dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let files = [
            (
                "resolv.conf",
                super::dns::resolv_conf(pod, *nameserver, domain, &host),
            ),
            ("hosts", super::dns::hosts(pod, ip, domain)),
        ];
        let mut mounts = Vec::new();
        for (name, text) in files {
            let path = etc.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            mounts.push(sandbox::Mount {
                source: path,
                target: std::path::Path::new("/etc").join(name),
                read_only: true,
            });
        }
        Ok(mounts)
    }
}

/// The creation of one pod's sandbox, retried with back-off until it
/// works or the pod stops (upstream's FailedCreatePodSandBox).
pub(super) struct Creation {
    pub(super) sandboxes: Arc<sandbox::Sandboxes>,
    pub(super) uid: String,
    pub(super) pod: PodConfig,
    pub(super) dir: PathBuf,
    pub(super) ip: Arc<Mutex<String>>,
    pub(super) stop: watch::Receiver<Option<Duration>>,
    pub(super) ctrs: Vec<Arc<Mutex<Ctr>>>,
    pub(super) changes: broadcast::Sender<String>,
}

impl Creation {
    pub(super) async fn run(mut self) -> Option<sandbox::Sandbox> {
        let mut delay = Duration::from_millis(500);
        loop {
            if self.stop.borrow().is_some() {
                return None;
            }
            match self.sandboxes.create(&self.uid).await {
                Ok(sb) => {
                    save_pod(&self.dir, &self.pod, &sb.ip, Some(&sb));
                    *lock(&self.ip) = sb.ip.clone();
                    let _ = self.changes.send(self.uid.clone());
                    return Some(sb);
                }
                Err(why) => {
                    tracing::warn!(pod = %self.uid, "creating the pod sandbox: {why}");
                    for c in &self.ctrs {
                        lock(c).state = ContainerState::Waiting {
                            reason: "ContainerCreating".into(),
                            message: format!("FailedCreatePodSandBox: {why}"),
                        };
                    }
                    let _ = self.changes.send(self.uid.clone());
                    let stopped =
                        tokio::time::timeout(delay, self.stop.wait_for(Option::is_some)).await;
                    if stopped.is_ok() {
                        return None;
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
