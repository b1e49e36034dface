//! Hostile gossip: a packet that passed the AEAD (a node holding the
//! cluster's gossip key, or a bug) whose SWIM body is garbage, or a valid
//! body with one byte changed, is refused by foca and the metadata decoder
//! without a panic, and leaves the member table as it was.

use proptest::prelude::*;

use super::*;

fn swim() -> SwimFoca {
    let id = NodeId {
        name: "node-1".into(),
        addr: "127.0.0.1:7946".parse().unwrap(),
        generation: 1,
    };
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let cfg = foca_config(&crate::config::Gossip::default(), 3);
    let tls = signed::tests::material_for("node-1");
    Foca::with_custom_broadcast(
        id,
        cfg,
        rand::rngs::StdRng::seed_from_u64(7),
        PostcardCodec,
        MetaHandler::new(inbox, signed::MetaVerifier::new(&tls)),
    )
}

/// A real SWIM packet: what node-2 sends node-1 when it announces itself.
fn announce() -> Vec<u8> {
    let me = NodeId {
        name: "node-2".into(),
        addr: "127.0.0.1:7947".parse().unwrap(),
        generation: 1,
    };
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let cfg = foca_config(&crate::config::Gossip::default(), 3);
    let tls = signed::tests::material_for("node-2");
    let mut foca = Foca::with_custom_broadcast(
        me,
        cfg,
        rand::rngs::StdRng::seed_from_u64(8),
        PostcardCodec,
        MetaHandler::new(inbox, signed::MetaVerifier::new(&tls)),
    );
    let mut rt = AccumulatingRuntime::new();
    let target = NodeId {
        name: "node-1".into(),
        addr: "127.0.0.1:7946".parse().unwrap(),
        generation: 1,
    };
    foca.announce(target, &mut rt).unwrap();
    rt.to_send().map(|(_, bytes)| bytes.to_vec()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes after the AEAD: an error, never a panic, and no member.
    #[test]
    fn garbage_swim_bodies_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let mut foca = swim();
        let mut rt = AccumulatingRuntime::new();
        let _ = foca.handle_data(&bytes, &mut rt);
        prop_assert!(foca.num_members() <= 1);
    }

    /// A valid announce with one byte changed: decoded or refused, never a
    /// panic.
    #[test]
    fn mutated_swim_packets_never_panic(at in any::<usize>(), value in any::<u8>()) {
        let mut bytes = announce();
        let i = at % bytes.len();
        bytes[i] = value;
        let mut foca = swim();
        let mut rt = AccumulatingRuntime::new();
        let _ = foca.handle_data(&bytes, &mut rt);
    }

    /// Node metadata broadcasts (postcard) from arbitrary bytes.
    #[test]
    fn garbage_metadata_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = postcard::from_bytes::<NodeMeta>(&bytes);
    }
}

#[test]
fn the_real_announce_is_accepted() {
    let mut foca = swim();
    let mut rt = AccumulatingRuntime::new();
    foca.handle_data(&announce(), &mut rt).unwrap();
}
