//! The `[store]` section of the node config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The replicated store (Raft + redb).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The nodes that form the first Raft configuration (`shoal init`
    /// writes the first 3). The first of them initializes the cluster.
    pub initial_voters: Vec<String>,
    /// redb page cache per database, in MiB.
    pub cache_mb: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Log entries kept behind the newest snapshot (the rest are purged).
    pub logs_to_keep: u64,
    /// Revisions of history kept before automatic compaction.
    pub history_revisions: u64,
    /// And the history younger than this is kept too (like kube-apiserver's
    /// 5-minute compaction interval), so that a LIST in pages is not
    /// expired mid-way by a burst of writes.
    pub history_min_age_ms: u64,
    /// The state machine is made durable at most this often (like etcd's
    /// backend batch interval); the fsynced Raft log replays what a crash
    /// lost. 0 makes every apply durable.
    pub apply_sync_ms: u64,
    /// Budget of one client write or read, forwarding included.
    pub request_timeout_ms: u64,
    /// Voters autopilot keeps when there are enough healthy nodes.
    pub voters: usize,
    /// A voter SWIM shows `down` this long is replaced (never shorter than
    /// a snapshot transfer or the gossip suspicion timeout).
    pub autopilot_down_after_ms: u64,
    /// 32-byte key (hex) sealing values under `/registry/secrets/`.
    pub secrets_key_file: PathBuf,
    /// A replica that has heard from no leader this long ends its watches
    /// with `LeaderLost` (it may be on a minority side). Several election
    /// timeouts, so that an ordinary election, which a replica of the
    /// majority sits through, ends no watch.
    pub watch_leaderless_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            initial_voters: Vec::new(),
            cache_mb: 64,
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every: 10_000,
            logs_to_keep: 1_000,
            history_revisions: 10_000,
            history_min_age_ms: 300_000,
            apply_sync_ms: 500,
            request_timeout_ms: 5_000,
            voters: 3,
            autopilot_down_after_ms: 30_000,
            secrets_key_file: PathBuf::from("secrets.key"),
            watch_leaderless_ms: 5_000,
        }
    }
}
