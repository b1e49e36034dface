//! `pods/exec` and `pods/attach` over WebSocket (`v5.channel.k8s.io`, and `v4`), as kubectl
//! 1.30+ speaks it: the command's stdout and stderr arrive as binary
//! messages on channels 1 and 2, its end as a Status on channel 3. The
//! client's stdin comes on channel 0, terminal resizes on channel 4
//! (`{"Width":…,"Height":…}`), and in v5 the end of its stdin as channel
//! 255 naming stream 0. The command runs on the pod's node, asked of
//! `kubelet@<node>` as a subscription; the input follows it there as
//! ordered asks, one at a time, each answered when the command's side has
//! room (backpressure reaches the client through the WebSocket).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;

use futures::{SinkExt, StreamExt};

use super::*;
use crate::ApiErrorResponse;
use shoal_kubelet_proto::{Exec, ExecEvent, Input, SessionInput};

/// The subprotocols spoken, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub(super) async fn exec(kube: Arc<KubeApi>, t: Target, req: Request) -> Response {
    match prepare(&kube, &t, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn prepare(kube: &Arc<KubeApi>, t: &Target, req: Request) -> ApiResult<Response> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    let one = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let on = |k: &str| matches!(one(k), Some("true" | "1"));
    let attach = t.sub.as_deref() == Some("attach");
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() && !attach {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let key = t.res.key(t.ns.as_deref().unwrap_or(""), name_of(t));
    let pod = kube
        .cache
        .get(&key)
        .ok_or_else(|| ApiError::not_found(t.res, name_of(t)))?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let container = match one("container") {
        Some(c) => c.to_string(),
        // kubectl names the first container when there are several.
        None => containers.first().cloned().unwrap_or_default(),
    };
    if !containers.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {}",
            name_of(t)
        )));
    }
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let running = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| s["name"] == container.as_str() && s["state"].get("running").is_some());
    if node.is_empty() || !running {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container {container} not found in pod {}",
            name_of(t)
        )));
    }
    let (mut parts, _) = req.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| {
            ApiError::bad_request(format!(
                "pods/exec and pods/attach are served over WebSocket ({}): {e}",
                PROTOCOLS.join(", ")
            ))
        })?;
    let request = Exec {
        namespace: t.ns.clone().unwrap_or_default(),
        pod: name_of(t).to_string(),
        container,
        command,
        stdin: on("stdin"),
        tty: on("tty"),
        session: shoal_fabric::pki::random_hex(16),
        attach,
    };
    let kube = kube.clone();
    Ok(ws
        .protocols(PROTOCOLS)
        .on_upgrade(move |socket| relay(kube, node, request, socket)))
}

/// A Status on the error channel, as upstream ends an exec.
fn status(code: Option<i32>, message: &str) -> Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(c) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {c}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": c.to_string()}]},
        }),
        None => {
            json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
        }
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(channel);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

/// How long one piece of input may wait for the command to take it.
const INPUT_WAIT: Duration = Duration::from_secs(300);

/// The most stdin one message to the kubelet carries: a client's larger
/// websocket message goes in pieces, in order (one message of it could
/// pass the transport's frame limit and hang the command).
pub(super) const STDIN_PIECE: usize = 256 * 1024;

/// `input` as the messages that carry it to the kubelet.
fn pieces(input: Input) -> Vec<Input> {
    match input {
        Input::Stdin(data) if data.len() > STDIN_PIECE => data
            .chunks(STDIN_PIECE)
            .map(|c| Input::Stdin(serde_bytes::ByteBuf::from(c.to_vec())))
            .collect(),
        other => vec![other],
    }
}

/// What a client's binary message asks, if anything.
fn input_of(message: &[u8]) -> Option<Input> {
    let (&channel, data) = message.split_first()?;
    match channel {
        0 => Some(Input::Stdin(serde_bytes::ByteBuf::from(data.to_vec()))),
        4 => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            let s: Size = serde_json::from_slice(data).ok()?;
            Some(Input::Resize {
                width: s.width,
                height: s.height,
            })
        }
        // v5: the client closed one of its streams; only stdin is its own.
        255 if data.first() == Some(&0) => Some(Input::CloseStdin),
        _ => None,
    }
}

async fn relay(kube: Arc<KubeApi>, node: String, req: Exec, socket: WebSocket) {
    let to = shoal_fabric::actor::ActorPath::new(shoal_kubelet_proto::KUBELET, &node);
    let (mut tx, mut rx) = socket.split();
    let session = req.session.clone();
    let takes_input = req.stdin || req.tty;
    let end = match kube.actors.subscribe(&to, req, kube.timeout).await {
        Err(e) => status(None, &format!("no kubelet answers on node {node:?}: {e}")),
        Ok(mut sub) => {
            // The client's side: its input goes to the kubelet in order; the
            // pump ends when the client closes (or goes away).
            let actors = kube.actors.clone();
            let mut pump = tokio::spawn(async move {
                let mut forward = takes_input;
                while let Some(Ok(m)) = rx.next().await {
                    let input = match m {
                        Message::Close(_) => return,
                        Message::Binary(b) if forward => input_of(&b),
                        _ => None,
                    };
                    let Some(input) = input else { continue };
                    for input in pieces(input) {
                        let ask = SessionInput {
                            session: session.clone(),
                            input,
                        };
                        // A command that no longer takes input: the rest
                        // is dropped while its output is still to come.
                        if !matches!(actors.ask(&to, ask, INPUT_WAIT).await, Ok(Ok(()))) {
                            forward = false;
                            break;
                        }
                    }
                }
            });
            let end = loop {
                let msg = tokio::select! {
                    e = sub.next() => e,
                    // The client closed: dropping the subscription ends the command.
                    _ = &mut pump => return,
                };
                let sent = match msg {
                    Ok(ExecEvent::Stdout(b)) => tx.send(framed(1, &b)).await,
                    Ok(ExecEvent::Stderr(b)) => tx.send(framed(2, &b)).await,
                    Ok(ExecEvent::Exit(code)) => break status(Some(code), ""),
                    Err(shoal_fabric::actor::SubscriptionEnd::Ended(why)) => {
                        break status(None, &why)
                    }
                    Err(e) => break status(None, &e.to_string()),
                };
                if sent.is_err() {
                    pump.abort();
                    return;
                }
            };
            pump.abort();
            end
        }
    };
    let _ = tx.send(framed(3, end.to_string().as_bytes())).await;
    // A normal closure (1000): the client reads it as the end of every
    // stream.
    let close = axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    };
    let _ = tx.send(Message::Close(Some(close))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_become_input() {
        assert_eq!(
            input_of(b"\x00ls\n"),
            Some(Input::Stdin(serde_bytes::ByteBuf::from(b"ls\n".to_vec())))
        );
        assert_eq!(
            input_of(b"\x04{\"Width\":120,\"Height\":40}"),
            Some(Input::Resize {
                width: 120,
                height: 40
            })
        );
        assert_eq!(input_of(&[255, 0]), Some(Input::CloseStdin));
        // 9 MiB of stdin in one message: pieces under the frame limit, in
        // order, nothing lost.
        let big: Vec<u8> = (0..9 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let parts = pieces(Input::Stdin(serde_bytes::ByteBuf::from(big.clone())));
        assert_eq!(parts.len(), big.len().div_ceil(STDIN_PIECE));
        let mut joined = Vec::new();
        for p in parts {
            let Input::Stdin(b) = p else { panic!("{p:?}") };
            assert!(b.len() <= STDIN_PIECE);
            joined.extend_from_slice(&b);
        }
        assert_eq!(joined, big);
        assert_eq!(pieces(Input::CloseStdin), vec![Input::CloseStdin]);
        // Closing stdout or stderr is not the client's to do; garbage,
        // an empty message and an unknown channel are nothing.
        assert_eq!(input_of(&[255, 1]), None);
        assert_eq!(input_of(b"\x04{not json"), None);
        assert_eq!(input_of(b""), None);
        assert_eq!(input_of(b"\x09x"), None);
    }
}
