//! Node metadata, spread as foca custom broadcasts.
//!
//! Each node broadcasts its own `NodeMeta` (roles, region, zone, capacity,
//! addresses, version) with a `(generation, seq)` version; a newer version of
//! the same node invalidates older ones still queued. `leaving = true` is the
//! decommission notice sent before `leave_cluster`, which is how a `left`
//! member is told apart from a crashed (`down`) one. Each broadcast is
//! signed by its node (`signed`); one that is not is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::identity::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub name: String,
    pub generation: u64,
    pub seq: u64,
    pub leaving: bool,
    pub roles: Vec<String>,
    pub region: String,
    pub zone: String,
    pub api: Option<SocketAddr>,
    pub quic: SocketAddr,
    pub version: String,
    pub capacity: Capacity,
}

impl NodeMeta {
    pub fn version_key(&self) -> (u64, u64) {
        (self.generation, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaKey {
    name: String,
    version: (u64, u64),
}

impl foca::Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.version > other.version
    }
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable node metadata: {0}")]
pub struct MetaError(String);

impl MetaError {
    pub(crate) fn new(why: impl Into<String>) -> MetaError {
        MetaError(why.into())
    }
}

/// Decodes broadcasts, keeps the newest version per node, and leaves new
/// ones in a shared inbox for the membership loop.
pub struct MetaHandler {
    latest: HashMap<String, (u64, u64)>,
    inbox: Arc<Mutex<Vec<NodeMeta>>>,
    verifier: super::signed::MetaVerifier,
}

impl MetaHandler {
    pub fn new(inbox: Arc<Mutex<Vec<NodeMeta>>>, verifier: super::signed::MetaVerifier) -> Self {
        MetaHandler {
            latest: HashMap::new(),
            inbox,
            verifier,
        }
    }
}

impl foca::BroadcastHandler<NodeId> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<MetaKey>, MetaError> {
        // An old version is skipped before the (costlier) signature check.
        let claimed = super::signed::MetaVerifier::claimed(data)?;
        let version = claimed.version_key();
        if self
            .latest
            .get(&claimed.name)
            .is_some_and(|old| *old >= version)
        {
            return Ok(None);
        }
        let meta = self.verifier.verify(data)?;
        self.latest.insert(meta.name.clone(), version);
        let key = MetaKey {
            name: meta.name.clone(),
            version,
        };
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(meta);
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{BroadcastHandler, Invalidates};

    fn meta(seq: u64) -> NodeMeta {
        NodeMeta {
            name: "node-2".into(),
            generation: 1,
            seq,
            leaving: false,
            roles: vec!["api".into()],
            region: "r".into(),
            zone: "a".into(),
            api: None,
            quic: "127.0.0.1:1".parse().unwrap(),
            version: "0.1.0".into(),
            capacity: Capacity {
                cpu_millis: 1000,
                memory_bytes: 1,
                pods: 1,
            },
        }
    }

    /// Pins the broadcast encoding of node metadata.
    #[test]
    fn golden_bytes() {
        assert_eq!(
            hex::encode(postcard::to_allocvec(&meta(3)).unwrap()),
            "066e6f64652d3201030001036170690172016100007f0000010105302e312e30e8070101"
        );
    }

    #[test]
    fn keeps_only_newer_versions() {
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let tls = super::super::signed::tests::material_for("node-2");
        let verifier = super::super::signed::MetaVerifier::new(&tls);
        let signer = super::super::signed::MetaSigner::new(&tls).unwrap();
        let mut h = MetaHandler::new(inbox.clone(), verifier);
        let b2 = signer.sign(&meta(2)).unwrap();
        let b1 = signer.sign(&meta(1)).unwrap();
        assert!(h.receive_item(&b2, None).unwrap().is_some());
        assert!(h.receive_item(&b1, None).unwrap().is_none());
        assert!(h.receive_item(&b2, None).unwrap().is_none());
        assert_eq!(inbox.lock().unwrap().len(), 1);
        assert!(h.receive_item(b"\xff\xff", None).is_err());
    }

    #[test]
    fn newer_invalidates_older_of_the_same_node_only() {
        let k = |n: &str, s| MetaKey {
            name: n.into(),
            version: (1, s),
        };
        assert!(k("node-1", 2).invalidates(&k("node-1", 1)));
        assert!(!k("node-1", 1).invalidates(&k("node-1", 2)));
        assert!(!k("node-2", 2).invalidates(&k("node-1", 1)));
    }
}
