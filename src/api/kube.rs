//! The start of the Kubernetes-compatible surface (issue 5): version and
//! discovery, so that a real kubectl connects (`kubectl version`,
//! `kubectl api-versions`). Resources come with the rest of the issue.
//!
//! ```text
//! GET /version   version.Info (the Kubernetes release shoal speaks: 1.33)
//! GET /api       APIVersions: the core group's versions
//! GET /apis      APIGroupList: the named groups (none served yet)
//! ```

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The Kubernetes minor version whose API shoal follows.
pub const KUBE_MINOR: &str = "33";

pub async fn version() -> Response {
    Json(json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+shoal-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    }))
    .into_response()
}

/// Go's names for the architectures, as `platform` uses them.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn api_versions() -> Response {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    }))
    .into_response()
}

pub async fn api_groups() -> Response {
    Json(json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [],
    }))
    .into_response()
}
