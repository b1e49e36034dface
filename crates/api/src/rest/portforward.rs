//! `pods/portforward`, as kubectl 1.33 speaks it: SPDY/3.1 (`api::spdy`)
//! tunnelled through a WebSocket (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, raw frames in binary messages), or over
//! a plain `Upgrade: SPDY/3.1` connection, kubectl's fallback. Every local
//! connection of the client opens two streams, `error` and `data`, paired
//! by their `requestid` header; each pair becomes one connection that the
//! kubelet of the pod's node makes inside the pod (`PortForward`, a
//! subscription), its input following as ordered asks. The server ends
//! both streams of every pair (an error is text on the error stream).
//!
//! ```text
//! kubectl ══ WebSocket/SPDY ══ API node ── PortForward ──► kubelet@node ── TCP in the pod's netns
//!                               reader ─ per pair: output task (sub → DATA)
//!                                        └─ input task (DATA → SessionInput asks)
//! ```

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::*;
use crate::spdy::{self, Frame};
use crate::ApiErrorResponse;
use shoal_fabric::actor::ActorPath;
use shoal_kubelet_proto::{ForwardEvent, Input, PortForward, SessionInput, KUBELET};

/// The tunnelling subprotocol kubectl offers.
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol of a plain SPDY upgrade.
const PROTOCOL: &str = "portforward.k8s.io";
/// Input waiting for one connection's kubelet, at most.
const QUEUE: usize = 16;
/// Connections one port-forward session may have open, and streams
/// waiting for their pair (kubectl opens the error stream, then the data
/// stream): a client cannot make the API hold more.
pub(super) const MAX_CONNECTIONS: usize = 256;
pub(super) const MAX_HALF_OPEN: usize = 64;
/// How long one piece of input may wait for the pod to take it.
const INPUT_WAIT: Duration = Duration::from_secs(300);

pub(super) async fn portforward(kube: Arc<KubeApi>, t: Target, req: Request) -> Response {
    match prepare(&kube, &t, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Where the pod runs, checked before any upgrade.
struct Pod {
    namespace: String,
    name: String,
    node: String,
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn prepare(kube: &Arc<KubeApi>, t: &Target, req: Request) -> ApiResult<Response> {
    let key = t.res.key(t.ns.as_deref().unwrap_or(""), name_of(t));
    let pod = kube
        .cache
        .get(&key)
        .ok_or_else(|| ApiError::not_found(t.res, name_of(t)))?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: pod {} is not running on a node",
            name_of(t)
        )));
    }
    let pod = Pod {
        namespace: t.ns.clone().unwrap_or_default(),
        name: name_of(t).to_string(),
        node,
    };
    let upgrade = header(&req, "upgrade").to_ascii_lowercase();
    if upgrade.contains("websocket") {
        let offered = header(&req, "sec-websocket-protocol");
        if !offered.split(',').any(|p| p.trim() == TUNNEL) {
            return Err(ApiError::bad_request(format!(
                "unable to upgrade: no tunneling spdy protocols provided (pods/portforward speaks {TUNNEL})"
            )));
        }
        let (mut parts, _) = req.into_parts();
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("pods/portforward: {e}")))?;
        let kube = kube.clone();
        return Ok(ws.protocols([TUNNEL]).on_upgrade(move |socket| async move {
            let (mut tx, mut rx) = socket.split();
            let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
            let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
            // Binary messages are a byte stream (a frame may span several);
            // a text message is not SPDY, and ends it.
            let reader = tokio::spawn(async move {
                while let Some(Ok(m)) = rx.next().await {
                    match m {
                        Message::Binary(b) if in_tx.send(b.to_vec()).await.is_err() => {
                            return;
                        }
                        Message::Text(_) | Message::Close(_) => return,
                        _ => {}
                    }
                }
            });
            // One frame, one message.
            let writer = tokio::spawn(async move {
                while let Some(frame) = out_rx.recv().await {
                    if tx.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Message::Close(None)).await;
            });
            session(kube, pod, in_rx, out_tx).await;
            reader.abort();
            let _ = writer.await;
        }));
    }
    if upgrade.contains("spdy/3.1") {
        let versions = header(&req, "x-stream-protocol-version");
        if !versions.split(',').any(|p| p.trim() == PROTOCOL) {
            let mut r = ApiError::new(
                403,
                "Forbidden",
                format!("unable to upgrade: the stream protocol must be {PROTOCOL}"),
            )
            .into_response();
            r.headers_mut().insert(
                "X-Accepted-Stream-Protocol-Versions",
                HeaderValue::from_static(PROTOCOL),
            );
            return Ok(r);
        }
        let kube = kube.clone();
        let mut req = req;
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on.await else { return };
            let io = hyper_util::rt::TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(io);
            let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
            let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 || in_tx.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
            });
            let writer = tokio::spawn(async move {
                while let Some(frame) = out_rx.recv().await {
                    if w.write_all(&frame).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
                let _ = w.shutdown().await;
            });
            session(kube, pod, in_rx, out_tx).await;
            reader.abort();
            let _ = writer.await;
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", PROTOCOL)
            .body(Body::empty())
            .unwrap_or_default());
    }
    Err(ApiError::bad_request(format!(
        "pods/portforward needs an upgrade: a WebSocket ({TUNNEL}) or SPDY/3.1"
    )))
}

/// A connection being set up: its two streams as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
}

/// A running connection, by its data stream.
struct Running {
    input: mpsc::Sender<Input>,
    error: u32,
    task: tokio::task::JoinHandle<()>,
}

/// The SPDY session of one port-forward: frames from `incoming` bytes,
/// frames out through `out` (in order), until the client goes away or
/// says GOAWAY. Every connection still running then closes.
async fn session(
    kube: Arc<KubeApi>,
    pod: Pod,
    mut incoming: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let pod = Arc::new(pod);
    let mut reader = spdy::Reader::default();
    let mut writer = spdy::Writer::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut last_stream = 0;
    'session: while let Some(bytes) = incoming.recv().await {
        reader.push(&bytes);
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("port-forward to {}: {e}", pod.name);
                    let _ = out
                        .send(spdy::goaway(last_stream, spdy::PROTOCOL_ERROR))
                        .await;
                    break 'session;
                }
            };
            let sent = match frame {
                Frame::SynStream { id, headers, .. } => {
                    last_stream = id;
                    match stream_of(&headers) {
                        Err(why) => {
                            tracing::debug!("port-forward to {}: stream {id}: {why}", pod.name);
                            out.send(spdy::rst(id, spdy::CANCEL)).await
                        }
                        Ok((_, _, request))
                            if !pairs.contains_key(&request)
                                && (pairs.len() >= MAX_HALF_OPEN
                                    || running.len() >= MAX_CONNECTIONS) =>
                        {
                            tracing::debug!(
                                "port-forward to {}: stream {id} refused: {} open, {} half-open",
                                pod.name,
                                running.len(),
                                pairs.len()
                            );
                            out.send(spdy::rst(id, spdy::CANCEL)).await
                        }
                        Ok((kind, port, request)) => {
                            let sent = out.send(writer.syn_reply(id)).await;
                            let pair = pairs.entry(request.clone()).or_default();
                            match kind {
                                Kind::Error => pair.error = Some(id),
                                Kind::Data => pair.data = Some(id),
                            }
                            if let (Some(error), Some(data)) = (pair.error, pair.data) {
                                pairs.remove(&request);
                                let (input, rx) = mpsc::channel(QUEUE);
                                let task = tokio::spawn(connection(
                                    kube.clone(),
                                    pod.clone(),
                                    port,
                                    (error, data),
                                    rx,
                                    out.clone(),
                                ));
                                running.insert(data, Running { input, error, task });
                            }
                            sent
                        }
                    }
                }
                Frame::Data { id, flags, data } => {
                    if let Some(r) = running.get(&id) {
                        let mut ok = true;
                        if !data.is_empty() {
                            ok = r
                                .input
                                .send(Input::Stdin(serde_bytes::ByteBuf::from(data)))
                                .await
                                .is_ok();
                        }
                        if ok && flags & spdy::FLAG_FIN != 0 {
                            let _ = r.input.send(Input::CloseStdin).await;
                        }
                    }
                    // The error stream's FIN (the client never writes on
                    // it) and data for streams gone: nothing to do.
                    Ok(())
                }
                Frame::RstStream { id, .. } => match running.remove(&id) {
                    // The client gave up on the connection: it still waits
                    // for the end of the error stream.
                    Some(r) => {
                        r.task.abort();
                        out.send(spdy::data(r.error, true, &[])).await
                    }
                    None => Ok(()),
                },
                Frame::Ping(id) => out.send(spdy::ping(id)).await,
                Frame::GoAway => break 'session,
                Frame::Ignored => Ok(()),
            };
            if sent.is_err() {
                break 'session;
            }
            running.retain(|_, r| !r.task.is_finished());
        }
    }
    for (_, r) in running {
        r.task.abort();
    }
}

enum Kind {
    Error,
    Data,
}

/// A stream's type, port and request id, from its headers (names are
/// lowercase on the wire; compared without case all the same).
fn stream_of(headers: &[(String, String)]) -> Result<(Kind, u16, String), String> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let kind = match get("streamtype") {
        Some("error") => Kind::Error,
        Some("data") => Kind::Data,
        other => return Err(format!("invalid stream type {other:?}")),
    };
    let port = get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {:?}", get("port")))?;
    let request = get("requestid").unwrap_or("").to_string();
    Ok((kind, port, request))
}

/// One forwarded connection: the kubelet connects inside the pod; what it
/// sends back goes out on the data stream; the client's bytes go to it in
/// order. Both streams are ended at the end (an error as text first).
async fn connection(
    kube: Arc<KubeApi>,
    pod: Arc<Pod>,
    port: u16,
    (error, data): (u32, u32),
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let to = ActorPath::new(KUBELET, &pod.node);
    let session = shoal_fabric::pki::random_hex(16);
    let req = PortForward {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        port,
        session: session.clone(),
    };
    match kube.actors.subscribe(&to, req, kube.timeout).await {
        Err(e) => {
            let why = format!(
                "error forwarding port {port} to pod {}: no kubelet answers on node {:?}: {e}",
                pod.name, pod.node
            );
            let _ = out.send(spdy::data(error, false, why.as_bytes())).await;
        }
        Ok(mut sub) => {
            let actors = kube.actors.clone();
            let pump = tokio::spawn(async move {
                let mut forward = true;
                while let Some(i) = input.recv().await {
                    // A connection that no longer takes input: the rest
                    // is dropped (the reader must never wait on it).
                    if forward {
                        let ask = SessionInput {
                            session: session.clone(),
                            input: i,
                        };
                        forward = matches!(actors.ask(&to, ask, INPUT_WAIT).await, Ok(Ok(())));
                    }
                }
            });
            loop {
                let sent = match sub.next().await {
                    Ok(ForwardEvent::Data(b)) => out.send(spdy::data(data, false, &b)).await,
                    Ok(ForwardEvent::Error(why)) => {
                        out.send(spdy::data(error, false, why.as_bytes())).await
                    }
                    Err(_) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
            pump.abort();
        }
    }
    let _ = out.send(spdy::data(data, true, &[])).await;
    let _ = out.send(spdy::data(error, true, &[])).await;
}
