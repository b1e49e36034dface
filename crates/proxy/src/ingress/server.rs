//! The Ingress controller's listeners and its reverse proxy (hyper):
//! HTTP/1.1 and HTTP/2 from clients, on plain TCP and on TLS; HTTP/1.1 to
//! the endpoints, through a pool of kept-alive connections per endpoint
//! that the requests' own tasks drive ([`super::upstream`]).
//!
//! Each request is routed by the table current when it arrives (a swap
//! never touches a request in flight, and no listener restarts). Its
//! backend's endpoints are tried round-robin: a failed connect moves on to
//! the next endpoint, which is safe for every method since the connection
//! is made before the request (and its body) is handed over. A backend
//! with no endpoint answers 503, no matching rule 404, an endpoint that
//! fails 502, and one that sends no response head within
//! [`RESPONSE_TIMEOUT`] 504.
//!
//! Requests carry `X-Forwarded-For` (the client appended), `-Proto`,
//! `-Host` and `-Port`, and `X-Real-IP`; hop-by-hop headers are dropped
//! both ways. A WebSocket (any `Upgrade`) passes through: the 101 is
//! relayed and both upgraded streams are spliced.
//!
//! Limits: [`MAX_CONNECTIONS`] client connections per listener (more are
//! closed at accept), a client's headers within 30 s, a TLS handshake
//! within 10 s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::IngressMetrics;
use super::routes::{Routed, Routes};
use super::upstream::{self, Pool, Relay, Upstream};

/// A proxied body, either way.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Client connections per listener.
pub const MAX_CONNECTIONS: usize = 16_384;
/// How long an endpoint may take to send its response head.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// What every connection of a node's Ingress shares.
pub struct Shared {
    pub routes: Arc<RwLock<Arc<Routes>>>,
    pub metrics: IngressMetrics,
    pool: Arc<Pool>,
}

impl Shared {
    pub fn new(routes: Arc<RwLock<Arc<Routes>>>, metrics: IngressMetrics) -> Arc<Shared> {
        Arc::new(Shared {
            routes,
            metrics,
            pool: Arc::default(),
        })
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Serves `listener` (TLS when `tls` is set) until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait for connections to close.
                tracing::warn!("ingress: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.metrics.refused_connections.inc();
            continue; // dropped: over the limit
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            shared.metrics.connections.inc();
            match tls {
                None => connection(TokioIo::new(stream), peer, false, shared.clone()).await,
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), accept).await {
                        Ok(Ok(s)) => connection(TokioIo::new(s), peer, true, shared.clone()).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "ingress: TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "ingress: TLS handshake timed out"),
                    }
                }
            }
            shared.metrics.connections.dec();
        });
    }
}

/// What every request of one client connection shares: who the client
/// is, worked out once rather than per request.
struct Client {
    https: bool,
    /// The client's address, as `X-Real-IP` and `X-Forwarded-For` carry it.
    ip: HeaderValue,
}

async fn connection<I>(io: I, peer: SocketAddr, https: bool, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let ip = HeaderValue::from_maybe_shared(Bytes::from(peer.ip().to_string()))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let client = Arc::new(Client { https, ip });
    let service = hyper::service::service_fn(move |req| {
        let (shared, client) = (shared.clone(), client.clone());
        async move { Ok::<_, Infallible>(handle(req, &client, &shared).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(%peer, "ingress: connection: {e}");
    }
}

/// A response of the proxy's own.
fn own(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The request's host without its port: the Host header, else (HTTP/2)
/// the URI's authority.
fn host_of(req: &Request<Incoming>) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    match raw.rsplit_once(':') {
        // Not an IPv6 literal's colon.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => {
            h.to_string()
        }
        _ => raw,
    }
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == "keep-alive" || name == "proxy-connection"
}

/// Drops hop-by-hop headers (and those `Connection` names), keeping the
/// upgrade pair when `upgrade`. Most requests carry none: one pass over
/// the names finds that out without a lookup per hop-by-hop name.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok());
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .chain(named)
        .collect();
    for n in &doomed {
        if upgrade && (n == header::CONNECTION || n == header::UPGRADE) {
            continue;
        }
        headers.remove(n);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Sets the forwarding headers: `host` is the request's host without its
/// port, `port` the one it was sent to.
fn forwarded(headers: &mut HeaderMap, client: &Client, host: HeaderValue, port: u16) {
    let xff = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prior) => {
            let mut v = Vec::with_capacity(prior.len() + 2 + client.ip.len());
            v.extend_from_slice(prior);
            v.extend_from_slice(b", ");
            v.extend_from_slice(client.ip.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(v)).unwrap_or_else(|_| client.ip.clone())
        }
        None => client.ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), client.ip.clone());
    let proto = if client.https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_HOST.clone(), host);
    let port = match port {
        80 => HeaderValue::from_static("80"),
        443 => HeaderValue::from_static("443"),
        p => HeaderValue::from(p),
    };
    headers.insert(X_FORWARDED_PORT.clone(), port);
}

async fn handle(mut req: Request<Incoming>, client: &Client, shared: &Shared) -> Response<Body> {
    let https = client.https;
    let start = Instant::now();
    let routes = shared.routes();
    let host = host_of(&req);
    let backend = match routes.route(&host, req.uri().path()) {
        Routed::Backend(b) => b.clone(),
        Routed::NotFound => {
            shared.metrics.count(None, 404, start);
            return own(
                StatusCode::NOT_FOUND,
                "404 Not Found: no Ingress rule matches",
            );
        }
    };
    drop(routes);
    if backend.endpoints.is_empty() {
        shared.metrics.count(Some(&backend), 503, start);
        let why = backend.why_none.as_deref().unwrap_or("no endpoint");
        return own(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("503 Service Unavailable: {why}"),
        );
    }
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let port = if https { 443 } else { 80 };
    let port = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(port);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // The host's String becomes the header's bytes, uncopied.
    let host = HeaderValue::from_maybe_shared(Bytes::from(host))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    forwarded(&mut parts.headers, client, host, port);
    // To the endpoint: HTTP/1.1 in origin form, nothing of hyper's own.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    }
    parts.version = Version::HTTP_11;
    parts.extensions.clear();
    let mut req = Some(Request::from_parts(parts, body.boxed()));
    let mut last = String::new();
    for (attempt, ep) in backend.order().enumerate() {
        if attempt > 0 {
            shared.metrics.retries.inc();
        }
        // A request hyper hands back unsent from a reused connection goes
        // again on a new one; one refused at connect, to the next endpoint.
        let mut pooled = !upgrade;
        while let Some(r) = req.take() {
            let (up, reused) = match pooled.then(|| shared.pool.checkout(ep)).flatten() {
                Some(up) => (up, true),
                None => match Upstream::connect(ep).await {
                    Ok(up) => (up, false),
                    Err(e) => {
                        tracing::debug!(%ep, "ingress: connect failed, trying the next endpoint: {e}");
                        last = format!("{ep}: {e}");
                        req = Some(r);
                        break;
                    }
                },
            };
            let sent = async {
                if upgrade {
                    upstream::exchange_upgrade(up, r)
                        .await
                        .map(|resp| (resp, None))
                } else {
                    match upstream::exchange(up, r).await {
                        (up, Ok(resp)) => Ok((resp, Some(up))),
                        (_, Err(e)) => Err(e),
                    }
                }
            };
            let failed = match tokio::time::timeout(RESPONSE_TIMEOUT, sent).await {
                Ok(Ok((resp, up))) => {
                    shared
                        .metrics
                        .count(Some(&backend), resp.status().as_u16(), start);
                    return respond(resp, up.map(|up| (up, ep, &shared.pool)), client_upgrade);
                }
                Ok(Err(failed)) => failed,
                Err(_) => {
                    shared.metrics.count(Some(&backend), 504, start);
                    return own(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("504 Gateway Timeout: {ep}"),
                    );
                }
            };
            let mut failed = failed;
            match failed.take_message() {
                Some(back) => {
                    req = Some(back);
                    last = format!("{ep}: {}", failed.error());
                    if !reused {
                        break;
                    }
                    pooled = false;
                    shared.metrics.retries.inc();
                }
                None => {
                    shared.metrics.count(Some(&backend), 502, start);
                    let e = failed.into_error();
                    let e = std::error::Error::source(&e)
                        .map_or(e.to_string(), |s| format!("{e}: {s}"));
                    return own(
                        StatusCode::BAD_GATEWAY,
                        &format!("502 Bad Gateway: {ep}: {e}"),
                    );
                }
            }
        }
    }
    shared.metrics.count(Some(&backend), 502, start);
    own(
        StatusCode::BAD_GATEWAY,
        &format!("502 Bad Gateway: no endpoint answered ({last})"),
    )
}

/// Relays an endpoint's response: its body through [`Relay`], which gives
/// the connection back to the pool at its end; a 101 splices the two
/// upgraded streams.
fn respond(
    mut resp: Response<Incoming>,
    up: Option<(Upstream, SocketAddr, &Arc<Pool>)>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client)) = (switching, client_upgrade) {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client, upstream) {
                Ok((c, u)) => {
                    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
                Err(e) => tracing::debug!("ingress: upgrade: {e}"),
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    let body = match up {
        _ if switching => Empty::new().map_err(|never| match never {}).boxed(),
        Some((up, ep, pool)) => Relay::new(body, up, pool.clone(), ep).boxed(),
        None => body.boxed(),
    };
    Response::from_parts(parts, body)
}

/// Binds `addr`, trying again (and saying why now and then) until it can:
/// the node's address may come up after the node starts.
pub async fn bind(addr: SocketAddr, what: &str) -> TcpListener {
    for attempt in 0u32.. {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if attempt % 30 == 0 => tracing::error!("ingress {what} on {addr}: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    unreachable!("the loop above only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_their_pair() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let client = Client {
            https: true,
            ip: HeaderValue::from_static("10.0.0.9"),
        };
        forwarded(&mut h, &client, HeaderValue::from_static("a.example"), 443);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-real-ip"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert_eq!(h["x-forwarded-port"], "443");
    }
}
