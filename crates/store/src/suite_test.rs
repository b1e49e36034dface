//! openraft's storage conformance suite against the redb storage.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use super::log_store::LogStore;
use super::state_machine::{SmSettings, StateMachine};
use super::TypeConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft-log.redb"), 16 << 20).expect("log store");
        let sm = StateMachine::open(
            &dir.path().join("state.redb"),
            &dir.path().join("snapshots"),
            16 << 20,
            SmSettings::default(),
        )
        .expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
