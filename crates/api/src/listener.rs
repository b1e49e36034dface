//! The API's TLS listener, under limits a client cannot talk its way past:
//! a cap on connections in all and per client address, a deadline on the
//! TLS handshake and on the first request's headers, an idle timeout
//! between requests, and a back-off when `accept` itself fails (out of
//! descriptors), instead of a loop that spins.
//!
//! ```text
//! accept ─► Book::admit (caps; at a cap the oldest connection that never
//!           sent a request is evicted, else the new one is refused)
//!        ─► TLS handshake (handshake_timeout)
//!        ─► hyper (HTTP/1 header_read_timeout; HTTP/2 keep-alive pings)
//!           each request holds an in-flight guard until its body is sent,
//!           so a watch is never idle; no request in flight for
//!           idle_timeout (header_read_timeout before the first) ─► closed
//! ```
//!
//! A connection proves itself by sending a request; until then it may be
//! evicted, so idle or half-sent connections (slowloris) can never lock
//! out a client that asks for something.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::config::KubeApiConfig;

/// The address a request came from (a request extension the listener
/// sets), for limits kept per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The limits of one API listener (the `[api]` settings, clamped to what
/// the process's descriptor limit can hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    /// The configured limits, with the connection caps held to half of
    /// `fd_limit` (the rest is for shims, logs, the store and peers).
    pub fn new(c: &KubeApiConfig, fd_limit: u64) -> Limits {
        let half = usize::try_from(fd_limit / 2).unwrap_or(usize::MAX).max(16);
        let max_connections = c.max_connections.clamp(1, half);
        Limits {
            max_connections,
            max_connections_per_ip: c.max_connections_per_ip.clamp(1, max_connections),
            handshake_timeout: Duration::from_millis(c.tls_handshake_timeout_ms),
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// What the listener counts (`shoal_api_connections…` on `/metrics`).
#[derive(Clone, Default)]
pub struct ListenerMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections refused at accept, by reason (`limit`, `per_ip`).
    pub refused: Family<Labels, Counter>,
    /// Connections closed by the server, by reason (`evicted`, `idle`,
    /// `handshake`).
    pub closed: Family<Labels, Counter>,
    /// `accept` failures (out of descriptors, say), each followed by a
    /// back-off.
    pub accept_errors: Counter,
}

impl ListenerMetrics {
    /// Registers the metrics in `m`'s registry.
    pub fn register(&self, m: &shoal_fabric::metrics::Metrics) {
        m.register("api_connections", "Open API connections", self.open.clone());
        m.register(
            "api_connections_refused",
            "API connections refused at accept, by reason",
            self.refused.clone(),
        );
        m.register(
            "api_connections_closed",
            "API connections the server closed, by reason",
            self.closed.clone(),
        );
        m.register(
            "api_accept_errors",
            "Failed accepts on the API port (each backs off)",
            self.accept_errors.clone(),
        );
    }

    fn closed(&self, reason: &str) {
        self.closed
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }
}

/// One admitted connection's shared state.
struct Entry {
    /// Set once the book no longer counts it (evicted or dropped).
    released: AtomicBool,
    evict: Notify,
}

#[derive(Default)]
struct BookState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections that have not sent a request yet, oldest first.
    unproven: BTreeMap<u64, (IpAddr, Arc<Entry>)>,
}

/// The open connections of one listener.
#[derive(Default)]
struct Book {
    state: Mutex<BookState>,
    next: AtomicU64,
}

/// A place in the book; gives it back when dropped.
struct Slot {
    id: u64,
    ip: IpAddr,
    entry: Arc<Entry>,
    book: Arc<Book>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Limit,
    PerIp,
}

impl Book {
    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, evicting the oldest unproven one
    /// (of that address, for its cap) to make room; Err when every
    /// connection in the way has proven itself.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &Limits,
        metrics: &ListenerMetrics,
    ) -> Result<Slot, Refused> {
        let mut st = self.lock();
        while st.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_connections_per_ip {
            let victim = st
                .unproven
                .iter()
                .find(|(_, (from, _))| *from == ip)
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Err(Refused::PerIp);
            };
            Self::evict(&mut st, victim);
            metrics.closed("evicted");
        }
        while st.total >= limits.max_connections {
            let Some(victim) = st.unproven.keys().next().copied() else {
                return Err(Refused::Limit);
            };
            Self::evict(&mut st, victim);
            metrics.closed("evicted");
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            released: AtomicBool::new(false),
            evict: Notify::new(),
        });
        st.total += 1;
        *st.per_ip.entry(ip).or_default() += 1;
        st.unproven.insert(id, (ip, entry.clone()));
        metrics.open.set(st.total as i64);
        Ok(Slot {
            id,
            ip,
            entry,
            book: self.clone(),
        })
    }

    /// Stops counting connection `id` and tells it to close.
    fn evict(st: &mut BookState, id: u64) {
        if let Some((ip, entry)) = st.unproven.remove(&id) {
            Self::release(st, ip, &entry);
            entry.evict.notify_one();
        }
    }

    fn release(st: &mut BookState, ip: IpAddr, entry: &Entry) {
        if entry.released.swap(true, Ordering::AcqRel) {
            return;
        }
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_ip.remove(&ip);
            }
        }
    }
}

impl Slot {
    /// The connection sent a request: it can no longer be evicted.
    fn prove(&self) {
        self.book.lock().unproven.remove(&self.id);
    }

    async fn evicted(&self) {
        self.entry.evict.notified().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.book.lock();
        st.unproven.remove(&self.id);
        Book::release(&mut st, self.ip, &self.entry);
    }
}

/// Serves `router` over TLS on `listener`, under `limits`, until
/// `shutdown` turns true.
pub async fn serve_tls(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    limits: Limits,
    metrics: ListenerMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let book = Arc::new(Book::default());
    let mut backoff = Duration::ZERO;
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(v) => {
                    backoff = Duration::ZERO;
                    v
                }
                Err(e) => {
                    // Out of descriptors, most likely: retrying at once
                    // would spin. Wait, longer each time, up to a second.
                    metrics.accept_errors.inc();
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::warn!("api accept: {e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    continue;
                }
            },
        };
        let slot = match book.admit(peer.ip(), &limits, &metrics) {
            Ok(s) => s,
            Err(why) => {
                let reason = match why {
                    Refused::Limit => "limit",
                    Refused::PerIp => "per_ip",
                };
                metrics
                    .refused
                    .get_or_create(&vec![("reason", reason.to_string())])
                    .inc();
                tracing::debug!(%peer, "api connection refused: {reason}");
                continue; // dropping `tcp` closes it
            }
        };
        let conn = Connection {
            acceptor: acceptor.clone(),
            router: router.clone(),
            limits,
            metrics: metrics.clone(),
            stop: shutdown.clone(),
        };
        tokio::spawn(conn.run(tcp, peer, slot));
    }
}

/// One connection's serving.
struct Connection {
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    limits: Limits,
    metrics: ListenerMetrics,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: tokio::net::TcpStream, peer: SocketAddr, slot: Slot) {
        let slot = Arc::new(slot);
        let handshake =
            tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            r = handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    self.metrics.closed("handshake");
                    return;
                }
            },
            _ = slot.evicted() => return,
        };
        // Requests in flight (a request counts until its body is sent).
        let (in_flight, idle_rx) = watch::channel(0usize);
        let in_flight = Arc::new(in_flight);
        let router = self.router.clone();
        let proving = slot.clone();
        let svc = tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            proving.prove();
            req.extensions_mut().insert(ClientAddr(peer));
            let guard = InFlight::enter(in_flight.clone());
            let call = router.clone().oneshot(req);
            async move {
                let resp = call.await?;
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(body.map_frame(move |f| {
                        let _held = &guard;
                        f
                    }))
                }))
            }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        let idle = idle_expired(
            idle_rx,
            self.limits.header_read_timeout,
            self.limits.idle_timeout,
        );
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = self.stop.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            _ = slot.evicted() => {}
            _ = idle => {
                self.metrics.closed("idle");
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            }
        }
    }
}

/// Counts one request in flight until dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn enter(tx: Arc<watch::Sender<usize>>) -> InFlight {
        tx.send_modify(|n| *n += 1);
        InFlight(tx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Resolves once no request has been in flight for `idle` (`first` before
/// the first request).
async fn idle_expired(mut rx: watch::Receiver<usize>, first: Duration, idle: Duration) {
    let mut limit = first;
    loop {
        if rx.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        match tokio::time::timeout(limit, rx.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => limit = idle,
        }
    }
}

#[cfg(test)]
mod tests;
