//! The serving side of the transport: accepts connections and streams,
//! refuses bad frames, applies receive-side faults, and dispatches envelopes
//! to the node's registry (asks, ordered tells, subscriptions).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::frame::{read_frame, write_frame, FrameError};
use super::peer::Peer;
use super::{Transport, CODE_FAULT, CODE_FRAME_TOO_LARGE};
use crate::actor::access::Caller;
use crate::actor::envelope::{Envelope, Kind, RemoteError};
use crate::actor::remote::{Inbound, StreamItem, DEFAULT_BUDGET};

/// Why an inbound frame was not an envelope.
enum BadFrame {
    /// The frame was whole but its bytes are not an envelope: the stream's
    /// framing is intact.
    Undecodable(RemoteError),
    /// Oversize frame or broken stream: the stream cannot go on.
    Broken(RemoteError),
}

/// The longest deadline budget honoured from the wire (5 minutes).
const MAX_BUDGET_MS: u64 = 300_000;

impl Transport {
    // ----- inbound --------------------------------------------------------

    pub(super) async fn accept_loop(self) {
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let t = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => t.serve_conn(conn).await,
                    Err(e) => {
                        t.inner.metrics.handshake_failures.inc();
                        tracing::debug!(node = %t.inner.node, "QUIC handshake refused: {e}");
                    }
                }
            });
        }
    }

    async fn serve_conn(self, conn: quinn::Connection) {
        let peer = Arc::new(Peer::of(&conn));
        loop {
            tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        let (t, peer) = (self.clone(), peer.clone());
                        tokio::spawn(async move { t.serve_bi(&peer, send, recv).await });
                    }
                    Err(_) => return,
                },
                uni = conn.accept_uni() => match uni {
                    Ok(recv) => {
                        let (t, peer) = (self.clone(), peer.clone());
                        tokio::spawn(async move { t.serve_tells(&peer, recv).await });
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Whether `env`'s sender is the peer's own node; counts and logs a
    /// spoofed one.
    fn sender_checked(&self, peer: &Peer, env: &Envelope) -> Result<(), RemoteError> {
        if peer.may_send_as(&env.from) {
            return Ok(());
        }
        self.count(&self.inner.metrics.envelopes_rejected, "reason", "spoofed");
        tracing::warn!(node = %self.inner.node, from = %env.from, to = %env.to, tag = %env.tag,
            "refused an envelope whose sender is not the peer's certificate");
        Err(RemoteError::Forbidden(format!(
            "the peer's certificate is not valid for sender {:?}",
            env.from
        )))
    }

    /// Reads one envelope frame, refusing oversize and undecodable ones.
    async fn read_envelope(
        &self,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<Envelope>, BadFrame> {
        match read_frame(recv, self.inner.max_frame).await {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => Envelope::decode(&bytes).map(Some).map_err(|e| {
                self.count(
                    &self.inner.metrics.envelopes_rejected,
                    "reason",
                    "malformed",
                );
                tracing::warn!(node = %self.inner.node, "malformed envelope: {e}");
                BadFrame::Undecodable(RemoteError::Malformed(e.to_string()))
            }),
            Err(FrameError::TooLarge { len, max }) => {
                self.count(&self.inner.metrics.envelopes_rejected, "reason", "oversize");
                tracing::warn!(node = %self.inner.node, "refused a frame of {len} bytes (max {max})");
                let _ = recv.stop(CODE_FRAME_TOO_LARGE.into());
                Err(BadFrame::Broken(RemoteError::Malformed(format!(
                    "frame of {len} bytes exceeds {max}"
                ))))
            }
            Err(e) => {
                tracing::debug!(node = %self.inner.node, "stream read failed: {e}");
                Err(BadFrame::Broken(RemoteError::Malformed(e.to_string())))
            }
        }
    }

    async fn serve_tells(self, peer: &Peer, mut recv: quinn::RecvStream) {
        loop {
            let env = match self.read_envelope(&mut recv).await {
                Ok(Some(env)) => env,
                Ok(None) => return,
                // A malformed body keeps the framing intact: go on. Anything
                // else (oversize, broken stream) ends this stream.
                Err(BadFrame::Undecodable(_)) => continue,
                Err(BadFrame::Broken(_)) => return,
            };
            if self.sender_checked(peer, &env).is_err() {
                continue;
            }
            self.count(
                &self.inner.metrics.envelopes_received,
                "kind",
                Self::kind_name(env.kind),
            );
            if !Self::exempt(&env) && self.inner.faults.on_receive(&env.from, &self.inner.node) {
                self.count(&self.inner.metrics.fault_drops, "path", "envelope");
                continue;
            }
            if env.kind != Kind::Tell {
                self.count(
                    &self.inner.metrics.envelopes_rejected,
                    "reason",
                    "unexpected_kind",
                );
                continue;
            }
            let inb = Inbound {
                caller: Caller {
                    node: env.from,
                    roles: peer.roles(),
                },
                payload: env.payload,
                budget: DEFAULT_BUDGET,
            };
            if let Err(e) = self
                .inner
                .registry
                .dispatch_tell(&env.to, &env.tag, inb)
                .await
            {
                self.count(&self.inner.metrics.envelopes_rejected, "reason", "dispatch");
                tracing::warn!(node = %self.inner.node, to = %env.to, tag = %env.tag, "tell refused: {e}");
            }
        }
    }

    async fn serve_bi(self, peer: &Peer, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let env = match self.read_envelope(&mut recv).await {
            Ok(Some(env)) => env,
            Ok(None) => return,
            Err(BadFrame::Undecodable(err) | BadFrame::Broken(err)) => {
                let reply = Envelope {
                    kind: Kind::Error,
                    to: String::new(),
                    from: self.inner.node.clone(),
                    tag: String::new(),
                    corr: 0,
                    budget_ms: 0,
                    payload: postcard::to_allocvec(&err).unwrap_or_default(),
                };
                let _ = write_frame(&mut send, &reply.encode(), self.inner.max_frame).await;
                let _ = send.finish();
                return;
            }
        };
        self.count(
            &self.inner.metrics.envelopes_received,
            "kind",
            Self::kind_name(env.kind),
        );
        if let Err(e) = self.sender_checked(peer, &env) {
            let reply = env.error_reply(&self.inner.node, &e);
            let _ = write_frame(&mut send, &reply.encode(), self.inner.max_frame).await;
            let _ = send.finish();
            return;
        }
        // A budget from the wire is capped: a peer cannot pin a task for weeks.
        let budget = if env.budget_ms == 0 {
            DEFAULT_BUDGET
        } else {
            Duration::from_millis((env.budget_ms as u64).min(MAX_BUDGET_MS))
        };
        let exempt = Self::exempt(&env);
        if !exempt && self.inner.faults.on_receive(&env.from, &self.inner.node) {
            // Behave like a lost packet: no answer before the caller gives up.
            self.count(&self.inner.metrics.fault_drops, "path", "envelope");
            tokio::time::sleep(budget).await;
            return;
        }
        let inb = Inbound {
            caller: Caller::new(&env.from, peer.roles()),
            payload: env.payload.clone(),
            budget,
        };
        let reply = match env.kind {
            Kind::Ask => match self
                .inner
                .registry
                .dispatch_ask(&env.to, &env.tag, inb)
                .await
            {
                Ok(payload) => env.reply(&self.inner.node, Kind::Reply, payload),
                Err(e) => {
                    tracing::warn!(node = %self.inner.node, to = %env.to, tag = %env.tag, from = %env.from, "ask refused: {e}");
                    env.error_reply(&self.inner.node, &e)
                }
            },
            Kind::Tell => {
                if let Err(e) = self
                    .inner
                    .registry
                    .dispatch_tell(&env.to, &env.tag, inb)
                    .await
                {
                    tracing::warn!(node = %self.inner.node, to = %env.to, tag = %env.tag, "tell refused: {e}");
                }
                return;
            }
            Kind::Subscribe => return self.serve_subscription(env, inb, send, recv).await,
            other => env.error_reply(
                &self.inner.node,
                &RemoteError::Malformed(format!("unexpected {other:?}")),
            ),
        };
        if !exempt && self.outbound_faults(&reply, &env.from).await.is_err() {
            tokio::time::sleep(budget).await;
            return;
        }
        self.count(
            &self.inner.metrics.envelopes_sent,
            "kind",
            Self::kind_name(reply.kind),
        );
        if let Err(e) = write_frame(&mut send, &reply.encode(), self.inner.max_frame).await {
            let err = env.error_reply(&self.inner.node, &RemoteError::Handler(e.to_string()));
            let _ = write_frame(&mut send, &err.encode(), self.inner.max_frame).await;
        }
        let _ = send.finish();
        // Consume the caller's end of stream instead of dropping the stream
        // unread (which would make quinn send STOP_SENDING).
        let _ = tokio::time::timeout(budget, recv.read_to_end(0)).await;
    }

    async fn serve_subscription(
        self,
        env: Envelope,
        inb: Inbound,
        mut send: quinn::SendStream,
        _recv: quinn::RecvStream,
    ) {
        let (tx, mut rx) = mpsc::channel(self.inner.subscription_buffer);
        let accepted = self
            .inner
            .registry
            .dispatch_subscribe(&env.to, &env.tag, inb, tx)
            .await;
        let first = match &accepted {
            Ok(()) => env.reply(&self.inner.node, Kind::Reply, Vec::new()),
            Err(e) => {
                tracing::warn!(node = %self.inner.node, to = %env.to, tag = %env.tag, "subscription refused: {e}");
                env.error_reply(&self.inner.node, e)
            }
        };
        if write_frame(&mut send, &first.encode(), self.inner.max_frame)
            .await
            .is_err()
            || accepted.is_err()
        {
            let _ = send.finish();
            return;
        }
        let mut seq = 0u64;
        while let Some(item) = rx.recv().await {
            let (kind, payload) = match item {
                StreamItem::Event(p) => (Kind::Event, p),
                StreamItem::End(reason) => (
                    Kind::End,
                    postcard::to_allocvec(&reason).unwrap_or_default(),
                ),
            };
            seq += 1;
            let ev = Envelope {
                kind,
                to: env.from.clone(),
                from: self.inner.node.clone(),
                tag: env.tag.clone(),
                corr: seq,
                budget_ms: 0,
                payload,
            };
            if self.outbound_faults(&ev, &env.from).await.is_err() {
                // An ordered stream cannot skip an event: cut it instead, and
                // the subscriber resumes from what it last saw.
                let _ = send.reset(CODE_FAULT.into());
                return;
            }
            if write_frame(&mut send, &ev.encode(), self.inner.max_frame)
                .await
                .is_err()
            {
                return;
            }
            self.count(
                &self.inner.metrics.envelopes_sent,
                "kind",
                Self::kind_name(kind),
            );
            if kind == Kind::End {
                break;
            }
        }
        let _ = send.finish();
    }
}
