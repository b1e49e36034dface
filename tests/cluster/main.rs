//! Tier 2: in-process clusters on loopback, one test binary.
//!
//! Every node is a real node (QUIC, mutual TLS, foca over AEAD UDP, HTTPS),
//! each on its own thread and runtime; see `shoal_harness`.

mod adoption;
mod authorization;
mod autopilot;
mod bad_input;
mod client_limits;
mod control_plane;
mod cronjobs;
mod daemons;
mod disruption;
mod endpoints;
mod host_network_dns;
mod ingress;
mod kube_api;
mod kube_watch;
mod linearizable;
mod list_pages;
mod log_limits;
mod membership;
mod node_lifecycle;
mod node_names;
mod power_loss;
mod process_runtime;
mod reads;
mod registry;
mod security;
mod singleton;
mod statefulsets;
mod storage;
mod store;
mod transport;
mod watch;
mod workers;
mod workloads;

use std::time::Duration;

use shoal::membership::MemberState;
use shoal_harness::{wait_until, TestCluster, Timeout};

/// Held by the tests that assert a time bound (leader loss, pods moving
/// off a dead node), so two of them never load the machine at once: the
/// tests run two at a time on 2 cores, and one 5-node cluster beside
/// another timing run is enough to push a 2 s bound over.
pub async fn timing_guard() -> tokio::sync::MutexGuard<'static, ()> {
    static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TIMING.lock().await
}

/// Waits until `get` answers Ok within `secs`, or panics naming `what`
/// and the last reason.
pub async fn until<F, Fut>(what: &str, secs: u64, get: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    wait_until(Duration::from_secs(secs), get)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Waits until every running node in `nodes` sees `name` in `state`.
pub async fn all_see(
    c: &TestCluster,
    nodes: &[usize],
    name: &str,
    state: MemberState,
    deadline: Duration,
) -> Result<Duration, Timeout> {
    wait_until(deadline, || async {
        for &i in nodes {
            let s = c.state_seen(i, name).await;
            if s != Some(state) {
                return Err(format!("node-{i} sees {name} as {s:?}, want {state:?}"));
            }
        }
        Ok(())
    })
    .await
}

/// Waits until each of `nodes` sees exactly `n` members alive.
pub async fn converge(
    c: &TestCluster,
    nodes: &[usize],
    n: usize,
    deadline: Duration,
) -> Result<Duration, Timeout> {
    wait_until(deadline, || async {
        for &i in nodes {
            let alive = c
                .members(i)
                .await
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count();
            if alive != n {
                return Err(format!("node-{i} sees {alive} alive, want {n}"));
            }
        }
        Ok(())
    })
    .await
}
