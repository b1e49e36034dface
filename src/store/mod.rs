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

pub mod command;
pub mod log_store;
pub mod mvcc;
pub mod network;
pub mod secrets;
pub mod service;
pub mod state_machine;

use std::path::{Path, PathBuf};

pub use command::{Request, Response};
pub use service::{ClientError, ReadRequest, ReadResult, Store, StoreStatus};
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
    redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod suite_test;
