//! Version and discovery of the Kubernetes-compatible surface, read from
//! the resource table (`resources`), so that kubectl and kube-rs find
//! every resource, its short names, categories and subresources.
//!
//! ```text
//! GET /version                  version.Info (the Kubernetes release shoal speaks: 1.33)
//! GET /api                      APIVersions: the core group's versions
//! GET /api/v1                   APIResourceList of the core group
//! GET /apis                     APIGroupList: the named groups
//! GET /apis/{group}             APIGroup
//! GET /apis/{group}/{version}   APIResourceList
//! GET /openapi/v2               200 with an empty body (kubectl then validates nothing
//!                               client-side; the server validates)
//! ```
//!
//! Aggregated discovery (apidiscovery.k8s.io/v2) is not offered: kubectl
//! 1.33 falls back to these documents when the answer is not one.

use crate::ApiErrorResponse;
use axum::extract::Path;
use axum::http::header;
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
    Json(shoal_model::resources::group_list()).into_response()
}

fn not_found() -> Response {
    shoal_model::errors::ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .into_response()
}

pub async fn core_resources() -> Response {
    match shoal_model::resources::resource_list("", "v1") {
        Some(list) => Json(list).into_response(),
        None => not_found(),
    }
}

pub async fn group(Path(group): Path<String>) -> Response {
    match shoal_model::resources::group(&group) {
        Some(g) => Json(g).into_response(),
        None => not_found(),
    }
}

pub async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    match shoal_model::resources::resource_list(&group, &version) {
        Some(list) => Json(list).into_response(),
        None => not_found(),
    }
}

/// An empty OpenAPI v2 document: valid for kubectl, which then leaves
/// validation to the server (`fieldValidation`).
pub async fn openapi_v2() -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Vec::<u8>::new(),
    )
        .into_response()
}
