//! The built-in Ingress controller, served by a worker-only node on its own
//! address (127.0.0.1 here: no root needed, as the README's degraded mode
//! says) in front of backends this test runs itself, named to the cluster
//! by selector-less Services and their EndpointSlices:
//! hosts and paths to two Services, TLS by SNI from a Secret (which the
//! worker may read because an Ingress names it), the default certificate
//! and a Warning Event for a missing Secret, 503 without endpoints, a
//! failed connect retried on the next endpoint, X-Forwarded-* headers, an
//! upgraded connection spliced through, the status naming the nodes, and
//! edits swapped in while a client sends 100 requests/s without losing one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use shoal::config::Role;
use shoal_harness::{wait_until, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::kube_api::api_ready;

/// A backend answering `<name> xff=… proto=… host=… path=…`, and echoing
/// bytes after a 101 for any `Upgrade` request.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |mut req: Request<Incoming>| async move {
                        let headers = req.headers().clone();
                        let h = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        if req.headers().contains_key("upgrade") {
                            let up = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = up.await else { return };
                                let mut io = TokioIo::new(up);
                                let mut buf = [0u8; 64];
                                while let Ok(n @ 1..) = io.read(&mut buf).await {
                                    if io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let mut r = Response::new(http_body_util::Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                            r.headers_mut()
                                .insert("upgrade", h("upgrade").parse().unwrap());
                            r.headers_mut()
                                .insert("connection", "upgrade".parse().unwrap());
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        let body = format!(
                            "{name} xff={} proto={} host={} path={}",
                            h("x-forwarded-for"),
                            h("x-forwarded-proto"),
                            h("host"),
                            req.uri().path()
                        );
                        Ok(Response::new(http_body_util::Full::new(Bytes::from(body))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request on a new connection over `io`: (status, body).
async fn send<I>(io: I, host: &str, path: &str) -> Result<(u16, String), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

async fn get(at: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(at).await.map_err(|e| e.to_string())?;
    send(stream, host, path).await
}

async fn get_tls(
    at: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    sni: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(at).await.map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let stream = tls.connect(name, stream).await.map_err(|e| e.to_string())?;
    send(stream, sni, path).await
}

/// A selector-less Service on port 80 whose endpoints are `at`.
async fn service(k: &kube::Client, name: &str, at: &[SocketAddr]) {
    let svcs: Api<Service> = Api::default_namespaced(k.clone());
    let svc =
        json!({"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80}]}});
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(svc).unwrap(),
    )
    .await
    .unwrap();
    let endpoints: Vec<_> = at
        .iter()
        .map(|a| json!({"addresses": [a.ip().to_string()], "conditions": {"ready": true}}))
        .collect();
    // One slice per port: the endpoints of a slice share its ports.
    let slices: Api<EndpointSlice> = Api::default_namespaced(k.clone());
    for (i, (a, e)) in at.iter().zip(endpoints).enumerate() {
        let slice = json!({
            "metadata": {"name": format!("{name}-{i}"),
                "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": a.port(), "protocol": "TCP"}],
            "endpoints": [e],
        });
        slices
            .create(
                &PostParams::default(),
                &serde_json::from_value(slice).unwrap(),
            )
            .await
            .unwrap();
    }
}

fn path(p: &str, kind: &str, svc: &str) -> serde_json::Value {
    json!({"path": p, "pathType": kind,
        "backend": {"service": {"name": svc, "port": {"number": 80}}}})
}

/// Records the server's end-entity certificate and accepts any.
#[derive(Debug)]
struct Capture(
    std::sync::Mutex<Vec<u8>>,
    Arc<rustls::crypto::CryptoProvider>,
);

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_routes_hosts_and_paths_serves_tls_by_sni_and_swaps_edits_without_loss() {
    // 100 requests/s and a dozen edits: not beside a test that times an
    // election (CI saw writes resume after 2.5 s, over its 2 s bound).
    let _timing = crate::timing_guard().await;
    let (http_port, https_port) = (dead_port(), dead_port());
    let c = TestCluster::start_with(2, |cfg| {
        cfg.store.initial_voters = vec!["node-1".into()];
        if cfg.name == "node-2" {
            cfg.roles = vec![Role::Worker];
            cfg.kubelet.ingress_http_port = http_port;
            cfg.kubelet.ingress_https_port = https_port;
        }
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let https: SocketAddr = ([127, 0, 0, 1], https_port).into();
    let (a, b) = (backend("alpha").await, backend("beta").await);
    service(&k, "alpha", &[a]).await;
    // One endpoint refuses connections: every request still answers.
    service(&k, "beta", &[b, ([127, 0, 0, 1], dead_port()).into()]).await;
    service(&k, "empty", &[]).await;

    // TLS: a certificate for secure.example from a CA of the test's, in
    // a Secret.
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["secure.example".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(k.clone());
    let secret = json!({"metadata": {"name": "secure-tls"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}});
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).unwrap(),
        )
        .await
        .unwrap();

    let ings: Api<Ingress> = Api::default_namespaced(k.clone());
    let ing = json!({
        "metadata": {"name": "web"},
        "spec": {
            "tls": [{"hosts": ["secure.example"], "secretName": "secure-tls"},
                    {"hosts": ["nosecret.example"], "secretName": "absent"}],
            "rules": [
                {"host": "a.example", "http": {"paths": [path("/", "Prefix", "alpha"),
                                                         path("/b", "Prefix", "beta")]}},
                {"host": "b.example", "http": {"paths": [path("/", "Prefix", "beta"),
                                                         path("/none", "Exact", "empty")]}},
                {"host": "secure.example", "http": {"paths": [path("/", "Prefix", "alpha")]}},
                {"host": "nosecret.example", "http": {"paths": [path("/", "Prefix", "alpha")]}},
            ]
        }
    });
    ings.create(
        &PostParams::default(),
        &serde_json::from_value(ing).unwrap(),
    )
    .await
    .unwrap();

    // Two hosts and two paths to two Services.
    wait_until(Duration::from_secs(30), || async {
        match get(http, "a.example", "/x").await? {
            (200, body) if body.starts_with("alpha") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("a.example routes to alpha");
    let (status, body) = get(http, "a.example:80", "/b/c").await.unwrap();
    assert_eq!(
        (status, body.split(' ').next()),
        (200, Some("beta")),
        "{body}"
    );
    assert!(
        body.contains("xff=127.0.0.1 proto=http host=a.example:80 path=/b/c"),
        "{body}"
    );
    let (status, body) = get(http, "b.example", "/anything").await.unwrap();
    assert_eq!((status, body.split(' ').next()), (200, Some("beta")));
    // A failed connect goes to the next endpoint: no request fails.
    for _ in 0..6 {
        let (status, body) = get(http, "b.example", "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // No ready endpoint: 503; no rule: 404.
    let (status, body) = get(http, "b.example", "/none").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no ready endpoint"), "{body}");
    assert_eq!(get(http, "c.example", "/").await.unwrap().0, 404);

    // An upgraded connection is spliced through.
    let mut raw = TcpStream::connect(http).await.unwrap();
    raw.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(raw.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    raw.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    raw.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");

    // TLS by SNI with the Secret's certificate (the worker read it).
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verified = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let verified = tokio_rustls::TlsConnector::from(Arc::new(verified));
    wait_until(Duration::from_secs(30), || async {
        match get_tls(https, &verified, "secure.example", "/s").await? {
            (200, body) if body.contains("proto=https") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("secure.example serves the Secret's certificate");
    // The missing Secret's host gets the default certificate.
    let capture = Arc::new(Capture(Default::default(), provider()));
    let any = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let any = tokio_rustls::TlsConnector::from(Arc::new(any));
    let (status, _) = get_tls(https, &any, "nosecret.example", "/").await.unwrap();
    assert_eq!(status, 200);
    let der = capture.0.lock().unwrap().clone();
    let fake = b"Shoal Ingress Controller Fake Certificate";
    assert!(
        der.windows(fake.len()).any(|w| w == fake),
        "not the default certificate"
    );

    // The Warning Event, and the status naming the node.
    let events: Api<Event> = Api::default_namespaced(k.clone());
    wait_until(Duration::from_secs(30), || async {
        let list = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|e| e.reason.as_deref() == Some("MissingTLSSecret"))
            .filter(|e| {
                e.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("default/absent")
            })
            .map(|_| ())
            .ok_or_else(|| format!("{} events, none MissingTLSSecret", list.items.len()))
    })
    .await
    .expect("a Warning Event for the missing Secret");
    wait_until(Duration::from_secs(30), || async {
        let i = ings.get("web").await.map_err(|e| e.to_string())?;
        let ips: Vec<String> = i
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        (ips == ["127.0.0.1"])
            .then_some(())
            .ok_or(format!("{ips:?}"))
    })
    .await
    .expect("the status names the node's address");

    // Edits while a client sends 100 requests/s, a new connection each:
    // none fails, and a kept-alive connection lives through the swaps.
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                match get(http, "a.example", "/").await {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    let kept = TcpStream::connect(http).await.unwrap();
    let (mut kept, conn) = hyper::client::conn::http1::handshake(TokioIo::new(kept))
        .await
        .unwrap();
    tokio::spawn(conn);
    let ask = |host: &'static str| {
        Request::get("/")
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(
        kept.send_request(ask("a.example")).await.unwrap().status(),
        200
    );
    // Edit until the client has sent 300 requests (3 s), 5 edits at least.
    let sent = || ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while round < 5 || sent() < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} requests in 60 s",
            sent()
        );
        round += 1;
        // Point /edit at alpha and beta in turn, and wait to see it.
        let to = if round % 2 == 0 { "beta" } else { "alpha" };
        let patch = json!({"spec": {"rules": [
            {"host": "a.example", "http": {"paths": [path("/", "Prefix", "alpha"),
                                                     path("/b", "Prefix", "beta"),
                                                     path("/edit", "Prefix", to)]}},
            {"host": "b.example", "http": {"paths": [path("/", "Prefix", "beta"),
                                                     path("/none", "Exact", "empty")]}},
        ]}});
        ings.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        wait_until(Duration::from_secs(30), || async {
            match get(http, "a.example", "/edit").await? {
                (200, body) if body.starts_with(to) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .expect("the edit is routed");
    }
    let mut resp = kept.send_request(ask("a.example")).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the kept-alive connection outlived the swaps"
    );
    let _ = resp.body_mut().collect().await;
    stop.store(true, Ordering::Relaxed);
    let errors = client.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "requests lost during the edits: {errors:?}");
    assert!(ok >= 300, "only {ok} requests were sent");
    // The edit removed secure.example's rule: it is no longer routed.
    assert_eq!(get(http, "secure.example", "/").await.unwrap().0, 404);
}
