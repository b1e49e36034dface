//! DNS over TCP with a cap on connections: hickory-server's TCP listener
//! accepts every connection it is offered, so the node's DNS accepts its
//! own, at most [`MAX_TCP_CONNECTIONS`] at once (more are closed at
//! accept), and hands each length-prefixed message (RFC 1035 §4.2.2) to
//! the same handler UDP queries go to. A connection idle for
//! `TCP_IDLE` or sending a malformed message is closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::authority::{MessageRequest, MessageResponse};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{BinDecodable, BinEncoder};
use hickory_server::proto::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};

/// TCP clients served at once.
pub const MAX_TCP_CONNECTIONS: usize = 512;

/// Serves `listener` with `handler`, at most `max` clients at once,
/// forever.
pub async fn serve<H: RequestHandler>(
    handler: Arc<H>,
    listener: TcpListener,
    idle: Duration,
    max: usize,
) {
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("dns: tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "dns: over {max} TCP clients, closed");
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(handler, stream, peer, idle).await {
                tracing::debug!(%peer, "dns: tcp: {e}");
            }
        });
    }
}

async fn connection<H: RequestHandler>(
    handler: Arc<H>,
    stream: TcpStream,
    peer: SocketAddr,
    idle: Duration,
) -> io::Result<()> {
    let (mut rd, wr) = stream.into_split();
    let out = Reply(Arc::new(Mutex::new(wr)));
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(idle, rd.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a message cut short"))??;
        let msg = MessageRequest::from_bytes(&buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let request = Request::new(msg, peer, Protocol::Tcp);
        handler.handle_request(&request, out.clone()).await;
    }
}

/// Writes a response back on its connection, length first.
#[derive(Clone)]
struct Reply(Arc<Mutex<OwnedWriteHalf>>);

#[async_trait::async_trait]
impl ResponseHandler for Reply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> io::Result<ResponseInfo> {
        let mut bytes = Vec::with_capacity(512);
        let info = {
            let mut enc = BinEncoder::new(&mut bytes);
            response
                .destructive_emit(&mut enc)
                .map_err(|e| io::Error::other(e.to_string()))?
        };
        let len = u16::try_from(bytes.len())
            .map_err(|_| io::Error::other("a response over 65,535 bytes"))?;
        let mut w = self.0.lock().await;
        w.write_all(&len.to_be_bytes()).await?;
        w.write_all(&bytes).await?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use hickory_server::proto::op::{Message, Query, ResponseCode};
    use hickory_server::proto::rr::{Name, RecordType};

    use super::*;
    use crate::dns::{Dns, DnsMetrics, Zone};

    /// One A query over `stream`: the response code, or why none came.
    async fn ask(stream: &mut TcpStream) -> Result<ResponseCode, String> {
        let mut q = Message::new();
        q.add_query(Query::query(
            Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let bytes = q.to_vec().unwrap();
        let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
        let send = async {
            stream.write_all(&len).await?;
            stream.write_all(&bytes).await?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf).await?;
            io::Result::Ok(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(5), send)
            .await
            .map_err(|_| "no answer in 5 s".to_string())?
            .map_err(|e| e.to_string())?;
        Message::from_vec(&buf)
            .map(|m| m.response_code())
            .map_err(|e| e.to_string())
    }

    /// Whether the server closed `stream` (EOF within 5 s).
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn tcp_clients_are_capped_and_garbage_closes_only_its_connection() {
        let zone = Arc::new(RwLock::new(Zone::new("cluster.local")));
        let dns = Arc::new(Dns::new(zone, &[], DnsMetrics::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(serve(dns, listener, Duration::from_secs(30), 3));
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(at).await.unwrap();
            assert_eq!(ask(&mut s).await, Ok(ResponseCode::NXDomain));
            held.push(s);
        }
        // A fourth is closed at accept.
        let mut extra = TcpStream::connect(at).await.unwrap();
        assert!(closed(&mut extra).await, "a client over the cap was served");
        // Garbage closes that connection only; its slot is free again.
        let mut bad = held.pop().unwrap();
        bad.write_all(&[0, 4, 1, 2, 3, 4]).await.unwrap();
        assert!(closed(&mut bad).await);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = TcpStream::connect(at).await.unwrap();
            match ask(&mut s).await {
                Ok(code) => {
                    assert_eq!(code, ResponseCode::NXDomain);
                    break;
                }
                Err(e) => assert!(std::time::Instant::now() < deadline, "no slot freed: {e}"),
            }
        }
        // The held clients still get answers.
        for s in &mut held {
            assert_eq!(ask(s).await, Ok(ResponseCode::NXDomain));
        }
    }
}
