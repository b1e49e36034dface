//! The HTTPS API of a node (axum over rustls).
//!
//! ```text
//! GET  /healthz            no auth; 200 while the process is up
//! GET  /readyz             200 once this node has joined the membership
//! GET  /shoal/v1/members   this node's membership view (JSON array)
//! GET  /shoal/v1/chaos     fault rules in force on this node
//! POST /shoal/v1/chaos     apply a chaos command on this node
//! POST /shoal/v1/leave     decommission this node
//! GET  /metrics            Prometheus text
//! ```
//!
//! Every path but `/healthz` needs `Authorization: Bearer <admin token>`;
//! without it the answer is 401 with a Kubernetes `Status` body. The
//! Kubernetes surface (`/version`, discovery, `/api/v1/...`,
//! `/apis/{group}/{version}/...`) is served by `kube` and `rest`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

pub mod config;
pub mod kube;
pub mod listener;
pub mod printers;
pub mod protobuf;
pub mod rest;
pub mod spdy;
pub mod store;

use shoal_fabric::membership::Membership;
use shoal_fabric::metrics::Metrics;
use shoal_fabric::transport::faults::{ChaosCommand, Faults};
use shoal_model::errors::ApiError;

pub use listener::serve_tls;

/// What the API needs from the node.
#[derive(Clone)]
pub struct ApiState {
    pub node: String,
    pub token: TokenDigest,
    pub membership: Membership,
    pub faults: Faults,
    pub metrics: Metrics,
    /// Set to true to ask the agent to exit (after `leave`).
    pub exit: Arc<watch::Sender<bool>>,
    pub store: Option<shoal_store::Store>,
    /// The Kubernetes API (nodes with the api role).
    pub kube: Option<Arc<rest::KubeApi>>,
}

/// The HTTP answer of an [`ApiError`]: its `Status` object with its code.
/// (The error lives in `shoal-model`, which knows no HTTP; this trait
/// gives it axum's `into_response` here.)
pub(crate) trait ApiErrorResponse {
    fn into_response(self) -> Response;
}

impl ApiErrorResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.status())).into_response()
    }
}

/// A Kubernetes `Status` failure body.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin token as a node keeps it: its SHA-256 only, so a node that
/// was given just the digest (one without the `api` role) can check a
/// bearer token without ever holding it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> TokenDigest {
        let d = ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        TokenDigest(out)
    }

    /// A digest as written by `shoal init` (hex).
    pub fn from_hex(text: &str) -> Option<TokenDigest> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(TokenDigest(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `presented` is the token (compared in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&TokenDigest::of(presented).0, &self.0)
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

async fn auth(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| st.token.matches(t));
    if ok {
        next.run(req).await
    } else {
        status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<ApiState>) -> Response {
    if st.membership.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not joined yet").into_response()
    }
}

async fn members(State(st): State<ApiState>) -> Response {
    match st.membership.members().await {
        Ok(mut m) => {
            if let Some(store) = &st.store {
                let s = store.status();
                for row in m.iter_mut() {
                    row.raft_role = Some(s.role_of(&row.name).to_string());
                }
            }
            Json(m).into_response()
        }
        Err(e) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &e.to_string(),
        ),
    }
}

async fn chaos_get(State(st): State<ApiState>) -> Response {
    Json(st.faults.view()).into_response()
}

async fn chaos_post(State(st): State<ApiState>, body: axum::body::Bytes) -> Response {
    let cmd: ChaosCommand = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("invalid chaos command: {e}"),
            )
        }
    };
    match st.faults.apply(cmd) {
        Ok(_) => Json(st.faults.view()).into_response(),
        Err(e) => status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string()),
    }
}

async fn leave(State(st): State<ApiState>) -> Response {
    match st.membership.leave().await {
        Ok(()) => {
            let _ = st.exit.send(true);
            Json(json!({"node": st.node, "state": "left"})).into_response()
        }
        Err(e) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &e.to_string(),
        ),
    }
}

async fn metrics(State(st): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// The router: public probes, then everything else behind the token.
pub fn router(st: ApiState) -> Router {
    let private = Router::new()
        .route("/readyz", get(readyz))
        .route("/shoal/v1/members", get(members))
        .route("/shoal/v1/chaos", get(chaos_get).post(chaos_post))
        .route("/shoal/v1/leave", post(leave))
        .route("/shoal/v1/store/status", get(store::store_status))
        .route("/shoal/v1/kv", get(store::kv_list))
        .route(
            "/shoal/v1/kv/{*key}",
            get(store::kv_get)
                .put(store::kv_put)
                .delete(store::kv_delete),
        )
        .route("/metrics", get(metrics))
        .route("/version", get(kube::version))
        .route("/api", get(kube::api_versions))
        .route("/apis", get(kube::api_groups))
        .route("/api/v1", get(kube::core_resources))
        .route("/apis/{group}", get(kube::group))
        .route("/apis/{group}/{version}", get(kube::group_resources))
        .route("/openapi/v2", get(kube::openapi_v2))
        .route(
            "/api/v1/{*rest}",
            get(rest::core)
                .post(rest::core)
                .put(rest::core)
                .patch(rest::core)
                .delete(rest::core),
        )
        .route(
            "/apis/{group}/{version}/{*rest}",
            get(rest::grouped)
                .post(rest::grouped)
                .put(rest::grouped)
                .patch(rest::grouped)
                .delete(rest::grouped),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(st.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(private)
        .layer(axum::extract::DefaultBodyLimit::max(rest::MAX_BODY))
        .with_state(st)
}
