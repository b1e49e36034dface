//! The docker runtime's metrics, named as the kubelet's for its runtime
//! calls (`kubelet_runtime_operations_duration_seconds` and
//! `kubelet_runtime_operations_errors_total` by `operation_type` there;
//! `shoal_` in front here). Operations: `run_podsandbox` (all of a pod's
//! sandbox), its phases `create_sandbox_container`, `start_sandbox_container`
//! and `set_up_pod_network` (CNI), then `pull_image`, `create_container`
//! and `start_container`: what a pod's start-up spends its time on.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

type Labels = Vec<(&'static str, String)>;

fn buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The runtime's operation timings and errors (cheap to clone).
#[derive(Clone)]
pub struct DockerMetrics {
    pub operations: Family<Labels, Histogram, fn() -> Histogram>,
    pub errors: Family<Labels, Counter>,
}

impl Default for DockerMetrics {
    fn default() -> Self {
        DockerMetrics {
            operations: Family::new_with_constructor(buckets),
            errors: Family::default(),
        }
    }
}

impl DockerMetrics {
    pub fn register(&self, m: &shoal_fabric::metrics::Metrics) {
        m.register(
            "kubelet_runtime_operations_duration_seconds",
            "Duration of the docker runtime's operations, by operation_type",
            self.operations.clone(),
        );
        m.register(
            "kubelet_runtime_operations_errors",
            "Failed operations of the docker runtime, by operation_type",
            self.errors.clone(),
        );
    }

    /// Records one operation of `kind` that took `took` (and failed, if
    /// `failed`).
    pub fn observe(&self, kind: &'static str, took: Duration, failed: bool) {
        let labels = vec![("operation_type", kind.to_string())];
        self.operations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// Times `op` as an operation of `kind`.
    pub async fn time<T, E>(
        &self,
        kind: &'static str,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let began = std::time::Instant::now();
        let out = op.await;
        self.observe(kind, began.elapsed(), out.is_err());
        out
    }
}
