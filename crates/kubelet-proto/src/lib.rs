//! The kubelet actor's wire protocol, between the API (and the control
//! plane) and `kubelet@<node>`: `pods/log` and followed logs, `exec`,
//! `port-forward` and the input of their sessions, and the node-lifecycle
//! controller's `Ping`. The API asks over the actor transport (no extra
//! HTTP hop). This crate sits below both the API and the kubelet, so
//! neither depends on the other.

use serde::{Deserialize, Serialize};

use shoal_fabric::actor::{Message, RemoteMessage, RemoteSubscription};

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
    /// As a [`FollowLogs`] subscription: go on with what the container
    /// writes (`-f`); without it the stream ends with the file's end.
    #[serde(default)]
    pub follow: bool,
}

impl Message for PodLogs {
    /// The text, or why there is none (a 400 for kubectl).
    type Reply = Result<String, String>;
}

impl RemoteMessage for PodLogs {
    const TAG: &'static str = "shoal.kubelet.logs/1";
}

/// `kubectl logs [-f]`: the text so far (as [`PodLogs`] asks), in pieces
/// of at most [`MAX_LOG_PIECE`] bytes, then (with `follow`) each new piece
/// as the container writes it, until the container ends or the subscriber
/// goes away. A stream that ends before its first piece says why there are
/// no logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowLogs(pub PodLogs);

/// The largest piece of log text in one event (well under a frame).
pub const MAX_LOG_PIECE: usize = 1024 * 1024;

impl RemoteSubscription for FollowLogs {
    const TAG: &'static str = "shoal.kubelet.logs-follow/1";
    type Event = String;
}

/// `kubectl exec`: runs `command` in the container's namespaces,
/// streaming its output and then its exit code. With `stdin` or `tty`,
/// the API sends the client's input as [`SessionInput`] asks naming
/// `session`, in order, while the stream runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub command: Vec<String>,
    /// The command reads the client's stdin (`kubectl exec -i`).
    pub stdin: bool,
    /// The command runs on a terminal (`kubectl exec -t`): its output
    /// comes as stdout alone, and resizes follow the client's.
    pub tty: bool,
    /// Names the exec for its [`SessionInput`]s (random, from the API).
    pub session: String,
    /// `kubectl attach`: no command; the container's own process's
    /// stdio (its stdin when it keeps one open, `stdin: true` in its spec).
    #[serde(default)]
    pub attach: bool,
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
    const TAG: &'static str = "shoal.kubelet.exec/2";
    type Event = ExecEvent;
}

/// The client's side of a running exec (or port-forward connection), in
/// the order it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    Stdin(serde_bytes::ByteBuf),
    /// The client's stdin ended.
    CloseStdin,
    /// The client's terminal changed size (columns, rows).
    Resize {
        width: u16,
        height: u16,
    },
}

/// One [`Input`] for the exec or port-forward connection named `session`;
/// answered once the other side has room for it (backpressure), or with
/// why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInput {
    pub session: String,
    pub input: Input,
}

impl Message for SessionInput {
    type Reply = Result<(), String>;
}

impl RemoteMessage for SessionInput {
    const TAG: &'static str = "shoal.kubelet.session-input/1";
}

/// `kubectl port-forward`: one connection to `port` of the pod, opened by
/// the kubelet inside the pod's network namespace; what the pod sends
/// streams back, and what the client sends follows as [`SessionInput`]s
/// naming `session` (`Input::Stdin` its bytes, `Input::CloseStdin` its end).
/// The stream ends when both sides have ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    pub session: String,
}

/// What a port-forward connection streams back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardEvent {
    /// Bytes the pod sent.
    Data(serde_bytes::ByteBuf),
    /// Why there is no connection (the last event).
    Error(String),
}

impl RemoteSubscription for PortForward {
    const TAG: &'static str = "shoal.kubelet.port-forward/1";
    type Event = ForwardEvent;
}

/// "Are you there?": the node-lifecycle controller asks the kubelet
/// directly before it believes membership that a node is down. The reply
/// is the node's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping;

impl Message for Ping {
    type Reply = String;
}

impl RemoteMessage for Ping {
    const TAG: &'static str = "shoal.kubelet.ping/1";
}
