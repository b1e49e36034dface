//! What a node announces on its own Node object for the control plane
//! to act on: where its cluster DNS answers (`dns.shoal.io/address`) and,
//! on API nodes, where pods reach the API (`api.shoal.io/address`). The
//! control plane makes the `kube-system/kube-dns` and `default/kubernetes`
//! Services' endpoints from the Ready nodes' announcements. A node writes
//! its own Node, which the node authorizer allows.

use std::time::Duration;

use serde_json::{json, Value};
use shoal_store::command::Txn;
use shoal_store::{ReadRequest, Store};

use crate::objects::stored_bytes;
use crate::resources::NODES;

/// Where a node's cluster DNS answers (`ip:port`).
pub const DNS_ADDRESS: &str = "dns.shoal.io/address";
/// Where pods reach a node's API server (`ip:port`).
pub const API_ADDRESS: &str = "api.shoal.io/address";

/// Sets annotation `key` to `value` on Node `node`, retrying (the Node
/// may not be registered yet; a conflict reads again) until it sticks.
pub async fn announce(store: &Store, node: &str, key: &str, value: &str) {
    let mut pause = Duration::from_millis(200);
    loop {
        match try_announce(store, node, key, value).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::debug!(%node, "announcing {key}: {e}"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn try_announce(store: &Store, node: &str, key: &str, value: &str) -> Result<bool, String> {
    let k = NODES.key("", node);
    let read = store
        .read(ReadRequest::key(k.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let kv = read.kvs.first().ok_or("the Node is not registered yet")?;
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
    if obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        == Some(&json!(value))
    {
        return Ok(true);
    }
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][key] = json!(value);
    store
        .write(Txn::update(k, stored_bytes(&obj), kv.mod_rev))
        .await
        .map(|r| r.succeeded)
        .map_err(|e| e.to_string())
}
