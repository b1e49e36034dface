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
use shoal::transport::frame::{read_frame, write_frame};
use shoal::transport::tls::{quic_client_config, quic_server_config, TlsMaterial};
use shoal_harness::TestCluster;

const ROUNDS: usize = 5_000;
const WARMUP: usize = 500;
const TELLS: u64 = 50_000;
const MAX: usize = 8 << 20;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The raw echo server runs on its own runtime, built like a node's.
fn raw_server(dir: &std::path::Path, threads: usize) -> std::net::SocketAddr {
    let m2 = TlsMaterial::load(
        &dir.join("ca.pem"),
        &dir.join("node-2/cert.pem"),
        &dir.join("node-2/key.pem"),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = std::env::var("RAW_IN_ACTIX").is_ok();
        let fut = async move {
            let sc =
                quinn::crypto::rustls::QuicServerConfig::try_from(quic_server_config(&m2).unwrap())
                    .unwrap();
            let server = quinn::Endpoint::server(
                quinn::ServerConfig::with_crypto(Arc::new(sc)),
                "127.0.0.1:0".parse().unwrap(),
            )
            .unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            while let Some(inc) = server.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = inc.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            // Echo every frame, except 'T' frames, which are
                            // counted; at end of stream, answer the count.
                            let mut n = 0u64;
                            while let Ok(Some(f)) = read_frame(&mut recv, MAX).await {
                                if f.first() == Some(&b'T') {
                                    n += 1;
                                } else {
                                    let _ = write_frame(&mut send, &f, MAX).await;
                                }
                            }
                            if n > 0 {
                                let _ = write_frame(&mut send, &n.to_be_bytes(), MAX).await;
                            }
                            let _ = send.finish();
                        });
                    }
                });
            }
        };
        if sys {
            actix_rt::System::with_tokio_rt(move || {
                shoal::actor::local::runtime(threads, "raw-server")
            })
            .block_on(fut);
        } else {
            shoal::actor::local::runtime(threads, "raw-server").block_on(fut);
        }
    });
    rx.recv().unwrap()
}

struct Raw {
    conn: quinn::Connection,
    _client: quinn::Endpoint,
}

async fn raw_client(dir: &std::path::Path, addr: std::net::SocketAddr) -> Raw {
    let m1 = TlsMaterial::load(
        &dir.join("ca.pem"),
        &dir.join("node-1/cert.pem"),
        &dir.join("node-1/key.pem"),
    )
    .unwrap();
    let cc = quinn::crypto::rustls::QuicClientConfig::try_from(quic_client_config(&m1).unwrap())
        .unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(cc)));
    let conn = client.connect(addr, "node-2").unwrap().await.unwrap();
    Raw {
        conn,
        _client: client,
    }
}

async fn raw_batch(raw: &Raw, payload: &[u8], n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
        write_frame(&mut send, payload, MAX).await.unwrap();
        send.finish().unwrap();
        let f = read_frame(&mut recv, MAX).await.unwrap().unwrap();
        assert_eq!(f.len(), payload.len());
        lat.push(t.elapsed());
    }
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

enum RawCmd {
    Batch(usize, usize, std::sync::mpsc::Sender<Vec<Duration>>),
    /// Raw client, but the server is node-2's transport (a real envelope).
    ToNode(
        std::net::SocketAddr,
        usize,
        std::sync::mpsc::Sender<Vec<Duration>>,
    ),
    Tells(std::sync::mpsc::Sender<f64>),
}

/// The raw client lives on its own runtime (built like node-1's) and runs
/// batches on command, so raw and actor batches can be interleaved.
fn raw_client_thread(
    dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
    threads: usize,
) -> std::sync::mpsc::Sender<RawCmd> {
    let (tx, rx) = std::sync::mpsc::channel::<RawCmd>();
    std::thread::spawn(move || {
        shoal::actor::local::runtime(threads, "raw-client").block_on(async move {
            let raw = raw_client(&dir, addr).await;
            while let Ok(cmd) = rx.recv() {
                match cmd {
                    RawCmd::Batch(size, n, back) => {
                        let _ = back.send(raw_batch(&raw, &vec![0xabu8; size], n).await);
                    }
                    RawCmd::ToNode(node2, n, back) => {
                        let to_node = raw_client(&dir, node2).await;
                        let env = shoal::actor::envelope::Envelope {
                            kind: shoal::actor::envelope::Kind::Ask,
                            to: ACTOR.into(),
                            from: "node-1".into(),
                            tag: "shoal.diag.echo/1".into(),
                            corr: 1,
                            budget_ms: 5000,
                            payload: postcard::to_allocvec(&Echo(vec![0xab; 64])).unwrap(),
                        }
                        .encode();
                        let mut lat = Vec::with_capacity(n);
                        for i in 0..n + WARMUP {
                            let t = Instant::now();
                            let (mut send, mut recv) = to_node.conn.open_bi().await.unwrap();
                            write_frame(&mut send, &env, MAX).await.unwrap();
                            send.finish().unwrap();
                            read_frame(&mut recv, MAX).await.unwrap().unwrap();
                            if i >= WARMUP {
                                lat.push(t.elapsed());
                            }
                        }
                        let _ = back.send(lat);
                    }
                    RawCmd::Tells(back) => {
                        let _ = back.send(raw_tells(&raw, &[0xcdu8; 64]).await);
                    }
                }
            }
        })
    });
    tx
}

const BATCH: usize = 250;

fn main() {
    shoal::install_crypto_provider();
    let threads: usize = std::env::var("SHOAL_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    println!("node runtime worker_threads = {threads} (raw quinn peers run on runtimes built the same way)");
    let c = TestCluster::start_with(2, |cfg| cfg.worker_threads = threads).expect("cluster");
    let dir = c.path();
    let raw_addr = raw_server(&dir, threads);
    let driver = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    driver
        .block_on(c.wait_mesh(Duration::from_secs(20)))
        .unwrap();
    let raw = raw_client_thread(dir.clone(), raw_addr, threads);
    let raw_batch = |size: usize, n: usize| {
        let (tx, rx) = std::sync::mpsc::channel();
        raw.send(RawCmd::Batch(size, n, tx)).unwrap();
        rx.recv().unwrap()
    };
    driver.block_on(async {
        println!("| payload | path | p50 | p99 | ratio p50 | ratio p99 |");
        println!("|---|---|---|---|---|---|");
        for size in [64usize, 4096] {
            let actor_batch = |n: usize| {
                let p = vec![0xabu8; size];
                c.on(1, move |h| async move {
                    let to = ActorPath::new(ACTOR, "node-2");
                    let mut lat = Vec::with_capacity(n);
                    for _ in 0..n {
                        let t = Instant::now();
                        let r = h
                            .actors
                            .ask(&to, Echo(p.clone()), Duration::from_secs(5))
                            .await
                            .unwrap();
                        assert_eq!(r.len(), p.len());
                        lat.push(t.elapsed());
                    }
                    lat
                })
            };
            // Warm up both, then interleave batches so drift hits both alike.
            raw_batch(size, WARMUP);
            actor_batch(WARMUP).await;
            let (mut actor, mut raw_lat) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS / BATCH {
                raw_lat.extend(raw_batch(size, BATCH));
                actor.extend(actor_batch(BATCH).await);
            }
            actor.sort();
            raw_lat.sort();
            let raw_lat = &raw_lat;
            let (a50, a99, r50, r99) = (
                pct(&actor, 0.5),
                pct(&actor, 0.99),
                pct(raw_lat, 0.5),
                pct(raw_lat, 0.99),
            );
            println!("| {size} B | raw quinn echo | {r50:?} | {r99:?} | | |");
            println!(
                "| {size} B | actor ask | {a50:?} | {a99:?} | {:.2}x | {:.2}x |",
                a50.as_secs_f64() / r50.as_secs_f64(),
                a99.as_secs_f64() / r99.as_secs_f64()
            );
        }
        // The same ask to the local node: registry + codec + actix mailbox,
        // no network. Isolates what the actor layer itself costs.
        let local = c
            .on(1, move |h| async move {
                let to = ActorPath::new(ACTOR, "node-1");
                let mut lat = Vec::with_capacity(ROUNDS);
                for _ in 0..ROUNDS {
                    let t = Instant::now();
                    h.actors
                        .ask(&to, Echo(vec![0xab; 64]), Duration::from_secs(5))
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat.sort();
                lat
            })
            .await;
        println!(
            "| 64 B | actor ask to the local node (no network) | {:?} | {:?} | | |",
            pct(&local, 0.5),
            pct(&local, 0.99)
        );
        {
            let (tx, rx) = std::sync::mpsc::channel();
            raw.send(RawCmd::ToNode(c.node(2).quic_addr, ROUNDS, tx))
                .unwrap();
            let mut lat = rx.recv().unwrap();
            lat.sort();
            println!(
                "| 64 B | raw client → node-2 transport (server side only) | {:?} | {:?} | | |",
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
        let raw_rate = {
            let (tx, rx) = std::sync::mpsc::channel();
            raw.send(RawCmd::Tells(tx)).unwrap();
            rx.recv().unwrap()
        };
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
