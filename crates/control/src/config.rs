//! The `[control_plane]` section of the node config.

use serde::{Deserialize, Serialize};

use crate::scheduler::framework::ScoringStrategy;

/// The scheduler and controllers (run on the store leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneConfig {
    /// How long pods stay on a node found unreachable (membership `down`
    /// and its kubelet silent) before they are evicted, unless they
    /// tolerate it for another time. Never below the suspicion timeout.
    pub eviction_toleration_ms: u64,
    /// Evictions per second, cluster-wide.
    pub evictions_per_second: f64,
    /// `LeastAllocated` (spread, the default) or `MostAllocated` (bin packing).
    pub scoring: ScoringStrategy,
    /// Share of feasible nodes to find before scoring (0: adaptive, as
    /// kube-scheduler's percentageOfNodesToScore).
    pub percentage_of_nodes_to_score: u32,
    /// Concurrent reconciles per controller.
    pub workers: usize,
    /// How long an Event is kept after its last occurrence (upstream's
    /// `--event-ttl`, 1 hour).
    pub event_ttl_secs: u64,
    /// Whether the scheduler and controllers record Events.
    pub events: bool,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            eviction_toleration_ms: 2_000,
            evictions_per_second: 200.0,
            scoring: ScoringStrategy::LeastAllocated,
            percentage_of_nodes_to_score: 0,
            workers: 4,
            event_ttl_secs: 3600,
            events: true,
        }
    }
}
