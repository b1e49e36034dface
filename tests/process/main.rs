//! Multi-process tests: the real `shoal` binary, real agents, real signals.
//! These also pin the CLI and JSON contracts of docs/CLI.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod agent_restart;
mod cluster_dns;
mod dev;
mod docker;
mod drain;
mod durability;
mod hostile;
mod hosts;
mod ingress;
mod kubectl;
mod kubectl_process;
mod kubectl_streams;
mod secrets_on_disk;
mod services;
mod statefulsets;
mod watch_failover;
mod workloads;

/// Held by each test whose cluster gives pods CNI sandboxes: those use the
/// bridges `shoal-<n>` and the default pod CIDR, one cluster at a time.
fn cni_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether clusters here give pods CNI sandboxes (`kubelet.network =
/// auto` as root with the plugins, which scripts/test.sh installs).
fn cni_sandboxes() -> bool {
    // SAFETY: a libc call with integer arguments only.
    let root = unsafe { libc::geteuid() } == 0;
    let plugins = ["bridge", "host-local", "loopback"]
        .iter()
        .all(|p| Path::new("/usr/lib/cni").join(p).exists());
    if root && !plugins {
        panic!("running as root without the CNI plugins in /usr/lib/cni: run scripts/test.sh (it installs containernetworking-plugins)");
    }
    root
}

/// The network namespaces and veths left on the machine by `shoal-*`.
fn sandbox_leftovers() -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shoal-"))
        .collect();
    for dev in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = dev.file_name().to_string_lossy().into_owned();
        let master = std::fs::read_link(dev.path().join("master"))
            .ok()
            .and_then(|m| m.file_name().map(|f| f.to_string_lossy().into_owned()));
        if master.is_some_and(|m| m.starts_with("shoal-")) {
            left.push(format!("veth {name}"));
        }
    }
    left
}

/// The service proxies' nftables tables (named as their bridges) on the
/// machine.
fn proxy_tables() -> Vec<String> {
    let out = Command::new("nft").args(["list", "tables"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("table ip shoal-"))
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

fn shoal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
    c.env("SHOAL_LOG", "info");
    c
}

/// Polls `f` every 100 ms until it returns Some or the deadline passes.
fn wait_for<T>(deadline: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    shoal_harness::wait_for_blocking(deadline, what, f)
}

struct Agents {
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Agents {
    fn start(dir: &Path, n: usize) -> Agents {
        let mut a = Agents {
            dir: dir.to_owned(),
            children: Vec::new(),
        };
        for i in 1..=n {
            a.children.push(None);
            a.spawn(i);
        }
        a
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{i}.log")))
            .unwrap();
        let child = shoal()
            .args(["agent", "--config"])
            .arg(self.dir.join(format!("node-{i}.toml")))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i - 1] = Some(child);
    }

    fn signal(&mut self, i: usize, sig: i32) -> std::process::ExitStatus {
        let mut child = self.children[i - 1].take().expect("running");
        // SAFETY: a libc call with integer arguments only.
        unsafe { libc::kill(child.id() as i32, sig) };
        child.wait().unwrap()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn members(dir: &Path, i: usize) -> Result<Vec<Value>, String> {
    let out = shoal()
        .args(["members", "--json", "--config"])
        .arg(dir.join(format!("node-{i}.toml")))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .map_err(|e| e.to_string())?
        .as_array()
        .cloned()
        .ok_or_else(|| "not an array".to_string())
}

fn state_of(rows: &[Value], name: &str) -> Option<String> {
    rows.iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["state"].as_str().map(String::from))
}

fn init(dir: &Path, n: usize) {
    let out = shoal()
        .args(["init", "--nodes", &n.to_string(), "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // These agents run no pods: hollow ones, so they never touch the
    // machine's bridges (`shoal-<n>`) that the kubectl tests' sandboxes use.
    for i in 1..=n {
        let path = dir.join(format!("node-{i}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("runtime = \"process\""), "{text}");
        std::fs::write(
            &path,
            text.replace("runtime = \"process\"", "runtime = \"sim\""),
        )
        .unwrap();
    }
}

/// `shoal kv --config node-I.toml ARGS…`.
fn kv(dir: &Path, i: usize, args: &[&str]) -> std::process::Output {
    shoal()
        .args(["kv", "--config"])
        .arg(dir.join(format!("node-{i}.toml")))
        .args(args)
        .output()
        .unwrap()
}

/// Waits until a write through node `i` is acknowledged (a leader exists).
fn wait_writable(dir: &Path, i: usize) {
    wait_for(Duration::from_secs(30), "store ready", || {
        let out = kv(dir, i, &["put", "warmup", "1"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
}

#[test]
fn three_agents_see_a_sigkill_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 3);
    let mut agents = Agents::start(&dir, 3);
    for i in 1..=3 {
        wait_for(Duration::from_secs(20), "3 alive", || {
            let rows = members(&dir, i)?;
            // Alive, and with the metadata gossip has to bring (roles, zone).
            let alive = rows
                .iter()
                .filter(|r| r["state"] == "alive" && r["zone"] != "")
                .count();
            if alive == 3 {
                Ok(rows)
            } else {
                Err(format!("node-{i}: {alive} alive with metadata"))
            }
        });
    }
    // The JSON contract of `shoal members --json`.
    let rows = members(&dir, 1).unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r["name"].as_str().unwrap().starts_with("node-"));
        assert!(r["addr"].as_str().unwrap().contains(':'));
        assert!(["alive", "suspect", "down", "left"].contains(&r["state"].as_str().unwrap()));
        assert!(r["generation"].as_u64().unwrap() >= 1);
        assert!(r["roles"].as_array().unwrap().iter().any(|x| x == "api"));
        assert!(!r["zone"].as_str().unwrap().is_empty());
        assert!(r["since_ms"].is_u64());
    }

    agents.signal(3, libc::SIGKILL);
    for i in 1..=2 {
        wait_for(Duration::from_secs(10), "node-3 down", || {
            let rows = members(&dir, i)?;
            match state_of(&rows, "node-3").as_deref() {
                Some("down") => Ok(()),
                s => Err(format!("node-{i} sees node-3 as {s:?}")),
            }
        });
    }

    agents.spawn(3);
    for i in 1..=3 {
        wait_for(Duration::from_secs(20), "node-3 alive again", || {
            let rows = members(&dir, i)?;
            let r = rows
                .iter()
                .find(|r| r["name"] == "node-3")
                .ok_or("no node-3")?;
            if r["state"] == "alive" && r["generation"].as_u64() >= Some(2) {
                Ok(())
            } else {
                Err(format!("{r}"))
            }
        });
    }

    // SIGTERM is a clean shutdown: exit 0, and the node comes back as itself.
    let status = agents.signal(2, libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");
    agents.spawn(2);
    wait_for(Duration::from_secs(20), "node-2 back", || {
        let rows = members(&dir, 1)?;
        match state_of(&rows, "node-2").as_deref() {
            Some("alive") => Ok(()),
            s => Err(format!("{s:?}")),
        }
    });
}

#[test]
fn leave_and_chaos_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 3);
    let mut agents = Agents::start(&dir, 3);
    wait_for(Duration::from_secs(20), "3 alive", || {
        let rows = members(&dir, 1)?;
        if rows.iter().filter(|r| r["state"] == "alive").count() == 3 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    let cfg = |i: usize| dir.join(format!("node-{i}.toml"));

    // chaos partition: sent to every node; both sides see the other down.
    let out = shoal()
        .args(["chaos", "--config"])
        .arg(cfg(1))
        .args([
            "partition",
            "--a",
            "node-1",
            "--b",
            "node-2,node-3",
            "--ttl",
            "60s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(10), "partition seen", || {
        let a = members(&dir, 1)?;
        let b = members(&dir, 2)?;
        if state_of(&a, "node-2").as_deref() == Some("down")
            && state_of(&b, "node-1").as_deref() == Some("down")
        {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?}",
                state_of(&a, "node-2"),
                state_of(&b, "node-1")
            ))
        }
    });
    // The rules in force are visible on every node, with their TTL.
    let list = shoal()
        .args(["chaos", "--config"])
        .arg(cfg(3))
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert_eq!(text.matches("1 rule(s) in force").count(), 3, "{text}");
    assert!(text.contains("\"kind\":\"partition\""), "{text}");

    let out = shoal()
        .args(["chaos", "--config"])
        .arg(cfg(2))
        .arg("heal")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(20), "healed", || {
        let rows = members(&dir, 1)?;
        if rows.iter().filter(|r| r["state"] == "alive").count() == 3 {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });

    // A bad rule is refused with a clear error and a non-zero exit.
    let out = shoal()
        .args(["chaos", "--config"])
        .arg(cfg(1))
        .args(["drop", "--p", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("probability"));

    // leave: node-3 announces leaving, its agent exits 0, others show `left`.
    let out = shoal()
        .args(["leave", "--config"])
        .arg(cfg(3))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = agents.children[2].take().unwrap();
    let status = wait_for(Duration::from_secs(10), "agent exit", || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or("running".into())
    });
    assert_eq!(status.code(), Some(0));
    for i in 1..=2 {
        wait_for(Duration::from_secs(10), "left", || {
            let rows = members(&dir, i)?;
            match state_of(&rows, "node-3").as_deref() {
                Some("left") => Ok(()),
                s => Err(format!("{s:?}")),
            }
        });
    }
}

#[test]
fn init_refuses_a_non_empty_dir_and_agent_reports_bad_config() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("something"), "x").unwrap();
    let out = shoal()
        .args(["init", "--nodes", "3", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "name = 3\n").unwrap();
    let out = shoal()
        .args(["agent", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid TOML for shoal"));
}

/// rustls and quinn stay on ring: aws-lc must not enter the dependency tree.
#[test]
fn no_aws_lc_in_the_dependency_tree() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    for name in ["aws-lc-sys", "aws-lc-rs", "aws-lc-fips-sys"] {
        assert!(
            !lock.contains(&format!("name = \"{name}\"")),
            "{name} is in Cargo.lock"
        );
    }
    assert!(lock.contains("name = \"ring\""));
}

/// `shoal kv watch PREFIX --from REV` prints the history from REV, then
/// live changes, one line each: `REV PUT KEY VALUE` / `REV DELETE KEY`.
#[test]
fn kv_watch_prints_history_then_live_changes() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 3);
    let _agents = Agents::start(&dir, 3);
    wait_writable(&dir, 1);
    assert!(kv(&dir, 1, &["put", "w/a", "1"]).status.success());
    let out = kv(&dir, 1, &["get", "w/a", "--json"]);
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    let from = first["mod_rev"].as_u64().unwrap();
    let mut watch = shoal()
        .args(["kv", "--config"])
        .arg(dir.join("node-2.toml"))
        .args(["watch", "w/", "--from", &from.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a watch line")
    };
    assert_eq!(next(), format!("{from} PUT w/a 1"));
    assert!(kv(&dir, 3, &["put", "w/b", "two words"]).status.success());
    assert!(kv(&dir, 1, &["put", "other", "x"]).status.success());
    assert!(kv(&dir, 1, &["del", "w/a"]).status.success());
    let b = next();
    let (rev_b, rest) = b.split_once(' ').unwrap();
    assert_eq!(rest, "PUT w/b two words");
    let d = next();
    let (rev_d, rest) = d.split_once(' ').unwrap();
    assert_eq!(rest, "DELETE w/a");
    let (rev_b, rev_d): (u64, u64) = (rev_b.parse().unwrap(), rev_d.parse().unwrap());
    assert!(from < rev_b && rev_b < rev_d, "{from} {rev_b} {rev_d}");
    let _ = watch.kill();
    let _ = watch.wait();
}

/// `shoal sim --json` prints one object with the contract's fields, and
/// every pod Running (docs/CLI.md); its 300 nodes registered 300 distinct
/// pod CIDRs (the default range is a /12: 4,096 /24s).
#[test]
fn sim_json_reports_all_pods_running() {
    let out = shoal()
        .args([
            "sim",
            "--nodes",
            "300",
            "--pods",
            "200",
            "--deployments",
            "4",
            "--json",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "nodes",
        "pods",
        "pods_running",
        "seconds_to_all_running",
        "schedule_pods_per_s",
        "startup_p50_ms",
        "startup_p99_ms",
        "peak_rss_bytes",
    ] {
        assert!(v.get(field).is_some_and(Value::is_number), "{field} in {v}");
    }
    assert_eq!(
        (
            v["nodes"].as_u64(),
            v["pods"].as_u64(),
            v["pods_running"].as_u64()
        ),
        (Some(300), Some(200), Some(200))
    );
    assert_eq!(v["pod_cidrs"].as_u64(), Some(300), "{v}");
    assert!(v["schedule_pods_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["startup_p99_ms"].as_f64().unwrap() >= v["startup_p50_ms"].as_f64().unwrap());
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    // The timeline ends with every pod seen, bound and Running, and never
    // has more bound than seen or more Running than bound.
    let timeline = v["timeline"].as_array().expect("timeline");
    let rows: Vec<Vec<u64>> = timeline
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect()
        })
        .collect();
    assert!(rows.last().is_some_and(|r| r[2] == 200), "{v}");
    assert!(rows.iter().all(|r| r[0] >= r[1] && r[1] >= r[2]), "{v}");
}
