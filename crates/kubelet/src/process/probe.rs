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
use serde_json::Value;

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
fn port_of(v: Option<&Value>, container: &Value) -> Result<u16, String> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {n} is out of range")),
        Some(Value::String(name)) => container
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
        _ => Err("the probe has no port".into()),
    }
}

impl Probe {
    /// The probe `field` (`livenessProbe`, …) of a container, if it has one.
    pub fn of(container: &Value, field: &str) -> Option<Probe> {
        let p = container.get(field)?;
        let secs = |k: &str, default: u64, min: u64| {
            Duration::from_secs(p.get(k).and_then(Value::as_u64).unwrap_or(default).max(min))
        };
        let count = |k: &str, default: u64| {
            p.get(k)
                .and_then(Value::as_u64)
                .unwrap_or(default)
                .clamp(1, 1000) as u32
        };
        let action = if let Some(h) = p.get("httpGet") {
            match port_of(h.get("port"), container) {
                Ok(port) => Action::Http {
                    port,
                    path: h
                        .get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("/")
                        .to_string(),
                },
                Err(e) => Action::Invalid(e),
            }
        } else if let Some(t) = p.get("tcpSocket") {
            match port_of(t.get("port"), container) {
                Ok(port) => Action::Tcp { port },
                Err(e) => Action::Invalid(e),
            }
        } else if let Some(e) = p.get("exec") {
            let argv: Vec<String> = e
                .get("command")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if argv.is_empty() {
                Action::Invalid("the exec probe has no command".into())
            } else {
                Action::Exec { argv }
            }
        } else {
            Action::Invalid("the probe has no httpGet, tcpSocket or exec".into())
        };
        Some(Probe {
            action,
            initial_delay: secs("initialDelaySeconds", 0, 0),
            period: secs("periodSeconds", 10, 1),
            timeout: secs("timeoutSeconds", 1, 1),
            success_threshold: count("successThreshold", 1),
            failure_threshold: count("failureThreshold", 3),
        })
    }

    /// A lifecycle hook (`lifecycle.<field>`: exec or httpGet) as a probe
    /// run once.
    pub fn hook(container: &Value, field: &str) -> Option<Probe> {
        let h = container.pointer(&format!("/lifecycle/{field}"))?;
        let wrapped = serde_json::json!({"ports": container.get("ports"), "hook": h});
        Probe::of(&wrapped, "hook")
    }

    /// Runs the check once against `target`; Err says why it failed.
    pub async fn check(&self, target: &Target) -> Result<(), String> {
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
    }
}

/// What a probe or hook runs against: the pod's IP, the container's
/// environment, and the container's pid when exec commands enter its
/// namespaces (a sandboxed pod).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub ip: String,
    pub env: Vec<(String, String)>,
    pub enter: Option<u32>,
}

impl Target {
    pub fn at(ip: &str, env: &[(String, String)]) -> Target {
        Target {
            ip: ip.to_string(),
            env: env.to_vec(),
            enter: None,
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

/// Probes one running container instance until aborted: the startup
/// probe first (liveness and readiness wait for it), then liveness and
/// readiness on their own periods. Readiness sets the container's `ready`
/// (and pushes the change); a failed startup or liveness probe asks the
/// supervisor, through `kill`, to kill the instance.
pub(super) async fn run(
    spec: Value,
    target: Target,
    ctr: std::sync::Arc<std::sync::Mutex<super::Ctr>>,
    uid: String,
    changes: tokio::sync::broadcast::Sender<String>,
    kill: tokio::sync::oneshot::Sender<String>,
) {
    let started = tokio::time::Instant::now();
    let set_ready = |ready: bool| {
        let mut c = super::lock(&ctr);
        if c.ready != ready && matches!(c.state, super::ContainerState::Running { .. }) {
            c.ready = ready;
            drop(c);
            let _ = changes.send(uid.clone());
        }
    };
    if let Some(p) = Probe::of(&spec, "startupProbe") {
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
    let liveness = Probe::of(&spec, "livenessProbe");
    let readiness = Probe::of(&spec, "readinessProbe");
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
    use serde_json::json;

    #[test]
    fn probes_parse_with_upstream_defaults_and_named_ports() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            "livenessProbe": {"tcpSocket": {"port": 99999}, "periodSeconds": 2},
            "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30}});
        let r = Probe::of(&c, "readinessProbe").unwrap();
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
        let l = Probe::of(&c, "livenessProbe").unwrap();
        assert!(matches!(l.action, Action::Invalid(ref why) if why.contains("out of range")));
        assert_eq!(l.period, Duration::from_secs(2));
        let s = Probe::of(&c, "startupProbe").unwrap();
        assert_eq!(s.failure_threshold, 30);
        assert!(Probe::of(&c, "otherProbe").is_none());
        let bad = json!({"readinessProbe": {"httpGet": {"port": "nope"}}});
        assert!(matches!(
            Probe::of(&bad, "readinessProbe").unwrap().action,
            Action::Invalid(_)
        ));
    }

    #[test]
    fn verdicts_flip_after_their_thresholds() {
        let c = json!({"readinessProbe": {"tcpSocket": {"port": 1}, "successThreshold": 2, "failureThreshold": 3}});
        let p = Probe::of(&c, "readinessProbe").unwrap();
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
        let tcp = Probe::of(&json!({"p": {"tcpSocket": {"port": port}}}), "p").unwrap();
        tcp.check(&Target::at("127.0.0.1", &[])).await.unwrap();
        drop(listener);
        let err = tcp.check(&Target::at("127.0.0.1", &[])).await.unwrap_err();
        assert!(err.contains("dial tcp"), "{err}");
        let exec = Probe::of(
            &json!({"p": {"exec": {"command": ["sh", "-c", "test \"$X\" = 1"]}}}),
            "p",
        )
        .unwrap();
        exec.check(&Target::at("127.0.0.1", &[("X".into(), "1".into())]))
            .await
            .unwrap();
        assert!(exec.check(&Target::at("127.0.0.1", &[])).await.is_err());
    }
}
