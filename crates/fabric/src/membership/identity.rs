//! The foca identity of a node: name + gossip address + generation.
//!
//! Two identities with the same (name, address) are the same node; the one
//! with the higher generation wins. `renew()` bumps the generation, which is
//! how a node declared down (after a partition, or a restart) comes back.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub generation: u64,
}

impl foca::Identity for NodeId {
    type Addr = (String, SocketAddr);

    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            name: self.name.clone(),
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> Self::Addr {
        (self.name.clone(), self.addr)
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewal_wins_conflicts() {
        let a = NodeId {
            name: "node-1".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 4,
        };
        let b = a.renew().unwrap();
        assert_eq!(b.generation, 5);
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }

    #[test]
    fn golden_bytes() {
        let a = NodeId {
            name: "node-1".into(),
            addr: "127.0.0.1:7000".parse().unwrap(),
            generation: 2,
        };
        assert_eq!(
            hex::encode(postcard::to_allocvec(&a).unwrap()),
            "066e6f64652d31007f000001d83602"
        );
    }
}
