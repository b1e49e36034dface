//! The kubelet's half of the local-path provisioner. The node announces
//! the directory its local volumes live under (`<data dir>/local-path`,
//! as the Node annotation `storage.shoal.io/local-path`); the volume
//! controller names volumes after it; a pod's first mount makes the
//! volume's directory (`process::volumes`). When such a volume is deleted
//! (its claim gone and its policy Delete), this node removes the directory
//! and then the volume's `shoal.io/local-path` finalizer, so the volume
//! object goes only once its data has. A directory outside the announced
//! one is never removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use shoal_model::events::{EventRecorder, EventType, ObjectRef};
use shoal_model::objects::{self, LOCAL_PATH_ANNOTATION};
use shoal_model::resources::PERSISTENTVOLUMES;
use shoal_store::command::{Compare, Op, Txn};
use shoal_store::watch::{EventKind, WatchEvent};
use shoal_store::{ReadRequest, Store};

/// The finalizer the volume controller puts on local-path volumes whose
/// policy is Delete (`volume_plan::LOCAL_PATH_FINALIZER`).
pub const FINALIZER: &str = "shoal.io/local-path";

/// Where local volumes live under the node's data directory.
pub fn root_of(data_dir: &Path) -> PathBuf {
    let root = data_dir.join("local-path");
    std::path::absolute(&root).unwrap_or(root)
}

/// Announces `root` on Node `node`, then removes the directories of this
/// node's deleted local volumes, for as long as the kubelet runs.
pub async fn run(store: Store, node: String, root: PathBuf, events: EventRecorder) {
    let announced = root.to_string_lossy().to_string();
    shoal_model::announce::announce(&store, &node, LOCAL_PATH_ANNOTATION, &announced).await;
    loop {
        if let Err(e) = follow(&store, &node, &root, &events).await {
            tracing::debug!(%node, "local volumes: {e}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Lists the volumes, then follows them until the watch ends.
async fn follow(
    store: &Store,
    node: &str,
    root: &Path,
    events: &EventRecorder,
) -> Result<(), String> {
    let prefix = PERSISTENTVOLUMES.prefix(None);
    let listed = store
        .read(ReadRequest::prefix(prefix.clone()))
        .await
        .map_err(|e| e.to_string())?;
    for kv in &listed.kvs {
        if let Ok(pv) = serde_json::from_slice::<Value>(&kv.value) {
            reap(store, node, root, events, &pv, kv.mod_rev).await;
        }
    }
    let replica = store.watch_replica();
    let mut sub = store
        .watch(&replica, &prefix, listed.revision + 1)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match sub.next().await {
            Ok(WatchEvent::Events(evs)) => {
                for e in evs {
                    if e.kind != EventKind::Put {
                        continue;
                    }
                    if let Ok(pv) = serde_json::from_slice::<Value>(&e.value) {
                        reap(store, node, root, events, &pv, e.rev).await;
                    }
                }
            }
            Ok(WatchEvent::Progress { .. }) => {}
            Err(end) => {
                store.watch_failed(&replica);
                return Err(format!("the volume watch ended: {end:?}"));
            }
        }
    }
}

/// The directory of `pv` if it is a deleted local volume of this node
/// that waits for it: under `root`, pinned here, with the finalizer.
pub fn doomed_dir(pv: &Value, node: &str, root: &Path) -> Option<PathBuf> {
    pv.pointer("/metadata/deletionTimestamp")?;
    let held = pv
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v == FINALIZER));
    if !held {
        return None;
    }
    let dir = crate::volumes::volume_dir(pv, node).ok()?;
    let inside = dir.parent() == Some(root)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pvc-"));
    inside.then_some(dir)
}

async fn reap(
    store: &Store,
    node: &str,
    root: &Path,
    events: &EventRecorder,
    pv: &Value,
    mod_rev: u64,
) {
    let Some(dir) = doomed_dir(pv, node, root) else {
        return;
    };
    let gone = match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = gone {
        let msg = format!("removing {}: {e}", dir.display());
        tracing::warn!(%node, "local volume: {msg}");
        events.emit(
            &ObjectRef::of(pv),
            EventType::Warning,
            "VolumeFailedDelete",
            &msg,
        );
        return;
    }
    tracing::info!(%node, volume = objects::name_of(pv), "removed the local volume's directory");
    let key = PERSISTENTVOLUMES.key("", objects::name_of(pv));
    let mut rest: Vec<Value> = pv
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rest.retain(|f| f != FINALIZER);
    // The last finalizer gone from a deleted object: the object goes.
    let op = if rest.is_empty() {
        Op::Delete { key: key.clone() }
    } else {
        let mut kept = pv.clone();
        kept["metadata"]["finalizers"] = json!(rest);
        if let Some(m) = kept.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        Op::Put {
            key: key.clone(),
            value: objects::stored_bytes(&kept),
        }
    };
    let txn = Txn {
        compare: vec![Compare { key, mod_rev }],
        success: vec![op],
        failure: vec![],
    };
    // A conflict means the volume changed: its next event comes here again.
    if let Err(e) = store.write(txn).await {
        tracing::debug!(%node, "local volume: removing the finalizer: {e}");
    }
}
