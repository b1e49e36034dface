//! The leanest reverse proxy hyper allows, for `scripts/bench-ingress.sh`:
//! the floor under any hyper-based proxy, shoal's Ingress among them.
//!
//! One thread (a current-thread runtime, as the Ingress's data plane in the
//! benchmark); each client connection gets one upstream connection of its
//! own, opened at accept, and one task polls both, so a request costs no
//! pool, no routing, no header rewriting, no boxing and no hop between
//! tasks. The request and the response bodies are handed through as hyper
//! gives them. This is not a proxy anyone should run (no limits, no
//! forwarding headers, one backend): it is the cost of hyper's parsing and
//! encoding on both sides, measured beside nginx and HAProxy.
//!
//! `bare_hyper_proxy LISTEN BACKEND`, e.g. `127.0.0.1:9083 10.88.1.5:8080`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_hyper_proxy LISTEN BACKEND");
        std::process::exit(2);
    };
    let parse = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{s}: {e}")))
    };
    let (listen, backend) = (parse(&listen)?, parse(&backend)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (client, _) = listener.accept().await?;
            tokio::task::spawn_local(async move {
                if let Err(e) = relay(client, backend).await {
                    eprintln!("bare_hyper_proxy: {e}");
                }
            });
        }
    })
}

/// Serves one client connection over one upstream connection of its own.
async fn relay(client: TcpStream, backend: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    client.set_nodelay(true)?;
    let upstream = TcpStream::connect(backend).await?;
    upstream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
    let send = Rc::new(RefCell::new(send));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // HTTP/1.1 serves one request at a time per connection, so the
        // borrow never meets another; the returned future holds none.
        let reply = send.borrow_mut().send_request(req);
        async move { reply.await.map(|r: Response<Incoming>| r) }
    });
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(client), service);
    tokio::select! {
        r = server => r?,
        r = conn => r?,
    }
    Ok(())
}
