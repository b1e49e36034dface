//! `shoal init`: a new cluster directory.
//!
//! Refuses a non-empty directory. Writes the CA, node certificates, the admin
//! token, the gossip key, `node-K.toml` for K in 1..=N and a `kubeconfig`
//! with one context per node: loopback addresses and distinct free ports,
//! or (`--hosts`) each node at its own host's address on the well-known
//! ports, its certificate naming that address; a data dir per node, zones
//! round-robin, and every other node as a peer. Copying `node-K/`, the
//! cluster files and `node-K.toml` to host K and running `shoal agent
//! --config node-K.toml` there is all a machine needs.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::{
    self, Auth, Capacity, Gossip, Listen, NodeConfig, Peer, StoreConfig, Tls, Transport,
};

pub struct InitOptions {
    pub nodes: usize,
    pub zones: Vec<String>,
    /// Node K's host address, for clusters that span machines (empty: all
    /// on loopback).
    pub hosts: Vec<IpAddr>,
    /// How many of the nodes, the last ones, are worker-only.
    pub workers: usize,
}

/// The ports of a node on its own host (`--hosts`): the API on upstream's
/// 6443, QUIC on 7443 and gossip on Serf's 7946; a second node on the same
/// host takes the next of each.
pub const HOST_PORTS: (u16, u16, u16) = (6443, 7443, 7946);

pub fn run(out: &Path, opts: &InitOptions) -> anyhow::Result<()> {
    let cfgs = init_cluster(out, opts)?;
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
    if !opts.hosts.is_empty() && opts.hosts.len() != opts.nodes {
        bail!(
            "--hosts names {} addresses for {} nodes: give one a node",
            opts.hosts.len(),
            opts.nodes
        );
    }
    if let Some(bad) = opts
        .hosts
        .iter()
        .find(|h| h.is_unspecified() || h.is_multicast())
    {
        bail!("--hosts: {bad} is not an address a node can be reached at");
    }
    if opts.workers >= opts.nodes {
        bail!(
            "--workers {} of {} nodes leaves no node to hold the store and serve the API",
            opts.workers,
            opts.nodes
        );
    }
    let servers = opts.nodes - opts.workers;
    let roles_of = |i: usize| {
        if i <= servers {
            vec![config::Role::Api, config::Role::Store, config::Role::Worker]
        } else {
            vec![config::Role::Worker]
        }
    };
    // The CA key, the admin token and the other keys live here.
    crate::private::dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cluster_id = format!("shoal-{}", crate::pki::random_hex(6));
    let certs: Vec<crate::pki::NodeToIssue> = (1..=opts.nodes)
        .map(|i| crate::pki::NodeToIssue {
            name: config::node_name(i),
            ips: opts.hosts.get(i - 1).copied().into_iter().collect(),
            roles: roles_of(i)
                .iter()
                .filter_map(|r| crate::actor::Roles::named(r.as_str()))
                .fold(crate::actor::Roles::NONE, |a, r| a | r),
        })
        .collect();
    let token = crate::pki::write_cluster_files_for(out, &cluster_id, &certs)?;

    let mut listens = Vec::new();
    if opts.hosts.is_empty() {
        let mut taken = HashSet::new();
        let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..opts.nodes {
            listens.push(Listen {
                quic: lo(free_port(&mut taken, true)?),
                gossip: lo(free_port(&mut taken, true)?),
                api: lo(free_port(&mut taken, false)?),
                advertise: None,
            });
        }
    } else {
        let mut on_host: HashMap<IpAddr, u16> = HashMap::new();
        for host in &opts.hosts {
            let k = on_host.entry(*host).or_default();
            let (api, quic, gossip) = HOST_PORTS;
            listens.push(Listen {
                quic: SocketAddr::new(*host, quic + *k),
                gossip: SocketAddr::new(*host, gossip + *k),
                api: SocketAddr::new(*host, api + *k),
                advertise: None,
            });
            *k += 1;
        }
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
            roles: roles_of(i),
            region: "local".into(),
            zone: zones[(i - 1) % zones.len()].clone(),
            worker_threads: 2,
            listen: listens[i - 1].clone(),
            tls: Tls {
                ca: PathBuf::from("ca.pem"),
                cert: PathBuf::from(format!("{name}/cert.pem")),
                key: PathBuf::from(format!("{name}/key.pem")),
            },
            // A worker-only node checks tokens against the digest and
            // never reads admin.token (nor secrets.key): its host needs
            // neither file.
            auth: Auth {
                admin_token_file: PathBuf::from("admin.token"),
                admin_token_sha256_file: (i > servers).then(|| PathBuf::from("admin.token.sha256")),
            },
            peers,
            gossip: Gossip {
                key_file: PathBuf::from("gossip.key"),
                ..Gossip::default()
            },
            transport: Transport::default(),
            capacity: Capacity::default(),
            store: StoreConfig {
                initial_voters: (1..=servers.min(3)).map(config::node_name).collect(),
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
    // kubectl: one context per node, at its address; it holds the admin
    // token, so private.
    let kube = super::dev::kubeconfig(out, &cfgs, &token);
    crate::private::write(&out.join("kubeconfig"), &serde_json::to_vec_pretty(&kube)?)
        .with_context(|| format!("cannot write {}", out.join("kubeconfig").display()))?;
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
                hosts: Vec::new(),
                workers: 0,
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
                hosts: Vec::new(),
                workers: 0,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    /// `--hosts`: each node binds and advertises its own host's address on
    /// the well-known ports (the next ones for a second node on a host),
    /// its certificate names that address, and the kubeconfig has a
    /// context per node at its address.
    #[test]
    fn hosts_give_each_node_its_own_address_and_certificate() {
        use rustls::pki_types::pem::PemObject;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let hosts: Vec<IpAddr> = ["10.250.0.1", "10.250.0.2", "10.250.0.2"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
        let cfgs = init_cluster(
            &dir,
            &InitOptions {
                nodes: 3,
                zones: vec!["a".into()],
                hosts: hosts.clone(),
                workers: 0,
            },
        )
        .unwrap();
        assert_eq!(cfgs[0].listen.api, "10.250.0.1:6443".parse().unwrap());
        assert_eq!(cfgs[1].listen.quic, "10.250.0.2:7443".parse().unwrap());
        assert_eq!(cfgs[2].listen.gossip, "10.250.0.2:7947".parse().unwrap());
        assert_eq!(
            cfgs[0].peers[0].api,
            Some("10.250.0.2:6443".parse().unwrap())
        );
        for (c, host) in cfgs.iter().zip(&hosts) {
            let pem = std::fs::read(&c.tls.cert).unwrap();
            let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
            let cert = webpki::EndEntityCert::try_from(&der).unwrap();
            let ip = rustls::pki_types::ServerName::IpAddress((*host).into());
            assert!(cert.verify_is_valid_for_subject_name(&ip).is_ok(), "{host}");
            let other = rustls::pki_types::ServerName::IpAddress(
                "10.250.0.9".parse::<IpAddr>().unwrap().into(),
            );
            assert!(cert.verify_is_valid_for_subject_name(&other).is_err());
        }
        let kube: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("kubeconfig")).unwrap()).unwrap();
        assert_eq!(
            kube["clusters"][1]["cluster"]["server"],
            "https://10.250.0.2:6443"
        );
        let err = init_cluster(
            &tmp.path().join("d"),
            &InitOptions {
                nodes: 2,
                zones: vec!["a".into()],
                hosts: hosts[..1].to_vec(),
                workers: 0,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("one a node"), "{err}");
    }

    #[test]
    fn worker_only_nodes_are_certified_as_workers_and_get_no_token() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("w");
        let cfgs = init_cluster(
            &dir,
            &InitOptions {
                nodes: 4,
                zones: vec!["a".into()],
                hosts: Vec::new(),
                workers: 2,
            },
        )
        .unwrap();
        use rustls::pki_types::pem::PemObject;
        let roles_of = |c: &NodeConfig| {
            let pem = std::fs::read(&c.tls.cert).unwrap();
            let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
            crate::actor::Roles::of_certificate(&der)
        };
        assert_eq!(roles_of(&cfgs[1]), crate::actor::Roles::ALL);
        assert_eq!(roles_of(&cfgs[3]), crate::actor::Roles::WORKER);
        assert_eq!(cfgs[3].roles, vec![config::Role::Worker]);
        assert_eq!(cfgs[0].store.initial_voters, ["node-1", "node-2"]);
        // The worker checks tokens against the digest of the real one.
        assert!(cfgs[1].auth.admin_token_sha256_file.is_none());
        let digest =
            std::fs::read_to_string(cfgs[3].auth.admin_token_sha256_file.as_ref().unwrap())
                .unwrap();
        let token = crate::pki::read_token(&dir.join("admin.token")).unwrap();
        let digest = crate::api::TokenDigest::from_hex(&digest).unwrap();
        assert!(digest.matches(&token));
        assert!(!digest.matches("not-the-token"));
        let err = init_cluster(
            &tmp.path().join("x"),
            &InitOptions {
                nodes: 2,
                zones: vec!["a".into()],
                hosts: Vec::new(),
                workers: 2,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--workers"), "{err}");
    }
}
