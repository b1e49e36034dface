//! The replicated state machine: openraft's `RaftStateMachine` over the
//! MVCC tables in `DATA/state.redb`, with file-backed snapshots.
//!
//! ```text
//! DATA/snapshots/snap-<term>-<index>-<n>.bin   the current snapshot
//! snapshot file = "SHOALSNP" ‖ u32 format ‖ u32 len ‖ postcard(SnapshotMeta)
//!                 ‖ u64 compacted ‖ { u32 len ‖ postcard(Row) }*
//! ```
//!
//! `apply` writes a whole batch in one redb transaction and answers one
//! `Response` per entry. That transaction is fsynced only when
//! [`SmSettings::durable_interval`] has passed since the last durable one
//! (etcd commits its backend every 100 ms the same way): the Raft log is
//! always fsynced, so after a crash openraft re-applies the log from the
//! last durable `applied` on. Anything that lets the log be purged — a
//! snapshot record — is written durably, and a state machine found older
//! than its snapshot reloads the snapshot on open. The snapshot builder holds a redb read
//! transaction taken when it was created, so it sees one consistent revision
//! while `apply` goes on. Installing a snapshot replaces the tables with the
//! file's rows in one transaction.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::command::{Request, Response};
use super::mvcc::{self, KV, LATEST, META};
use super::TypeConfig;

type SErr = StorageError<u64>;
type Meta = SnapshotMeta<u64, openraft::BasicNode>;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SHOALSNP";
pub const SNAPSHOT_FORMAT: u32 = 1;

/// A snapshot file that knows its own path (openraft's `SnapshotData`).
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    file: tokio::fs::File,
}

impl SnapshotFile {
    pub async fn open(path: PathBuf) -> std::io::Result<SnapshotFile> {
        let file = tokio::fs::File::open(&path).await?;
        Ok(SnapshotFile { path, file })
    }

    async fn create(path: PathBuf) -> std::io::Result<SnapshotFile> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await?;
        Ok(SnapshotFile { path, file })
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.file).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(
        mut self: std::pin::Pin<&mut Self>,
        position: std::io::SeekFrom,
    ) -> std::io::Result<()> {
        std::pin::Pin::new(&mut self.file).start_seek(position)
    }
    fn poll_complete(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<u64>> {
        std::pin::Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// One row of a snapshot: a version of a key.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    rev: u64,
    #[serde(with = "serde_bytes")]
    rec: Vec<u8>,
}

/// Where the current snapshot lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotRecord {
    meta: Meta,
    file: String,
}

/// Settings of the state machine.
#[derive(Debug, Clone)]
pub struct SmSettings {
    /// Keep at least this many revisions of history; compact beyond it.
    pub history_revisions: u64,
    /// And keep every revision younger than this (as this replica applied
    /// it), so a LIST in pages or a watch resuming after a pause is not
    /// expired by a burst of writes.
    pub history_min_age: std::time::Duration,
    /// Make the applied state durable at most this often; zero makes
    /// every apply durable. Whatever is not yet durable is replayed from
    /// the (always durable) Raft log after a crash.
    pub durable_interval: std::time::Duration,
}

impl Default for SmSettings {
    fn default() -> Self {
        SmSettings {
            history_revisions: 10_000,
            history_min_age: std::time::Duration::ZERO,
            durable_interval: std::time::Duration::ZERO,
        }
    }
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    dir: PathBuf,
    settings: SmSettings,
    seq: Arc<AtomicU64>,
    /// When the applied state was last made durable.
    last_durable: Arc<std::sync::Mutex<std::time::Instant>>,
    hub: super::watch::Hub,
    /// When revisions were applied here (one mark a second at most).
    marks: Arc<std::sync::Mutex<super::marks::Marks>>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SErr> + Send + 'static,
) -> Result<T, SErr> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StorageIOError::write_state_machine(&e).into()),
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(
    r: &ReadTransaction,
    key: &str,
) -> Result<Option<T>, SErr> {
    let t = r
        .open_table(META)
        .map_err(|e| StorageIOError::read_state_machine(&e))?;
    match t
        .get(key)
        .map_err(|e| StorageIOError::read_state_machine(&e))?
    {
        None => Ok(None),
        Some(v) => postcard::from_bytes(v.value())
            .map(Some)
            .map_err(|e| StorageIOError::read_state_machine(&e).into()),
    }
}

fn write_meta<T: Serialize>(w: &WriteTransaction, key: &str, v: &T) -> Result<(), redb::Error> {
    let mut t = w.open_table(META)?;
    t.insert(key, postcard::to_allocvec(v).expect("encodes").as_slice())?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl StateMachine {
    pub fn open(
        path: &Path,
        snapshot_dir: &Path,
        cache_bytes: usize,
        settings: SmSettings,
    ) -> Result<StateMachine, super::StoreError> {
        Self::open_with(path, snapshot_dir, cache_bytes, settings, None)
    }

    pub fn open_with(
        path: &Path,
        snapshot_dir: &Path,
        cache_bytes: usize,
        settings: SmSettings,
        disks: Option<&super::DiskFactory>,
    ) -> Result<StateMachine, super::StoreError> {
        let db = super::open_db_with(path, cache_bytes, disks)?;
        Self::from_db(db, snapshot_dir, settings)
    }

    pub fn from_db(
        db: Database,
        snapshot_dir: &Path,
        settings: SmSettings,
    ) -> Result<StateMachine, super::StoreError> {
        std::fs::create_dir_all(snapshot_dir).map_err(|e| super::StoreError::Io {
            path: snapshot_dir.to_owned(),
            source: e,
        })?;
        let w = db
            .begin_write()
            .map_err(|e| super::StoreError::db("state machine", e))?;
        w.open_table(KV)
            .map_err(|e| super::StoreError::db("state machine", e))?;
        w.open_table(LATEST)
            .map_err(|e| super::StoreError::db("state machine", e))?;
        w.open_table(META)
            .map_err(|e| super::StoreError::db("state machine", e))?;
        w.commit()
            .map_err(|e| super::StoreError::db("state machine", e))?;
        // Leftovers of interrupted snapshot transfers.
        if let Ok(rd) = std::fs::read_dir(snapshot_dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let sm = StateMachine {
            db: Arc::new(db),
            dir: snapshot_dir.to_owned(),
            settings,
            seq: Arc::new(AtomicU64::new(0)),
            last_durable: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            hub: super::watch::hub(),
            marks: Arc::default(),
        };
        sm.recover_from_snapshot()
            .map_err(|e| super::StoreError::Io {
                path: snapshot_dir.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(sm)
    }

    /// After a crash the state machine may be older than its newest
    /// snapshot (applies are not fsynced, snapshots are), and the log may
    /// already be purged up to that snapshot: reload the snapshot then.
    fn recover_from_snapshot(&self) -> Result<(), SErr> {
        let r = self
            .db
            .begin_read()
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let applied: Option<LogId<u64>> = read_meta::<Option<LogId<u64>>>(&r, "applied")?.flatten();
        let rec: Option<SnapshotRecord> = read_meta(&r, "snapshot")?;
        drop(r);
        if let Some(rec) = rec {
            if rec.meta.last_log_id > applied {
                tracing::info!(snapshot = %rec.meta.snapshot_id, "state machine is older than its snapshot; reloading it");
                self.load_snapshot(&rec.meta, &self.snapshot_path(&rec.file))?;
            }
        }
        Ok(())
    }

    pub fn db(&self) -> Arc<Database> {
        self.db.clone()
    }

    fn apply_batch(&self, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<Response>, SErr> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut w = self
            .db
            .begin_write()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        // Between durable commits, applies skip the fsync and rely on the
        // Raft log to replay them after a crash (see the module docs).
        let mut last_durable = self.last_durable.lock().unwrap_or_else(|p| p.into_inner());
        if last_durable.elapsed() < self.settings.durable_interval {
            w.set_durability(redb::Durability::None)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
        } else {
            *last_durable = std::time::Instant::now();
        }
        drop(last_durable);
        let mut out = Vec::with_capacity(entries.len());
        for entry in &entries {
            let res = match &entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Membership(m) => {
                    write_meta(
                        &w,
                        "membership",
                        &StoredMembership::new(Some(entry.log_id), m.clone()),
                    )
                    .map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    Response::None
                }
                EntryPayload::Normal(Request::Txn(txn)) => Response::Txn(
                    mvcc::apply_txn(&w, txn, entry.log_id.index)
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                ),
                EntryPayload::Normal(Request::Batch(txns)) => Response::Batch(
                    mvcc::apply_txns(&w, txns, entry.log_id.index)
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                ),
                EntryPayload::Normal(Request::Fenced { token, txn }) => {
                    let lid = entry.log_id.leader_id;
                    if token.term == lid.term && token.node == lid.node_id {
                        Response::Txn(
                            mvcc::apply_txn(&w, txn, entry.log_id.index)
                                .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                        )
                    } else {
                        Response::Fenced
                    }
                }
                EntryPayload::Normal(Request::FencedBatch { token, txns }) => {
                    let lid = entry.log_id.leader_id;
                    if token.term == lid.term && token.node == lid.node_id {
                        Response::Batch(
                            mvcc::apply_txns(&w, txns, entry.log_id.index)
                                .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                        )
                    } else {
                        Response::Fenced
                    }
                }
                EntryPayload::Normal(Request::Compact { revision }) => {
                    let rev = (*revision).min(entry.log_id.index);
                    self.compact_in(&w, rev)
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    Response::Compacted { revision: rev }
                }
            };
            out.push(res);
        }
        // Automatic compaction by revision age, in large steps.
        let compacted = self
            .compacted_in(&w)
            .map_err(|e| StorageIOError::apply(last, &e))?;
        // Automatic compaction keeps `history_revisions` revisions and
        // every revision younger than `history_min_age`.
        let keep = self.settings.history_revisions;
        let target = {
            let now = std::time::Instant::now();
            let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
            marks.note(now, last.index);
            let by_count = last.index.saturating_sub(keep);
            if self.settings.history_min_age.is_zero() {
                by_count
            } else {
                marks
                    .older_than(now, self.settings.history_min_age)
                    .map_or(0, |by_age| by_count.min(by_age))
            }
        };
        if target > compacted + keep {
            self.compact_in(&w, target)
                .map_err(|e| StorageIOError::apply(last, &e))?;
        }
        write_meta(&w, "applied", &Some(last)).map_err(|e| StorageIOError::apply(last, &e))?;
        w.commit().map_err(|e| StorageIOError::apply(last, &e))?;
        // Watchers hear of what was applied. A watcher subscribes to the
        // hub before it reads history, so with no receivers now nobody can
        // miss these events: skip building them (they copy every value).
        if self.hub.receiver_count() == 0 {
            return Ok(out);
        }
        let mut events = Vec::new();
        for (entry, res) in entries.iter().zip(&out) {
            let txns: &[super::command::Txn] = match &entry.payload {
                EntryPayload::Normal(Request::Txn(t) | Request::Fenced { txn: t, .. }) => {
                    std::slice::from_ref(t)
                }
                EntryPayload::Normal(
                    Request::Batch(ts) | Request::FencedBatch { txns: ts, .. },
                ) => ts,
                _ => &[],
            };
            let results: &[super::command::TxnResult] = match res {
                Response::Txn(r) => std::slice::from_ref(r),
                Response::Batch(rs) => rs,
                _ => &[],
            };
            for (txn, r) in txns.iter().zip(results) {
                events.extend(super::watch::events_of(txn, r));
            }
        }
        let _ = self.hub.send(Arc::new(super::watch::Applied::Events {
            events,
            applied: last.index,
        }));
        Ok(out)
    }

    /// Where applied changes are published for watchers.
    pub fn hub(&self) -> super::watch::Hub {
        self.hub.clone()
    }

    fn compacted_in(&self, w: &WriteTransaction) -> Result<u64, mvcc::MvccError> {
        let t = w.open_table(META)?;
        let v = t
            .get("compacted")?
            .map(|g| postcard::from_bytes::<u64>(g.value()).unwrap_or(0));
        Ok(v.unwrap_or(0))
    }

    fn compact_in(&self, w: &WriteTransaction, revision: u64) -> Result<(), mvcc::MvccError> {
        if revision <= self.compacted_in(w)? {
            return Ok(());
        }
        let removed = mvcc::compact(w, revision)?;
        write_meta(w, "compacted", &revision)?;
        tracing::debug!(revision, removed, "compacted store history");
        Ok(())
    }

    fn snapshot_path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Rebuilds the tables from a snapshot file (blocking).
    fn load_snapshot(&self, meta: &Meta, path: &Path) -> Result<(), SErr> {
        let sig = Some(meta.signature());
        let rerr = |e: &dyn std::fmt::Display| -> SErr {
            StorageIOError::read_snapshot(sig.clone(), openraft::AnyError::error(e.to_string()))
                .into()
        };
        let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| rerr(&e))?);
        let (file_meta, compacted) = read_header(&mut f).map_err(|e| rerr(&e))?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(rerr(&"snapshot file does not match its metadata"));
        }
        let w = self
            .db
            .begin_write()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        {
            w.delete_table(KV)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            w.delete_table(LATEST)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            let mut kv = w
                .open_table(KV)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            let mut latest = w
                .open_table(LATEST)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            while let Some(row) = read_row(&mut f).map_err(|e| rerr(&e))? {
                let rec = mvcc::decode_rec(&row.rec).map_err(|e| rerr(&e))?;
                kv.insert((row.key.as_slice(), row.rev), row.rec.as_slice())
                    .map_err(|e| StorageIOError::write_state_machine(&e))?;
                // Rows come in (key, rev) order: the last live one wins.
                if rec.value.is_some() {
                    latest
                        .insert(row.key.as_slice(), row.rev)
                        .map_err(|e| StorageIOError::write_state_machine(&e))?;
                } else {
                    latest
                        .remove(row.key.as_slice())
                        .map_err(|e| StorageIOError::write_state_machine(&e))?;
                }
            }
        }
        let werr = |e: redb::Error| -> SErr { StorageIOError::write_state_machine(&e).into() };
        write_meta(&w, "applied", &meta.last_log_id).map_err(werr)?;
        write_meta(&w, "membership", &meta.last_membership).map_err(werr)?;
        write_meta(&w, "compacted", &compacted).map_err(werr)?;
        w.commit()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok(())
    }

    fn record_snapshot(&self, meta: &Meta, file: &str) -> Result<(), SErr> {
        let w = self
            .db
            .begin_write()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        write_meta(
            &w,
            "snapshot",
            &SnapshotRecord {
                meta: meta.clone(),
                file: file.to_string(),
            },
        )
        .map_err(|e| StorageIOError::write_state_machine(&e))?;
        w.commit()
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        // Older snapshot files are no longer needed.
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("snap-") && name.ends_with(".bin") && name != file {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}

fn read_header(f: &mut impl Read) -> std::io::Result<(Meta, u64)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(bad("not a shoal snapshot"));
    }
    let mut b4 = [0u8; 4];
    f.read_exact(&mut b4)?;
    let format = u32::from_be_bytes(b4);
    if format != SNAPSHOT_FORMAT {
        return Err(bad(&format!("snapshot format {format} is not supported")));
    }
    f.read_exact(&mut b4)?;
    let len = u32::from_be_bytes(b4) as usize;
    if len > 16 << 20 {
        return Err(bad("snapshot metadata too large"));
    }
    let mut m = vec![0u8; len];
    f.read_exact(&mut m)?;
    let meta: Meta = postcard::from_bytes(&m).map_err(|e| bad(&e.to_string()))?;
    let mut b8 = [0u8; 8];
    f.read_exact(&mut b8)?;
    Ok((meta, u64::from_be_bytes(b8)))
}

fn read_row(f: &mut impl Read) -> std::io::Result<Option<Row>> {
    let mut b4 = [0u8; 4];
    match f.read_exact(&mut b4) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(b4) as usize;
    if len > 64 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "snapshot row too large",
        ));
    }
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Writes a snapshot of `r` to `path` (synced). Returns the number of rows.
fn write_snapshot(
    r: &ReadTransaction,
    meta: &Meta,
    compacted: u64,
    path: &Path,
) -> std::io::Result<usize> {
    let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(SNAPSHOT_MAGIC)?;
    f.write_all(&SNAPSHOT_FORMAT.to_be_bytes())?;
    let m = postcard::to_allocvec(meta).map_err(|e| io(&e))?;
    f.write_all(&(m.len() as u32).to_be_bytes())?;
    f.write_all(&m)?;
    f.write_all(&compacted.to_be_bytes())?;
    let kv = r.open_table(KV).map_err(|e| io(&e))?;
    let mut n = 0;
    for item in kv.iter().map_err(|e| io(&e))? {
        let (k, v) = item.map_err(|e| io(&e))?;
        let (key, rev) = k.value();
        let row = postcard::to_allocvec(&Row {
            key: key.to_vec(),
            rev,
            rec: v.value().to_vec(),
        })
        .map_err(|e| io(&e))?;
        f.write_all(&(row.len() as u32).to_be_bytes())?;
        f.write_all(&row)?;
        n += 1;
    }
    let file = f.into_inner().map_err(|e| io(&e))?;
    file.sync_all()?;
    Ok(n)
}

/// Builds a snapshot from the read transaction taken when it was created.
pub struct SnapshotBuilder {
    sm: StateMachine,
    read: Option<ReadTransaction>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let sm = self.sm.clone();
        let read = match self.read.take() {
            Some(r) => r,
            None => sm
                .db
                .begin_read()
                .map_err(|e| StorageIOError::read_state_machine(&e))?,
        };
        let (meta, file) = blocking(move || {
            let applied: Option<LogId<u64>> =
                read_meta::<Option<LogId<u64>>>(&read, "applied")?.flatten();
            let membership: StoredMembership<u64, openraft::BasicNode> =
                read_meta(&read, "membership")?.unwrap_or_default();
            let compacted: u64 = read_meta(&read, "compacted")?.unwrap_or(0);
            let n = sm.seq.fetch_add(1, Ordering::Relaxed);
            let (term, index) = applied.map_or((0, 0), |l| (l.leader_id.term, l.index));
            let id = format!("{term}-{index}-{n}-{}", shoal_fabric::pki::random_hex(4));
            let meta = Meta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id: id.clone(),
            };
            let file = format!("snap-{id}.bin");
            let tmp = sm.snapshot_path(&format!("snap-{id}.tmp"));
            let werr = |e: std::io::Error| -> SErr {
                StorageIOError::write_snapshot(Some(meta.signature()), &e).into()
            };
            write_snapshot(&read, &meta, compacted, &tmp).map_err(werr)?;
            std::fs::rename(&tmp, sm.snapshot_path(&file)).map_err(werr)?;
            sync_dir(&sm.dir);
            sm.record_snapshot(&meta, &file)?;
            Ok((meta, file))
        })
        .await?;
        let f = SnapshotFile::open(self.sm.snapshot_path(&file))
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(f),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        SErr,
    > {
        let db = self.db.clone();
        blocking(move || {
            let r = db
                .begin_read()
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            let applied = read_meta::<Option<LogId<u64>>>(&r, "applied")?.flatten();
            let membership = read_meta(&r, "membership")?.unwrap_or_default();
            Ok((applied, membership))
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let sm = self.clone();
        blocking(move || sm.apply_batch(entries)).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let read = self.db.begin_read().ok();
        SnapshotBuilder {
            sm: self.clone(),
            read,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, SErr> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshot_path(&format!(
            "recv-{n}-{}.tmp",
            shoal_fabric::pki::random_hex(4)
        ));
        let f = SnapshotFile::create(path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), SErr> {
        use tokio::io::AsyncWriteExt;
        let mut f = *snapshot;
        let werr = |e: std::io::Error| -> SErr {
            StorageIOError::write_snapshot(Some(meta.signature()), &e).into()
        };
        f.file.flush().await.map_err(werr)?;
        f.file.sync_all().await.map_err(werr)?;
        let tmp = f.path.clone();
        drop(f);
        let file = format!("snap-{}.bin", meta.snapshot_id);
        std::fs::rename(&tmp, self.snapshot_path(&file)).map_err(werr)?;
        sync_dir(&self.dir);
        let sm = self.clone();
        let meta = meta.clone();
        blocking(move || {
            sm.load_snapshot(&meta, &sm.snapshot_path(&file))?;
            sm.record_snapshot(&meta, &file)?;
            // No events bridge a snapshot: watchers of this replica expire.
            let applied = meta.last_log_id.map_or(0, |l| l.index);
            let _ = sm
                .hub
                .send(Arc::new(super::watch::Applied::Reset { applied }));
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let db = self.db.clone();
        let rec: Option<SnapshotRecord> = blocking(move || {
            let r = db
                .begin_read()
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            read_meta(&r, "snapshot")
        })
        .await?;
        let Some(rec) = rec else { return Ok(None) };
        match SnapshotFile::open(self.snapshot_path(&rec.file)).await {
            Ok(f) => Ok(Some(Snapshot {
                meta: rec.meta,
                snapshot: Box::new(f),
            })),
            Err(e) => Err(StorageIOError::read_snapshot(Some(rec.meta.signature()), &e).into()),
        }
    }
}
