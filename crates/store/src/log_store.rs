//! The Raft log on disk: openraft's `RaftLogStorage` over redb.
//!
//! ```text
//! DATA/raft-log.redb
//!   logs: u64 index → postcard(Entry)
//!   meta: "vote" | "committed" | "last_purged" → postcard(..)
//! ```
//!
//! `append` makes its entries readable at once (an in-memory cache of the
//! newest entries) and queues them for the single log writer, so openraft
//! can replicate them while they are being made durable. The writer commits
//! every append queued meanwhile in one redb transaction with
//! `Durability::Immediate` (group commit, one fsync) and only then fires
//! their callbacks. Entries stay in the cache after they are durable, up to
//! [`CACHE_ENTRIES`], so replication and apply read recent entries from
//! memory, not from redb on the blocking pool. The committed index is queued
//! to the same writer and never waited for: openraft calls `save_committed`
//! inside its core loop, which must not stall behind an fsync. Truncate and
//! purge first wait for earlier appends to reach the disk. Other blocking
//! redb work runs on the blocking pool, serialized by `&mut self`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::TypeConfig;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

type SErr = StorageError<u64>;

/// How many durable entries the cache keeps beyond those not yet durable.
pub const CACHE_ENTRIES: usize = 4096;

/// A contiguous suffix of the log in memory: every entry not yet durable,
/// plus up to [`CACHE_ENTRIES`] of the newest durable ones.
#[derive(Default)]
struct Cache {
    /// index → (entry, durable yet)
    entries: std::collections::BTreeMap<u64, (Entry<TypeConfig>, bool)>,
}

impl Cache {
    /// Drops the oldest durable entries beyond the cap (only from the front,
    /// so the cache stays a contiguous suffix of the log).
    fn trim(&mut self) {
        while self.entries.len() > CACHE_ENTRIES {
            match self.entries.first_key_value() {
                Some((_, (_, true))) => {
                    self.entries.pop_first();
                }
                _ => break,
            }
        }
    }
}

type Pending = Arc<std::sync::Mutex<Cache>>;

/// Work for the log writer, in order.
enum WriteOp {
    Append(Vec<(LogId<u64>, Vec<u8>)>, LogFlushed<TypeConfig>),
    /// The committed log id, written with the next append.
    Committed(Vec<u8>),
    /// Answers once every earlier append is on disk.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Cheap-clone handle to the log database; it is also the log reader.
///
/// `append` returns as soon as its entries are readable (from `pending`),
/// so openraft replicates them while the writer makes them durable; the
/// writer commits every append queued meanwhile in one fsync, then fires
/// their callbacks. `truncate` and `purge` wait for earlier appends first.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    pending: Pending,
    writer: tokio::sync::mpsc::UnboundedSender<WriteOp>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

fn lock_pending(p: &Pending) -> std::sync::MutexGuard<'_, Cache> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The single writer of log entries: one durable commit per batch of queued
/// appends, callbacks in order.
async fn log_writer(
    db: Arc<Database>,
    pending: Pending,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<WriteOp>,
) {
    let mut carry: Option<WriteOp> = None;
    // The newest committed log id not yet written: it rides along with the
    // next append (openraft may lose it; writing it alone would cost a
    // transaction per commit).
    let mut committed: Option<Vec<u8>> = None;
    loop {
        let op = match carry.take() {
            Some(op) => op,
            None => match rx.recv().await {
                Some(op) => op,
                None => return,
            },
        };
        let mut batch = Vec::new();
        let mut callbacks = Vec::new();
        match op {
            WriteOp::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
            WriteOp::Append(entries, cb) => {
                batch = entries;
                callbacks.push(cb);
            }
            WriteOp::Committed(c) => committed = Some(c),
        }
        while let Ok(next) = rx.try_recv() {
            match next {
                WriteOp::Append(more, cb) => {
                    batch.extend(more);
                    callbacks.push(cb);
                }
                WriteOp::Committed(c) => committed = Some(c),
                barrier => {
                    carry = Some(barrier);
                    break;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let committed = committed.take();
        let d = db.clone();
        let ids: Vec<LogId<u64>> = batch.iter().map(|(id, _)| *id).collect();
        let res = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let w = d.begin_write()?;
            {
                let mut t = w.open_table(LOGS)?;
                for (id, bytes) in &batch {
                    t.insert(id.index, bytes.as_slice())?;
                }
                if let Some(c) = &committed {
                    w.open_table(META)?.insert("committed", c.as_slice())?;
                }
            }
            w.commit()?;
            Ok(())
        })
        .await;
        let res: Result<(), String> = match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if res.is_ok() {
            let mut p = lock_pending(&pending);
            for id in ids {
                if let Some((e, durable)) = p.entries.get_mut(&id.index) {
                    if e.log_id == id {
                        *durable = true;
                    }
                }
            }
            p.trim();
        }
        for cb in callbacks {
            cb.log_io_completed(res.clone().map_err(std::io::Error::other));
        }
    }
}

/// Runs blocking redb work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SErr> + Send + 'static,
) -> Result<T, SErr> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StorageIOError::write(&e).into()),
    }
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("openraft types encode with postcard")
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<LogStore, super::StoreError> {
        Self::open_with(path, cache_bytes, None)
    }

    pub fn open_with(
        path: &Path,
        cache_bytes: usize,
        disks: Option<&super::DiskFactory>,
    ) -> Result<LogStore, super::StoreError> {
        Self::from_db(super::open_db_with(path, cache_bytes, disks)?)
    }

    pub fn from_db(db: Database) -> Result<LogStore, super::StoreError> {
        let w = db
            .begin_write()
            .map_err(|e| super::StoreError::db("raft log", e))?;
        w.open_table(LOGS)
            .map_err(|e| super::StoreError::db("raft log", e))?;
        w.open_table(META)
            .map_err(|e| super::StoreError::db("raft log", e))?;
        w.commit()
            .map_err(|e| super::StoreError::db("raft log", e))?;
        let db = Arc::new(db);
        let pending: Pending = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(log_writer(db.clone(), pending.clone(), rx));
        Ok(LogStore {
            db,
            pending,
            writer: tx,
        })
    }

    /// Waits until every earlier append is on disk.
    async fn barrier(&self) -> Result<(), SErr> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer.send(WriteOp::Barrier(tx)).map_err(|_| {
            StorageIOError::write_logs(&std::io::Error::other("log writer stopped"))
        })?;
        rx.await.map_err(|_| {
            StorageIOError::write_logs(&std::io::Error::other("log writer stopped")).into()
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
    ) -> Result<Option<T>, SErr> {
        let r = db.begin_read().map_err(|e| StorageIOError::read(&e))?;
        let t = r.open_table(META).map_err(|e| StorageIOError::read(&e))?;
        match t.get(key).map_err(|e| StorageIOError::read(&e))? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(v.value())
                .map(Some)
                .map_err(|e| StorageIOError::read(&e).into()),
        }
    }

    /// Turns a stored vote that made this node leader into a plain vote for
    /// itself in the same term, so that after a restart this node does not
    /// resume leadership at once (openraft 0.9 would, with a read index of
    /// the first entry of its term and a possibly stale committed index,
    /// and so could serve a read that misses an acknowledged write whose
    /// apply was not yet durable). It stands for election instead, and the
    /// winner commits a fresh entry of a new term before it serves reads.
    /// Term and voted-for are kept, which is all Raft needs of a vote.
    pub fn step_down_after_restart(&self, me: u64) -> Result<(), super::StoreError> {
        let err = |e: SErr| super::StoreError::Io {
            path: std::path::PathBuf::from("raft-log.redb"),
            source: std::io::Error::other(e.to_string()),
        };
        let vote: Option<Vote<u64>> = Self::read_meta(&self.db, "vote").map_err(err)?;
        if let Some(v) = vote {
            if v.is_committed() && v.leader_id().voted_for() == Some(me) {
                let plain = Vote::new(v.leader_id().get_term(), me);
                Self::write_meta(&self.db, "vote", &enc(&plain))
                    .map_err(|e| super::StoreError::db("raft log", e))?;
            }
        }
        Ok(())
    }

    /// Writes one meta value durably (the vote).
    fn write_meta(db: &Database, key: &str, bytes: &[u8]) -> Result<(), redb::Error> {
        let w = db.begin_write()?;
        {
            let mut t = w.open_table(META)?;
            t.insert(key, bytes)?;
        }
        w.commit()?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let range: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let start = match range.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        {
            // The cache is a contiguous suffix of the log: a range that
            // starts inside it needs no disk read.
            let p = lock_pending(&self.pending);
            if p.entries
                .first_key_value()
                .is_some_and(|(i, _)| *i <= start)
            {
                return Ok(p
                    .entries
                    .range(range)
                    .map(|(_, (e, _))| e.clone())
                    .collect());
            }
        }
        let db = self.db.clone();
        let on_disk = blocking(move || {
            let r = db.begin_read().map_err(|e| StorageIOError::read_logs(&e))?;
            let t = r
                .open_table(LOGS)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let mut out = std::collections::BTreeMap::new();
            for item in t.range(range).map_err(|e| StorageIOError::read_logs(&e))? {
                let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry<TypeConfig> = postcard::from_bytes(v.value())
                    .map_err(|e| StorageIOError::read_log_at_index(k.value(), &e))?;
                out.insert(k.value(), entry);
            }
            Ok(out)
        })
        .await?;
        // Cached entries are at least as new as what the disk has.
        let mut all = on_disk;
        for (i, (e, _)) in lock_pending(&self.pending).entries.range(range) {
            all.insert(*i, e.clone());
        }
        Ok(all.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let db = self.db.clone();
        let pending = self.pending.clone();
        blocking(move || {
            let last_purged: Option<LogId<u64>> = Self::read_meta(&db, "last_purged")?;
            let r = db.begin_read().map_err(|e| StorageIOError::read_logs(&e))?;
            let t = r
                .open_table(LOGS)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let last = match t.last().map_err(|e| StorageIOError::read_logs(&e))? {
                Some((k, v)) => {
                    let e: Entry<TypeConfig> = postcard::from_bytes(v.value())
                        .map_err(|e| StorageIOError::read_log_at_index(k.value(), &e))?;
                    Some(e.log_id)
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map(|mut st| {
            if let Some((_, (e, _))) = lock_pending(&pending).entries.last_key_value() {
                if st.last_log_id < Some(e.log_id) {
                    st.last_log_id = Some(e.log_id);
                }
            }
            st
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        let db = self.db.clone();
        let bytes = enc(vote);
        blocking(move || {
            Self::write_meta(&db, "vote", &bytes).map_err(|e| StorageIOError::write_vote(&e).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        let db = self.db.clone();
        blocking(move || Self::read_meta(&db, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        // Queued behind the appends it covers, never waited for (see the
        // module docs).
        self.writer
            .send(WriteOp::Committed(enc(&committed)))
            .map_err(|_| StorageIOError::write(&std::io::Error::other("log writer stopped")).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SErr> {
        let db = self.db.clone();
        blocking(move || Ok(Self::read_meta::<Option<LogId<u64>>>(&db, "committed")?.flatten()))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let encoded: Vec<(LogId<u64>, Vec<u8>)> =
            entries.iter().map(|e| (e.log_id, enc(e))).collect();
        {
            let mut p = lock_pending(&self.pending);
            for e in entries {
                p.entries.insert(e.log_id.index, (e, false));
            }
        }
        if let Err(e) = self.writer.send(WriteOp::Append(encoded, callback)) {
            if let WriteOp::Append(_, cb) = e.0 {
                cb.log_io_completed(Err(std::io::Error::other("log writer stopped")));
            }
            return Err(
                StorageIOError::write_logs(&std::io::Error::other("log writer stopped")).into(),
            );
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        lock_pending(&self.pending)
            .entries
            .retain(|i, _| *i < log_id.index);
        self.barrier().await?;
        let db = self.db.clone();
        blocking(move || {
            let run = || -> Result<(), redb::Error> {
                let w = db.begin_write()?;
                {
                    let mut t = w.open_table(LOGS)?;
                    t.retain_in(log_id.index.., |_, _| false)?;
                }
                w.commit()?;
                Ok(())
            };
            run().map_err(|e| StorageIOError::write_logs(&e).into())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        lock_pending(&self.pending)
            .entries
            .retain(|i, _| *i > log_id.index);
        self.barrier().await?;
        let db = self.db.clone();
        let bytes = enc(&log_id);
        blocking(move || {
            let run = || -> Result<(), redb::Error> {
                let w = db.begin_write()?;
                {
                    let mut m = w.open_table(META)?;
                    m.insert("last_purged", bytes.as_slice())?;
                    let mut t = w.open_table(LOGS)?;
                    t.retain_in(..=log_id.index, |_, _| false)?;
                }
                w.commit()?;
                Ok(())
            };
            run().map_err(|e| StorageIOError::write_logs(&e).into())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use openraft::storage::RaftLogStorageExt;

    /// Reopens once the dropped store's writer task has let go of the file.
    async fn reopen(path: &Path) -> LogStore {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match LogStore::open(path, 1 << 20) {
                Ok(l) => return l,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("already open"), "{e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_restarted_leader_keeps_its_term_but_not_its_leadership() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log.redb");
        {
            let mut log = LogStore::open(&path, 1 << 20).unwrap();
            log.save_vote(&Vote::new_committed(7, 1)).await.unwrap();
        }
        let mut log = reopen(&path).await;
        log.step_down_after_restart(1).unwrap();
        let v = log.read_vote().await.unwrap().unwrap();
        assert_eq!(v, Vote::new(7, 1), "same term and voted-for, not committed");
        // A committed vote for another leader is left alone.
        log.save_vote(&Vote::new_committed(8, 2)).await.unwrap();
        log.step_down_after_restart(1).unwrap();
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new_committed(8, 2))
        );
    }

    #[tokio::test]
    async fn reads_come_from_the_cache_and_the_disk_alike() {
        use openraft::{CommittedLeaderId, EntryPayload};
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(&dir.path().join("l.redb"), 1 << 20).unwrap();
        let n = CACHE_ENTRIES as u64 + 100;
        let entry = |i: u64| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(super::super::command::Request::Compact { revision: i }),
        };
        for i in 1..=n {
            log.blocking_append([entry(i)]).await.unwrap();
        }
        // The oldest entries have left the cache: this range spans disk
        // and memory.
        let got = log.try_get_log_entries(1..=n).await.unwrap();
        assert_eq!(got.len() as u64, n);
        assert!(got.iter().zip(1..).all(|(e, i)| e.log_id.index == i));
        // After a restart everything comes from disk.
        drop(log);
        let mut log = reopen(&dir.path().join("l.redb")).await;
        let got = log.try_get_log_entries(n - 5..).await.unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(entry(n).log_id)
        );
    }
}
