//! Per-node Prometheus metrics (prometheus-client), served at `/metrics`.
//!
//! Each node owns its own registry: several nodes in one test process never
//! share counters. Components receive a cheap clone of [`Metrics`].

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub envelopes_sent: Family<Labels, Counter>,
    pub envelopes_received: Family<Labels, Counter>,
    pub envelopes_rejected: Family<Labels, Counter>,
    pub fault_drops: Family<Labels, Counter>,
    pub handshake_failures: Counter,
    pub gossip_packets_sent: Counter,
    pub gossip_packets_received: Counter,
    pub gossip_packets_rejected: Family<Labels, Counter>,
    pub members: Family<Labels, Gauge>,
}

impl Metrics {
    pub fn new(node: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "shoal",
            [("node".into(), node.to_string().into())].into_iter(),
        );
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            envelopes_sent: Family::default(),
            envelopes_received: Family::default(),
            envelopes_rejected: Family::default(),
            fault_drops: Family::default(),
            handshake_failures: Counter::default(),
            gossip_packets_sent: Counter::default(),
            gossip_packets_received: Counter::default(),
            gossip_packets_rejected: Family::default(),
            members: Family::default(),
        };
        registry.register(
            "envelopes_sent",
            "Envelopes sent, by kind",
            m.envelopes_sent.clone(),
        );
        registry.register(
            "envelopes_received",
            "Envelopes received, by kind",
            m.envelopes_received.clone(),
        );
        registry.register(
            "envelopes_rejected",
            "Inbound envelopes or frames refused, by reason",
            m.envelopes_rejected.clone(),
        );
        registry.register(
            "fault_drops",
            "Traffic dropped by fault injection, by path",
            m.fault_drops.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "QUIC handshakes that failed (bad certificate, garbage)",
            m.handshake_failures.clone(),
        );
        registry.register(
            "gossip_packets_sent",
            "SWIM packets sent",
            m.gossip_packets_sent.clone(),
        );
        registry.register(
            "gossip_packets_received",
            "SWIM packets accepted",
            m.gossip_packets_received.clone(),
        );
        registry.register(
            "gossip_packets_rejected",
            "SWIM packets refused, by reason",
            m.gossip_packets_rejected.clone(),
        );
        registry.register(
            "members",
            "Members in this node's view, by state",
            m.members.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = registry;
        m
    }

    /// The Prometheus text exposition of every metric of this node.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }

    /// Registers a component's own metric (named without the `shoal_`
    /// prefix, which the registry adds, as it adds the `node` label).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.register(name, help, metric);
    }

    pub fn label(key: &'static str, value: impl Into<String>) -> Labels {
        vec![(key, value.into())]
    }
}
