//! The supervisor of one container of the process runtime: it starts each
//! instance under `shoal shim` (in the pod's sandbox when there is one),
//! runs the probes, waits for the instance's end, and applies the
//! restartPolicy with its back-off, pushing every change of state; it
//! stops the instance when its pod stops (SIGTERM, the grace period,
//! SIGKILL), after the preStop hook.

use super::*;

/// Runs one container until its pod stops or its restartPolicy ends it.
pub(super) struct Supervisor {
    /// An init container: returns once it succeeded instead of waiting.
    pub(super) init: bool,
    pub(super) uid: String,
    pub(super) pod_name: String,
    /// The `shoal` binary (its `shim` subcommand runs each instance).
    pub(super) shim: PathBuf,
    /// A running instance a previous agent started.
    pub(super) adopted: Option<Adopted>,
    /// An instance that ended while no agent watched it.
    pub(super) ended: Option<(i32, String, String)>,
    /// The pod IP (probes go there).
    pub(super) ip: String,
    /// The pod sandbox the container enters (None: host networking).
    pub(super) enter: Option<sandbox::Enter>,
    /// Why no instance can start (its cgroups could not be set up): each
    /// attempt fails with `CreateContainerError`, never runs unlimited.
    pub(super) start_error: Option<String>,
    /// The user, groups and capabilities the next instance runs with.
    pub(super) security: super::security::Security,
    /// Its volumes, bound in its own mount namespace.
    pub(super) mounts: Vec<sandbox::Mount>,
    /// The pod's terminationGracePeriodSeconds (a liveness kill's grace).
    pub(super) grace: Duration,
    pub(super) dir: PathBuf,
    pub(super) spec: Container,
    /// Why the container cannot be configured (its volume mounts): it
    /// waits with `CreateContainerConfigError`.
    pub(super) config_error: Option<String>,
    /// The pod's resolved configuration (None until the kubelet resolves
    /// an adopted pod again): each new instance reads its environment here.
    pub(super) config: watch::Receiver<Option<Arc<PodConfig>>>,
    /// The environment of the current instance (probes and hooks run
    /// with it).
    pub(super) env: Vec<(String, String)>,
    pub(super) policy: RestartPolicy,
    pub(super) ctr: Arc<Mutex<Ctr>>,
    pub(super) stop: watch::Receiver<Option<Duration>>,
    pub(super) changes: broadcast::Sender<String>,
    pub(super) backoff: Backoff,
    pub(super) sandboxes: Option<Arc<sandbox::Sandboxes>>,
    /// Where its Events go (the runtime's, once set).
    pub(super) events: Arc<std::sync::OnceLock<crate::podevents::PodEvents>>,
    pub(super) pod_ref: shoal_model::events::ObjectRef,
}

impl Supervisor {
    /// Records an Event about the pod, upstream's words.
    pub(super) fn event(&self, warning: bool, reason: &str, message: &str) {
        if let Some(e) = self.events.get() {
            let ty = if warning {
                shoal_model::events::EventType::Warning
            } else {
                shoal_model::events::EventType::Normal
            };
            e.about(&self.pod_ref, ty, reason, message);
        }
    }

    /// Where this container's probes and hooks go.
    fn target(&self, pid: u32) -> probe::Target {
        probe::Target {
            ip: self.ip.clone(),
            env: self.env.clone(),
            enter: self.enter.as_ref().map(|_| pid),
            exec: None,
        }
    }

    /// Joins the pod's new sandbox: its namespaces and the container's
    /// cgroups; a cgroup that cannot be set up fails every start.
    pub(super) fn enter_sandbox(&mut self, _sandbox: &sandbox::Sandbox) {
        let Some(sbs) = self.sandboxes.as_ref() else {
            return;
        };
        match sbs.enter(&self.uid, &self.spec) {
            Ok(e) => self.enter = Some(e),
            Err(e) => {
                self.enter = Some(sandbox::Enter::default());
                self.start_error = Some(e.to_string());
            }
        }
    }

    fn set(&self, state: ContainerState, pid: Option<u32>) {
        let mut c = lock(&self.ctr);
        if matches!(c.state, ContainerState::Terminated { .. })
            && !matches!(state, ContainerState::Terminated { .. })
        {
            c.last = Some(c.state.clone());
        }
        c.ready = false;
        c.state = state;
        c.pid = pid;
        drop(c);
        let _ = self.changes.send(self.uid.clone());
    }

    fn stopping(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Runs the container by its restartPolicy until the pod stops; an
    /// init container returns true once it succeeded, false if it failed
    /// for good (or the pod stopped).
    pub(super) async fn run(mut self) -> bool {
        let mut failures: u32 = 0;
        loop {
            if self.stopping().is_some() {
                return false;
            }
            let instance = lock(&self.ctr).restarts;
            let started = Instant::now();
            let exit = match (self.ended.take(), self.adopted.take()) {
                (Some(ended), _) => Some(ended),
                // A running instance a previous agent started keeps the
                // environment it started with.
                (None, Some(adopted)) => self.run_once(&[], instance, Some(adopted)).await,
                (None, None) => match self.prepare().await {
                    Prepared::Argv(argv) => self.run_once(&argv, instance, None).await,
                    Prepared::Stopped => return false,
                    Prepared::Refused(message) => {
                        let mount = message.contains("volume") || message.contains("mount");
                        let (r, m) = if mount {
                            ("FailedMount", message.clone())
                        } else {
                            ("Failed", format!("Error: {message}"))
                        };
                        self.event(true, r, &m);
                        let reason = "CreateContainerConfigError".to_string();
                        self.set(ContainerState::Waiting { reason, message }, None);
                        let _ = self.stop.wait_for(Option::is_some).await;
                        return false;
                    }
                    // A failed start: restartPolicy and back-off decide.
                    Prepared::Failed(message) => {
                        Some((128, "CreateContainerError".to_string(), message))
                    }
                },
            };
            let Some((code, reason, message)) = exit else {
                return false; // stopped
            };
            let finished_at = objects::now();
            self.set(
                ContainerState::Terminated {
                    exit_code: code,
                    reason,
                    message,
                    finished_at,
                },
                None,
            );
            let restart = self.policy.restarts(code);
            if !restart {
                if self.init {
                    return code == 0;
                }
                let _ = self.stop.wait_for(Option::is_some).await;
                return false;
            }
            if started.elapsed() >= self.backoff.reset_after {
                failures = 0;
            }
            let delay = self.backoff.delay(failures);
            failures = failures.saturating_add(1);
            {
                let mut c = lock(&self.ctr);
                c.restarts += 1;
            }
            let name = lock(&self.ctr).name.clone();
            self.event(
                true,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    self.pod_name, self.pod_ref.namespace, self.uid
                ),
            );
            self.set(
                ContainerState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {delay:?} restarting failed container={name} pod={}",
                        self.uid
                    ),
                },
                None,
            );
            let stopped = tokio::time::timeout(delay, self.stop.wait_for(Option::is_some)).await;
            if stopped.is_ok() {
                return false;
            }
        }
    }

    /// The next instance's environment and argv (`$(VAR)` expanded from
    /// that environment), once the pod's configuration is resolved.
    async fn prepare(&mut self) -> Prepared {
        let config = tokio::select! {
            c = self.config.wait_for(Option::is_some) => match c {
                Ok(c) => c.clone(),
                Err(_) => None,
            },
            _ = self.stop.wait_for(Option::is_some) => return Prepared::Stopped,
        };
        let Some(config) = config else {
            return Prepared::Stopped;
        };
        let error = config
            .config_error(&self.spec.name)
            .map(String::from)
            .or_else(|| self.config_error.clone());
        if let Some(why) = error {
            return Prepared::Refused(why);
        }
        let pod_security = config.spec().and_then(|s| s.security_context.as_ref());
        match super::security::of(pod_security, &self.spec) {
            Ok(s) if s.is_set() && !sandbox::is_root() => {
                return Prepared::Refused(
                    "securityContext: setting the user, groups, capabilities or a read-only root needs an agent running as root"
                        .into(),
                )
            }
            Ok(s) => self.security = s,
            Err(why) => return Prepared::Refused(why),
        }
        if let Some(why) = &self.start_error {
            return Prepared::Failed(why.clone());
        }
        self.env = env_of(config.env_of(&self.spec), &self.ip);
        let argv = match argv_of(&self.spec) {
            Ok(a) => a,
            Err(why) => return Prepared::Refused(why),
        };
        let vars: std::collections::BTreeMap<String, String> = self.env.iter().cloned().collect();
        let expanded: Result<Vec<String>, _> =
            argv.iter().map(|s| crate::envs::expand(s, &vars)).collect();
        match expanded {
            Ok(argv) => Prepared::Argv(argv),
            Err(e) => Prepared::Refused(format!("command and args: {e}")),
        }
    }

    /// One instance of the container, through a shim (`shim`): Some(exit
    /// code, reason, message) when it ended by itself, None when the pod
    /// was stopped. `adopted` is an instance a previous agent started.
    async fn run_once(
        &mut self,
        argv: &[String],
        instance: u32,
        adopted: Option<Adopted>,
    ) -> Option<(i32, String, String)> {
        let base = self.dir.join(instance.to_string());
        let (mut waiter, pid) = match adopted {
            Some(a) => (a.waiter, a.pid),
            None => match self.spawn(argv, &base).await {
                Ok(w) => {
                    let name = &self.spec.name;
                    self.event(false, "Created", &format!("Created container: {name}"));
                    self.event(false, "Started", &format!("Started container {name}"));
                    w
                }
                Err(why) => {
                    self.event(true, "Failed", &format!("Error: {why}"));
                    return Some((128, "StartError".into(), why));
                }
            },
        };
        if !matches!(lock(&self.ctr).state, ContainerState::Running { .. }) {
            self.set(
                ContainerState::Running {
                    started_at: objects::now(),
                },
                Some(pid),
            );
        }
        self.persist(instance, waiter.pid());
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<String>();
        let (ctr, uid, changes) = (self.ctr.clone(), self.uid.clone(), self.changes.clone());
        let set_ready = move |ready: bool| {
            let mut c = lock(&ctr);
            if c.ready != ready && matches!(c.state, ContainerState::Running { .. }) {
                c.ready = ready;
                drop(c);
                let _ = changes.send(uid.clone());
            }
        };
        let prober = tokio::spawn(probe::run(
            self.spec.clone(),
            self.target(pid),
            set_ready,
            kill_tx,
        ));
        let mut kill_rx = std::pin::pin!(kill_rx);
        enum End {
            Exited,
            Stopped(Duration),
            Killed(String),
        }
        let end = tokio::select! {
            _ = waiter.wait() => End::Exited,
            grace = self.stop.wait_for(Option::is_some) => {
                End::Stopped(grace.ok().and_then(|g| *g).unwrap_or(Duration::ZERO))
            }
            Ok(why) = &mut kill_rx => End::Killed(why),
        };
        prober.abort();
        let code = |base: &Path| shim::read_exit(base).map_or(128, |(c, _)| c);
        match end {
            End::Exited => {
                let (c, why) = shim::read_exit(&base).unwrap_or((128, "the shim died".into()));
                let reason = if c == 0 { "Completed" } else { "Error" };
                Some((c, reason.to_string(), why))
            }
            End::Stopped(grace) => {
                // The preStop hook first, within the grace period; then
                // SIGTERM with what is left of it.
                let t0 = Instant::now();
                if let Some(hook) = probe::Probe::pre_stop(&self.spec) {
                    let hook = probe::Probe {
                        timeout: grace.max(Duration::from_millis(1)),
                        ..hook
                    };
                    if let Err(e) = hook.check(&self.target(pid)).await {
                        tracing::info!(pod = %self.uid, "preStop hook failed: {e}");
                    }
                }
                terminate(&mut waiter, pid, grace.saturating_sub(t0.elapsed())).await;
                None
            }
            End::Killed(why) => {
                // A failed liveness or startup probe: killed, then the
                // restartPolicy decides.
                self.event(true, "Unhealthy", &why);
                let name = &self.spec.name;
                self.event(
                    false,
                    "Killing",
                    &format!("Container {name} failed liveness probe, will be restarted"),
                );
                terminate(&mut waiter, pid, self.grace).await;
                Some((code(&base), "Error".to_string(), why))
            }
        }
    }

    /// Starts a shim for `argv`; returns it and the container's pid.
    async fn spawn(&self, argv: &[String], base: &Path) -> Result<(Waiter, u32), String> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let _ = tokio::fs::remove_file(shim::exit_path(base)).await;
        let mut cmd = tokio::process::Command::new(&self.shim);
        cmd.arg("shim").arg("--base").arg(base);
        let enter = sandbox::Enter {
            mounts: self.mounts.clone(),
            security: self.security.clone(),
            ..self.enter.clone().unwrap_or_default()
        };
        if enter != sandbox::Enter::default() {
            let json = serde_json::to_string(&enter).map_err(|e| format!("the sandbox: {e}"))?;
            cmd.arg("--sandbox").arg(json);
        }
        if let Some(wd) = self.spec.working_dir.as_deref() {
            cmd.arg("--workdir").arg(wd);
        }
        // The container's environment only, not the agent's.
        cmd.arg("--")
            .args(argv)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOSTNAME", &self.pod_name)
            // The shim's allocator commits memory lazily (4.9 → 1.2 MB of
            // anonymous memory a shim); the shim removes this again.
            .env(shim::LAZY_MALLOC.0, shim::LAZY_MALLOC.1)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the shim {}: {e}", self.shim.display()))?;
        let first = match child.stdout.take() {
            Some(out) => {
                let mut line = String::new();
                let _ = BufReader::new(out).read_line(&mut line).await;
                line
            }
            None => String::new(),
        };
        let first = first.trim();
        match first.parse::<u32>() {
            Ok(pid) => Ok((Waiter::Child(child), pid)),
            Err(_) => {
                let _ = child.wait().await;
                let why = shim::read_exit(base)
                    .map(|(_, why)| why)
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| first.trim_start_matches("error ").to_string());
                Err(why)
            }
        }
    }

    /// Records the instance (for a later agent to adopt it).
    fn persist(&self, instance: u32, shim_pid: Option<u32>) {
        let c = lock(&self.ctr);
        let state = Persisted {
            instance,
            restarts: c.restarts,
            shim_pid,
            pid: c.pid,
            started_at: match &c.state {
                ContainerState::Running { started_at } => started_at.clone(),
                _ => String::new(),
            },
            last: c.last.clone(),
        };
        drop(c);
        if let Ok(text) = serde_json::to_string(&state) {
            let path = self.dir.join("state.json");
            let tmp = self.dir.join("state.json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(tmp, path);
            }
        }
    }
}

/// What a new instance runs, or why none does.
enum Prepared {
    Argv(Vec<String>),
    /// The pod stopped first.
    Stopped,
    /// `CreateContainerConfigError`, with the reason.
    Refused(String),
    /// The instance could not be created (`CreateContainerError`).
    Failed(String),
}
