//! The test harness of shoal (a dev-only crate): [`TestCluster`], the
//! product's [`LocalCluster`] with the waits and observations that tests
//! use, simulated disks for power-loss tests ([`disk`]), and the wait and
//! seed helpers.
//!
//! Only the root package's integration tests (`tests/`) and benchmarks use
//! it: a library crate's own unit tests must not, since the harness depends
//! on that crate and the test would link two copies of it.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use shoal::config::NodeConfig;
use shoal::local::LocalCluster;
use shoal::membership::{MemberInfo, MemberState};
use shoal::node::NodeOptions;

pub mod disk;

pub use shoal::local::{cluster_configs, spawn_node, spawn_node_with, LocalNode as TestNode};
pub use shoal_fabric::testing::{seed, wait_for_blocking, wait_until, Timeout};

/// How long a test waits for its cluster's mesh to form (every node seeing
/// every other alive with an address): a precondition, not what any test
/// measures. It forms in under a second alone; in fresh-clone CI runs,
/// beside the other cluster tests on 2 cores, it twice took over 15 s.
pub const MESH: std::time::Duration = std::time::Duration::from_secs(60);

/// An in-process cluster for tests: a [`LocalCluster`] (every method of it
/// through `Deref`) whose nodes log to the test output under `SHOAL_LOG`.
pub struct TestCluster(LocalCluster);

/// In-process nodes run with the open-file limit an agent gets from a
/// default service manager, 1,024 (soft; the hard limit stays), as the
/// hostile-input tests ask: a test binary's nodes, all of them, must live
/// within it. Set once per test binary; `SHOAL_TEST_NOFILE` overrides.
fn service_manager_fd_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let want: libc::rlim_t = std::env::var("SHOAL_TEST_NOFILE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = want.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

impl Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.0
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.0
    }
}

impl TestCluster {
    /// Starts `n` nodes; node k seeds from the nodes before it.
    pub fn start(n: usize) -> anyhow::Result<TestCluster> {
        Self::start_with(n, |_| {})
    }

    pub fn start_with(n: usize, tweak: impl Fn(&mut NodeConfig)) -> anyhow::Result<TestCluster> {
        Self::start_with_options(n, tweak, |_| NodeOptions::default())
    }

    /// Starts `n` nodes with per-node start options (kept for restarts).
    pub fn start_with_options(
        n: usize,
        tweak: impl Fn(&mut NodeConfig),
        options: impl Fn(usize) -> NodeOptions,
    ) -> anyhow::Result<TestCluster> {
        let names: Vec<String> = (1..=n).map(shoal::config::node_name).collect();
        Self::start_named(&names, tweak, options)
    }

    /// Starts one node per name (node k is `names[k - 1]`).
    pub fn start_named(
        names: &[String],
        tweak: impl Fn(&mut NodeConfig),
        options: impl Fn(usize) -> NodeOptions,
    ) -> anyhow::Result<TestCluster> {
        service_manager_fd_limit();
        // SHOAL_LOG=<filter> shows the nodes' logs (with --nocapture).
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        LocalCluster::start_named(names, tweak, options).map(TestCluster)
    }

    /// Waits until node `ask` knows a store leader; returns its index.
    pub async fn wait_leader(&self, ask: usize) -> usize {
        let found = wait_until(Duration::from_secs(20), || async {
            let s = self.on(ask, |h| async move { h.store.status() }).await;
            s.leader
                .map(|_| ())
                .ok_or_else(|| format!("node {ask} knows no leader"))
        })
        .await;
        found.unwrap_or_else(|e| panic!("{e}"));
        let s = self.on(ask, |h| async move { h.store.status() }).await;
        let leader = s.leader.expect("a leader");
        self.index_of(&leader)
            .unwrap_or_else(|| panic!("the leader {leader:?} is not a node of this cluster"))
    }

    /// Node `i`'s membership view.
    pub async fn members(&self, i: usize) -> Vec<MemberInfo> {
        self.on(i, |h| async move {
            h.membership.members().await.unwrap_or_default()
        })
        .await
    }

    /// State of `name` as node `i` sees it.
    pub async fn state_seen(&self, i: usize, name: &str) -> Option<MemberState> {
        self.members(i)
            .await
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.state)
    }

    /// Waits until every running node sees every other running node alive
    /// with its QUIC address known (so actor calls can be routed).
    pub async fn wait_mesh(&self, deadline: Duration) -> Result<Duration, Timeout> {
        let running: Vec<usize> = (1..=self.len()).filter(|&i| self.is_running(i)).collect();
        wait_until(deadline, || async {
            for &i in &running {
                let members = self.members(i).await;
                for &j in &running {
                    let name = self.config(j).name.clone();
                    let ok = members.iter().any(|m| {
                        m.name == name && m.state == MemberState::Alive && m.quic.is_some()
                    });
                    if !ok {
                        return Err(format!(
                            "{} does not see {name} alive with an address yet",
                            self.config(i).name
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}
