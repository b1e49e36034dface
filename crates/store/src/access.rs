//! Who may ask the store what. The store actor serves its peers by the
//! roles their certificates certify (`shoal_fabric::actor::access`):
//!
//! - Raft RPCs from members of this replica's configuration, or from a
//!   node certified for the `store` role (a lagging replica may not yet
//!   know a new member that already leads);
//! - client writes and compaction from `api` and `store` nodes; any other
//!   node's writes go through the [`PeerPolicy`] (the node authorizer: a
//!   kubelet writes its own Node and its own pods);
//! - reads from `api` nodes whole; any other node's through the policy
//!   (no Secret, and no ConfigMap, that none of its pods uses);
//! - watches from `api` nodes whole; any other node's with the values of
//!   the keys the policy hides emptied (the key and revision stay, so a
//!   kubelet still learns that a Secret changed and reads it by key).
//!
//! A node's calls to itself carry its own roles: a node trusts itself.

use shoal_fabric::actor::{Caller, Roles};

use crate::command::{KeyValue, Txn};
use crate::service::ReadRequest;

/// What a peer without the `api` role (and, for writes, without `store`)
/// may read, write and watch. Every method runs on a blocking thread and
/// may read this replica's latest values through the lookups it is given.
pub trait PeerPolicy: Send + Sync + 'static {
    /// `Err(reason)` refuses `txn`. `current(key)` is the key's latest value
    /// on this replica.
    fn write(
        &self,
        caller: &Caller,
        txn: &Txn,
        current: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), String>;

    /// `Err(reason)` refuses `req`. `scan(prefix)` lists the latest values
    /// under `prefix` on this replica.
    fn read(
        &self,
        caller: &Caller,
        req: &ReadRequest,
        scan: &mut dyn FnMut(&[u8]) -> Vec<KeyValue>,
    ) -> Result<(), String>;

    /// Whether `caller`'s watches see `key`'s value emptied.
    fn hides(&self, caller: &Caller, key: &[u8]) -> bool;
}

/// The policy of a store no node installed one on: peers without the
/// `api` or `store` role write nothing and read no Secret.
pub struct Strict;

impl PeerPolicy for Strict {
    fn write(
        &self,
        caller: &Caller,
        _txn: &Txn,
        _current: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), String> {
        Err(format!(
            "{} (roles: {}) may not write to the store",
            caller.node, caller.roles
        ))
    }

    fn read(
        &self,
        caller: &Caller,
        req: &ReadRequest,
        _scan: &mut dyn FnMut(&[u8]) -> Vec<KeyValue>,
    ) -> Result<(), String> {
        if covers_secrets(req) {
            return Err(format!("{} may not read Secrets", caller.node));
        }
        Ok(())
    }

    fn hides(&self, _caller: &Caller, key: &[u8]) -> bool {
        crate::secrets::is_secret(key)
    }
}

/// Whether `req` reads a Secret's key or a prefix that holds Secrets.
pub fn covers_secrets(req: &ReadRequest) -> bool {
    covers(req, crate::secrets::SECRETS_PREFIX)
}

/// Whether `req` reads under `prefix`, or a wider prefix holding it.
pub fn covers(req: &ReadRequest, prefix: &[u8]) -> bool {
    req.key.starts_with(prefix) || (req.prefix && prefix.starts_with(&req.key))
}

/// Whether `caller` writes without the policy.
pub fn writes_freely(caller: &Caller) -> bool {
    caller.roles.intersects(Roles::API | Roles::STORE)
}

/// Whether `caller` reads and watches without the policy.
pub fn reads_freely(caller: &Caller) -> bool {
    caller.roles.contains(Roles::API)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_holding_secrets_covers_them() {
        assert!(covers_secrets(&ReadRequest::key("/registry/secrets/ns/a")));
        assert!(covers_secrets(&ReadRequest::prefix("/registry/")));
        assert!(covers_secrets(&ReadRequest::prefix(
            "/registry/secrets/ns/"
        )));
        assert!(!covers_secrets(&ReadRequest::prefix("/registry/pods/")));
        assert!(!covers_secrets(&ReadRequest::key("/registry/")));
        let worker = Caller::new("w", Roles::WORKER);
        assert!(!writes_freely(&worker) && !reads_freely(&worker));
        let store = Caller::new("s", Roles::STORE);
        assert!(writes_freely(&store) && !reads_freely(&store));
        assert!(Strict
            .write(&worker, &Txn::put("/k", "v"), &mut |_| None)
            .is_err());
        assert!(Strict
            .read(&worker, &ReadRequest::prefix("/"), &mut |_| Vec::new())
            .is_err());
        assert!(Strict.hides(&worker, b"/registry/secrets/a/b"));
    }
}
