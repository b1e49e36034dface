//! Deltas against the kernel: a seeded random sequence of Service and
//! endpoint changes is applied to nftables as deltas, through netlink as
//! the proxy sends them, in a throw-away network namespace. The table the
//! kernel then lists must equal the one `nft` builds afresh from the final
//! state (from libnftables JSON) in another namespace. Comparing the model
//! with itself would prove nothing; this compares what the kernel holds,
//! and the netlink encoding with nft's own. Needs root and `nft`; says
//! SKIPPED otherwise. Replay with `SHOAL_SEED`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::model::{Endpoint, Proto, ServicePort};
use crate::nft::{delta, full, Netlink, Nft};
use crate::rules::{base, services_part, NodeNet, Part};

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("shoal-nfttest-{}-{tag}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn can_run() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let nft = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && nft) {
        eprintln!("SKIPPED: needs root and nft (root {root}, nft {nft})");
    }
    root && nft
}

fn net() -> NodeNet {
    NodeNet {
        table: "shoal-7".into(),
        shards: 1,
        bridge: "shoal-7".into(),
        node_ip: Ipv4Addr::new(10, 88, 7, 1),
        pod_cidr: (Ipv4Addr::new(10, 88, 0, 0), 16),
        service_cidr: Some((Ipv4Addr::new(10, 96, 0, 0), 12)),
    }
}

/// A random version of Service `i` (each Service keeps its addresses and
/// ports, as allocation does; what changes is everything else).
fn random_service(rng: &mut StdRng, i: u8) -> Vec<ServicePort> {
    let node_port = rng.random_bool(0.5);
    let affinity = rng.random_bool(0.3).then(|| rng.random_range(1..20_000u32));
    let (ext, int) = (rng.random_bool(0.3), rng.random_bool(0.2));
    let pool: Vec<Endpoint> = (0..6u8)
        .map(|k| Endpoint {
            ip: Ipv4Addr::new(10, 88, k % 3, 10 + i * 8 + k),
            port: 8000 + u16::from(k % 2),
            local: k % 3 == 0,
        })
        .collect();
    let mut ports = Vec::new();
    for (p, proto) in [("http", Proto::Tcp), ("dns", Proto::Udp)] {
        if p == "dns" && rng.random_bool(0.5) {
            continue;
        }
        let mut endpoints: Vec<Endpoint> = pool
            .iter()
            .filter(|_| rng.random_bool(0.5))
            .cloned()
            .collect();
        endpoints.sort();
        ports.push(ServicePort {
            namespace: "default".into(),
            name: format!("svc-{i}"),
            port_name: p.into(),
            proto,
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 10 + i)),
            port: if proto == Proto::Tcp { 80 } else { 53 },
            node_port: node_port
                .then_some(30_000 + u16::from(i) * 2 + u16::from(proto == Proto::Udp)),
            external_local: ext,
            internal_local: int,
            affinity_secs: affinity,
            endpoints,
        });
    }
    ports
}

#[tokio::test]
async fn deltas_leave_the_kernel_table_a_fresh_build_would() {
    if !can_run() {
        return;
    }
    let seed = shoal_fabric::testing::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let net = net();
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let (nft_a, nft_b) = (Nft::in_netns(&a.0), Nft::in_netns(&b.0));
    let netlink_a = Netlink::in_netns(&a.0).expect("a netlink socket in the namespace");
    let base = base(&net);
    netlink_a
        .apply(&full(&net.table, [&base]))
        .await
        .expect("the base table");
    // Service i's committed part.
    let mut committed: BTreeMap<u8, Part> = BTreeMap::new();
    let mut commands = 0;
    for step in 0..60 {
        let i = rng.random_range(0..6u8);
        let new = if rng.random_bool(0.2) {
            Part::default()
        } else {
            services_part(&net, &random_service(&mut rng, i))
        };
        let old = committed.remove(&i).unwrap_or_default();
        let cmds = delta(&net.table, &old, &new);
        commands += cmds.len();
        if let Err(e) = netlink_a.apply(&cmds).await {
            let listing = nft_a.list_table(&net.table).await;
            let _ = std::fs::write(
                std::env::temp_dir().join("shoal-nft-failed.json"),
                format!("{cmds:#?}"),
            );
            let _ = std::fs::write(
                std::env::temp_dir().join("shoal-nft-before.json"),
                format!("{listing:?}"),
            );
            panic!("step {step} (seed {seed}): the delta for svc-{i} failed: {e}\n(commands in $TMPDIR/shoal-nft-failed.json)");
        }
        committed.insert(i, new);
    }
    let parts: Vec<&Part> = std::iter::once(&base).chain(committed.values()).collect();
    nft_b
        .apply(&full(&net.table, parts.iter().copied()))
        .await
        .expect("the fresh build");
    let want = nft_b.list_table(&net.table).await.unwrap();
    assert!(
        want["chains"].as_object().unwrap().len() > 11,
        "the fresh table has Service chains: {want:#}"
    );
    let got = nft_a.list_table(&net.table).await.unwrap();
    assert_same(seed, "the delta-built table", &got, &want);
    // The proxy's full build, over what the deltas left: the same again.
    netlink_a
        .apply(&full(&net.table, parts.iter().copied()))
        .await
        .expect("the full build through netlink");
    let got = nft_a.list_table(&net.table).await.unwrap();
    assert_same(seed, "the table built afresh through netlink", &got, &want);
    eprintln!(
        "{} chains, {} delta commands",
        want["chains"].as_object().unwrap().len(),
        commands
    );
}

/// Fails naming what differs between two canonical listings (the whole
/// listing is tens of kilobytes).
fn assert_same(seed: u64, what: &str, got: &serde_json::Value, want: &serde_json::Value) {
    let mut differ = Vec::new();
    for kind in ["chains", "maps", "sets"] {
        let (g, w) = (
            got[kind].as_object().unwrap(),
            want[kind].as_object().unwrap(),
        );
        for name in g
            .keys()
            .chain(w.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if g.get(name) != w.get(name) {
                differ.push(format!(
                    "{kind} {name}: got {:?}, fresh from nft {:?}",
                    g.get(name),
                    w.get(name)
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "seed {seed}: {what} differs:\n{}",
        differ.join("\n")
    );
}
