//! The Ingress's connections to endpoints: HTTP/1.1 through hyper's
//! connection-level client, kept alive in a pool per endpoint, and driven
//! by the task of the request that uses them rather than by a task of
//! their own.
//!
//! A request on a pooled connection polls that connection itself while it
//! waits for the response head ([`exchange`]) and while the response body
//! is relayed ([`Relay`]). So a request costs no hop to a connection task
//! and back: on a one-thread data plane each such hop waits its turn
//! behind every other ready connection, which is what a proxy's p99 is
//! made of. A connection goes back to the pool when its response has been
//! read to the end and hyper says it can take another request; one whose
//! response was abandoned half-way is closed.
//!
//! An idle connection is polled by no one: a close by the endpoint is seen
//! at the next checkout, and one idle for over [`IDLE_TIMEOUT`] is dropped
//! then or by the next sweep. A request that hyper hands back unsent (the
//! endpoint closed a kept-alive connection just as it was reused) is sent
//! again on a new connection, as hyper's own pooled client does.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::server::Body;

/// Idle connections kept per endpoint.
pub const MAX_IDLE_PER_ENDPOINT: usize = 1024;
/// How long a connection may sit idle before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Connection = http1::Connection<TokioIo<TcpStream>, Body>;

/// One connection to an endpoint: its request half, and the future that
/// does its I/O (boxed: it moves from the pool to a request and back, and
/// hyper's connection state is large).
pub struct Upstream {
    send: http1::SendRequest<Body>,
    conn: Pin<Box<Connection>>,
    ended: bool,
}

impl Upstream {
    /// Opens a connection to `ep`.
    pub async fn connect(ep: SocketAddr) -> std::io::Result<Upstream> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ep))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        Ok(Upstream {
            send,
            conn: Box::pin(conn),
            ended: false,
        })
    }

    /// Does the connection's pending I/O; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended {
            if let Poll::Ready(r) = self.conn.as_mut().poll(cx) {
                if let Err(e) = r {
                    tracing::debug!("ingress: upstream connection: {e}");
                }
                self.ended = true;
            }
        }
        !self.ended
    }

    /// Whether it can take another request now (reading an endpoint's
    /// close, if one is waiting).
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && self.send.is_ready()
    }
}

/// Idle connections by endpoint.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    by_endpoint: HashMap<SocketAddr, Vec<(Upstream, Instant)>>,
    swept: Option<Instant>,
}

impl Pool {
    /// The most recently used idle connection to `ep` that can still be
    /// used, if any.
    pub fn checkout(&self, ep: SocketAddr) -> Option<Upstream> {
        let now = Instant::now();
        loop {
            let (mut up, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.by_endpoint.get_mut(&ep)?.pop()?
            };
            if now.duration_since(since) <= IDLE_TIMEOUT && up.reusable() {
                return Some(up);
            }
        }
    }

    /// Keeps `up` for the next request to `ep` if it can take one.
    fn checkin(&self, ep: SocketAddr, mut up: Upstream) {
        if !up.reusable() {
            return;
        }
        let now = Instant::now();
        let mut stale = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle
                .swept
                .is_none_or(|t| now.duration_since(t) > IDLE_TIMEOUT)
            {
                idle.swept = Some(now);
                for list in idle.by_endpoint.values_mut() {
                    let fresh =
                        list.partition_point(|(_, t)| now.duration_since(*t) > IDLE_TIMEOUT);
                    stale.extend(list.drain(..fresh));
                }
                idle.by_endpoint.retain(|_, list| !list.is_empty());
            }
            let list = idle.by_endpoint.entry(ep).or_default();
            if list.len() < MAX_IDLE_PER_ENDPOINT {
                list.push((up, now));
            }
        }
        drop(stale); // closed outside the lock
    }

    /// Idle connections to `ep` (for tests and metrics).
    pub fn idle(&self, ep: SocketAddr) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.by_endpoint.get(&ep).map_or(0, Vec::len)
    }
}

/// Sends `req` on `up`, doing the connection's I/O in this task until the
/// response head arrives. A request hyper did not send comes back in the
/// error ([`http1::TrySendError::take_message`]).
pub async fn exchange(
    mut up: Upstream,
    req: Request<Body>,
) -> (
    Upstream,
    Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>>,
) {
    let mut response = std::pin::pin!(up.send.try_send_request(req));
    let r = poll_fn(|cx| {
        up.drive(cx);
        response.as_mut().poll(cx)
    })
    .await;
    (up, r)
}

/// Sends an `Upgrade` request on `up`, whose connection then runs in a
/// task of its own so the upgraded stream outlives this request.
pub async fn exchange_upgrade(
    up: Upstream,
    req: Request<Body>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>> {
    let Upstream { mut send, conn, .. } = up;
    tokio::spawn(async move {
        if let Err(e) = Pin::into_inner(conn).with_upgrades().await {
            tracing::debug!("ingress: upgraded upstream connection: {e}");
        }
    });
    send.try_send_request(req).await
}

/// An endpoint's response body on its way to the client. Polling it also
/// does its connection's I/O; once it has been read to the end the
/// connection goes back to the pool.
pub struct Relay {
    body: Incoming,
    up: Option<Upstream>,
    pool: Arc<Pool>,
    ep: SocketAddr,
    done: bool,
}

impl Relay {
    pub fn new(body: Incoming, up: Upstream, pool: Arc<Pool>, ep: SocketAddr) -> Relay {
        Relay {
            body,
            up: Some(up),
            pool,
            ep,
            done: false,
        }
    }

    fn release(&mut self) {
        if let Some(up) = self.up.take() {
            self.pool.checkin(self.ep, up);
        }
    }
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(up) = &mut this.up {
            up.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.done = true;
            this.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // A body never polled because it was empty still frees its
        // connection; one abandoned half-way closes it.
        if self.done || self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests;
