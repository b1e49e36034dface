//! A minimal HTTPS client for the CLI: one request per connection, the
//! cluster CA as the only trust root, a bearer token, a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// Where and how to reach one node's API.
#[derive(Clone)]
pub struct ApiClient {
    pub addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(addr: SocketAddr, ca: &Path, token: Option<String>) -> anyhow::Result<ApiClient> {
        let tls = crate::transport::tls::https_client_config(ca)?;
        let addr = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        Ok(ApiClient {
            addr,
            tls: Arc::new(tls),
            token,
        })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        tokio::time::timeout(timeout, self.request_inner(method, path, body))
            .await
            .map_err(|_| anyhow!("{} did not answer within {:?}", self.addr, timeout))?
    }

    /// GET `path` and hand each line of the (streamed) body to `on_line`
    /// as it arrives, until the body ends or `on_line` returns false.
    /// A non-success status is an error carrying the body's message.
    pub async fn stream_lines(
        &self,
        path: &str,
        connect_timeout: Duration,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<()> {
        let resp = tokio::time::timeout(connect_timeout, self.send(Method::GET, path, None))
            .await
            .map_err(|_| anyhow!("{} did not answer within {:?}", self.addr, connect_timeout))??;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(anyhow!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if !on_line(String::from_utf8_lossy(&line[..nl]).as_ref()) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect {}", self.addr))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = connector
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .with_context(|| format!("TLS with {}", self.addr))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(sender.send_request(req).await?)
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let (status, body) = self
            .request(Method::GET, path, None, Duration::from_secs(10))
            .await?;
        if !status.is_success() {
            return Err(anyhow!(
                "{} {}: {}",
                status,
                path,
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).with_context(|| format!("{path}: unexpected body"))
    }
}

/// Client for the node described by `cfg`.
pub fn client_for(cfg: &crate::config::NodeConfig) -> anyhow::Result<ApiClient> {
    let token = crate::pki::read_token(&cfg.auth.admin_token_file)?;
    ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token))
}
