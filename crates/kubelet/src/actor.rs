//! The `kubelet` actor of a worker node: what other nodes ask of the pods
//! running here. It answers `pods/log` (and follows logs), `Ping` from the
//! node-lifecycle controller, `kubectl exec` and `kubectl port-forward`:
//! the command's output (or what the pod sends on the forwarded
//! connection) streams back as a subscription, and the client's side
//! (stdin, terminal resizes, bytes for the pod) arrives as [`SessionInput`]
//! asks naming the session, in order, each answered once the other side
//! has room for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{pod_uid, pods, Runtime, RuntimeCell};
use shoal_fabric::actor::{Actor, Ctx, Handler, Reply, Subscribe};
use shoal_kubelet_proto::{
    Exec, FollowLogs, ForwardEvent, Input, Ping, PodLogs, PortForward, SessionInput,
};
use shoal_store::{ReadRequest, Store};

/// Input queued for a running exec, at most this many pieces ahead of the
/// command (each up to one WebSocket message of the client's).
const INPUT_QUEUE: usize = 16;

/// The execs that take input, by session.
#[derive(Clone, Default)]
pub struct ExecSessions(Arc<Mutex<HashMap<String, mpsc::Sender<Input>>>>);

impl ExecSessions {
    fn open(&self, session: &str) -> mpsc::Receiver<Input> {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        self.map().insert(session.to_string(), tx);
        rx
    }

    fn close(&self, session: &str) {
        self.map().remove(session);
    }

    fn sender(&self, session: &str) -> Option<mpsc::Sender<Input>> {
        self.map().get(session).cloned()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Input>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `kubelet` actor.
pub struct KubeletActor {
    /// Set once the node is registered (see `KubeletStart`).
    pub runtime: RuntimeCell,
    pub store: Store,
    pub sessions: ExecSessions,
}

impl Actor for KubeletActor {}

impl KubeletActor {
    /// The runtime, or why there is none yet.
    fn runtime(&self) -> Result<Arc<dyn Runtime>, String> {
        self.runtime
            .get()
            .cloned()
            .ok_or_else(|| "the kubelet has not registered its node yet".to_string())
    }
}

impl Handler<Ping> for KubeletActor {
    fn handle(&mut self, _msg: Ping, _ctx: &mut Ctx<Self>) -> Reply<String> {
        Reply::Now(self.store.node().to_string())
    }
}

/// The uid of the pod a logs request names, as this node's store replica
/// has it.
async fn uid_of(store: &Store, namespace: &str, name: &str) -> Result<String, String> {
    let key = pods().key(namespace, name);
    let read = store
        .read_state(ReadRequest::key(key))
        .await
        .map_err(|e| e.to_string())?;
    let pod: Value = read
        .kvs
        .first()
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .ok_or_else(|| format!("pod {name:?} not found on this node"))?;
    Ok(pod_uid(&pod))
}

impl Handler<PodLogs> for KubeletActor {
    fn handle(&mut self, msg: PodLogs, _ctx: &mut Ctx<Self>) -> Reply<Result<String, String>> {
        let (runtime, store) = (self.runtime(), self.store.clone());
        Reply::Later(Box::pin(async move {
            let runtime = runtime?;
            let uid = uid_of(&store, &msg.namespace, &msg.pod).await?;
            // The wire carries the error's text (the API shows it).
            runtime.logs(&msg, &uid).await.map_err(|e| e.to_string())
        }))
    }
}

impl Handler<Subscribe<Exec>> for KubeletActor {
    fn handle(&mut self, msg: Subscribe<Exec>, _ctx: &mut Ctx<Self>) -> Reply<Result<(), String>> {
        let (runtime, store) = (self.runtime(), self.store.clone());
        let (req, sink) = (msg.request, msg.sink);
        // The session is open before the subscription is accepted, so the
        // first input the API sends after it finds its way.
        let input = (req.stdin || req.tty).then(|| self.sessions.open(&req.session));
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            match uid_of(&store, &req.namespace, &req.pod)
                .await
                .and_then(|uid| Ok((uid, runtime?)))
            {
                Ok((uid, runtime)) => runtime.exec(&req, &uid, input, sink).await,
                Err(e) => sink.end(&e).await,
            }
            sessions.close(&req.session);
        });
        Reply::Now(Ok(()))
    }
}

impl Handler<SessionInput> for KubeletActor {
    fn handle(&mut self, msg: SessionInput, _ctx: &mut Ctx<Self>) -> Reply<Result<(), String>> {
        let Some(tx) = self.sessions.sender(&msg.session) else {
            return Reply::Now(Err(format!("no exec session {:?} here", msg.session)));
        };
        Reply::Later(Box::pin(async move {
            tx.send(msg.input)
                .await
                .map_err(|_| "the command has ended".to_string())
        }))
    }
}

impl Handler<Subscribe<FollowLogs>> for KubeletActor {
    fn handle(
        &mut self,
        msg: Subscribe<FollowLogs>,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<(), String>> {
        let (runtime, store) = (self.runtime(), self.store.clone());
        let (req, sink) = (msg.request.0, msg.sink);
        // Accepted at once; a pod that is not here ends the stream with why.
        tokio::spawn(async move {
            match uid_of(&store, &req.namespace, &req.pod)
                .await
                .and_then(|uid| Ok((uid, runtime?)))
            {
                Ok((uid, runtime)) => runtime.follow(&req, &uid, sink).await,
                Err(e) => sink.end(&e).await,
            }
        });
        Reply::Now(Ok(()))
    }
}

impl Handler<Subscribe<PortForward>> for KubeletActor {
    fn handle(
        &mut self,
        msg: Subscribe<PortForward>,
        _ctx: &mut Ctx<Self>,
    ) -> Reply<Result<(), String>> {
        let (runtime, store) = (self.runtime(), self.store.clone());
        let (req, sink) = (msg.request, msg.sink);
        let input = self.sessions.open(&req.session);
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            let stream = match uid_of(&store, &req.namespace, &req.pod)
                .await
                .and_then(|uid| Ok((uid, runtime?)))
            {
                Ok((uid, runtime)) => runtime.connect(&uid, req.port).await.map_err(|e| {
                    format!(
                        "error forwarding port {} to pod {}, uid {uid}: {e}",
                        req.port, req.pod
                    )
                }),
                Err(e) => Err(e),
            };
            match stream {
                Ok(stream) => forward(stream, input, sink).await,
                Err(e) => {
                    let _ = sink.send(&ForwardEvent::Error(e)).await;
                    sink.end("no connection").await;
                }
            }
            sessions.close(&req.session);
        });
        Reply::Now(Ok(()))
    }
}

/// Relays one forwarded connection: what the pod sends into `sink` until
/// it ends its side; the client's bytes from `input` to the pod, its end
/// as a half-close. The client going away closes the connection.
async fn forward(
    stream: tokio::net::TcpStream,
    mut input: mpsc::Receiver<Input>,
    sink: shoal_fabric::actor::Sink<ForwardEvent>,
) {
    let (mut from_pod, mut to_pod) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(i) = input.recv().await {
            match i {
                Input::Stdin(b) => {
                    if to_pod.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Input::CloseStdin => {
                    let _ = to_pod.shutdown().await;
                    // Keep the half open to the end: dropping it would not
                    // close the socket, the reader's half holds it.
                    std::future::pending::<()>().await;
                }
                Input::Resize { .. } => {}
            }
        }
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            n = from_pod.read(&mut buf) => n,
            _ = sink.closed() => break,
        };
        match n {
            Ok(n) if n > 0 => {
                let data = ForwardEvent::Data(serde_bytes::ByteBuf::from(buf[..n].to_vec()));
                if sink.send(&data).await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    writer.abort();
    sink.end("closed").await;
}

/// Registers the kubelet actor's messages. Logs, exec, attach and
/// port-forward reach into pods: only API nodes (which check the user's
/// token) may open them; any member may ping.
pub fn serve(
    registry: &shoal_fabric::actor::Registry,
    addr: shoal_fabric::actor::Addr<KubeletActor>,
) {
    use shoal_fabric::actor::{Access, Roles};
    use shoal_kubelet_proto as proto;
    let api = || Access::AnyOf(Roles::API);
    registry.serve_with::<KubeletActor, proto::PodLogs>(proto::KUBELET, addr.clone(), api());
    registry.serve_subscription_with::<KubeletActor, proto::FollowLogs>(
        proto::KUBELET,
        addr.clone(),
        api(),
    );
    registry.serve_subscription_with::<KubeletActor, proto::Exec>(
        proto::KUBELET,
        addr.clone(),
        api(),
    );
    registry.serve_subscription_with::<KubeletActor, proto::PortForward>(
        proto::KUBELET,
        addr.clone(),
        api(),
    );
    registry.serve_with::<KubeletActor, proto::SessionInput>(proto::KUBELET, addr.clone(), api());
    registry.serve::<KubeletActor, proto::Ping>(proto::KUBELET, addr);
}
