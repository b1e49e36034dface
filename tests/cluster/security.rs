//! Security: another CA cannot join or deliver; the API wants the token; a
//! data dir of another cluster is refused.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use shoal::actor::diag::{Echo, Record, Recorded, ACTOR};
use shoal::actor::envelope::{Envelope, Kind};
use shoal::actor::{ActorPath, AskError};
use shoal::cli::http::ApiClient;
use shoal::config::Peer;
use shoal::transport::tls::{quic_client_config, TlsMaterial};
use shoal_harness::{cluster_configs, spawn_node, wait_until, TestCluster};

use crate::converge;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_ca_can_neither_join_nor_deliver() {
    let c = TestCluster::start(2).expect("cluster starts");
    converge(&c, &[1, 2], 2, Duration::from_secs(15))
        .await
        .unwrap();

    // An impostor from another `init` (its own CA and gossip key), pointed
    // at node-1, using a name the cluster would accept.
    let other = tempfile::tempdir().unwrap();
    let mut cfg = cluster_configs(other.path(), 3).unwrap().remove(2);
    let n1 = c.config(1).clone();
    cfg.peers = vec![Peer {
        name: "node-1".into(),
        gossip: n1.listen.gossip,
        quic: n1.listen.quic,
        api: None,
    }];
    let impostor = spawn_node(cfg).expect("impostor starts on its own");

    // It cannot deliver an actor message to node-1.
    let h = impostor.handle.clone();
    let r = h
        .actors
        .ask(
            &ActorPath::new(ACTOR, "node-1"),
            Echo(vec![1]),
            Duration::from_secs(3),
        )
        .await;
    assert!(matches!(r, Err(AskError::Unreachable(..))), "{r:?}");
    let _ = h
        .actors
        .tell(
            &ActorPath::new(ACTOR, "node-1"),
            Record {
                from: "impostor".into(),
                value: 1,
            },
        )
        .await;

    // It never shows up in node-1's membership.
    let appeared = wait_until(Duration::from_secs(4), || async {
        match c.state_seen(1, "node-3").await {
            Some(s) => {
                eprintln!("impostor seen as {s:?}");
                Ok(())
            }
            None => Err("not seen"),
        }
    })
    .await;
    assert!(
        appeared.is_err(),
        "a node with another gossip key must not join"
    );
    let got = c
        .on(1, |h| async move {
            h.actors
                .ask(
                    &ActorPath::new(ACTOR, "node-1"),
                    Recorded {
                        from: "impostor".into(),
                    },
                    Duration::from_secs(2),
                )
                .await
        })
        .await
        .unwrap();
    assert!(got.is_empty());
    drop(impostor);

    // Even trusting our CA, a client certificate of another CA is refused by
    // the server: nothing is ever answered on that connection.
    let foreign = TlsMaterial::load(
        &other.path().join("ca.pem"),
        &other.path().join("node-3/cert.pem"),
        &other.path().join("node-3/key.pem"),
    )
    .unwrap();
    let ours = TlsMaterial::load(
        &c.path().join("ca.pem"),
        &c.path().join("node-2/cert.pem"),
        &c.path().join("node-2/key.pem"),
    )
    .unwrap();
    let mixed = TlsMaterial {
        ca: ours.ca.clone(),
        chain: foreign.chain.clone(),
        key: foreign.key.clone(),
    };
    let outcome = raw_ask(&mixed, n1.listen.quic, "node-2").await;
    assert!(
        outcome.is_err(),
        "server must refuse a foreign client certificate, got {outcome:?}"
    );
    let metrics = c.node(1).metrics.render();
    assert!(
        metrics.contains("shoal_tls_handshake_failures_total"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("shoal_tls_handshake_failures_total{node=\"node-1\"} 0"),
        "handshake failures must be counted"
    );
}

/// A peer with a valid certificate of this cluster cannot send as another
/// node: the envelope is refused (Forbidden), counted and logged; as itself
/// it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_sender_is_refused() {
    let c = TestCluster::start(2).expect("nodes start");
    let n1 = c.config(1).clone();
    // The cluster's own certificate of node-2, in another client's hands.
    let m = TlsMaterial::load(
        &c.path().join("ca.pem"),
        &c.path().join("node-2/cert.pem"),
        &c.path().join("node-2/key.pem"),
    )
    .unwrap();
    for spoofed in ["node-1", "node-3", "localhost", "127.0.0.1"] {
        let reply = raw_ask(&m, n1.listen.quic, spoofed).await.unwrap();
        assert_eq!(reply.kind, Kind::Error, "as {spoofed}");
        let err: shoal::actor::envelope::RemoteError =
            postcard::from_bytes(&reply.payload).unwrap();
        assert!(
            matches!(err, shoal::actor::envelope::RemoteError::Forbidden(_)),
            "as {spoofed}: {err}"
        );
    }
    let reply = raw_ask(&m, n1.listen.quic, "node-2").await.unwrap();
    assert_eq!(reply.kind, Kind::Reply, "as itself");
    let metrics = c.node(1).metrics.render();
    assert!(
        metrics.lines().any(|l| l.contains("envelopes_rejected")
            && l.contains("spoofed")
            && l.ends_with(" 4")),
        "{metrics}"
    );
}

/// Sends one Echo ask, as node `from`, over a raw QUIC connection with `m`
/// as identity.
async fn raw_ask(
    m: &TlsMaterial,
    addr: std::net::SocketAddr,
    from: &str,
) -> Result<Envelope, String> {
    let client =
        quinn::crypto::rustls::QuicClientConfig::try_from(quic_client_config(m).unwrap()).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(client)));
    let conn = ep
        .connect(addr, "node-1")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let env = Envelope {
        kind: Kind::Ask,
        to: ACTOR.into(),
        from: from.into(),
        tag: "shoal.diag.echo/1".into(),
        corr: 1,
        budget_ms: 2000,
        payload: postcard::to_allocvec(&Echo(vec![9])).unwrap(),
    };
    let work = async {
        shoal::transport::frame::write_frame(&mut send, &env.encode(), 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        let frame = shoal::transport::frame::read_frame(&mut recv, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let frame = frame.ok_or("no reply")?;
        Envelope::decode(&frame).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_the_token() {
    let c = TestCluster::start(1).expect("node starts");
    let cfg = c.config(1).clone();
    let token = std::fs::read_to_string(&cfg.auth.admin_token_file)
        .unwrap()
        .trim()
        .to_string();
    let anon = ApiClient::new(cfg.listen.api, &cfg.tls.ca, None).unwrap();
    let wrong = ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some("0".repeat(64))).unwrap();
    let admin = ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token)).unwrap();
    let t = Duration::from_secs(5);
    for path in [
        "/readyz",
        "/shoal/v1/members",
        "/shoal/v1/chaos",
        "/metrics",
        "/nope",
    ] {
        for client in [&anon, &wrong] {
            let (status, body) = client.request(Method::GET, path, None, t).await.unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["kind"], "Status");
            assert_eq!(v["code"], 401);
            assert_eq!(v["reason"], "Unauthorized");
        }
    }
    let (status, _) = anon
        .request(
            Method::POST,
            "/shoal/v1/chaos",
            Some(br#"{"op":"heal"}"#.to_vec()),
            t,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = anon
        .request(Method::GET, "/healthz", None, t)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    for path in ["/readyz", "/shoal/v1/members", "/metrics"] {
        let (status, _) = admin.request(Method::GET, path, None, t).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _) = admin.request(Method::GET, "/nope", None, t).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_cluster_is_refused() {
    let mut c = TestCluster::start(1).expect("node starts");
    c.stop(1);
    let mut cfg = c.config(1).clone();
    cfg.cluster_id = "some-other-cluster".into();
    let err = spawn_node(cfg).err().expect("must refuse");
    let msg = format!("{err:#}");
    assert!(msg.contains("belongs to cluster"), "{msg}");
    // The rightful owner still starts on it.
    c.restart(1).expect("owner restarts");
}
