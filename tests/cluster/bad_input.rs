//! Hostile bytes: garbage at the QUIC and gossip ports, sealed garbage and
//! oversize or malformed frames from an authenticated peer. The node must
//! answer afterwards. Seeded: set SHOAL_SEED to replay.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use shoal::actor::diag::{Echo, ACTOR};
use shoal::actor::envelope::{Kind, RemoteError};
use shoal::actor::ActorPath;
use shoal::membership::gossip::GossipCipher;
use shoal::transport::tls::{quic_client_config, TlsMaterial};
use shoal_harness::TestCluster;

use crate::converge;

use shoal_harness::seed;

fn garbage(rng: &mut rand::rngs::StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..max);
    (0..n).map(|_| rng.random::<u8>()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_everywhere_does_not_hurt_the_node() {
    let c = TestCluster::start(2).expect("cluster starts");
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let n1 = c.config(1).clone();

    // Unauthenticated UDP garbage at the QUIC and gossip ports.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..500 {
        udp.send_to(&garbage(&mut rng, 1500), n1.listen.quic)
            .await
            .unwrap();
        udp.send_to(&garbage(&mut rng, 1500), n1.listen.gossip)
            .await
            .unwrap();
    }
    // Authenticated gossip garbage: sealed with the real cluster key.
    let key: [u8; 32] = shoal::pki::read_hex_secret(&n1.gossip.key_file, Some(32))
        .unwrap()
        .try_into()
        .unwrap();
    let cipher = GossipCipher::new(&key);
    for _ in 0..500 {
        udp.send_to(
            &cipher.seal("node-2", &garbage(&mut rng, 1200)),
            n1.listen.gossip,
        )
        .await
        .unwrap();
    }

    // An authenticated QUIC peer (node-2's certificate) sending bad frames.
    let m = TlsMaterial::load(
        &c.path().join("ca.pem"),
        &c.path().join("node-2/cert.pem"),
        &c.path().join("node-2/key.pem"),
    )
    .unwrap();
    let client =
        quinn::crypto::rustls::QuicClientConfig::try_from(quic_client_config(&m).unwrap()).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(client)));
    let conn = ep
        .connect(n1.listen.quic, "node-1")
        .unwrap()
        .await
        .expect("authenticated peer connects");

    // Oversize frame: refused before reading, with an error reply.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let reply = shoal::transport::frame::read_frame(&mut recv, 1 << 20)
        .await
        .unwrap()
        .expect("an error reply");
    let env = shoal::actor::envelope::Envelope::decode(&reply).unwrap();
    assert_eq!(env.kind, Kind::Error);
    let err: RemoteError = postcard::from_bytes(&env.payload).unwrap();
    assert!(
        matches!(err, RemoteError::Malformed(ref m) if m.contains("exceeds")),
        "{err:?}"
    );

    // Random frame bodies: each gets an error reply (or is dropped), never a crash.
    let mut malformed_replies = 0;
    for _ in 0..200 {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let body = garbage(&mut rng, 300);
        shoal::transport::frame::write_frame(&mut send, &body, 1 << 20)
            .await
            .unwrap();
        let _ = send.finish();
        if let Ok(Ok(Some(frame))) = tokio::time::timeout(
            Duration::from_secs(5),
            shoal::transport::frame::read_frame(&mut recv, 1 << 20),
        )
        .await
        {
            let env = shoal::actor::envelope::Envelope::decode(&frame).unwrap();
            if env.kind == Kind::Error {
                malformed_replies += 1;
            }
        }
    }
    assert!(
        malformed_replies > 150,
        "malformed frames must get error replies, got {malformed_replies}/200"
    );
    // Garbage on the ordered tell stream, then a truncated frame.
    let mut uni = conn.open_uni().await.unwrap();
    for _ in 0..50 {
        shoal::transport::frame::write_frame(&mut uni, &garbage(&mut rng, 300), 1 << 20)
            .await
            .unwrap();
    }
    uni.write_all(&[0, 0, 1, 0, 1, 2, 3]).await.unwrap();
    let _ = uni.finish();

    // The node still answers, over the network and in membership.
    let r = c
        .on(2, |h| async move {
            h.actors
                .ask(
                    &ActorPath::new(ACTOR, "node-1"),
                    Echo(b"alive".to_vec()),
                    Duration::from_secs(5),
                )
                .await
        })
        .await
        .unwrap();
    assert_eq!(&r[..], b"alive");
    converge(&c, &[1, 2], 2, Duration::from_secs(5))
        .await
        .unwrap();
    let metrics = c.node(1).metrics.render();
    assert!(
        metrics.contains("reason=\"oversize\""),
        "oversize frames are counted"
    );
    assert!(
        metrics.contains("reason=\"malformed\""),
        "malformed envelopes are counted"
    );
    assert!(
        metrics.contains("shoal_gossip_packets_rejected_total"),
        "bad gossip is counted"
    );
}
