//! Benchmark: remote `ask` latency and `tell` throughput between two nodes
//! on loopback, side by side with a raw quinn echo of the same payload over
//! the same kind of connection (QUIC, mutual TLS, same length framing).
//!
//! Run: `cargo bench --bench transport` (release build). Prints a table of
//! p50/p99 latency and throughput, and the actor/raw ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal::actor::diag::{Echo, Record, RecordedCount, ACTOR};
use shoal::actor::ActorPath;
use shoal::testing::TestCluster;
use shoal::transport::frame::{read_frame, write_frame};
use shoal::transport::tls::{quic_client_config, quic_server_config, TlsMaterial};

const ROUNDS: usize = 5_000;
const WARMUP: usize = 500;
const TELLS: u64 = 50_000;
const MAX: usize = 8 << 20;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Raw {
    conn: quinn::Connection,
    _server: quinn::Endpoint,
    _client: quinn::Endpoint,
}

async fn raw_pair(dir: &std::path::Path) -> Raw {
    let m1 = TlsMaterial::load(
        &dir.join("ca.pem"),
        &dir.join("node-1/cert.pem"),
        &dir.join("node-1/key.pem"),
    )
    .unwrap();
    let m2 = TlsMaterial::load(
        &dir.join("ca.pem"),
        &dir.join("node-2/cert.pem"),
        &dir.join("node-2/key.pem"),
    )
    .unwrap();
    let sc = quinn::crypto::rustls::QuicServerConfig::try_from(quic_server_config(&m2).unwrap())
        .unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(sc)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(inc) = srv.accept().await {
            tokio::spawn(async move {
                let conn = inc.await.unwrap();
                loop {
                    tokio::select! {
                        bi = conn.accept_bi() => {
                            let Ok((mut send, mut recv)) = bi else { return };
                            tokio::spawn(async move {
                                // Echo every frame; at end of stream, answer with a count.
                                let mut n = 0u64;
                                while let Ok(Some(f)) = read_frame(&mut recv, MAX).await {
                                    n += 1;
                                    if f.first() != Some(&b'T') {
                                        let _ = write_frame(&mut send, &f, MAX).await;
                                    }
                                }
                                let _ = write_frame(&mut send, &n.to_be_bytes(), MAX).await;
                                let _ = send.finish();
                            });
                        }
                    }
                }
            });
        }
    });
    let cc = quinn::crypto::rustls::QuicClientConfig::try_from(quic_client_config(&m1).unwrap())
        .unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(cc)));
    let conn = client.connect(addr, "node-2").unwrap().await.unwrap();
    Raw {
        conn,
        _server: server,
        _client: client,
    }
}

async fn raw_latency(raw: &Raw, payload: &[u8]) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
        write_frame(&mut send, payload, MAX).await.unwrap();
        send.finish().unwrap();
        let f = read_frame(&mut recv, MAX).await.unwrap().unwrap();
        assert_eq!(f.len(), payload.len());
        if i >= WARMUP {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    lat
}

async fn raw_tells(raw: &Raw, payload: &[u8]) -> f64 {
    let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
    let t = Instant::now();
    // 'T'-prefixed frames are counted, not echoed, by the raw server.
    let mut body: Vec<u8> = payload.to_vec();
    body[0] = b'T';
    for _ in 0..TELLS {
        write_frame(&mut send, &body, MAX).await.unwrap();
    }
    send.finish().unwrap();
    let last = read_frame(&mut recv, MAX).await.unwrap().unwrap();
    let n = u64::from_be_bytes(last.try_into().unwrap());
    assert_eq!(n, TELLS);
    TELLS as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    shoal::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = TestCluster::start(2).expect("cluster");
        c.wait_mesh(Duration::from_secs(20)).await.unwrap();
        let raw = raw_pair(&c.path()).await;
        println!("| payload | path | p50 | p99 | ratio p50 | ratio p99 |");
        println!("|---|---|---|---|---|---|");
        for size in [64usize, 4096] {
            let payload = vec![0xabu8; size];
            let p = payload.clone();
            let actor = c
                .on(1, move |h| async move {
                    let to = ActorPath::new(ACTOR, "node-2");
                    let mut lat = Vec::with_capacity(ROUNDS);
                    for i in 0..WARMUP + ROUNDS {
                        let t = Instant::now();
                        let r = h
                            .actors
                            .ask(&to, Echo(p.clone()), Duration::from_secs(5))
                            .await
                            .unwrap();
                        assert_eq!(r.len(), p.len());
                        if i >= WARMUP {
                            lat.push(t.elapsed());
                        }
                    }
                    lat.sort();
                    lat
                })
                .await;
            let raw_lat = raw_latency(&raw, &payload).await;
            let (a50, a99, r50, r99) = (
                pct(&actor, 0.5),
                pct(&actor, 0.99),
                pct(&raw_lat, 0.5),
                pct(&raw_lat, 0.99),
            );
            println!("| {size} B | raw quinn echo | {r50:?} | {r99:?} | | |");
            println!(
                "| {size} B | actor ask | {a50:?} | {a99:?} | {:.2}x | {:.2}x |",
                a50.as_secs_f64() / r50.as_secs_f64(),
                a99.as_secs_f64() / r99.as_secs_f64()
            );
        }
        // Throughput: one-way messages of 64 B.
        let payload = vec![0xcdu8; 64];
        let raw_rate = raw_tells(&raw, &payload).await;
        let actor_rate = c
            .on(1, move |h| async move {
                let to = ActorPath::new(ACTOR, "node-2");
                let t = Instant::now();
                for v in 0..TELLS {
                    h.actors
                        .tell(
                            &to,
                            Record {
                                from: "bench".into(),
                                value: v,
                            },
                        )
                        .await
                        .unwrap();
                }
                loop {
                    let n = h
                        .actors
                        .ask(
                            &to,
                            RecordedCount {
                                from: "bench".into(),
                            },
                            Duration::from_secs(30),
                        )
                        .await
                        .unwrap();
                    if n == TELLS {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                TELLS as f64 / t.elapsed().as_secs_f64()
            })
            .await;
        println!();
        println!("| one-way 64 B messages | msgs/s |");
        println!("|---|---|");
        println!("| raw quinn frames, one stream | {raw_rate:.0} |");
        println!(
            "| actor tell | {actor_rate:.0} ({:.2}x of raw) |",
            actor_rate / raw_rate
        );
    });
}
