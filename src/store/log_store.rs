//! The Raft log on disk: openraft's `RaftLogStorage` over redb.
//!
//! ```text
//! DATA/raft-log.redb
//!   logs: u64 index → postcard(Entry)
//!   meta: "vote" | "committed" | "last_purged" → postcard(..)
//! ```
//!
//! Every write is one redb transaction with `Durability::Immediate`, so the
//! callback of `append` fires only after fsync. Group commit comes from
//! openraft: entries that queue up while one append is flushing arrive
//! together in the next `append`, one fsync for all of them. Blocking redb
//! work runs on the blocking pool, serialized by `&mut self`.

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

/// Cheap-clone handle to the log database; it is also the log reader.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Arc<Database>,
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
        Ok(LogStore { db: Arc::new(db) })
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

    /// `durable = false` skips the fsync: the value becomes durable with
    /// the next durable commit (used for the committed index, which openraft
    /// may lose safely).
    fn write_meta(
        db: &Database,
        key: &str,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), redb::Error> {
        let mut w = db.begin_write()?;
        if !durable {
            w.set_durability(redb::Durability::None)?;
        }
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
        let db = self.db.clone();
        let range: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        blocking(move || {
            let r = db.begin_read().map_err(|e| StorageIOError::read_logs(&e))?;
            let t = r
                .open_table(LOGS)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let mut out = Vec::new();
            for item in t.range(range).map_err(|e| StorageIOError::read_logs(&e))? {
                let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry<TypeConfig> = postcard::from_bytes(v.value())
                    .map_err(|e| StorageIOError::read_log_at_index(k.value(), &e))?;
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let db = self.db.clone();
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
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        let db = self.db.clone();
        let bytes = enc(vote);
        blocking(move || {
            Self::write_meta(&db, "vote", &bytes, true)
                .map_err(|e| StorageIOError::write_vote(&e).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        let db = self.db.clone();
        blocking(move || Self::read_meta(&db, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        let db = self.db.clone();
        let bytes = enc(&committed);
        blocking(move || {
            Self::write_meta(&db, "committed", &bytes, false)
                .map_err(|e| StorageIOError::write(&e).into())
        })
        .await
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
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, enc(&e)))
            .collect();
        let db = self.db.clone();
        let res = blocking(move || {
            let write = || -> Result<(), redb::Error> {
                let w = db.begin_write()?;
                {
                    let mut t = w.open_table(LOGS)?;
                    for (i, bytes) in &encoded {
                        t.insert(*i, bytes.as_slice())?;
                    }
                }
                w.commit()?;
                Ok(())
            };
            write().map_err(|e| StorageIOError::write_logs(&e).into())
        })
        .await;
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
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
