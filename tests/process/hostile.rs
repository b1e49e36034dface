//! Hostile clients against a real agent started as a default service
//! manager starts it: `RLIMIT_NOFILE` at 1,024, soft and hard, so it cannot
//! raise it. Thousands of idle TLS connections and slowloris headers must
//! not exhaust its descriptors: it keeps answering, and nothing written
//! before is lost.

use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use shoal::cli::http::ApiClient;
use shoal::config::NodeConfig;

/// Sets this process's soft and hard open-file limit.
fn set_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit with a pointer to a local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The agent of `node-1.toml` in `dir`, with at most 1,024 descriptors.
fn spawn_limited(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("node-1.log")).unwrap();
    let mut cmd = shoal();
    cmd.args(["agent", "--config"])
        .arg(dir.join("node-1.toml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(|| set_nofile(1024, 1024));
    }
    cmd.spawn().unwrap()
}

/// Opens `n` TLS connections to `addr` that then say nothing; returns
/// those whose handshake finished.
async fn idle_tls(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut held = Vec::new();
    for _ in 0..n / 100 {
        let batch = (0..100).map(|_| async {
            let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
            let name = ServerName::IpAddress(addr.ip().into());
            tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                .await
                .ok()?
                .ok()
        });
        held.extend(futures::future::join_all(batch).await.into_iter().flatten());
    }
    held
}

#[test]
fn idle_and_slow_connections_cannot_exhaust_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 1);
    // A short header deadline, so slowloris is closed within the test.
    let path = dir.path().join("node-1.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("header_read_timeout_ms = 10000"), "{text}");
    std::fs::write(
        &path,
        text.replace(
            "header_read_timeout_ms = 10000",
            "header_read_timeout_ms = 2000",
        ),
    )
    .unwrap();
    let mut agent = KillOnDrop(spawn_limited(dir.path()));
    wait_writable(dir.path(), 1);
    let out = kv(dir.path(), 1, &["put", "kept", "before"]);
    assert!(out.status.success());

    let cfg = NodeConfig::load(&path).unwrap();
    let token = std::fs::read_to_string(&cfg.auth.admin_token_file).unwrap();
    let client = ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token.trim().into())).unwrap();
    let addr = client.addr;
    let tls = shoal::transport::tls::https_client_config(&cfg.tls.ca).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    // This process holds the other ends: it needs the descriptors.
    set_nofile(8192, 8192).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 2,000 idle TLS connections: more than the agent's descriptors.
        let t = Instant::now();
        let held = idle_tls(addr, &connector, 2000).await;
        eprintln!("{} of 2000 handshakes in {:?}", held.len(), t.elapsed());
        assert!(held.len() >= 1000, "only {} handshakes", held.len());
        // Answered at once: the oldest silent connections made room.
        let t = Instant::now();
        let (code, _) = client
            .request(
                Method::GET,
                "/api/v1/namespaces",
                None,
                Duration::from_secs(10),
            )
            .await
            .expect("a GET while 2,000 idle connections were opened");
        eprintln!("GET with idle connections held: {:?}", t.elapsed());
        assert!(code.is_success(), "{code}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // Slowloris: a header line every 500 ms never finishes a request;
        // each connection is closed at the header deadline (2 s).
        let mut slow = Vec::new();
        for _ in 0..20 {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::IpAddress(addr.ip().into());
            let mut s = connector.connect(name, tcp).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            slow.push(s);
        }
        let t = Instant::now();
        let drips = slow.into_iter().map(|mut s| async move {
            let mut buf = [0u8; 256];
            loop {
                if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Instant::now();
                }
                let read = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf));
                match read.await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Instant::now(),
                    // A 408 (or anything) from the server, then the close.
                    Ok(Ok(_)) => {}
                    Err(_) => {}
                }
            }
        });
        let closed =
            tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(drips))
                .await
                .expect("slowloris connections are closed");
        let last = closed.iter().map(|c| c.duration_since(t)).max().unwrap();
        eprintln!("slowloris closed after {last:?}");
        assert!(last < Duration::from_secs(10), "{last:?}");
        let (code, _) = client
            .request(Method::GET, "/healthz", None, Duration::from_secs(5))
            .await
            .expect("a GET after slowloris");
        assert!(code.is_success(), "{code}");

        let (_, metrics) = client
            .request(Method::GET, "/metrics", None, Duration::from_secs(5))
            .await
            .unwrap();
        let metrics = String::from_utf8_lossy(&metrics);
        let evicted = metrics
            .lines()
            .find(|l| l.starts_with("shoal_api_connections_closed_total") && l.contains("evicted"))
            .unwrap_or_else(|| panic!("no eviction counted: {metrics}"));
        assert!(!evicted.ends_with(" 0"), "{evicted}");
        drop(held);
    });
    // Alive, and nothing lost.
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent is alive");
    let out = kv(dir.path(), 1, &["get", "kept"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("before"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills the agent when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
