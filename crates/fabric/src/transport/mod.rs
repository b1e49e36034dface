//! The actor transport: QUIC (quinn) with mutual TLS between nodes.
//!
//! ```text
//!  ask        short bidirectional stream: Ask frame → Reply|Error frame
//!  tell       one long-lived unidirectional stream per connection (ordered)
//!  subscribe  long-lived bidirectional stream: Subscribe → Reply, Event*, End
//! ```
//!
//! Every envelope passes the node's fault rules (`faults`) on send and on
//! receive, except those addressed to the `chaos` actor (the control path).
//! Frames above `max_frame_bytes` close their stream with an error; a bad
//! frame never takes the node down. Peers are dialled by node name, and the
//! server certificate must name that node.

pub mod faults;
pub mod frame;
pub mod peer;
mod serve;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use crate::actor::envelope::{Envelope, Kind, RemoteError};
use crate::actor::remote::{AskError, Registry, StreamItem};
use crate::metrics::Metrics;
use faults::{Faults, Verdict};
use frame::{read_frame, write_frame, FrameError};
pub use tls::TlsMaterial;

/// Actor name of the chaos control path, exempt from fault injection.
pub const CONTROL_ACTOR: &str = "chaos";

/// QUIC application error codes.
const CODE_FRAME_TOO_LARGE: u32 = 1;
const CODE_FAULT: u32 = 2;
const CODE_SHUTDOWN: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot bind QUIC on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("QUIC configuration: {0}")]
    Config(String),
}

/// Settings of one node's transport.
#[derive(Clone)]
pub struct TransportSettings {
    pub node: String,
    pub listen: SocketAddr,
    pub tls: TlsMaterial,
    pub max_frame_bytes: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    pub subscription_buffer: usize,
    /// Streams a peer may have open on one connection (see
    /// `config::Transport`).
    pub max_bidi_streams: u32,
    pub max_uni_streams: u32,
}

#[derive(Clone)]
struct PeerConn {
    conn: quinn::Connection,
    tells: Arc<Mutex<Option<quinn::SendStream>>>,
}

struct Inner {
    node: String,
    /// The roles this node's own certificate certifies.
    roles: crate::actor::access::Roles,
    endpoint: quinn::Endpoint,
    peers: DashMap<String, SocketAddr>,
    conns: DashMap<String, Arc<Mutex<Option<PeerConn>>>>,
    registry: Registry,
    faults: Faults,
    metrics: Metrics,
    max_frame: usize,
    connect_timeout: Duration,
    subscription_buffer: usize,
    corr: AtomicU64,
}

/// Cheap-clone handle to a node's QUIC transport.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl Transport {
    /// Binds the endpoint and starts accepting connections. Must run inside
    /// a tokio runtime.
    pub fn bind(
        s: TransportSettings,
        registry: Registry,
        faults: Faults,
        metrics: Metrics,
    ) -> Result<Transport, TransportError> {
        let mut tc = quinn::TransportConfig::default();
        tc.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(s.idle_timeout)
                .map_err(|e| TransportError::Config(e.to_string()))?,
        ));
        tc.keep_alive_interval(Some(s.keep_alive));
        tc.max_concurrent_bidi_streams(s.max_bidi_streams.into());
        tc.max_concurrent_uni_streams(s.max_uni_streams.into());
        let tc = Arc::new(tc);

        let server_tls = QuicServerConfig::try_from(tls::quic_server_config(&s.tls)?)
            .map_err(|e| TransportError::Config(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(tc.clone());
        let client_tls = QuicClientConfig::try_from(tls::quic_client_config(&s.tls)?)
            .map_err(|e| TransportError::Config(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
        client.transport_config(tc);

        let mut endpoint =
            quinn::Endpoint::server(server, s.listen).map_err(|source| TransportError::Bind {
                addr: s.listen,
                source,
            })?;
        endpoint.set_default_client_config(client);

        let t = Transport {
            inner: Arc::new(Inner {
                roles: s
                    .tls
                    .chain
                    .first()
                    .map_or(crate::actor::access::Roles::NONE, |c| {
                        crate::actor::access::Roles::of_certificate(c)
                    }),
                node: s.node,
                endpoint,
                peers: DashMap::new(),
                conns: DashMap::new(),
                registry,
                faults,
                metrics,
                max_frame: s.max_frame_bytes,
                connect_timeout: s.connect_timeout,
                subscription_buffer: s.subscription_buffer,
                corr: AtomicU64::new(1),
            }),
        };
        let acceptor = t.clone();
        tokio::spawn(async move { acceptor.accept_loop().await });
        Ok(t)
    }

    /// The roles this node's certificate certifies.
    pub fn roles(&self) -> crate::actor::access::Roles {
        self.inner.roles
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .endpoint
            .local_addr()
            .expect("bound endpoint has an address")
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Records (or updates) where a peer listens.
    pub fn set_peer(&self, node: &str, addr: SocketAddr) {
        let changed = self.inner.peers.insert(node.to_string(), addr) != Some(addr);
        if changed {
            self.inner.conns.remove(node);
        }
    }

    /// Closes the connection to `node`, if any; the next call reconnects.
    pub fn disconnect(&self, node: &str) {
        if let Some((_, slot)) = self.inner.conns.remove(node) {
            if let Ok(g) = slot.try_lock() {
                if let Some(c) = g.as_ref() {
                    c.conn.close(0u32.into(), b"peer is down");
                }
            }
        }
    }

    pub fn peer_addr(&self, node: &str) -> Option<SocketAddr> {
        self.inner.peers.get(node).map(|a| *a)
    }

    /// Closes every connection and stops accepting.
    pub fn shutdown(&self) {
        self.inner.endpoint.close(CODE_SHUTDOWN.into(), b"shutdown");
    }

    pub fn next_corr(&self) -> u64 {
        self.inner.corr.fetch_add(1, Ordering::Relaxed)
    }

    fn exempt(env: &Envelope) -> bool {
        env.to == CONTROL_ACTOR
    }

    fn count(
        &self,
        family: &prometheus_client::metrics::family::Family<
            Vec<(&'static str, String)>,
            prometheus_client::metrics::counter::Counter,
        >,
        key: &'static str,
        v: &str,
    ) {
        family.get_or_create(&Metrics::label(key, v)).inc();
    }

    fn kind_name(k: Kind) -> &'static str {
        match k {
            Kind::Tell => "tell",
            Kind::Ask => "ask",
            Kind::Reply => "reply",
            Kind::Error => "error",
            Kind::Subscribe => "subscribe",
            Kind::Event => "event",
            Kind::End => "end",
        }
    }

    // ----- outbound -------------------------------------------------------

    async fn conn(&self, node: &str) -> Result<PeerConn, AskError> {
        let slot = self
            .inner
            .conns
            .entry(node.to_string())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.conn.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let addr = self
            .peer_addr(node)
            .ok_or_else(|| AskError::UnknownNode(node.to_string()))?;
        let connecting = self
            .inner
            .endpoint
            .connect(addr, node)
            .map_err(|e| AskError::Unreachable(node.into(), e.to_string()))?;
        let conn = match tokio::time::timeout(self.inner.connect_timeout, connecting).await {
            Err(_) => {
                return Err(AskError::Unreachable(
                    node.into(),
                    "connect timed out".into(),
                ))
            }
            Ok(Err(e)) => return Err(AskError::Unreachable(node.into(), e.to_string())),
            Ok(Ok(c)) => c,
        };
        let pc = PeerConn {
            conn,
            tells: Arc::new(Mutex::new(None)),
        };
        *guard = Some(pc.clone());
        Ok(pc)
    }

    fn forget_conn(&self, node: &str, conn: &quinn::Connection) {
        if let Some(slot) = self.inner.conns.get(node).map(|s| s.clone()) {
            if let Ok(mut g) = slot.try_lock() {
                if g.as_ref()
                    .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
                {
                    *g = None;
                }
            }
        }
    }

    /// Applies send-side faults; `Err(())` means "dropped".
    async fn outbound_faults(&self, env: &Envelope, to: &str) -> Result<(), ()> {
        if Self::exempt(env) {
            return Ok(());
        }
        match self.inner.faults.on_send(&self.inner.node, to) {
            Verdict::Deliver => Ok(()),
            Verdict::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Verdict::Drop => {
                self.count(&self.inner.metrics.fault_drops, "path", "envelope");
                Err(())
            }
        }
    }

    /// Sends an `Ask` envelope to `node` and waits for its answer.
    pub async fn request(
        &self,
        node: &str,
        mut env: Envelope,
        timeout: Duration,
    ) -> Result<Vec<u8>, AskError> {
        let deadline = Instant::now() + timeout;
        if self.outbound_faults(&env, node).await.is_err() {
            tokio::time::sleep_until(deadline).await;
            return Err(AskError::Timeout);
        }
        let exempt = Self::exempt(&env);
        let work = async {
            let pc = self.conn(node).await?;
            let (mut send, mut recv) = pc.conn.open_bi().await.map_err(|e| {
                self.forget_conn(node, &pc.conn);
                AskError::Stream(e.to_string())
            })?;
            env.budget_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(u32::MAX as u128) as u32;
            let kind = env.kind;
            write_frame(&mut send, &env.encode(), self.inner.max_frame)
                .await
                .map_err(|e| AskError::Stream(e.to_string()))?;
            let _ = send.finish();
            self.count(
                &self.inner.metrics.envelopes_sent,
                "kind",
                Self::kind_name(kind),
            );
            let frame = read_frame(&mut recv, self.inner.max_frame)
                .await
                .map_err(|e| AskError::Stream(e.to_string()))?
                .ok_or_else(|| AskError::Stream("stream closed without a reply".into()))?;
            // Take the server's end of stream too (it comes with the reply), so
            // the stream closes cleanly on both sides.
            let _ = recv.read_to_end(0).await;
            let reply = Envelope::decode(&frame).map_err(|e| AskError::Codec(e.to_string()))?;
            if !exempt && self.inner.faults.on_receive(&reply.from, &self.inner.node) {
                self.count(&self.inner.metrics.fault_drops, "path", "envelope");
                std::future::pending::<()>().await;
            }
            self.count(
                &self.inner.metrics.envelopes_received,
                "kind",
                Self::kind_name(reply.kind),
            );
            match reply.kind {
                Kind::Reply => Ok(reply.payload),
                Kind::Error => Err(AskError::Remote(
                    postcard::from_bytes::<RemoteError>(&reply.payload)
                        .map_err(|e| AskError::Codec(e.to_string()))?,
                )),
                k => Err(AskError::Codec(format!("unexpected {k:?} in reply"))),
            }
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or(Err(AskError::Timeout))
    }

    /// Sends a `Tell` envelope on the ordered tell stream of `node`.
    pub async fn tell(&self, node: &str, env: Envelope) -> Result<(), AskError> {
        if self.outbound_faults(&env, node).await.is_err() {
            return Ok(());
        }
        let pc = self.conn(node).await?;
        let mut guard = pc.tells.lock().await;
        if guard.is_none() {
            let s = pc.conn.open_uni().await.map_err(|e| {
                self.forget_conn(node, &pc.conn);
                AskError::Stream(e.to_string())
            })?;
            *guard = Some(s);
        }
        let stream = guard.as_mut().expect("tell stream was just opened");
        if let Err(e) = write_frame(stream, &env.encode(), self.inner.max_frame).await {
            *guard = None;
            if !matches!(e, FrameError::TooLarge { .. }) {
                self.forget_conn(node, &pc.conn);
            }
            return Err(AskError::Stream(e.to_string()));
        }
        self.count(&self.inner.metrics.envelopes_sent, "kind", "tell");
        Ok(())
    }

    /// Opens an ordered subscription stream on `node`.
    pub async fn subscribe(
        &self,
        node: &str,
        mut env: Envelope,
        timeout: Duration,
    ) -> Result<mpsc::Receiver<StreamItem>, AskError> {
        let deadline = Instant::now() + timeout;
        if self.outbound_faults(&env, node).await.is_err() {
            tokio::time::sleep_until(deadline).await;
            return Err(AskError::Timeout);
        }
        let open = async {
            let pc = self.conn(node).await?;
            let (mut send, mut recv) = pc.conn.open_bi().await.map_err(|e| {
                self.forget_conn(node, &pc.conn);
                AskError::Stream(e.to_string())
            })?;
            env.budget_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(u32::MAX as u128) as u32;
            write_frame(&mut send, &env.encode(), self.inner.max_frame)
                .await
                .map_err(|e| AskError::Stream(e.to_string()))?;
            let _ = send.finish();
            self.count(&self.inner.metrics.envelopes_sent, "kind", "subscribe");
            let frame = read_frame(&mut recv, self.inner.max_frame)
                .await
                .map_err(|e| AskError::Stream(e.to_string()))?
                .ok_or_else(|| AskError::Stream("stream closed before acceptance".into()))?;
            let reply = Envelope::decode(&frame).map_err(|e| AskError::Codec(e.to_string()))?;
            match reply.kind {
                Kind::Reply => Ok(recv),
                Kind::Error => Err(AskError::Remote(
                    postcard::from_bytes::<RemoteError>(&reply.payload)
                        .map_err(|e| AskError::Codec(e.to_string()))?,
                )),
                k => Err(AskError::Codec(format!(
                    "unexpected {k:?} opening a subscription"
                ))),
            }
        };
        let mut recv = tokio::time::timeout_at(deadline, open)
            .await
            .unwrap_or(Err(AskError::Timeout))?;
        let (tx, rx) = mpsc::channel(self.inner.subscription_buffer);
        let t = self.clone();
        let from = node.to_string();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    f = read_frame(&mut recv, t.inner.max_frame) => f,
                    _ = tx.closed() => { let _ = recv.stop(0u32.into()); return; }
                };
                let env = match frame {
                    Ok(Some(f)) => match Envelope::decode(&f) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = tx
                                .send(StreamItem::End(format!("lost: malformed event: {e}")))
                                .await;
                            return;
                        }
                    },
                    Ok(None) | Err(_) => return, // channel closes: subscriber sees Lost
                };
                if t.inner.faults.on_receive(&from, &t.inner.node) {
                    t.count(&t.inner.metrics.fault_drops, "path", "envelope");
                    let _ = recv.stop(CODE_FAULT.into());
                    return;
                }
                let item = match env.kind {
                    Kind::Event => StreamItem::Event(env.payload),
                    Kind::End => StreamItem::End(
                        postcard::from_bytes::<String>(&env.payload).unwrap_or_default(),
                    ),
                    _ => continue,
                };
                let end = matches!(item, StreamItem::End(_));
                if tx.send(item).await.is_err() || end {
                    let _ = recv.stop(0u32.into());
                    return;
                }
            }
        });
        Ok(rx)
    }
}
