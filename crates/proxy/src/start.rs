//! Starting a node's proxy once its kubelet registered the node (its
//! slot names its tables and bridge, its address is where NodePorts
//! answer): the DNS listener (on the bridge gateway with sandboxes, on
//! the node's address without), then
//! the loop that feeds the rules and the zone.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use shoal_model::podcidr::PodSlot;
use shoal_store::Store;

use crate::dns::{self, Dns, DnsMetrics, Zone};
use crate::nft::Netlink;
use crate::proxy::{Proxy, ProxyMetrics, Status};
use crate::rules::{NodeNet, DEFAULT_SHARDS};

/// What a node's proxy needs before the node is registered.
pub struct ProxyStart {
    pub store: Store,
    pub node: String,
    /// The cluster's pod range.
    pub pod_cidr: (Ipv4Addr, u8),
    /// The cluster's Service range (`api.service_cidr`).
    pub service_cidr: Option<(Ipv4Addr, u8)>,
    /// Pods have sandboxes: rules are programmed and DNS listens on the
    /// node's address. Without, only the EndpointSlices' consumers run.
    pub sandboxed: bool,
    pub cluster_domain: String,
    /// Where names outside the cluster go (empty: the host's resolvers).
    pub upstreams: Vec<SocketAddr>,
    /// The DNS port (see `kubelet.dns_port`).
    pub dns_port: u16,
    pub metrics: ProxyMetrics,
    pub dns_metrics: DnsMetrics,
    pub status: Arc<Mutex<Status>>,
}

impl ProxyStart {
    /// Runs the node's proxy (and DNS) for `slot`, the node at `node_ip`.
    pub async fn run(self, slot: PodSlot, node_ip: Ipv4Addr) {
        let bridge = format!("shoal-{}", slot.index);
        let zone = Arc::new(RwLock::new(Zone::new(&self.cluster_domain)));
        // With sandboxes pods' resolv.conf names their bridge gateway (see
        // shoal_kubelet::process::dns), the node's address in `shoal dev`;
        // without, clients ask the node's own address on `dns_port`.
        let gateway = Ipv4Addr::from(u32::from(slot.network()) + 1);
        let listen = if self.sandboxed { gateway } else { node_ip };
        let addr = SocketAddr::new(listen.into(), self.dns_port);
        let upstreams = if self.upstreams.is_empty() {
            dns::host_resolvers(listen.into())
        } else {
            self.upstreams.clone()
        };
        let (zone2, metrics, node, status, store) = (
            zone.clone(),
            self.dns_metrics.clone(),
            self.node.clone(),
            self.status.clone(),
            self.store.clone(),
        );
        tokio::spawn(async move {
            if addr.port() == 0 {
                return; // kubelet.dns_port = 0: no DNS on this node
            }
            // The address may come up after the node starts (a bridge
            // being made): try again, saying why now and then.
            for attempt in 0u32.. {
                let handler = Dns::new(zone2.clone(), &upstreams, metrics.clone());
                match dns::serve(handler, addr).await {
                    Ok(at) => {
                        tracing::info!(%node, "cluster DNS on {at} (forwarding to {upstreams:?})");
                        status.lock().unwrap_or_else(|p| p.into_inner()).dns = Some(at.to_string());
                        let at = at.to_string();
                        shoal_model::announce::announce(
                            &store,
                            &node,
                            shoal_model::announce::DNS_ADDRESS,
                            &at,
                        )
                        .await;
                        return;
                    }
                    Err(e) if attempt % 30 == 0 => {
                        tracing::error!(%node, "cluster DNS on {addr}: {e} (kubelet.dns_port)");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Proxy {
            store: self.store,
            node: self.node,
            net: NodeNet {
                table: bridge.clone(),
                shards: DEFAULT_SHARDS,
                bridge,
                node_ip,
                pod_cidr: self.pod_cidr,
                service_cidr: self.service_cidr,
            },
            nft: self.sandboxed.then(Netlink::host).and_then(|n| {
                n.inspect_err(|e| {
                    tracing::error!(
                        "proxy: no netlink socket to nf_tables, so no ClusterIP routing: {e}"
                    )
                })
                .ok()
            }),
            zone,
            metrics: self.metrics,
            status: self.status,
        }
        .run()
        .await
    }
}
