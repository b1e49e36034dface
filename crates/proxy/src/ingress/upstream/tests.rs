//! The pool against small raw-HTTP endpoints that count their connections:
//! reuse, an empty body's connection freed unpolled, an abandoned body's
//! connection closed, and a close by the endpoint seen at checkout with
//! the request handed back unsent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// How an endpoint answers each request.
#[derive(Clone, Copy)]
enum Answer {
    /// "hello" with its length, kept alive.
    Hello,
    /// 204, no body.
    NoContent,
    /// A 1 MiB body, kept alive.
    Large,
    /// "hello", then the endpoint closes the connection without saying so.
    HelloThenClose,
}

/// An endpoint answering every request on a connection with `answer`;
/// returns its address and its count of accepted connections.
async fn endpoint(answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head at a time (the tests send no bodies).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let reply: Vec<u8> = match answer {
                        Answer::Hello | Answer::HelloThenClose => {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()
                        }
                        Answer::NoContent => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                        Answer::Large => {
                            let mut r =
                                b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
                            r.resize(r.len() + (1 << 20), b'x');
                            r
                        }
                    };
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                    if let Answer::HelloThenClose = answer {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn get() -> Request<Body> {
    let mut r = Request::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    r.headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_static("t"));
    r
}

/// One request through the pool as the server makes it: a pooled
/// connection or a new one, then the body relayed to its end.
async fn fetch(pool: &Arc<Pool>, ep: SocketAddr) -> (u16, Bytes) {
    let up = match pool.checkout(ep) {
        Some(up) => up,
        None => Upstream::connect(ep).await.unwrap(),
    };
    let (up, resp) = exchange(up, get()).await;
    let resp = resp.unwrap_or_else(|e| panic!("{}", e.error()));
    let status = resp.status().as_u16();
    let body = Relay::new(resp.into_body(), up, pool.clone(), ep);
    (status, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn a_connection_is_reused_once_its_response_is_read() {
    let (ep, accepted) = endpoint(Answer::Hello).await;
    let pool = Arc::new(Pool::default());
    for i in 0..5 {
        assert_eq!(
            fetch(&pool, ep).await,
            (200, Bytes::from("hello")),
            "request {i}"
        );
        assert_eq!(pool.idle(ep), 1, "after request {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_empty_body_frees_its_connection_unpolled() {
    let (ep, accepted) = endpoint(Answer::NoContent).await;
    let pool = Arc::new(Pool::default());
    for _ in 0..3 {
        let up = match pool.checkout(ep) {
            Some(up) => up,
            None => Upstream::connect(ep).await.unwrap(),
        };
        let (up, resp) = exchange(up, get()).await;
        let resp = resp.unwrap_or_else(|e| panic!("{}", e.error()));
        assert_eq!(resp.status(), 204);
        // The server would not poll an ended body: dropping it frees it.
        drop(Relay::new(resp.into_body(), up, pool.clone(), ep));
        assert_eq!(pool.idle(ep), 1);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_abandoned_body_closes_its_connection() {
    let (ep, accepted) = endpoint(Answer::Large).await;
    let pool = Arc::new(Pool::default());
    let up = Upstream::connect(ep).await.unwrap();
    let (up, resp) = exchange(up, get()).await;
    let mut body = Relay::new(resp.unwrap().into_body(), up, pool.clone(), ep);
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| d.len() < 1 << 20));
    drop(body);
    assert_eq!(pool.idle(ep), 0, "half a response must not be reused");
    // The next request gets a whole answer on a new connection.
    let (status, bytes) = fetch(&pool, ep).await;
    assert_eq!((status, bytes.len()), (200, 1 << 20));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_endpoints_close_is_seen_and_an_unsent_request_comes_back() {
    let (ep, accepted) = endpoint(Answer::HelloThenClose).await;
    let pool = Arc::new(Pool::default());
    let up = Upstream::connect(ep).await.unwrap();
    let (mut up, resp) = exchange(up, get()).await;
    let body = resp.unwrap().into_body().collect().await.unwrap();
    assert_eq!(body.to_bytes(), "hello");
    // The close reaches the connection; it is not kept, and a request on
    // it comes back unsent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.reusable() {
        assert!(Instant::now() < deadline, "the endpoint's close never seen");
        tokio::task::yield_now().await;
    }
    let (_, again) = exchange(up, get()).await;
    let mut failed = again.expect_err("a closed connection cannot send");
    assert!(
        failed.take_message().is_some(),
        "the request must come back"
    );
    // Requests in a row each get a good answer.
    for _ in 0..3 {
        assert_eq!(fetch(&pool, ep).await, (200, Bytes::from("hello")));
        // Kept while its close is on the way, dropped once it arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(up) = pool.checkout(ep) {
            assert!(
                Instant::now() < deadline,
                "a closed connection stayed pooled"
            );
            pool.checkin(ep, up);
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}
