//! The node's data directory: identity, lock and generation.
//!
//! ```text
//! DATA/identity     cluster id, node name, format version, raft id (JSON)
//! DATA/LOCK         held with an exclusive file lock while the node runs
//! DATA/generation   membership generation, bumped at every start and renewal
//! ```
//!
//! Invariants: a data dir belongs to exactly one (cluster, node) pair for
//! life; one running node at a time; a directory written by a newer format
//! is refused rather than guessed at. The Raft id is random and never reused
//! after a wipe (a wiped dir gets a fresh one).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The on-disk format this binary writes and understands.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {path} is in use by another shoal process (lock held)")]
    Locked { path: PathBuf },
    #[error("data dir {path} belongs to cluster {found:?}, not {expected:?}; refusing to start (wipe it to reuse it)")]
    ForeignCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("data dir {path} belongs to node {found:?}, not {expected:?}")]
    OtherNode {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("data dir {path} has format version {found}, newer than this binary's {supported}; upgrade shoal")]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("data dir {path}: identity file is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_name: String,
    pub format_version: u32,
    pub raft_id: u64,
}

/// An open, locked data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    identity: Identity,
    generation: u64,
    _lock: File,
}

impl DataDir {
    /// Opens (creating if needed) and locks the data dir for this node, and
    /// bumps the generation.
    pub fn open(path: &Path, cluster_id: &str, node_name: &str) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_owned(),
            source,
        };
        // The store, the pods' files and their logs live here: 0700.
        crate::private::dir(path).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("LOCK"))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let id_path = path.join("identity");
        let identity = match std::fs::read(&id_path) {
            Ok(bytes) => {
                let id: Identity =
                    serde_json::from_slice(&bytes).map_err(|e| DataDirError::Corrupt {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
                if id.format_version > FORMAT_VERSION {
                    return Err(DataDirError::NewerFormat {
                        path: path.to_owned(),
                        found: id.format_version,
                        supported: FORMAT_VERSION,
                    });
                }
                if id.cluster_id != cluster_id {
                    return Err(DataDirError::ForeignCluster {
                        path: path.to_owned(),
                        found: id.cluster_id,
                        expected: cluster_id.into(),
                    });
                }
                if id.node_name != node_name {
                    return Err(DataDirError::OtherNode {
                        path: path.to_owned(),
                        found: id.node_name,
                        expected: node_name.into(),
                    });
                }
                id
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity {
                    cluster_id: cluster_id.into(),
                    node_name: node_name.into(),
                    format_version: FORMAT_VERSION,
                    raft_id: random_nonzero_u64(),
                };
                let bytes = serde_json::to_vec_pretty(&id).expect("identity serializes");
                write_atomic(&id_path, &bytes).map_err(io)?;
                id
            }
            Err(e) => return Err(io(e)),
        };
        let mut dir = DataDir {
            path: path.to_owned(),
            identity,
            generation: 0,
            _lock: lock,
        };
        let previous = dir.read_generation()?;
        dir.set_generation(previous + 1)?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The membership generation of this run.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn read_generation(&self) -> Result<u64, DataDirError> {
        match std::fs::read_to_string(self.path.join("generation")) {
            Ok(s) => s.trim().parse().map_err(|_| DataDirError::Corrupt {
                path: self.path.clone(),
                reason: format!("generation file holds {s:?}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(DataDirError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Persists a new generation (durably) before it is used on the wire.
    pub fn set_generation(&mut self, generation: u64) -> Result<(), DataDirError> {
        write_atomic(
            &self.path.join("generation"),
            generation.to_string().as_bytes(),
        )
        .map_err(|source| DataDirError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.generation = generation;
        Ok(())
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn random_nonzero_u64() -> u64 {
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_identity_and_bumps_generation() {
        let dir = tempfile::tempdir().unwrap();
        let raft_id;
        {
            let d = DataDir::open(dir.path(), "c1", "node-1").unwrap();
            assert_eq!(d.generation(), 1);
            assert_eq!(d.identity().format_version, FORMAT_VERSION);
            raft_id = d.identity().raft_id;
        }
        let d = DataDir::open(dir.path(), "c1", "node-1").unwrap();
        assert_eq!(d.generation(), 2);
        assert_eq!(d.identity().raft_id, raft_id);
    }

    #[test]
    fn is_locked_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let _d = DataDir::open(dir.path(), "c1", "node-1").unwrap();
        assert!(matches!(
            DataDir::open(dir.path(), "c1", "node-1"),
            Err(DataDirError::Locked { .. })
        ));
    }

    #[test]
    fn refuses_other_cluster_other_node_and_newer_format() {
        let dir = tempfile::tempdir().unwrap();
        drop(DataDir::open(dir.path(), "c1", "node-1").unwrap());
        let err = DataDir::open(dir.path(), "c2", "node-1").unwrap_err();
        assert!(matches!(err, DataDirError::ForeignCluster { .. }), "{err}");
        assert!(err.to_string().contains("belongs to cluster \"c1\""));
        assert!(matches!(
            DataDir::open(dir.path(), "c1", "node-2"),
            Err(DataDirError::OtherNode { .. })
        ));

        let mut id: Identity =
            serde_json::from_slice(&std::fs::read(dir.path().join("identity")).unwrap()).unwrap();
        id.format_version = FORMAT_VERSION + 1;
        std::fs::write(
            dir.path().join("identity"),
            serde_json::to_vec(&id).unwrap(),
        )
        .unwrap();
        let err = DataDir::open(dir.path(), "c1", "node-1").unwrap_err();
        assert!(matches!(err, DataDirError::NewerFormat { .. }), "{err}");
    }

    #[test]
    fn a_wiped_dir_gets_a_new_raft_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDir::open(dir.path(), "c1", "node-1")
            .unwrap()
            .identity()
            .raft_id;
        std::fs::remove_dir_all(dir.path()).unwrap();
        let b = DataDir::open(dir.path(), "c1", "node-1")
            .unwrap()
            .identity()
            .raft_id;
        assert_ne!(a, b);
    }

    #[test]
    fn corrupt_identity_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("identity"), b"{not json").unwrap();
        assert!(matches!(
            DataDir::open(dir.path(), "c1", "node-1"),
            Err(DataDirError::Corrupt { .. })
        ));
    }
}
