//! Rule programming at scale (issue 21's benchmark): in a throw-away
//! network namespace, builds a node's table with N Services (two
//! endpoints each, every fourth a NodePort) in one transaction — the full
//! resync — then adds one more Service as a delta, R times, and reports
//! the medians. kube-proxy's nftables mode takes 141 ms to add one
//! Service to 10,000 (kubernetes PR #126013). Needs root and `nft`.
//!
//!     cargo bench -p shoal-proxy --bench rule_programming -- [N] [R] [SHARDS]
//!
//! `SHOAL_BENCH_NODES=K` first builds K-1 other nodes' tables in the same
//! namespace, as `shoal dev`'s nodes share one kernel.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use shoal_proxy::model::{Endpoint, Proto, ServicePort};
use shoal_proxy::nft::{delta, full, Netlink, Nft};
use shoal_proxy::rules::{base, service_part, NodeNet, Part};

fn service(i: u32) -> ServicePort {
    let ip = |base: u32| Ipv4Addr::from(base + i);
    ServicePort {
        namespace: "bench".into(),
        name: format!("svc-{i}"),
        port_name: "http".into(),
        proto: Proto::Tcp,
        cluster_ip: Some(ip(u32::from(Ipv4Addr::new(10, 96, 0, 0)))),
        port: 80,
        node_port: i.is_multiple_of(4).then(|| 30_000 + (i / 4 % 2_700) as u16),
        external_local: false,
        internal_local: false,
        affinity_secs: None,
        endpoints: vec![
            Endpoint {
                ip: ip(u32::from(Ipv4Addr::new(10, 80, 0, 0))),
                port: 8080,
                local: true,
            },
            Endpoint {
                ip: ip(u32::from(Ipv4Addr::new(10, 81, 0, 0))),
                port: 8080,
                local: false,
            },
        ],
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(21);
    let shards: u32 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(shoal_proxy::rules::DEFAULT_SHARDS);
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root (a network namespace and nft)");
        return;
    }
    let ns = format!("shoal-nftbench-{}", std::process::id());
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &ns])
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "ip netns add");
    // SHOAL_BENCH_NFT=1 sends the transactions through `nft -j -f -`
    // instead of netlink, for comparison.
    let via_nft = std::env::var_os("SHOAL_BENCH_NFT").is_some();
    let (nft, netlink) = (Nft::in_netns(&ns), Netlink::in_netns(&ns).expect("netlink"));
    let apply = |ops: Vec<shoal_proxy::nft::Op>| {
        let (nft, netlink) = (&nft, &netlink);
        async move {
            if via_nft {
                nft.apply(&ops).await
            } else {
                netlink.apply(&ops).await
            }
        }
    };
    // `shoal dev` nodes share one kernel: SHOAL_BENCH_NODES=K builds K
    // nodes' tables (all with the same Services) before measuring node 0.
    let nodes: u32 = std::env::var("SHOAL_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let node_net = |k: u32| NodeNet {
        table: format!("shoal-{k}"),
        shards,
        bridge: format!("shoal-{k}"),
        node_ip: Ipv4Addr::new(10, 88, k as u8, 1),
        pod_cidr: (Ipv4Addr::new(10, 80, 0, 0), 12),
        service_cidr: Some((Ipv4Addr::new(10, 96, 0, 0), 12)),
    };
    for k in (1..nodes).rev() {
        let other = node_net(k);
        let base = base(&other);
        for s in 0..shards {
            let mine: Vec<Part> = (0..n)
                .filter(|i| other.shard_of("bench", &format!("svc-{i}")) == s)
                .map(|i| service_part(&other, &service(i)))
                .collect();
            let cmds = full(&other.shard_table(s), std::iter::once(&base).chain(&mine));
            apply(cmds).await.expect("other node's build");
        }
    }
    let net = node_net(0);
    let base = base(&net);
    let parts: Vec<(u32, Part)> = (0..n)
        .map(|i| {
            (
                net.shard_of("bench", &format!("svc-{i}")),
                service_part(&net, &service(i)),
            )
        })
        .collect();
    let mut fulls = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut cmds = Vec::new();
        for k in 0..shards {
            let mine = parts.iter().filter(|(s, _)| *s == k).map(|(_, p)| p);
            cmds.extend(full(
                &net.shard_table(k),
                std::iter::once(&base).chain(mine),
            ));
        }
        apply(cmds).await.expect("full build");
        fulls.push(start.elapsed());
    }
    let mut adds = Vec::new();
    for r in 0..rounds {
        let new = service_part(&net, &service(n + r));
        let start = Instant::now();
        let table = net.shard_table(net.shard_of("bench", &format!("svc-{}", n + r)));
        let cmds = delta(&table, &Part::default(), &new);
        apply(cmds).await.expect("delta");
        adds.push(start.elapsed());
    }
    if std::env::var_os("SHOAL_BENCH_KEEP").is_some() {
        eprintln!("kept network namespace {ns}");
    } else {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
    }
    println!(
        "services {n} in {shards} shards ({nodes} nodes' tables in the kernel, via {}): full build median {:?} (of {:?}); add one Service median {:?} (min {:?}, max {:?}, {rounds} rounds)",
        if via_nft { "nft" } else { "netlink" },
        median(fulls.clone()),
        fulls,
        median(adds.clone()),
        adds.iter().min().unwrap(),
        adds.iter().max().unwrap(),
    );
}
