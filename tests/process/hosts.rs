//! A cluster across machines (as root): five agents, each in a network
//! namespace of its own (its own host) on a bridge, configured by `shoal
//! init --hosts`. They converge; the CLI and kubectl reach every node at
//! its address; nftables inside the leader's namespace cuts it off from
//! the others, leadership moves to the side holding the voter quorum, and
//! every acknowledged write is there, and on the old leader once healed.

use std::process::Output;

use super::*;

const BRIDGE: &str = "shhbr0";
const NET: &str = "10.251.0";

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn ok(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Five "hosts": network namespaces `shh-K` at 10.251.0.K on a bridge
/// (the test's own machine at .254). Removed on drop, with their agents.
struct Hosts {
    n: usize,
    agents: Vec<Option<Child>>,
}

impl Hosts {
    fn make(n: usize) -> Hosts {
        let h = Hosts {
            n,
            agents: Vec::new(),
        };
        h.remove();
        ok(&format!(
            "ip link add {BRIDGE} type bridge && ip addr add {NET}.254/24 dev {BRIDGE} && ip link set {BRIDGE} up"
        ));
        // Bridged traffic may pass the host's FORWARD chain (br_netfilter),
        // whose policy a Docker host sets to DROP: let the hosts talk.
        ok(&format!(
            "iptables -I FORWARD -i {BRIDGE} -o {BRIDGE} -j ACCEPT"
        ));
        for k in 1..=n {
            ok(&format!(
                "ip netns add shh-{k} && ip link add shhv{k} type veth peer name shhp{k} \
                 && ip link set shhp{k} netns shh-{k} && ip link set shhv{k} master {BRIDGE} up \
                 && ip netns exec shh-{k} ip addr add {NET}.{k}/24 dev shhp{k} \
                 && ip netns exec shh-{k} ip link set shhp{k} up \
                 && ip netns exec shh-{k} ip link set lo up"
            ));
        }
        h
    }

    fn remove(&self) {
        for k in 1..=self.n {
            let _ = sh(&format!("ip netns del shh-{k}; ip link del shhv{k}"));
        }
        let _ = sh(&format!("ip link del {BRIDGE}"));
        while sh(&format!(
            "iptables -D FORWARD -i {BRIDGE} -o {BRIDGE} -j ACCEPT"
        ))
        .status
        .success()
        {}
    }

    /// Starts node K's agent on host K.
    fn spawn(&mut self, dir: &Path, k: usize) {
        while self.agents.len() < k {
            self.agents.push(None);
        }
        let log = std::fs::File::create(dir.join(format!("node-{k}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("shh-{k}")])
            .arg(env!("CARGO_BIN_EXE_shoal"))
            .args(["agent", "--config"])
            .arg(dir.join(format!("node-{k}.toml")))
            .env("SHOAL_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents[k - 1] = Some(child);
    }

    /// Cuts host K off from every other host (nftables in its namespace).
    fn isolate(&self, k: usize) {
        ok(&format!(
            "ip netns exec shh-{k} nft -f - <<'EOF'\n\
             table inet shoaltest {{\n\
               chain in {{ type filter hook input priority 0; ip saddr {NET}.0/24 ip saddr != {NET}.254 drop; }}\n\
               chain out {{ type filter hook output priority 0; ip daddr {NET}.0/24 ip daddr != {NET}.254 drop; }}\n\
             }}\nEOF"
        ));
    }

    fn heal(&self, k: usize) {
        ok(&format!(
            "ip netns exec shh-{k} nft delete table inet shoaltest"
        ));
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in self.agents.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.remove();
    }
}

fn status(dir: &Path, k: usize) -> Result<Value, String> {
    let out = shoal()
        .args(["store", "status", "--json", "--config"])
        .arg(dir.join(format!("node-{k}.toml")))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn a_cluster_across_hosts_converges_is_reached_by_address_and_fails_over() {
    // SAFETY: geteuid(2) touches no memory.
    if unsafe { libc::geteuid() } != 0 || sh("command -v nft").stdout.is_empty() {
        eprintln!("SKIPPED: needs root and nft to make hosts of network namespaces");
        return;
    }
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let n = 5;
    let mut hosts = Hosts::make(n);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let addrs: Vec<String> = (1..=n).map(|k| format!("{NET}.{k}")).collect();
    let out = shoal()
        .args(["init", "--nodes", "5", "--hosts", &addrs.join(","), "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in 1..=n {
        let path = dir.join(format!("node-{k}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("api = \"{NET}.{k}:6443\"")),
            "{text}"
        );
        std::fs::write(
            &path,
            text.replace("runtime = \"process\"", "runtime = \"sim\""),
        )
        .unwrap();
        hosts.spawn(&dir, k);
    }

    // Converged: every node, asked at its own address, sees all five.
    for k in 1..=n {
        wait_for(
            Duration::from_secs(60),
            &format!("node-{k} sees five"),
            || {
                let rows = members(&dir, k)?;
                let alive = rows.iter().filter(|r| r["state"] == "alive").count();
                if alive == n {
                    Ok(())
                } else {
                    Err(format!("{alive} alive: {rows:?}"))
                }
            },
        );
    }
    // kubectl, one context a node, each at its node's address.
    if let Ok(kubectl) = std::env::var("SHOAL_KUBECTL") {
        for k in 1..=n {
            let out = wait_for(Duration::from_secs(30), "kubectl get nodes", || {
                let out = Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(dir.join("kubeconfig"))
                    .args([
                        "--context",
                        &format!("node-{k}"),
                        "get",
                        "nodes",
                        "-o",
                        "name",
                    ])
                    .output()
                    .map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.status.success() && text.lines().count() == n {
                    Ok(text)
                } else {
                    Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
                }
            });
            assert!(out.contains("node/node-5"), "{out}");
        }
    } else {
        eprintln!(
            "kubectl part SKIPPED: SHOAL_KUBECTL is not set (scripts/test.sh installs kubectl)"
        );
    }

    // Writes acknowledged before the partition.
    wait_writable(&dir, 1);
    for i in 0..10 {
        let out = kv(&dir, 1 + i % n, &["put", &format!("before/{i}"), "v"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let leader = wait_for(Duration::from_secs(30), "a leader", || {
        let s = status(&dir, 1)?;
        s["leader"].as_str().map(String::from).ok_or(format!("{s}"))
    });
    let old: usize = leader.trim_start_matches("node-").parse().unwrap();
    hosts.isolate(old);
    // The side with the voter quorum elects another leader and writes on.
    let others: Vec<usize> = (1..=n).filter(|k| *k != old).collect();
    let new = wait_for(
        Duration::from_secs(60),
        "a leader on the majority side",
        || {
            let s = status(&dir, others[0])?;
            match s["leader"].as_str() {
                Some(l) if l != leader => Ok(l.to_string()),
                other => Err(format!("leader {other:?}")),
            }
        },
    );
    eprintln!("leader moved from {leader} to {new}");
    let mut acked = Vec::new();
    for i in 0..10 {
        let k = others[i % others.len()];
        let out = kv(&dir, k, &["put", &format!("after/{i}"), "w"]);
        if out.status.success() {
            acked.push(i);
        }
    }
    assert!(!acked.is_empty(), "the majority side takes writes");
    for k in &others {
        for i in 0..10 {
            let out = kv(&dir, *k, &["get", &format!("before/{i}")]);
            assert!(
                String::from_utf8_lossy(&out.stdout).contains('v'),
                "node-{k} before/{i}"
            );
        }
    }
    // Healed: the old leader has everything acknowledged.
    hosts.heal(old);
    wait_for(Duration::from_secs(60), "the old leader caught up", || {
        for i in &acked {
            let out = kv(&dir, old, &["get", &format!("after/{i}")]);
            if !String::from_utf8_lossy(&out.stdout).contains('w') {
                return Err(format!("after/{i} missing on node-{old}"));
            }
        }
        Ok(())
    });
}
