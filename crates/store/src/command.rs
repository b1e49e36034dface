//! What the replicated log carries, and what applying it answers.
//!
//! The store is MVCC like etcd: every key maps to (value, create_rev,
//! mod_rev, version), and a revision is the Raft log index of the entry that
//! made the change. A write is a transaction: compares, then the `success`
//! ops if every compare holds, else the `failure` ops. create-if-absent,
//! update-if-mod_rev and delete-if-mod_rev are transactions with one compare.
//!
//! One entry may carry a [`Request::Batch`] of client transactions (group
//! commit on the leader). They apply in order and share the entry's
//! revision, like the ops of one etcd transaction; the leader never puts two
//! transactions that write the same key into one batch, so every version of
//! a key still has its own mod_rev.
//!
//! These types are postcard-encoded into Raft log entries and snapshots;
//! golden-bytes tests pin them. A changed layout needs a new variant.

use serde::{Deserialize, Serialize};

/// Largest stored value (etcd's default request limit is 1.5 MiB as well).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Largest transaction (keys plus values of all its ops), so that one log
/// entry always fits a transport frame.
pub const MAX_TXN_BYTES: usize = 2 * 1024 * 1024;

/// One key's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create_rev: u64,
    pub mod_rev: u64,
    /// Number of writes since creation (1 for a new key).
    pub version: u64,
}

/// A precondition on one key. `mod_rev == 0` means "the key is absent".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub mod_rev: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Txn {
        Txn {
            success: vec![Op::Put {
                key: key.into(),
                value: value.into(),
            }],
            ..Txn::default()
        }
    }

    /// Put only if the key does not exist.
    pub fn create(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Txn {
        let key = key.into();
        Txn {
            compare: vec![Compare {
                key: key.clone(),
                mod_rev: 0,
            }],
            success: vec![Op::Put {
                key,
                value: value.into(),
            }],
            failure: vec![],
        }
    }

    /// Put only if the key's mod_rev is `mod_rev`.
    pub fn update(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, mod_rev: u64) -> Txn {
        let key = key.into();
        Txn {
            compare: vec![Compare {
                key: key.clone(),
                mod_rev,
            }],
            success: vec![Op::Put {
                key,
                value: value.into(),
            }],
            failure: vec![],
        }
    }

    /// Delete; only if the key's mod_rev is `mod_rev` when one is given.
    pub fn delete(key: impl Into<Vec<u8>>, mod_rev: Option<u64>) -> Txn {
        let key = key.into();
        Txn {
            compare: mod_rev
                .map(|m| Compare {
                    key: key.clone(),
                    mod_rev: m,
                })
                .into_iter()
                .collect(),
            success: vec![Op::Delete { key }],
            failure: vec![],
        }
    }

    /// The keys this transaction may write (either branch).
    pub fn written_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.success.iter().chain(&self.failure).map(Op::key)
    }

    /// Bytes of keys and values this transaction carries.
    pub fn size(&self) -> usize {
        let ops = self.success.iter().chain(&self.failure).map(|op| match op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        });
        ops.sum::<usize>() + self.compare.iter().map(|c| c.key.len()).sum::<usize>()
    }

    /// Checks sizes before proposing (nothing oversize reaches the log).
    pub fn validate(&self) -> Result<(), TxnError> {
        if self.size() > MAX_TXN_BYTES {
            return Err(TxnError::TooLarge(self.size()));
        }
        for op in self.success.iter().chain(&self.failure) {
            if op.key().is_empty() {
                return Err(TxnError::EmptyKey);
            }
            if op.key().len() > MAX_KEY_BYTES {
                return Err(TxnError::KeyTooLarge(op.key().len()));
            }
            if let Op::Put { value, .. } = op {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(TxnError::ValueTooLarge(value.len()));
                }
            }
        }
        Ok(())
    }
}

/// The longest key a transaction may write.
pub const MAX_KEY_BYTES: usize = 4096;

/// Why a transaction is refused before it is proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("transaction of {0} bytes exceeds the limit of {MAX_TXN_BYTES}")]
    TooLarge(usize),
    #[error("empty key")]
    EmptyKey,
    #[error("key of {0} bytes exceeds {MAX_KEY_BYTES}")]
    KeyTooLarge(usize),
    #[error("value of {0} bytes exceeds the limit of {MAX_VALUE_BYTES}")]
    ValueTooLarge(usize),
}

/// The application data of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Txn(Txn),
    /// Drop history older than `revision` (current values stay).
    Compact {
        revision: u64,
    },
    /// Client transactions proposed together; each is applied in order and
    /// none writes a key another one writes.
    Batch(Vec<Txn>),
    /// A transaction from a leader-follow singleton: applied only if
    /// `token` is the leader id of the entry that carries it (the singleton
    /// still runs under the leader that proposed it), else `Fenced`.
    Fenced {
        token: FenceToken,
        txn: Txn,
    },
    /// Fenced transactions proposed together (group commit for the
    /// control plane): all applied under `token`, or none (`Fenced`).
    /// Last, so the other variants keep their wire tags.
    FencedBatch {
        token: FenceToken,
        txns: Vec<Txn>,
    },
}

/// The leader a singleton runs under: openraft's `LeaderId` (term, node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FenceToken {
    pub term: u64,
    pub node: u64,
}

impl Request {
    /// Approximate encoded size, to keep replication messages under the
    /// transport's frame limit.
    pub fn size(&self) -> usize {
        match self {
            Request::Txn(t) => t.size() + 64,
            Request::Compact { .. } => 16,
            Request::Batch(ts) => ts.iter().map(|t| t.size() + 64).sum::<usize>() + 16,
            Request::Fenced { txn, .. } => txn.size() + 96,
            Request::FencedBatch { txns, .. } => {
                txns.iter().map(|t| t.size() + 64).sum::<usize>() + 32
            }
        }
    }
}

/// The outcome of one applied entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries.
    None,
    Txn(TxnResult),
    Compacted {
        revision: u64,
    },
    /// One result per transaction of a [`Request::Batch`], in order.
    Batch(Vec<TxnResult>),
    /// A [`Request::Fenced`] whose token is not the entry's leader: nothing
    /// was applied.
    Fenced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The revision of this entry (its log index).
    pub revision: u64,
    /// For each executed op, the key's state before it (None if absent).
    pub prev: Vec<Option<KeyValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of<T: Serialize>(v: &T) -> String {
        hex::encode(postcard::to_allocvec(v).unwrap())
    }

    /// Pins the log encoding. A change here is a data format change.
    #[test]
    fn golden_bytes() {
        assert_eq!(
            hex_of(&Request::Txn(Txn::create("k", "v"))),
            "0001016b000100016b017600"
        );
        assert_eq!(hex_of(&Request::Compact { revision: 300 }), "01ac02");
        assert_eq!(
            hex_of(&Request::Batch(vec![
                Txn::put("a", "1"),
                Txn::put("b", "2")
            ])),
            "020200010001610131000001000162013200"
        );
        assert_eq!(
            hex_of(&Request::Fenced {
                token: FenceToken { term: 2, node: 3 },
                txn: Txn::put("a", "1"),
            }),
            "0302030001000161013100"
        );
        let r = Response::Txn(TxnResult {
            succeeded: true,
            revision: 5,
            prev: vec![
                None,
                Some(KeyValue {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    create_rev: 1,
                    mod_rev: 2,
                    version: 3,
                }),
            ],
        });
        assert_eq!(hex_of(&r), "0101050200 01016b0176010203".replace(' ', ""));
    }

    #[test]
    fn validation_refuses_oversize_and_empty() {
        assert!(Txn::put("k", vec![0u8; MAX_VALUE_BYTES]).validate().is_ok());
        let e = Txn::put("k", vec![0u8; MAX_VALUE_BYTES + 1])
            .validate()
            .unwrap_err();
        assert_eq!(e, TxnError::ValueTooLarge(MAX_VALUE_BYTES + 1));
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        assert_eq!(Txn::put("", "v").validate(), Err(TxnError::EmptyKey));
        // Several values under the per-value limit can still make a
        // transaction too large for one log entry.
        let big = Txn {
            success: (0..2)
                .map(|i| Op::Put {
                    key: format!("k{i}").into_bytes(),
                    value: vec![0u8; MAX_VALUE_BYTES],
                })
                .collect(),
            ..Txn::default()
        };
        let e = big.validate().unwrap_err();
        assert!(matches!(e, TxnError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("transaction of"), "{e}");
    }
}
