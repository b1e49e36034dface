//! `shoal init`: a new cluster directory.
//!
//! Refuses a non-empty directory. Writes the CA, node certificates, the admin
//! token, the gossip key and `node-K.toml` for K in 1..=N: loopback
//! addresses, distinct free ports, a data dir per node, zones round-robin,
//! and every other node as a peer.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::{
    self, Auth, Capacity, Gossip, Listen, NodeConfig, Peer, StoreConfig, Tls, Transport,
};

pub struct InitOptions {
    pub nodes: usize,
    pub zones: Vec<String>,
}

pub fn run(out: &Path, nodes: usize, zones: &[String]) -> anyhow::Result<()> {
    let cfgs = init_cluster(
        out,
        &InitOptions {
            nodes,
            zones: zones.to_vec(),
        },
    )?;
    println!(
        "initialized cluster {} with {} nodes in {}",
        cfgs[0].cluster_id,
        cfgs.len(),
        out.display()
    );
    for c in &cfgs {
        println!(
            "  {}  zone={}  api=https://{}  config={}",
            c.name,
            c.zone,
            c.listen.api,
            out.join(format!("{}.toml", c.name)).display()
        );
    }
    Ok(())
}

fn free_port(taken: &mut HashSet<u16>, udp: bool) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = if udp {
            UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()
        } else {
            TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
        };
        if taken.insert(port) {
            return Ok(port);
        }
    }
    bail!("could not find a free port")
}

/// Creates the cluster directory; returns the node configs (paths resolved).
pub fn init_cluster(out: &Path, opts: &InitOptions) -> anyhow::Result<Vec<NodeConfig>> {
    if opts.nodes == 0 || opts.nodes > 1000 {
        bail!("--nodes must be between 1 and 1000");
    }
    let zones: Vec<String> = opts
        .zones
        .iter()
        .map(|z| z.trim().to_string())
        .filter(|z| !z.is_empty())
        .collect();
    if zones.is_empty() {
        bail!("--zones needs at least one zone");
    }
    if out.exists() {
        let mut entries =
            std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; refusing to overwrite a cluster directory",
                out.display()
            );
        }
    }
    // The CA key, the admin token and the other keys live here.
    crate::private::dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cluster_id = format!("shoal-{}", crate::pki::random_hex(6));
    crate::pki::write_cluster_files(out, &cluster_id, opts.nodes)?;

    let mut taken = HashSet::new();
    let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mut listens = Vec::new();
    for _ in 0..opts.nodes {
        listens.push(Listen {
            quic: lo(free_port(&mut taken, true)?),
            gossip: lo(free_port(&mut taken, true)?),
            api: lo(free_port(&mut taken, false)?),
        });
    }
    let mut cfgs = Vec::new();
    for i in 1..=opts.nodes {
        let name = config::node_name(i);
        let peers = (1..=opts.nodes)
            .filter(|&j| j != i)
            .map(|j| Peer {
                name: config::node_name(j),
                gossip: listens[j - 1].gossip,
                quic: listens[j - 1].quic,
                api: Some(listens[j - 1].api),
            })
            .collect();
        let cfg = NodeConfig {
            cluster_id: cluster_id.clone(),
            name: name.clone(),
            data_dir: PathBuf::from(format!("{name}/data")),
            roles: vec![config::Role::Api, config::Role::Store, config::Role::Worker],
            region: "local".into(),
            zone: zones[(i - 1) % zones.len()].clone(),
            worker_threads: 2,
            listen: listens[i - 1].clone(),
            tls: Tls {
                ca: PathBuf::from("ca.pem"),
                cert: PathBuf::from(format!("{name}/cert.pem")),
                key: PathBuf::from(format!("{name}/key.pem")),
            },
            auth: Auth {
                admin_token_file: PathBuf::from("admin.token"),
            },
            peers,
            gossip: Gossip {
                key_file: PathBuf::from("gossip.key"),
                ..Gossip::default()
            },
            transport: Transport::default(),
            capacity: Capacity::default(),
            store: StoreConfig {
                initial_voters: (1..=opts.nodes.min(3)).map(config::node_name).collect(),
                ..StoreConfig::default()
            },
            api: config::KubeApiConfig::default(),
            control_plane: config::ControlPlaneConfig::default(),
            kubelet: config::KubeletConfig::default(),
        };
        let text = format!(
            "# shoal node config, written by `shoal init`. Paths are relative to this file.\n{}",
            toml::to_string(&cfg)?
        );
        let path = out.join(format!("{name}.toml"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        cfgs.push(NodeConfig::load(&path)?);
    }
    Ok(cfgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_everything_and_refuses_a_non_empty_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let cfgs = init_cluster(
            &dir,
            &InitOptions {
                nodes: 4,
                zones: vec!["x".into(), "y".into()],
            },
        )
        .unwrap();
        for f in [
            "ca.pem",
            "ca.key",
            "admin.token",
            "gossip.key",
            "node-1.toml",
            "node-4.toml",
            "node-3/cert.pem",
            "node-3/key.pem",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
        assert_eq!(
            cfgs.iter().map(|c| c.zone.as_str()).collect::<Vec<_>>(),
            ["x", "y", "x", "y"]
        );
        let mut ports = HashSet::new();
        for c in &cfgs {
            assert!(c.listen.api.ip().is_loopback());
            for p in [
                c.listen.api.port(),
                c.listen.quic.port(),
                c.listen.gossip.port(),
            ] {
                assert!(ports.insert(p), "port {p} reused");
            }
            assert_eq!(c.peers.len(), 3);
            assert!(c.data_dir.ends_with(format!("{}/data", c.name)));
        }
        assert_eq!(cfgs[0].cluster_id, cfgs[3].cluster_id);
        let err = init_cluster(
            &dir,
            &InitOptions {
                nodes: 1,
                zones: vec!["a".into()],
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }
}
