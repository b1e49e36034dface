//! The `pods/log` protocol between the API and the kubelet actor of the
//! pod's node: the API asks `kubelet@<node>` over the actor transport
//! (no extra HTTP hop) and answers kubectl with the text.

use serde::{Deserialize, Serialize};

use crate::actor::{Message, RemoteMessage, RemoteSubscription};

/// The kubelet actor's name on every worker node.
pub const KUBELET: &str = "kubelet";

/// The logs of one container of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodLogs {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// Only the last lines (kubectl's `--tail`).
    pub tail_lines: Option<u64>,
    /// The previous instance of the container.
    pub previous: bool,
    /// Each line with its RFC 3339 time first (kubectl's `--timestamps`).
    #[serde(default)]
    pub timestamps: bool,
}

impl Message for PodLogs {
    /// The text, or why there is none (a 400 for kubectl).
    type Reply = Result<String, String>;
}

impl RemoteMessage for PodLogs {
    const TAG: &'static str = "shoal.kubelet.logs/1";
}

/// `kubectl logs -f`: the text so far (as [`PodLogs`] asks), then each
/// new piece as the container writes it, until the container ends or the
/// subscriber goes away. A stream that ends before its first piece says
/// why there are no logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowLogs(pub PodLogs);

impl RemoteSubscription for FollowLogs {
    const TAG: &'static str = "shoal.kubelet.logs-follow/1";
    type Event = String;
}

/// `kubectl exec` (without stdin or a terminal): runs `command` in the
/// container's namespaces, streaming its output and then its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub command: Vec<String>,
}

/// What an exec streams back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecEvent {
    Stdout(serde_bytes::ByteBuf),
    Stderr(serde_bytes::ByteBuf),
    /// The command's exit code (the last event).
    Exit(i32),
}

impl RemoteSubscription for Exec {
    const TAG: &'static str = "shoal.kubelet.exec/1";
    type Event = ExecEvent;
}
