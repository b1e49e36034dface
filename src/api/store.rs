//! Store endpoints: status and the user key-value namespace (`shoal kv`).
//!
//! ```text
//! GET    /shoal/v1/store/status
//! GET    /shoal/v1/kv?prefix=P      list (user keys under P)
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
use crate::store::command::{KeyValue, Txn};
use crate::store::{ClientError, ReadRequest, Store};

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
        ClientError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
        ClientError::Invalid(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        ClientError::Compacted { .. } => (StatusCode::GONE, "Expired"),
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
}

pub async fn kv_list(State(st): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    let store = match store_of(&st) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let key = format!("{USER_PREFIX}{}", q.prefix).into_bytes();
    match store
        .read(ReadRequest {
            key,
            prefix: true,
            at: None,
            limit: 0,
        })
        .await
    {
        Ok(r) => Json(r.kvs.into_iter().map(UserKv::from).collect::<Vec<_>>()).into_response(),
        Err(e) => client_error(e),
    }
}

pub async fn kv_get(State(st): State<ApiState>, Path(key): Path<String>) -> Response {
    let (store, key) = match (store_of(&st), user_key(&key)) {
        (Ok(s), Ok(k)) => (s, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match store
        .read(ReadRequest {
            key,
            prefix: false,
            at: None,
            limit: 0,
        })
        .await
    {
        Ok(r) => match r.kvs.into_iter().next() {
            Some(kv) => Json(UserKv::from(kv)).into_response(),
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
