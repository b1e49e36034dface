//! The host side of a node's sandboxes: checking and preparing the host
//! once at start (the pod CIDR against host routes, Docker-proof accept
//! and masquerade rules, the bridge with its gateway before any pod,
//! what dead pods left), and removing the bridge (and the service proxy's
//! tables) when a cluster is torn down.

use std::path::Path;

use serde_json::Value;

use super::{run, Net, Sandboxes, NETNS_DIR};

impl Sandboxes {
    pub(super) async fn prepare_host(&self, keep: &[String]) -> Result<(), String> {
        let routes = run("ip", &["-j", "-4", "route", "show"]).await?;
        let routes: Vec<Value> = serde_json::from_str(&routes).unwrap_or_default();
        for r in &routes {
            let dst = r.get("dst").and_then(Value::as_str).unwrap_or("");
            let dev = r.get("dev").and_then(Value::as_str).unwrap_or("");
            if dst == "default" || dev.starts_with("shoal-") {
                continue;
            }
            if let Ok(net) = Net::parse(dst) {
                if net.overlaps(&self.cidr) {
                    return Err(format!(
                        "kubelet.pod_cidr {} overlaps the host route {dst} dev {dev}; choose another (--pod-cidr)",
                        self.cidr
                    ));
                }
            }
        }
        let cidr = self.cidr.to_string();
        // Docker's FORWARD policy drops; it leaves DOCKER-USER for rules
        // of others, and re-inserts its own jumps above anything put in
        // FORWARD itself when it restarts.
        let forward = if run(
            "iptables",
            &["-w", "-t", "filter", "-n", "-L", "DOCKER-USER"],
        )
        .await
        .is_ok()
        {
            "DOCKER-USER"
        } else {
            "FORWARD"
        };
        let rules: [(&str, &str, Vec<&str>); 3] = [
            ("filter", forward, vec!["-s", &cidr, "-j", "ACCEPT"]),
            ("filter", forward, vec!["-d", &cidr, "-j", "ACCEPT"]),
            (
                "nat",
                "POSTROUTING",
                vec!["-s", &cidr, "!", "-d", &cidr, "-j", "MASQUERADE"],
            ),
        ];
        for (table, chain, rule) in rules {
            let mut check = vec!["-w", "-t", table, "-C", chain];
            check.extend(&rule);
            if run("iptables", &check).await.is_err() {
                let mut add = vec!["-w", "-t", table, "-I", chain, "1"];
                add.extend(&rule);
                run("iptables", &add).await?;
            }
        }
        self.ensure_bridge().await?;
        // IPAM records of pods that are gone.
        let dir = self.ipam_dir.join(self.bridge());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.parse::<std::net::Ipv4Addr>().is_err() {
                    continue;
                }
                let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
                let id = owner.lines().next().unwrap_or("").trim();
                if !keep.iter().any(|k| k == id) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // Namespaces (and with them their veths) of pods that are gone.
        let prefix = format!("shoal-{}-", self.node);
        if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(uid) = name.strip_prefix(&prefix) {
                    if !keep.iter().any(|k| k == uid) {
                        self.destroy(uid).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The node's bridge with its gateway address, up, before any pod
    /// exists: the node's address (the gateway, its InternalIP in
    /// `shoal dev`) answers NodePorts from the start. The CNI bridge
    /// plugin takes it as it finds it.
    async fn ensure_bridge(&self) -> Result<(), String> {
        let bridge = self.bridge();
        if !Path::new("/sys/class/net").join(&bridge).exists() {
            run("ip", &["link", "add", &bridge, "type", "bridge"]).await?;
        }
        let gateway = format!("{}/{}", self.subnet.addr(1), self.subnet.prefix);
        let have = run("ip", &["-4", "-o", "addr", "show", "dev", &bridge]).await?;
        if !have.contains(&format!("inet {gateway} ")) {
            run("ip", &["addr", "add", &gateway, "dev", &bridge]).await?;
        }
        run("ip", &["link", "set", &bridge, "up"]).await?;
        Ok(())
    }

    /// The node's address when it is its bridge gateway (`shoal dev`).
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.subnet.addr(1)
    }

    /// Removes the node's bridge when no pod is left on it (a cluster torn
    /// down whole), and the service proxy's table of the node with it.
    pub async fn remove_bridge(&self) {
        let bridge = self.bridge();
        if let Err(e) = remove_tables(&bridge).await {
            tracing::warn!("removing the service proxy's tables of {bridge}: {e}");
        }
        let dev = Path::new("/sys/class/net").join(&bridge);
        let ports = std::fs::read_dir(dev.join("brif")).map_or(0, |d| d.count());
        if dev.exists() && ports == 0 {
            if let Err(e) = run("ip", &["link", "del", &bridge]).await {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Deletes the service proxy's tables of `bridge` — named as the bridge,
/// one per shard (`ip <bridge>-<k>`, see shoal_proxy::rules::NodeNet) — in
/// one netlink batch. (An `nft delete table` each lists the ruleset first:
/// at 10,000 Services in another cluster on the host, seconds per table.)
async fn remove_tables(bridge: &str) -> Result<(), String> {
    use nlink::netlink::nftables::Family;
    use nlink::netlink::{Connection, Nftables};
    let conn = Connection::<Nftables>::new().map_err(|e| e.to_string())?;
    let tables = conn
        .list_tables_in(Family::Ip)
        .await
        .map_err(|e| e.to_string())?;
    let mut tx = conn.transaction();
    let mut any = false;
    for t in &tables {
        let shard = t
            .name
            .strip_prefix(bridge)
            .and_then(|r| r.strip_prefix('-'));
        if shard.is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit())) {
            tx = tx.del_table(&t.name, Family::Ip);
            any = true;
        }
    }
    if any {
        tx.commit(&conn).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
