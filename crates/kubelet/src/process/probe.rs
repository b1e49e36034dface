//! Container probes, as the kubelet's prober: `httpGet` (a status from 200
//! to 399), `tcpSocket` (a connection) and `exec` (exit code 0), each
//! within `timeoutSeconds`, every `periodSeconds` after
//! `initialDelaySeconds`, flipping after `successThreshold` successes or
//! `failureThreshold` failures in a row. Outcomes are results, never
//! errors: a malformed probe simply fails, with the reason kept for the
//! container's message.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Http {
        port: u16,
        path: String,
    },
    Tcp {
        port: u16,
    },
    Exec {
        argv: Vec<String>,
    },
    /// A probe shoal cannot run (the reason).
    Invalid(String),
}

/// A parsed probe with upstream's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A port by number or by the name of one of the container's ports.
fn port_of(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {n} is out of range")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// A probe's or a hook's handler, whichever of its fields is set.
fn action(
    exec: Option<&ExecAction>,
    http_get: Option<&HTTPGetAction>,
    tcp_socket: Option<&TCPSocketAction>,
    container: &Container,
) -> Action {
    if let Some(h) = http_get {
        match port_of(&h.port, container) {
            Ok(port) => Action::Http {
                port,
                path: h.path.clone().unwrap_or_else(|| "/".into()),
            },
            Err(e) => Action::Invalid(e),
        }
    } else if let Some(t) = tcp_socket {
        match port_of(&t.port, container) {
            Ok(port) => Action::Tcp { port },
            Err(e) => Action::Invalid(e),
        }
    } else if let Some(e) = exec {
        let argv = e.command.clone().unwrap_or_default();
        if argv.is_empty() {
            Action::Invalid("the exec probe has no command".into())
        } else {
            Action::Exec { argv }
        }
    } else {
        Action::Invalid("the probe has no httpGet, tcpSocket or exec".into())
    }
}

impl Probe {
    /// The container's probe of `kind`, if it has one, with upstream's
    /// defaults.
    pub fn of(container: &Container, kind: Kind) -> Option<Probe> {
        let p = match kind {
            Kind::Liveness => container.liveness_probe.as_ref(),
            Kind::Readiness => container.readiness_probe.as_ref(),
            Kind::Startup => container.startup_probe.as_ref(),
        }?;
        let secs = |v: Option<i32>, default: u64, min: u64| {
            let v = v.and_then(|v| u64::try_from(v).ok());
            Duration::from_secs(v.unwrap_or(default).max(min))
        };
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).clamp(1, 1000) as u32;
        Some(Probe {
            action: action(
                p.exec.as_ref(),
                p.http_get.as_ref(),
                p.tcp_socket.as_ref(),
                container,
            ),
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        })
    }

    /// The container's postStart hook (exec, httpGet or tcpSocket) as a
    /// probe run once, within `timeout`.
    pub fn post_start(container: &Container, timeout: Duration) -> Option<Probe> {
        let h = container.lifecycle.as_ref()?.post_start.as_ref()?;
        Some(Probe::hook(h, container, timeout))
    }

    /// The container's preStop hook (exec, httpGet or tcpSocket) as a
    /// probe run once.
    pub fn pre_stop(container: &Container) -> Option<Probe> {
        let h = container.lifecycle.as_ref()?.pre_stop.as_ref()?;
        Some(Probe::hook(h, container, Duration::from_secs(1)))
    }

    /// Lifecycle handler `h` of `container` as a probe run once.
    fn hook(
        h: &k8s_openapi::api::core::v1::LifecycleHandler,
        container: &Container,
        timeout: Duration,
    ) -> Probe {
        Probe {
            action: action(
                h.exec.as_ref(),
                h.http_get.as_ref(),
                h.tcp_socket.as_ref(),
                container,
            ),
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout,
            success_threshold: 1,
            failure_threshold: 1,
        }
    }

    /// Runs the check once against `target`; Err says why it failed.
    pub async fn check(&self, target: &Target) -> Result<(), Failure> {
        let (ip, env) = (target.ip.as_str(), target.env.as_slice());
        let run = async {
            match &self.action {
                Action::Http { port, path } => http(ip, *port, path).await,
                Action::Tcp { port } => {
                    let addr = addr(ip, *port)?;
                    tokio::net::TcpStream::connect(addr)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("dial tcp {addr}: {e}"))
                }
                Action::Exec { argv } if target.exec.is_some() => match &target.exec {
                    Some(run) => run(argv.clone()).await,
                    None => unreachable!("matched on is_some"),
                },
                Action::Exec { argv } => {
                    // In the container's namespaces when it has a sandbox.
                    let mut cmd = match target.enter {
                        Some(pid) => {
                            let mut c = tokio::process::Command::new("nsenter");
                            c.arg("-t")
                                .arg(pid.to_string())
                                .args(["-n", "-i", "-m", "--"]);
                            c.args(argv);
                            c
                        }
                        None => {
                            let mut c = tokio::process::Command::new(&argv[0]);
                            c.args(&argv[1..]);
                            c
                        }
                    };
                    // SAFETY: only a system call between fork and exec.
                    unsafe {
                        cmd.pre_exec(super::machine_thp_policy);
                    }
                    let out = cmd
                        .envs(env.iter().cloned())
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .kill_on_drop(true)
                        .status()
                        .await
                        .map_err(|e| format!("{}: {e}", argv[0]))?;
                    if out.success() {
                        Ok(())
                    } else {
                        Err(format!("command {:?} exited with {out}", argv.join(" ")))
                    }
                }
                Action::Invalid(why) => Err(why.clone()),
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .unwrap_or_else(|_| Err(format!("timeout after {:?}", self.timeout)))
            .map_err(Failure)
    }
}

/// Why a probe or hook failed, in the words upstream's prober uses (the
/// container's message and the kubelet's Events carry it).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

/// Runs an exec probe's command in the container some other way than
/// `nsenter` (the docker runtime: an engine exec instance); Err says why
/// it failed.
pub type ExecHook = std::sync::Arc<
    dyn Fn(Vec<String>) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
>;

/// What a probe or hook runs against: the pod's IP, the container's
/// environment, and the container's pid when exec commands enter its
/// namespaces (a sandboxed pod), or the runtime's own way of running
/// them (`exec`).
#[derive(Clone, Default)]
pub struct Target {
    pub ip: String,
    pub env: Vec<(String, String)>,
    pub enter: Option<u32>,
    pub exec: Option<ExecHook>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("ip", &self.ip)
            .field("enter", &self.enter)
            .field("exec", &self.exec.is_some())
            .finish_non_exhaustive()
    }
}

impl Target {
    pub fn at(ip: &str, env: &[(String, String)]) -> Target {
        Target {
            ip: ip.to_string(),
            env: env.to_vec(),
            enter: None,
            exec: None,
        }
    }
}

fn addr(ip: &str, port: u16) -> Result<SocketAddr, String> {
    format!("{ip}:{port}")
        .parse()
        .map_err(|e| format!("pod IP {ip:?}: {e}"))
}

async fn http(ip: &str, port: u16, path: &str) -> Result<(), String> {
    let addr = addr(ip, port)?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get http://{addr}{path}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "kube-probe/1.33")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Consecutive outcomes → the probe's verdict (upstream's thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub passing: bool,
    successes: u32,
    failures: u32,
}

impl Verdict {
    pub fn new(passing: bool) -> Verdict {
        Verdict {
            passing,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one outcome; true when the verdict flipped.
    pub fn record(&mut self, ok: bool, probe: &Probe) -> bool {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.passing && self.successes >= probe.success_threshold {
                self.passing = true;
                return true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.passing && self.failures >= probe.failure_threshold {
                self.passing = false;
                return true;
            }
        }
        false
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Whether the container has a probe that decides its readiness (a
/// readiness or startup probe): until it passes, the container is not
/// ready.
pub fn gates_readiness(c: &Container) -> bool {
    c.readiness_probe.is_some() || c.startup_probe.is_some()
}

/// Probes one running container instance until aborted: the startup
/// probe first (liveness and readiness wait for it), then liveness and
/// readiness on their own periods. Readiness goes to `set_ready` (the
/// container's `ready`, its change pushed); a failed startup or liveness
/// probe asks the runtime, through `kill`, to kill the instance.
pub async fn run(
    spec: Container,
    target: Target,
    set_ready: impl Fn(bool),
    kill: tokio::sync::oneshot::Sender<String>,
) {
    let started = tokio::time::Instant::now();
    if let Some(p) = Probe::of(&spec, Kind::Startup) {
        tokio::time::sleep_until(started + p.initial_delay).await;
        let mut v = Verdict::new(false);
        loop {
            let r = p.check(&target).await;
            v.record(r.is_ok(), &p);
            if v.passing {
                break;
            }
            if v.failures() >= p.failure_threshold {
                let why = r.err().unwrap_or_default();
                let _ = kill.send(format!("Startup probe failed: {why}"));
                return;
            }
            tokio::time::sleep(p.period).await;
        }
    }
    let liveness = Probe::of(&spec, Kind::Liveness);
    let readiness = Probe::of(&spec, Kind::Readiness);
    if readiness.is_none() {
        set_ready(true);
    }
    let now = tokio::time::Instant::now();
    let mut next_live = liveness.as_ref().map(|p| now + p.initial_delay);
    let mut next_ready = readiness.as_ref().map(|p| now + p.initial_delay);
    let (mut live, mut ready) = (Verdict::new(true), Verdict::new(false));
    loop {
        let due = match (next_live, next_ready) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        if let (Some(p), Some(at)) = (&liveness, next_live) {
            if at <= now {
                let r = p.check(&target).await;
                if live.record(r.is_ok(), p) && !live.passing {
                    let why = r.err().unwrap_or_default();
                    let _ = kill.send(format!("Liveness probe failed: {why}"));
                    return;
                }
                next_live = Some(now + p.period);
            }
        }
        if let (Some(p), Some(at)) = (&readiness, next_ready) {
            if at <= now {
                let ok = p.check(&target).await.is_ok();
                if ready.record(ok, p) {
                    set_ready(ready.passing);
                }
                next_ready = Some(now + p.period);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn container(mut c: Value) -> Container {
        c["name"] = json!("c");
        serde_json::from_value(c).unwrap()
    }

    #[test]
    fn probes_parse_with_upstream_defaults_and_named_ports() {
        let c = container(json!({"ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            "livenessProbe": {"tcpSocket": {"port": 99999}, "periodSeconds": 2},
            "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
            "lifecycle": {"preStop": {"httpGet": {"port": 8080, "path": "/bye"}}}}));
        let r = Probe::of(&c, Kind::Readiness).unwrap();
        assert_eq!(
            r.action,
            Action::Http {
                port: 8080,
                path: "/healthz".into()
            }
        );
        assert_eq!(
            (r.period, r.timeout),
            (Duration::from_secs(10), Duration::from_secs(1))
        );
        assert_eq!((r.success_threshold, r.failure_threshold), (1, 3));
        let l = Probe::of(&c, Kind::Liveness).unwrap();
        assert!(matches!(l.action, Action::Invalid(ref why) if why.contains("out of range")));
        assert_eq!(l.period, Duration::from_secs(2));
        let s = Probe::of(&c, Kind::Startup).unwrap();
        assert_eq!(s.failure_threshold, 30);
        assert_eq!(
            Probe::pre_stop(&c).unwrap().action,
            Action::Http {
                port: 8080,
                path: "/bye".into()
            }
        );
        let bad = container(json!({"readinessProbe": {"httpGet": {"port": "nope"}}}));
        assert!(matches!(
            Probe::of(&bad, Kind::Readiness).unwrap().action,
            Action::Invalid(_)
        ));
        assert!(Probe::of(&bad, Kind::Liveness).is_none());
        assert!(Probe::pre_stop(&bad).is_none());
    }

    #[test]
    fn verdicts_flip_after_their_thresholds() {
        let c = container(
            json!({"readinessProbe": {"tcpSocket": {"port": 1}, "successThreshold": 2, "failureThreshold": 3}}),
        );
        let p = Probe::of(&c, Kind::Readiness).unwrap();
        let mut v = Verdict::new(false);
        assert!(!v.record(true, &p));
        assert!(v.record(true, &p) && v.passing);
        assert!(!v.record(false, &p) && !v.record(false, &p));
        assert!(v.record(false, &p) && !v.passing);
    }

    #[tokio::test]
    async fn checks_report_why_they_failed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = Probe::of(
            &container(json!({"livenessProbe": {"tcpSocket": {"port": port}}})),
            Kind::Liveness,
        )
        .unwrap();
        tcp.check(&Target::at("127.0.0.1", &[])).await.unwrap();
        drop(listener);
        let err = tcp.check(&Target::at("127.0.0.1", &[])).await.unwrap_err();
        assert!(err.0.contains("dial tcp"), "{err}");
        let exec = Probe::of(
            &container(
                json!({"livenessProbe": {"exec": {"command": ["sh", "-c", "test \"$X\" = 1"]}}}),
            ),
            Kind::Liveness,
        )
        .unwrap();
        exec.check(&Target::at("127.0.0.1", &[("X".into(), "1".into())]))
            .await
            .unwrap();
        assert!(exec.check(&Target::at("127.0.0.1", &[])).await.is_err());
    }
}
