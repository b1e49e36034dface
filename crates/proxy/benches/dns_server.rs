//! The cluster DNS alone, for `scripts/bench-dns.sh`: a zone of N
//! ClusterIP Services (`svc-<i>.default.svc.cluster.local`, addresses
//! 10.96.x.y) served on the given address until killed. Prints `READY`
//! once it answers.
//!
//!     cargo bench -p shoal-proxy --bench dns_server -- 127.0.0.1:5300 10000

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Service;
use shoal_proxy::dns::{serve, Dns, DnsMetrics, Zone};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let at: SocketAddr = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| "127.0.0.1:5300".parse().unwrap());
    let n: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut zone = Zone::new("cluster.local");
    for i in 0..n {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i);
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": format!("svc-{i}")},
            "spec": {"clusterIP": ip.to_string(), "ports": [{"name": "http", "port": 80}]},
        }))
        .unwrap();
        zone.set("default", &format!("svc-{i}"), Some(&svc), []);
    }
    // One thread: the server is measured on the one core it is pinned to.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dns = Dns::new(Arc::new(RwLock::new(zone)), &[], DnsMetrics::default());
        let bound = serve(dns, at).await.expect("bind");
        println!("READY {bound} ({n} Services)");
        std::future::pending::<()>().await;
    });
}
