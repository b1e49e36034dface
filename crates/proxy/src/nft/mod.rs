//! The rules in the kernel: [`full`] builds a node's table afresh in one
//! transaction (at start, and after a failed delta), [`delta`] gives the
//! operations between two versions of one [`Part`] — so a change to one
//! Service costs a transaction the size of that Service, never a listing
//! of the table (kube-proxy 1.36 lists a 44k-Service table on each full
//! sync, about 40 s; kubernetes #139513).
//!
//! The operations ([`Op`]) reach the kernel two ways:
//! - [`netlink`]: one nf_tables batch over a netlink socket the proxy
//!   keeps open (the `nlink` crate). This is what the proxy uses. `nft`
//!   fetches the ruleset's tables, chains and sets before each
//!   transaction; at 30,000 Services in one kernel that cost about 70 ms
//!   of a 110 ms element add, the commit itself 3 ms.
//! - [`json`]: libnftables JSON through `nft -j -f -`, built with the
//!   `nftables` crate's types. Tests build the same table both ways and
//!   compare what the kernel lists, so the netlink encoding is checked
//!   against nft's own.
//!
//! Order within a delta matters: new sets and chains first (elements and
//! rules refer to them), then elements leave and changed chains are
//! flushed, then the new rules and elements go in, and only then do chains
//! and sets nothing refers to any more go.

pub mod json;
pub mod netlink;

use std::collections::BTreeSet;

use crate::rules::{ChainDef, Hook, Key, MapName, Part, Rule};

pub use json::Nft;
pub use netlink::Netlink;

/// Why a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft could not run: {0}")]
    Spawn(String),
    #[error("the kernel refused the transaction: {0}")]
    Refused(String),
    #[error("nft printed what is not JSON: {0}")]
    Output(String),
}

/// One operation of a transaction, on one `ip` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Empties the table, creating it when it is not there.
    ReplaceTable(String),
    AddMap(String, MapName),
    /// A client-affinity set (dynamic, with per-element timeouts).
    AddSet(String, String),
    DeleteSet(String, String),
    AddChain(String, String, Option<Hook>),
    FlushChain(String, String),
    DeleteChain(String, String),
    /// `(table, chain, rule)`: appended to the chain.
    AddRule(String, String, Rule),
    /// `(table, map, key, chain)`: the key goes to the chain.
    AddElement(String, MapName, Key, String),
    DeleteElement(String, MapName, Key),
}

/// A transaction: all of it or none.
pub type Ops = Vec<Op>;

fn rules_of(table: &str, name: &str, def: &ChainDef, out: &mut Ops) {
    for r in &def.rules {
        out.push(Op::AddRule(table.into(), name.into(), r.clone()));
    }
}

/// Builds `table` afresh from `parts`, replacing what is there, in one
/// transaction.
pub fn full<'a>(table: &str, parts: impl IntoIterator<Item = &'a Part> + Clone) -> Ops {
    let mut out = vec![Op::ReplaceTable(table.into())];
    out.extend(MapName::ALL.iter().map(|m| Op::AddMap(table.into(), *m)));
    for p in parts.clone() {
        for s in &p.sets {
            out.push(Op::AddSet(table.into(), s.clone()));
        }
        for (name, def) in &p.chains {
            out.push(Op::AddChain(table.into(), name.clone(), def.hook));
        }
    }
    for p in parts.clone() {
        for (name, def) in &p.chains {
            rules_of(table, name, def, &mut out);
        }
    }
    for p in parts {
        for ((map, key), chain) in &p.elements {
            out.push(Op::AddElement(table.into(), *map, *key, chain.clone()));
        }
    }
    out
}

/// The operations that turn `old` into `new` in `table` (none if equal).
pub fn delta(table: &str, old: &Part, new: &Part) -> Ops {
    let mut out = Vec::new();
    if old == new {
        return out;
    }
    for s in new.sets.difference(&old.sets) {
        out.push(Op::AddSet(table.into(), s.clone()));
    }
    for (name, def) in &new.chains {
        if !old.chains.contains_key(name) {
            out.push(Op::AddChain(table.into(), name.clone(), def.hook));
        }
    }
    // Elements that go or change.
    for (k, chain) in &old.elements {
        if new.elements.get(k) != Some(chain) {
            out.push(Op::DeleteElement(table.into(), k.0, k.1));
        }
    }
    // Chains whose rules change, and chains that go: emptied.
    let mut flushed = BTreeSet::new();
    for (name, def) in &old.chains {
        match new.chains.get(name) {
            Some(d) if d.rules == def.rules => {}
            _ => {
                out.push(Op::FlushChain(table.into(), name.clone()));
                flushed.insert(name);
            }
        }
    }
    for (name, def) in &new.chains {
        if !old.chains.contains_key(name) || flushed.contains(name) {
            rules_of(table, name, def, &mut out);
        }
    }
    for (k, chain) in &new.elements {
        if old.elements.get(k) != Some(chain) {
            out.push(Op::AddElement(table.into(), k.0, k.1, chain.clone()));
        }
    }
    for name in old.chains.keys() {
        if !new.chains.contains_key(name) {
            out.push(Op::DeleteChain(table.into(), name.clone()));
        }
    }
    for s in old.sets.difference(&new.sets) {
        out.push(Op::DeleteSet(table.into(), s.clone()));
    }
    out
}
