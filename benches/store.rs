//! Benchmark: shoal's store vs etcd 3.4, side by side in one run.
//!
//! Both run as 3 real processes on loopback with TLS on client and peer
//! traffic and fsync on. One harness drives both over HTTPS/JSON with
//! persistent connections (shoal: `PUT /shoal/v1/kv/{key}`; etcd: its v3
//! JSON gateway, `POST /v3/kv/put`), 1 KiB values, 1, 16 and 256
//! concurrent clients spread over the three members. The same etcd cluster
//! is also driven through its native gRPC client (clientv3, as
//! kube-apiserver uses it) by `target/etcd-native-bench`, a small Go
//! program (`benches/etcd-native/main.go`) with the same clients, keys,
//! value size, spread over members and duration (after a 1 s unmeasured
//! warm-up); shoal's writes/s is reported against both etcd figures. A
//! separate short run under `strace -c -f -e trace=fsync,fdatasync` counts
//! fsyncs per 1,000 acknowledged writes (strace slows the servers, so it is
//! not timed).
//!
//! Run: `cargo bench --bench store` (needs `etcd`, `strace` and the Go
//! program; the README's test script does not install them,
//! `scripts/bench-deps.sh` does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

const VALUE: usize = 1024;
const RUN: Duration = Duration::from_secs(6);

struct Procs(Vec<Child>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which system a client talks to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Shoal,
    Etcd,
}

struct Endpoints {
    addrs: Vec<SocketAddr>,
    ca: PathBuf,
    token: Option<String>,
    pids: Vec<u32>,
}

fn start_shoal(dir: &Path) -> (Procs, Endpoints) {
    let exe = env!("CARGO_BIN_EXE_shoal");
    let st = Command::new(exe)
        .args(["init", "--nodes", "3", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for i in 1..=3 {
        let cfg = dir.join(format!("node-{i}.toml"));
        // STORE_BENCH_LOGS=DIR keeps the agents' logs after the run.
        let log_dir = std::env::var("STORE_BENCH_LOGS").map_or(dir.to_path_buf(), PathBuf::from);
        let log = std::fs::File::create(log_dir.join(format!("node-{i}.log"))).unwrap();
        procs.push(
            Command::new(exe)
                .args(["agent", "--config"])
                .arg(&cfg)
                .env("SHOAL_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let text = std::fs::read_to_string(&cfg).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        addrs.push(v["listen"]["api"].as_str().unwrap().parse().unwrap());
    }
    let pids = procs.iter().map(|c| c.id()).collect();
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    (
        Procs(procs),
        Endpoints {
            addrs,
            ca: dir.join("ca.pem"),
            token: Some(token),
            pids,
        },
    )
}

fn start_etcd(dir: &Path) -> (Procs, Endpoints) {
    std::fs::create_dir_all(dir).unwrap();
    let ca = shoal::pki::ClusterCa::generate("etcd-bench").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let initial: Vec<String> = (0..3)
        .map(|i| format!("e{i}=https://127.0.0.1:{}", peer[i]))
        .collect();
    let mut procs = Vec::new();
    for i in 0..3 {
        let cert = ca.issue(&format!("e{i}"), &[]).unwrap();
        let (c, k) = (
            dir.join(format!("e{i}.pem")),
            dir.join(format!("e{i}-key.pem")),
        );
        std::fs::write(&c, &cert.cert_pem).unwrap();
        std::fs::write(&k, &cert.key_pem).unwrap();
        let log = std::fs::File::create(dir.join(format!("e{i}.log"))).unwrap();
        procs.push(
            Command::new("etcd")
                .arg(format!("--name=e{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.join(format!("e{i}.data")).display()
                ))
                .arg(format!(
                    "--listen-client-urls=https://127.0.0.1:{}",
                    client[i]
                ))
                .arg(format!(
                    "--advertise-client-urls=https://127.0.0.1:{}",
                    client[i]
                ))
                .arg(format!("--listen-peer-urls=https://127.0.0.1:{}", peer[i]))
                .arg(format!(
                    "--initial-advertise-peer-urls=https://127.0.0.1:{}",
                    peer[i]
                ))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-state=new")
                .arg(format!("--cert-file={}", c.display()))
                .arg(format!("--key-file={}", k.display()))
                .arg(format!("--peer-cert-file={}", c.display()))
                .arg(format!("--peer-key-file={}", k.display()))
                .arg(format!(
                    "--peer-trusted-ca-file={}",
                    dir.join("ca.pem").display()
                ))
                .arg("--peer-client-cert-auth")
                .arg("--log-level=warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd is installed (scripts/bench-deps.sh)"),
        );
    }
    let pids = procs.iter().map(|c| c.id()).collect();
    let addrs = client
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    (
        Procs(procs),
        Endpoints {
            addrs,
            ca: dir.join("ca.pem"),
            token: None,
            pids,
        },
    )
}

/// One persistent HTTPS/1.1 connection.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    token: Option<String>,
}

async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, token: Option<String>) -> Conn {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Conn {
        sender,
        addr,
        token,
    }
}

impl Conn {
    async fn put(&mut self, target: Target, key: &str, value: &[u8]) -> bool {
        let b64 = base64::engine::general_purpose::STANDARD;
        let (uri, body) = match target {
            Target::Shoal => (format!("/shoal/v1/kv/{key}"), value.to_vec()),
            Target::Etcd => (
                "/v3/kv/put".to_string(),
                serde_json::to_vec(
                    &serde_json::json!({"key": b64.encode(key), "value": b64.encode(value)}),
                )
                .unwrap(),
            ),
        };
        let method = if target == Target::Shoal {
            Method::PUT
        } else {
            Method::POST
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", self.addr.to_string());
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        if self.sender.ready().await.is_err() {
            return false;
        }
        match self.sender.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                ok
            }
            Err(_) => false,
        }
    }
}

struct Figures {
    acked: u64,
    writes_per_s: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

async fn run_load(
    target: Target,
    ep: &Endpoints,
    clients: usize,
    duration: Duration,
    total: Option<u64>,
) -> Figures {
    let tls = Arc::new(shoal::transport::tls::https_client_config(&ep.ca).unwrap());
    let value = Arc::new(vec![b'v'; VALUE]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = ep.addrs[c % ep.addrs.len()];
        let (tls, token, value) = (tls.clone(), ep.token.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(addr, tls, token).await;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            loop {
                if start.elapsed() >= duration || total.is_some_and(|t| n >= t / clients as u64) {
                    break;
                }
                let t = Instant::now();
                if conn.put(target, &format!("bench-{c}-{n}"), &value).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
                n += 1;
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Figures {
        acked: lat.len() as u64,
        writes_per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        errors,
    }
}

/// The Go program that drives etcd through clientv3 (built by
/// `scripts/bench-deps.sh`).
fn native_bench() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/etcd-native-bench");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/bench-deps.sh (it builds benches/etcd-native/main.go)",
        bin.display()
    );
    bin
}

/// Runs `etcd-native-bench` against the etcd members in `ep` (clientv3 over
/// TLS, trusting `ep.ca`; etcd is not started with client-cert auth).
async fn run_native(bin: &Path, ep: &Endpoints, clients: usize, duration: Duration) -> Figures {
    let endpoints: Vec<String> = ep.addrs.iter().map(|a| format!("https://{a}")).collect();
    let out = tokio::process::Command::new(bin)
        .arg(format!("-endpoints={}", endpoints.join(",")))
        .arg(format!("-cacert={}", ep.ca.display()))
        .arg(format!("-clients={clients}"))
        .arg(format!("-duration={}ms", duration.as_millis()))
        .arg(format!("-value-size={VALUE}"))
        .output()
        .await
        .expect("run target/etcd-native-bench (scripts/bench-deps.sh builds it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "etcd-native-bench failed ({}): {stderr}",
        out.status
    );
    if !stderr.trim().is_empty() {
        eprintln!("etcd-native-bench: {}", stderr.trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "etcd-native-bench printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("etcd-native-bench output lacks {k}: {v}"))
    };
    let us = |k: &str| Duration::from_nanos((num(k) * 1000.0).round() as u64);
    Figures {
        acked: num("acked") as u64,
        writes_per_s: num("writes_per_sec"),
        p50: us("p50_us"),
        p99: us("p99_us"),
        errors: num("errors") as u64,
    }
}

/// Counts fsync + fdatasync calls of `pids` while `writes` writes run.
async fn fsyncs_per_1000(target: Target, ep: &Endpoints, writes: u64) -> Option<f64> {
    let mut straces = Vec::new();
    for pid in &ep.pids {
        let out = std::env::temp_dir().join(format!("strace-{pid}-{}", shoal::pki::random_hex(3)));
        let child = Command::new("strace")
            .args(["-c", "-f", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        straces.push((child, out));
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // let strace attach
    let f = run_load(target, ep, 16, Duration::from_secs(60), Some(writes)).await;
    let acked = f.acked;
    let mut calls = 0u64;
    for (mut child, out) in straces {
        // SAFETY: a libc call with integer arguments only.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let _ = child.wait();
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        for line in text.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols
                .last()
                .is_some_and(|s| *s == "fsync" || *s == "fdatasync")
                && cols.len() >= 5
            {
                calls += cols[3].parse::<u64>().unwrap_or(0);
            }
        }
        let _ = std::fs::remove_file(out);
    }
    Some(calls as f64 * 1000.0 / acked.max(1) as f64)
}

async fn wait_writable(target: Target, ep: &Endpoints) {
    let tls = Arc::new(shoal::transport::tls::https_client_config(&ep.ca).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    for addr in &ep.addrs {
        loop {
            assert!(Instant::now() < deadline, "cluster not writable after 60 s");
            let put = tokio::time::timeout(Duration::from_secs(2), async {
                let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                drop(tcp);
                let mut c = connect(*addr, tls.clone(), ep.token.clone()).await;
                Some(c.put(target, "warmup", b"1").await)
            })
            .await;
            let ok = matches!(put, Ok(Some(true)));
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Knobs for profiling runs; the defaults are the published benchmark.
/// `STORE_BENCH_CLIENTS=256` (comma list), `STORE_BENCH_SECS=20`,
/// `STORE_BENCH_FSYNCS=0` skips the strace run.
struct Knobs {
    clients: Vec<usize>,
    run: Duration,
    fsyncs: bool,
}

impl Knobs {
    fn from_env() -> Knobs {
        let clients = std::env::var("STORE_BENCH_CLIENTS")
            .ok()
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 16, 256]);
        let run = std::env::var("STORE_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(RUN, Duration::from_secs);
        let fsyncs = std::env::var("STORE_BENCH_FSYNCS").map_or(true, |v| v != "0");
        Knobs {
            clients,
            run,
            fsyncs,
        }
    }
}

fn main() {
    shoal::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let native = native_bench();
    rt.block_on(async {
        let (_sp, shoal_ep) = start_shoal(&tmp.path().join("shoal"));
        let (_ep, etcd_ep) = start_etcd(&tmp.path().join("etcd"));
        wait_writable(Target::Shoal, &shoal_ep).await;
        wait_writable(Target::Etcd, &etcd_ep).await;
        let knobs = Knobs::from_env();
        println!(
            "| clients | system | writes/s | p50 | p99 | errors | shoal/etcd-json | shoal/etcd-native |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for &clients in &knobs.clients {
            let e = run_load(Target::Etcd, &etcd_ep, clients, knobs.run, None).await;
            let n = run_native(&native, &etcd_ep, clients, knobs.run).await;
            let s = run_load(Target::Shoal, &shoal_ep, clients, knobs.run, None).await;
            for (name, f) in [("etcd 3.4 (JSON gateway)", &e), ("etcd 3.4 (native gRPC)", &n)] {
                println!(
                    "| {clients} | {name} | {:.0} | {:?} | {:?} | {} | | |",
                    f.writes_per_s, f.p50, f.p99, f.errors
                );
            }
            println!(
                "| {clients} | shoal | {:.0} | {:?} | {:?} | {} | {:.2}x | {:.2}x |",
                s.writes_per_s,
                s.p50,
                s.p99,
                s.errors,
                s.writes_per_s / e.writes_per_s,
                s.writes_per_s / n.writes_per_s
            );
        }
        if !knobs.fsyncs {
            return;
        }
        let fe = fsyncs_per_1000(Target::Etcd, &etcd_ep, 2_000).await;
        let fs = fsyncs_per_1000(Target::Shoal, &shoal_ep, 2_000).await;
        println!();
        println!("| fsync+fdatasync per 1,000 acknowledged writes (16 clients, all 3 members) | |");
        println!("|---|---|");
        println!(
            "| etcd 3.4 | {} |",
            fe.map_or("strace unavailable".into(), |v| format!("{v:.0}"))
        );
        println!(
            "| shoal | {} |",
            fs.map_or("strace unavailable".into(), |v| format!("{v:.0}"))
        );
    });
}
