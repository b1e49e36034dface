//! Store endpoints: status and the user key-value namespace (`shoal kv`).
//!
//! ```text
//! GET    /shoal/v1/store/status
//! GET    /shoal/v1/kv?prefix=P      list (user keys under P)
//! GET    /shoal/v1/kv?prefix=P&watch=true[&from=REV]
//!                                   stream, one JSON object per line:
//!                                   {"type":"PUT"|"DELETE","rev","key","value"},
//!                                   {"type":"PROGRESS","rev"}, last {"type":"END","reason"}
//! GET    /shoal/v1/kv/{key}         one key
//! PUT    /shoal/v1/kv/{key}         body = value
//! DELETE /shoal/v1/kv/{key}
//! ```
//!
//! User keys live under `/user/`, so no request here can reach `/registry/`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{status, ApiState};
use shoal_store::command::{KeyValue, Txn};
use shoal_store::{ClientError, ReadRequest, Store};

/// The namespace of `shoal kv` keys inside the store.
pub const USER_PREFIX: &str = "/user/";

/// A user key as `shoal kv get --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKv {
    pub key: String,
    pub value: String,
    pub create_rev: u64,
    pub mod_rev: u64,
    pub version: u64,
    /// Served without a quorum check (the leader could not confirm it
    /// leads: a full disk, a partition); absent when fresh.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

impl UserKv {
    fn from(kv: KeyValue) -> UserKv {
        let key = String::from_utf8_lossy(&kv.key);
        UserKv {
            key: key.strip_prefix(USER_PREFIX).unwrap_or(&key).to_string(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            create_rev: kv.create_rev,
            mod_rev: kv.mod_rev,
            version: kv.version,
            stale: false,
        }
    }
}

fn user_key(key: &str) -> Result<Vec<u8>, Response> {
    if key.is_empty() {
        return Err(status(StatusCode::BAD_REQUEST, "BadRequest", "empty key"));
    }
    Ok(format!("{USER_PREFIX}{key}").into_bytes())
}

pub fn client_error(e: ClientError) -> Response {
    let (code, reason) = match &e {
        ClientError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
        ClientError::Conflict { .. } | ClientError::Fenced => (StatusCode::CONFLICT, "Conflict"),
        ClientError::Invalid(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        ClientError::Compacted { .. } => (StatusCode::GONE, "Expired"),
        ClientError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        ClientError::Timeout | ClientError::LeaderChanged => {
            (StatusCode::GATEWAY_TIMEOUT, "Timeout")
        }
        ClientError::NotLeader { .. } | ClientError::NoQuorum | ClientError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
        }
    };
    status(code, reason, &e.to_string())
}

fn store_of(st: &ApiState) -> Result<&Store, Response> {
    st.store.as_ref().ok_or_else(|| {
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no store on this node",
        )
    })
}

pub async fn store_status(State(st): State<ApiState>) -> Response {
    match store_of(&st) {
        Ok(s) => Json(s.status()).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    watch: bool,
    #[serde(default)]
    from: u64,
}

/// One line of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLine {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn line(l: &WatchLine) -> axum::body::Bytes {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v.into()
}

/// Streams this node's watch of the user prefix as JSON lines.
async fn kv_watch(store: Store, prefix: String, from: u64) -> Response {
    use shoal_store::watch::{EventKind, WatchEnd, WatchEvent};
    let key = format!("{USER_PREFIX}{prefix}").into_bytes();
    let node = store.node().to_string();
    let sub = match store.watch(&node, &key, from).await {
        Ok(s) => s,
        Err(e) => return client_error(e),
    };
    let stream = futures::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        let (chunk, next) = match sub.next().await {
            Ok(WatchEvent::Events(evs)) => {
                let mut out = Vec::new();
                for e in evs {
                    let key = String::from_utf8_lossy(&e.key);
                    out.extend_from_slice(&line(&WatchLine {
                        kind: match e.kind {
                            EventKind::Put => "PUT".into(),
                            EventKind::Delete => "DELETE".into(),
                        },
                        rev: Some(e.rev),
                        key: Some(key.strip_prefix(USER_PREFIX).unwrap_or(&key).to_string()),
                        value: Some(String::from_utf8_lossy(&e.value).into_owned()),
                        reason: None,
                    }));
                }
                (axum::body::Bytes::from(out), Some(sub))
            }
            Ok(WatchEvent::Progress { rev }) => (
                line(&WatchLine {
                    kind: "PROGRESS".into(),
                    rev: Some(rev),
                    key: None,
                    value: None,
                    reason: None,
                }),
                Some(sub),
            ),
            Err(end) => {
                let reason = match WatchEnd::from(end) {
                    WatchEnd::Expired(r) | WatchEnd::LeaderLost(r) | WatchEnd::Lost(r) => r,
                };
                let end = line(&WatchLine {
                    kind: "END".into(),
                    rev: None,
                    key: None,
                    value: None,
                    reason: Some(reason),
                });
                (end, None)
            }
        };
        Some((Ok::<_, std::convert::Infallible>(chunk), next))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub async fn kv_list(State(st): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    let store = match store_of(&st) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if q.watch {
        return kv_watch(store.clone(), q.prefix, q.from).await;
    }
    let key = format!("{USER_PREFIX}{}", q.prefix).into_bytes();
    match store.read(ReadRequest::prefix(key)).await {
        Ok(r) => Json(r.kvs.into_iter().map(UserKv::from).collect::<Vec<_>>()).into_response(),
        Err(e) => client_error(e),
    }
}

pub async fn kv_get(State(st): State<ApiState>, Path(key): Path<String>) -> Response {
    let (store, key) = match (store_of(&st), user_key(&key)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match store.read(ReadRequest::key(key)).await {
        Ok(r) => match r.kvs.into_iter().next() {
            Some(kv) => Json(UserKv {
                stale: r.stale,
                ..UserKv::from(kv)
            })
            .into_response(),
            None => status(StatusCode::NOT_FOUND, "NotFound", "key not found"),
        },
        Err(e) => client_error(e),
    }
}

/// `?mod_rev=N`: write only if the key is at that revision (0: only if
/// absent); otherwise 409 Conflict.
#[derive(Debug, serde::Deserialize)]
pub struct Precondition {
    pub mod_rev: Option<u64>,
}

pub async fn kv_put(
    State(st): State<ApiState>,
    Path(key): Path<String>,
    Query(pre): Query<Precondition>,
    body: axum::body::Bytes,
) -> Response {
    let (store, key) = match (store_of(&st), user_key(&key)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let res = match pre.mod_rev {
        Some(m) => store.put_if(key, body.to_vec(), m).await,
        None => store
            .write(Txn::put(key, body.to_vec()))
            .await
            .map(|r| r.revision),
    };
    match res {
        Ok(revision) => Json(serde_json::json!({ "revision": revision })).into_response(),
        Err(e) => client_error(e),
    }
}

pub async fn kv_delete(
    State(st): State<ApiState>,
    Path(key): Path<String>,
    Query(pre): Query<Precondition>,
) -> Response {
    let (store, key) = match (store_of(&st), user_key(&key)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let res = match pre.mod_rev {
        Some(m) => store.delete_if(key, m).await,
        None => store.write(Txn::delete(key, None)).await,
    };
    match res {
        Ok(r) => Json(serde_json::json!({"revision": r.revision, "deleted": r.prev.first().is_some_and(|p| p.is_some())}))
            .into_response(),
        Err(e) => client_error(e),
    }
}
