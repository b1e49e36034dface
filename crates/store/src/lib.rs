//! The store: a Raft-replicated MVCC key-value store on disk (openraft 0.9
//! with storage-v2, redb), the authoritative state of the cluster.
//!
//! ```text
//!  client ─► Store handle ─► leader's Raft ─► log_store (raft-log.redb, fsync)
//!                                   │ committed
//!                                   ▼
//!                           state_machine (state.redb: MVCC tables)
//!                                   │ snapshots: DATA/snapshots/*.bin
//! ```
//!
//! `command` is what the log carries; `mvcc` the tables and their rules;
//! `log_store` and `state_machine` the openraft storage traits.

pub mod access;
pub mod actor;
pub mod autopilot;
pub mod batch;
pub mod command;
pub mod config;
pub mod log_store;
pub mod marks;
pub mod mvcc;
pub mod network;
pub mod secrets;
pub mod service;
pub mod singleton;
pub mod state_machine;
pub mod watch;

use std::path::{Path, PathBuf};

pub use command::{Request, Response};
pub use service::{ClientError, ReadRequest, ReadResult, RecentRead, Store, StoreStatus};
pub use state_machine::SnapshotFile;

openraft::declare_raft_types!(
    /// shoal's Raft types: u64 node ids, node addresses are node names.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Start-up and I/O errors of the store, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} database: {source}")]
    Db {
        what: &'static str,
        source: redb::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    pub fn db(what: &'static str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            what,
            source: e.into(),
        }
    }
}

/// Opens (or creates) a redb database with an explicit cache size. A file
/// that is not a valid database is an error naming the file, never a
/// silent fresh start.
pub fn open_db(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    open_db_with(path, cache_bytes, None)
}

/// Gives the storage backend for a database path (tests use it to simulate
/// power loss or a full disk); `None` means the real file.
pub type DiskFactory =
    std::sync::Arc<dyn Fn(&Path) -> Option<Box<dyn redb::StorageBackend>> + Send + Sync>;

/// A boxed backend, so a factory can hand out any backend type.
#[derive(Debug)]
struct DynBackend(Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for DynBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }
}

/// `open_db` with an optional backend factory.
pub fn open_db_with(
    path: &Path,
    cache_bytes: usize,
    disks: Option<&DiskFactory>,
) -> Result<redb::Database, StoreError> {
    let mut b = redb::Database::builder();
    b.set_cache_size(cache_bytes);
    let backend = disks.and_then(|f| f(path));
    match backend {
        Some(backend) => b.create_with_backend(DynBackend(backend)),
        None => b.create(path),
    }
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod suite_test;
