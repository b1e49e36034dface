//! MVCC tables in redb and the operations on them (no Raft here).
//!
//! ```text
//! kv:     (key, rev) → postcard(Rec)      every version; Rec.value None = tombstone
//! latest: key → mod_rev                   live keys only
//! meta:   "applied" | "membership" | "compacted" | "snapshot" → postcard(..)
//! ```
//!
//! `apply_txn` evaluates compares against `latest`, then writes the chosen
//! ops at revision `rev`. Reads at an older revision walk `kv`; a revision
//! below the compaction point is refused. Compaction keeps, for each key,
//! the newest version at or below the compaction revision (unless that is a
//! tombstone) and everything newer.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::command::{KeyValue, Op, Txn, TxnResult};

pub const KV: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("kv");
pub const LATEST: TableDefinition<&[u8], u64> = TableDefinition::new("latest");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rec {
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    pub create_rev: u64,
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("storage: {0}")]
    Db(#[from] redb::Error),
    #[error("revision {requested} is compacted (history starts at {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<redb::StorageError> for MvccError {
    fn from(e: redb::StorageError) -> Self {
        MvccError::Db(e.into())
    }
}
impl From<redb::TableError> for MvccError {
    fn from(e: redb::TableError) -> Self {
        MvccError::Db(e.into())
    }
}

pub fn decode_rec(bytes: &[u8]) -> Result<Rec, MvccError> {
    postcard::from_bytes(bytes).map_err(|e| MvccError::Corrupt(e.to_string()))
}

pub fn encode_rec(rec: &Rec) -> Vec<u8> {
    postcard::to_allocvec(rec).expect("records encode")
}

/// The smallest byte string greater than every string starting with `p`.
pub fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn to_kv(key: &[u8], rev: u64, rec: Rec) -> Option<KeyValue> {
    rec.value.map(|value| KeyValue {
        key: key.to_vec(),
        value,
        create_rev: rec.create_rev,
        mod_rev: rev,
        version: rec.version,
    })
}

/// The current state of `key`.
pub fn current<L, K>(latest: &L, kv: &K, key: &[u8]) -> Result<Option<KeyValue>, MvccError>
where
    L: ReadableTable<&'static [u8], u64>,
    K: ReadableTable<(&'static [u8], u64), &'static [u8]>,
{
    let Some(rev) = latest.get(key)?.map(|g| g.value()) else {
        return Ok(None);
    };
    match kv.get((key, rev))? {
        Some(g) => Ok(to_kv(key, rev, decode_rec(g.value())?)),
        None => Err(MvccError::Corrupt(format!(
            "latest points at a missing version {rev}"
        ))),
    }
}

/// Applies one transaction at revision `rev`.
pub fn apply_txn(w: &WriteTransaction, txn: &Txn, rev: u64) -> Result<TxnResult, MvccError> {
    apply_txns(w, std::slice::from_ref(txn), rev).map(|mut r| r.remove(0))
}

/// Applies transactions in order, all at revision `rev` (one batch entry).
pub fn apply_txns(
    w: &WriteTransaction,
    txns: &[Txn],
    rev: u64,
) -> Result<Vec<TxnResult>, MvccError> {
    let mut kv = w.open_table(KV)?;
    let mut latest = w.open_table(LATEST)?;
    txns.iter()
        .map(|txn| apply_one(&mut kv, &mut latest, txn, rev))
        .collect()
}

fn apply_one(
    kv: &mut redb::Table<'_, (&'static [u8], u64), &'static [u8]>,
    latest: &mut redb::Table<'_, &'static [u8], u64>,
    txn: &Txn,
    rev: u64,
) -> Result<TxnResult, MvccError> {
    let mut succeeded = true;
    for c in &txn.compare {
        let have = latest
            .get(c.key.as_slice())?
            .map(|g| g.value())
            .unwrap_or(0);
        if have != c.mod_rev {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let mut prev = Vec::with_capacity(ops.len());
    for op in ops {
        let before = current(&*latest, &*kv, op.key())?;
        match op {
            Op::Put { key, value } => {
                let rec = Rec {
                    value: Some(value.clone()),
                    create_rev: before.as_ref().map_or(rev, |b| b.create_rev),
                    version: before.as_ref().map_or(1, |b| b.version + 1),
                };
                kv.insert((key.as_slice(), rev), encode_rec(&rec).as_slice())?;
                latest.insert(key.as_slice(), rev)?;
            }
            Op::Delete { key } => {
                if before.is_some() {
                    let tomb = Rec {
                        value: None,
                        create_rev: 0,
                        version: 0,
                    };
                    kv.insert((key.as_slice(), rev), encode_rec(&tomb).as_slice())?;
                    latest.remove(key.as_slice())?;
                }
            }
        }
        prev.push(before);
    }
    Ok(TxnResult {
        succeeded,
        revision: rev,
        prev,
    })
}

/// `key` at revision `at` (latest when None).
pub fn get<L, K>(
    latest: &L,
    kv: &K,
    key: &[u8],
    at: Option<u64>,
    compacted: u64,
) -> Result<Option<KeyValue>, MvccError>
where
    L: ReadableTable<&'static [u8], u64>,
    K: ReadableTable<(&'static [u8], u64), &'static [u8]>,
{
    let Some(at) = at else {
        return current(latest, kv, key);
    };
    if at < compacted {
        return Err(MvccError::Compacted {
            requested: at,
            compacted,
        });
    }
    let mut range = kv.range((key, 0u64)..=(key, at))?;
    match range.next_back() {
        Some(item) => {
            let (k, v) = item?;
            Ok(to_kv(key, k.value().1, decode_rec(v.value())?))
        }
        None => Ok(None),
    }
}

/// Every change under `prefix` with `from <= rev <= to`, in revision
/// order (keys in order within a revision): puts and tombstones as they are
/// stored, each with the key's previous value. The caller checks `from`
/// against the compaction point.
pub fn history<K>(
    kv: &K,
    prefix: &[u8],
    from: u64,
    to: u64,
) -> Result<Vec<crate::watch::Change>, MvccError>
where
    K: ReadableTable<(&'static [u8], u64), &'static [u8]>,
{
    use crate::watch::{Change, Event, EventKind};
    let end = prefix_end(prefix);
    let iter = match &end {
        Some(e) => kv.range((prefix, 0u64)..(e.as_slice(), 0u64))?,
        None => kv.range((prefix, 0u64)..)?,
    };
    let mut out = Vec::new();
    // Versions of one key come in revision order: remember the last one
    // as stored, decoded only when a change in the window needs it (a
    // window of a long history visits many versions it does not return).
    let mut prev: Option<(Vec<u8>, Vec<u8>)> = None;
    for item in iter {
        let (k, v) = item?;
        let (key, rev) = k.value();
        if rev > to {
            continue;
        }
        if rev < from {
            match &mut prev {
                Some((pk, pv)) if pk.as_slice() == key => {
                    pv.clear();
                    pv.extend_from_slice(v.value());
                }
                _ => prev = Some((key.to_vec(), v.value().to_vec())),
            }
            continue;
        }
        let rec = decode_rec(v.value())?;
        let before = match &prev {
            Some((k, raw)) if k.as_slice() == key => decode_rec(raw)?.value,
            _ => None,
        };
        match &mut prev {
            Some((pk, pv)) if pk.as_slice() == key => {
                pv.clear();
                pv.extend_from_slice(v.value());
            }
            _ => prev = Some((key.to_vec(), v.value().to_vec())),
        }
        out.push(Change {
            event: Event {
                rev,
                kind: if rec.value.is_some() {
                    EventKind::Put
                } else {
                    EventKind::Delete
                },
                key: key.to_vec(),
                value: rec.value.unwrap_or_default(),
            },
            prev: before,
        });
    }
    out.sort_by(|a, b| (a.event.rev, &a.event.key).cmp(&(b.event.rev, &b.event.key)));
    Ok(out)
}

/// Every live key under `prefix` at revision `at` (latest when None), in key
/// order, at most `limit` of them (0 = no limit).
pub fn list<L, K>(
    latest: &L,
    kv: &K,
    prefix: &[u8],
    start: Option<&[u8]>,
    at: Option<u64>,
    compacted: u64,
    limit: usize,
) -> Result<Vec<KeyValue>, MvccError>
where
    L: ReadableTable<&'static [u8], u64>,
    K: ReadableTable<(&'static [u8], u64), &'static [u8]>,
{
    let end = prefix_end(prefix);
    let full = |n: usize| limit != 0 && n >= limit;
    let mut out = Vec::new();
    // A page starts at `start` when it lies under the prefix.
    let from = match start {
        Some(s) if s > prefix => s,
        _ => prefix,
    };
    if end.as_deref().is_some_and(|e| from >= e) {
        return Ok(out);
    }
    match at {
        None => {
            let iter = match &end {
                Some(e) => latest.range(from..e.as_slice())?,
                None => latest.range(from..)?,
            };
            for item in iter {
                let (k, rev) = item?;
                let key = k.value();
                if let Some(g) = kv.get((key, rev.value()))? {
                    out.extend(to_kv(key, rev.value(), decode_rec(g.value())?));
                }
                if full(out.len()) {
                    break;
                }
            }
        }
        Some(at) => {
            if at < compacted {
                return Err(MvccError::Compacted {
                    requested: at,
                    compacted,
                });
            }
            let iter = match &end {
                Some(e) => kv.range((from, 0u64)..(e.as_slice(), 0u64))?,
                None => kv.range((from, 0u64)..)?,
            };
            // Versions of one key are adjacent and in revision order: keep
            // the last one at or below `at`.
            let mut pending: Option<(Vec<u8>, u64, Rec)> = None;
            for item in iter {
                let (k, v) = item?;
                let (key, rev) = k.value();
                if pending
                    .as_ref()
                    .is_some_and(|(pk, _, _)| pk.as_slice() != key)
                {
                    let (pk, prev_rev, rec) = pending.take().expect("checked");
                    out.extend(to_kv(&pk, prev_rev, rec));
                    if full(out.len()) {
                        return Ok(out);
                    }
                }
                if rev <= at {
                    pending = Some((key.to_vec(), rev, decode_rec(v.value())?));
                }
            }
            if let Some((pk, rev, rec)) = pending {
                out.extend(to_kv(&pk, rev, rec));
            }
        }
    }
    Ok(out)
}

/// Drops history below `revision`; returns how many versions were removed.
pub fn compact(w: &WriteTransaction, revision: u64) -> Result<usize, MvccError> {
    let mut kv = w.open_table(KV)?;
    let mut doomed: Vec<(Vec<u8>, u64)> = Vec::new();
    {
        let mut last_at_or_below: Option<(Vec<u8>, u64, bool)> = None;
        for item in kv.iter()? {
            let (k, v) = item?;
            let (key, rev) = k.value();
            if let Some((pk, prev_rev, tomb)) = &last_at_or_below {
                if pk.as_slice() == key && rev <= revision {
                    // A newer version at or below the point supersedes it.
                    doomed.push((pk.clone(), *prev_rev));
                    last_at_or_below = None;
                } else if pk.as_slice() != key {
                    if *tomb {
                        doomed.push((pk.clone(), *prev_rev));
                    }
                    last_at_or_below = None;
                }
            }
            if rev <= revision {
                let tomb = decode_rec(v.value())?.value.is_none();
                last_at_or_below = Some((key.to_vec(), rev, tomb));
            }
        }
        if let Some((pk, rev, true)) = last_at_or_below {
            doomed.push((pk, rev));
        }
    }
    for (key, rev) in &doomed {
        kv.remove((key.as_slice(), *rev))?;
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(KV).unwrap();
        w.open_table(LATEST).unwrap();
        w.commit().unwrap();
        (dir, db)
    }

    fn apply(db: &Database, txn: Txn, rev: u64) -> TxnResult {
        let w = db.begin_write().unwrap();
        let r = apply_txn(&w, &txn, rev).unwrap();
        w.commit().unwrap();
        r
    }

    fn read<T>(
        db: &Database,
        f: impl FnOnce(
            &redb::ReadOnlyTable<&'static [u8], u64>,
            &redb::ReadOnlyTable<(&'static [u8], u64), &'static [u8]>,
        ) -> T,
    ) -> T {
        let r = db.begin_read().unwrap();
        let latest = r.open_table(LATEST).unwrap();
        let kv = r.open_table(KV).unwrap();
        f(&latest, &kv)
    }

    #[test]
    fn create_update_delete_with_revisions() {
        let (_d, db) = db();
        assert!(apply(&db, Txn::create("a", "1"), 1).succeeded);
        assert!(
            !apply(&db, Txn::create("a", "x"), 2).succeeded,
            "create of an existing key fails"
        );
        assert!(
            !apply(&db, Txn::update("a", "2", 99), 3).succeeded,
            "stale mod_rev fails"
        );
        let r = apply(&db, Txn::update("a", "2", 1), 4);
        assert!(r.succeeded);
        assert_eq!(r.prev[0].as_ref().unwrap().value, b"1");
        let now = read(&db, |l, k| get(l, k, b"a", None, 0).unwrap().unwrap());
        assert_eq!(
            (
                now.value.as_slice(),
                now.create_rev,
                now.mod_rev,
                now.version
            ),
            (&b"2"[..], 1, 4, 2)
        );
        let old = read(&db, |l, k| get(l, k, b"a", Some(3), 0).unwrap().unwrap());
        assert_eq!((old.value.as_slice(), old.mod_rev), (&b"1"[..], 1));
        assert!(apply(&db, Txn::delete("a", Some(4)), 5).succeeded);
        assert!(read(&db, |l, k| get(l, k, b"a", None, 0).unwrap()).is_none());
        assert!(read(&db, |l, k| get(l, k, b"a", Some(5), 0).unwrap()).is_none());
        assert_eq!(
            read(&db, |l, k| get(l, k, b"a", Some(4), 0).unwrap())
                .unwrap()
                .value,
            b"2"
        );
        // Re-created key starts a new life.
        apply(&db, Txn::put("a", "3"), 6);
        let n = read(&db, |l, k| get(l, k, b"a", None, 0).unwrap().unwrap());
        assert_eq!((n.create_rev, n.version), (6, 1));
    }

    #[test]
    fn multi_key_transactions_are_all_or_nothing() {
        let (_d, db) = db();
        apply(&db, Txn::put("x", "1"), 1);
        let txn = Txn {
            compare: vec![super::super::command::Compare {
                key: b"x".to_vec(),
                mod_rev: 1,
            }],
            success: vec![
                Op::Put {
                    key: b"y".to_vec(),
                    value: b"2".to_vec(),
                },
                Op::Delete { key: b"x".to_vec() },
            ],
            failure: vec![Op::Put {
                key: b"z".to_vec(),
                value: b"f".to_vec(),
            }],
        };
        let r = apply(&db, txn.clone(), 2);
        assert!(r.succeeded);
        let keys: Vec<Vec<u8>> = read(&db, |l, k| list(l, k, b"", None, None, 0, 0).unwrap())
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, vec![b"y".to_vec()]);
        // Same txn again: compare fails, failure branch runs.
        let r = apply(&db, txn, 3);
        assert!(!r.succeeded);
        let keys: Vec<Vec<u8>> = read(&db, |l, k| list(l, k, b"", None, None, 0, 0).unwrap())
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, vec![b"y".to_vec(), b"z".to_vec()]);
    }

    #[test]
    fn list_by_prefix_now_and_at_a_revision() {
        let (_d, db) = db();
        apply(&db, Txn::put("/a/1", "1"), 1);
        apply(&db, Txn::put("/a/2", "2"), 2);
        apply(&db, Txn::put("/b/1", "x"), 3);
        apply(&db, Txn::put("/a/1", "1b"), 4);
        apply(&db, Txn::delete("/a/2", None), 5);
        apply(&db, Txn::put("/a", "not under /a/"), 6);
        let now = read(&db, |l, k| list(l, k, b"/a/", None, None, 0, 0).unwrap());
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].value, b"1b");
        let at3 = read(&db, |l, k| list(l, k, b"/a/", None, Some(3), 0, 0).unwrap());
        assert_eq!(
            at3.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        let limited = read(&db, |l, k| list(l, k, b"/", None, Some(3), 0, 2).unwrap());
        assert_eq!(limited.len(), 2);
        // Pages: from a start key on, now and at a revision; a start
        // before the prefix reads from the prefix, one past it reads none.
        let page = read(&db, |l, k| {
            list(l, k, b"/a/", Some(b"/a/1\0"), Some(3), 0, 0).unwrap()
        });
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].key, b"/a/2");
        let page = read(&db, |l, k| {
            list(l, k, b"/a/", Some(b"/a/1\0"), None, 0, 0).unwrap()
        });
        assert!(page.is_empty(), "/a/2 is deleted now");
        let all = read(&db, |l, k| {
            list(l, k, b"/a/", Some(b"/"), None, 0, 0).unwrap()
        });
        assert_eq!(all.len(), 1);
        let none = read(&db, |l, k| {
            list(l, k, b"/a/", Some(b"/b"), Some(3), 0, 0).unwrap()
        });
        assert!(none.is_empty());
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }

    #[test]
    fn compaction_keeps_what_reads_at_or_after_it_need() {
        let (_d, db) = db();
        apply(&db, Txn::put("k", "1"), 1);
        apply(&db, Txn::put("k", "2"), 2);
        apply(&db, Txn::put("d", "x"), 3);
        apply(&db, Txn::delete("d", None), 4);
        apply(&db, Txn::put("k", "3"), 5);
        let w = db.begin_write().unwrap();
        let removed = compact(&w, 4).unwrap();
        w.commit().unwrap();
        // k@1 superseded by k@2; d@3 superseded by tombstone d@4, which goes too.
        assert_eq!(removed, 3);
        assert_eq!(
            read(&db, |l, k| get(l, k, b"k", Some(4), 4).unwrap())
                .unwrap()
                .value,
            b"2"
        );
        assert_eq!(
            read(&db, |l, k| get(l, k, b"k", None, 4).unwrap())
                .unwrap()
                .value,
            b"3"
        );
        assert!(read(&db, |l, k| get(l, k, b"d", Some(4), 4).unwrap()).is_none());
        assert!(matches!(
            read(&db, |l, k| get(l, k, b"k", Some(3), 4)),
            Err(MvccError::Compacted { .. })
        ));
    }
}
