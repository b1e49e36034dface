//! Benchmark: what 1,000 idle TLS connections held against a node's API
//! cost everyone else. GET latency (a new connection each time: TCP, TLS,
//! request, as `kubectl` makes them) with no idle connection, then with
//! 1,000 held open after their handshakes (each says nothing; the
//! listener's book may evict the oldest of them, as it would a real
//! attacker's).
//!
//! Run: `cargo bench --bench api_idle` (release build). Prints p50/p99 for
//! both and their ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use rustls::pki_types::ServerName;
use shoal::cli::http::ApiClient;
use shoal_harness::TestCluster;

const ROUNDS: usize = 2_000;
const WARMUP: usize = 200;
const IDLE: usize = 1_000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(client: &ApiClient) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        let (code, _) = client
            .request(
                Method::GET,
                "/api/v1/namespaces/default",
                None,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(code.is_success(), "{code}");
        if round >= WARMUP {
            took.push(t.elapsed());
        }
    }
    took.sort();
    (pct(&took, 0.5), pct(&took, 0.99))
}

fn main() {
    shoal::install_crypto_provider();
    // The held connections' ends are this process's too.
    let _ = shoal::fdlimit::raise();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = TestCluster::start(1).expect("node starts");
    let cfg = c.config(1).clone();
    let token = std::fs::read_to_string(&cfg.auth.admin_token_file).unwrap();
    let client = ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token.trim().into())).unwrap();
    rt.block_on(async {
        shoal_harness::wait_until(Duration::from_secs(30), || async {
            match client
                .request(
                    Method::GET,
                    "/api/v1/namespaces/default",
                    None,
                    Duration::from_secs(5),
                )
                .await
            {
                Ok((code, _)) if code.is_success() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap();
        let (p50, p99) = measure(&client).await;
        println!("no idle connections:        GET p50 {p50:?}  p99 {p99:?}");

        let tls = shoal::transport::tls::https_client_config(&cfg.tls.ca).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let mut held = Vec::new();
        for _ in 0..IDLE {
            let tcp = tokio::net::TcpStream::connect(client.addr).await.unwrap();
            let name = ServerName::IpAddress(client.addr.ip().into());
            held.push(connector.connect(name, tcp).await.unwrap());
        }
        let (q50, q99) = measure(&client).await;
        println!("{IDLE} idle TLS connections: GET p50 {q50:?}  p99 {q99:?}");
        println!(
            "ratio (idle / none): p50 {:.2}x  p99 {:.2}x",
            q50.as_secs_f64() / p50.as_secs_f64(),
            q99.as_secs_f64() / p99.as_secs_f64()
        );
        drop(held);
    });
}
