//! The Ingress controller's metrics, named as ingress-nginx's
//! (`nginx_ingress_controller_*` there, `shoal_ingress_controller_*` here).

use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::routes::Backend;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct IngressMetrics {
    /// By `ingress`, `namespace`, `service` and `status`.
    pub requests: Family<Labels, Counter>,
    pub request_duration: Histogram,
    pub retries: Counter,
    pub connections: Gauge,
    pub refused_connections: Counter,
    pub last_reload: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub reloads: Counter,
}

impl Default for IngressMetrics {
    fn default() -> Self {
        IngressMetrics {
            requests: Family::default(),
            request_duration: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            retries: Counter::default(),
            connections: Gauge::default(),
            refused_connections: Counter::default(),
            last_reload: Gauge::default(),
            reloads: Counter::default(),
        }
    }
}

impl IngressMetrics {
    pub fn register(&self, m: &shoal_fabric::metrics::Metrics) {
        m.register(
            "ingress_controller_requests",
            "Client requests, by Ingress, Service and status",
            self.requests.clone(),
        );
        m.register(
            "ingress_controller_request_duration_seconds",
            "Time from a request's head to the response's head",
            self.request_duration.clone(),
        );
        m.register(
            "ingress_controller_upstream_retries",
            "Requests sent to another endpoint after a failed connect",
            self.retries.clone(),
        );
        m.register(
            "ingress_controller_connections",
            "Open client connections",
            self.connections.clone(),
        );
        m.register(
            "ingress_controller_refused_connections",
            "Client connections closed at accept, over the limit",
            self.refused_connections.clone(),
        );
        m.register(
            "ingress_controller_config_last_reload_successful_timestamp_seconds",
            "When the routing table was last swapped (Unix seconds)",
            self.last_reload.clone(),
        );
        m.register(
            "ingress_controller_success",
            "Routing tables swapped in",
            self.reloads.clone(),
        );
    }

    /// Counts one request's answer.
    pub fn count(&self, backend: Option<&Backend>, status: u16, start: Instant) {
        self.request_duration.observe(start.elapsed().as_secs_f64());
        let labels = |status: u16| {
            let (ingress, namespace, service) = backend.map_or_else(Default::default, |b| {
                (b.ingress.clone(), b.namespace.clone(), b.service.clone())
            });
            vec![
                ("ingress", ingress),
                ("namespace", namespace),
                ("service", service),
                ("status", status.to_string()),
            ]
        };
        match backend {
            Some(b) if status == 200 => {
                b.ok.get_or_init(|| self.requests.get_or_create(&labels(200)).clone())
                    .inc()
            }
            _ => self.requests.get_or_create(&labels(status)).inc(),
        };
    }
}
