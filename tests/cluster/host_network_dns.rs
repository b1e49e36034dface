//! What the cluster DNS gives without pod sandboxes (no root, or
//! `kubelet.network = host`, as every in-process cluster runs): no
//! ClusterIP routing and no per-pod resolv.conf, but each node's DNS
//! answers on its own address at `kubelet.dns_port` (a high port), fed
//! from the same pushed Services and EndpointSlices.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::TokioResolver;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::json;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn resolver(port: u16) -> TokioResolver {
    let group =
        NameServerConfigGroup::from_ips_clear(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], port, true);
    let mut opts = ResolverOpts::default();
    opts.ndots = 0;
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(1);
    TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), group),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sandboxes_dns_answers_on_a_high_port() {
    // A port nothing else holds (the race with another binder is
    // harmless: the node would log and retry).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = TestCluster::start_with(1, |cfg| cfg.kubelet.dns_port = port).unwrap();
    let k = api_ready(&c, 1).await;
    let svcs: Api<Service> = Api::default_namespaced(k.clone());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap();
    let made = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let ip: Ipv4Addr = made.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
    let dns = resolver(port);
    wait_until(Duration::from_secs(30), || async {
        let got: Vec<Ipv4Addr> = dns
            .lookup("web.default.svc.cluster.local.", RecordType::A)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|r| r.as_a().map(|a| a.0))
            .collect();
        if got == [ip] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .expect("the Service's name answers on the high port");
    let srv = dns
        .lookup("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(
        srv.iter()
            .filter_map(|r| r.as_srv().map(|s| s.port()))
            .collect::<Vec<_>>(),
        [80]
    );
    let missing = dns
        .lookup("nope.default.svc.cluster.local.", RecordType::A)
        .await
        .unwrap_err();
    assert!(missing.is_nx_domain(), "{missing}");
    // kube-system/kube-dns names the node's listener.
    let slices: Api<EndpointSlice> = Api::namespaced(k, "kube-system");
    wait_until(Duration::from_secs(30), || async {
        let list = slices
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let found = list.items.iter().any(|s| {
            s.ports
                .iter()
                .flatten()
                .any(|p| p.port == Some(i32::from(port)))
                && s.endpoints.iter().any(|e| e.addresses == ["127.0.0.1"])
        });
        if found {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                list.items
                    .iter()
                    .map(|s| &s.metadata.name)
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await
    .expect("kube-dns's slice names the node's DNS");
}
