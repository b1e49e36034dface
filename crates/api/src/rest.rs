//! The Kubernetes REST surface: one handler for `/api/v1/...` and
//! `/apis/{group}/{version}/...` that parses the path against the resource
//! table and runs the verb.
//!
//! ```text
//! GET    list | get | watch (?watch=true)      from the watch cache (after a read
//!                                              index unless resourceVersion is set)
//! POST   create                                Txn: key absent (+ allocations)
//! PUT    update | status | scale               Txn: key at the resourceVersion
//! PATCH  json / merge / strategic merge        read, patch, Txn as PUT (retried
//!                                              while the patch names no resourceVersion)
//! DELETE delete | deletecollection             finalizers → deletionTimestamp;
//!                                              preconditions on uid / resourceVersion
//! ```
//!
//! Lists and gets answer a `Table` when the Accept header asks for one
//! (kubectl does), with the columns of `printers`. Writes honour `dryRun`
//! (everything but the commit) and `fieldValidation`; `fieldManager` is
//! accepted (managed fields come with server-side apply).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use shoal_model::cache::{Cache, CacheEvent, Kind, Start};
use shoal_model::errors::{ApiError, ApiResult};
use shoal_model::objects::{self, FieldValidation};
use shoal_model::registry::{DeleteOptions, Registry, UpdateOptions, SYSTEM_NAMESPACES};
use shoal_model::resources::{self, Resource};
use shoal_model::selectors::{FieldSelector, LabelSelector};
use shoal_store::Store;

mod bodies;
mod delete;
mod exec;
mod logs;
mod pages;
mod patches;
mod portforward;
pub mod watch;

use crate::ApiErrorResponse;
use bodies::*;
use delete::*;
use logs::*;
use watch::*;

/// Largest request body (etcd's request limit is 1.5 MiB; Kubernetes
/// refuses bodies over 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The Kubernetes API of one node: the store, its watch cache, the
/// Service address ranges and the actor system (for `pods/log`).
pub struct KubeApi {
    pub store: Store,
    pub cache: Cache,
    /// The one write path (over the plain store), with the cluster's
    /// address ranges.
    pub registry: Registry,
    pub actors: shoal_fabric::actor::ActorSystem,
    pub timeout: Duration,
    /// Watches open per client address, under `api.max_watches_per_client`.
    pub watches: Arc<watch::ClientWatches>,
}

/// A parsed request path.
#[derive(Debug, Clone)]
struct Target {
    res: &'static Resource,
    /// Some for namespaced paths.
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn parse_target(group: &str, version: &str, segs: &[&str]) -> ApiResult<Target> {
    let find = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found_path);
    let namespaced_path = segs.len() >= 3
        && segs[0] == "namespaces"
        && group.is_empty()
        && !matches!(segs[2], "status" | "finalize");
    let namespaced_path =
        namespaced_path || (segs.len() >= 3 && segs[0] == "namespaces" && !group.is_empty());
    let t = if namespaced_path {
        let res = find(segs[2])?;
        if !res.namespaced {
            return Err(not_found_path());
        }
        Target {
            res,
            ns: Some(segs[1].to_string()),
            name: segs.get(3).map(|s| s.to_string()),
            sub: segs.get(4).map(|s| s.to_string()),
        }
    } else {
        let res = find(segs.first().copied().unwrap_or(""))?;
        let name = segs.get(1).map(|s| s.to_string());
        if res.namespaced && name.is_some() {
            return Err(not_found_path());
        }
        Target {
            res,
            ns: None,
            name,
            sub: segs.get(2).map(|s| s.to_string()),
        }
    };
    let too_long = if t.ns.is_some() { 5 } else { 3 };
    if segs.len() > too_long {
        return Err(not_found_path());
    }
    if let Some(sub) = &t.sub {
        if !t.res.has(sub) {
            return Err(not_found_path());
        }
    }
    if t.name.as_deref() == Some("") {
        return Err(not_found_path());
    }
    Ok(t)
}

/// `/api/v1/{*rest}`.
pub async fn core(
    State(st): State<ApiState>,
    axum::extract::Path(rest): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    serve(st, "", "v1", &rest, q, req).await
}

/// `/apis/{group}/{version}/{*rest}`.
pub async fn grouped(
    State(st): State<ApiState>,
    axum::extract::Path((group, version, rest)): axum::extract::Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    serve(st, &group, &version, &rest, q, req).await
}

async fn serve(
    st: ApiState,
    group: &str,
    version: &str,
    rest: &str,
    q: HashMap<String, String>,
    req: Request,
) -> Response {
    let Some(kube) = st.kube.clone() else {
        return ApiError::unavailable("this node does not serve the Kubernetes API")
            .into_response();
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let t = match parse_target(group, version, &segs) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if matches!(t.sub.as_deref(), Some("exec" | "attach")) && t.name.is_some() {
        return exec::exec(kube, t, req).await;
    }
    if t.sub.as_deref() == Some("portforward") && t.name.is_some() {
        return portforward::portforward(kube, t, req).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("the request body is larger than the limit of {MAX_BODY} bytes"),
            )
            .into_response()
        }
    };
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let protobuf = ctype.starts_with("application/vnd.kubernetes.protobuf");
    if ctype.starts_with("application/cbor") {
        return ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json, application/vnd.kubernetes.protobuf (got {ctype})"
        ))
        .into_response();
    }
    let yaml = ctype.starts_with("application/yaml");
    let converted = match () {
        _ if body.is_empty() => Ok(body),
        _ if protobuf => from_protobuf(&body),
        _ if yaml => from_yaml(&body),
        _ => Ok(body),
    };
    let body = match converted {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let ctx = Ctx {
        kube,
        q,
        client: parts
            .extensions
            .get::<crate::listener::ClientAddr>()
            .map(|a| a.0.ip()),
        headers: parts.headers,
        body,
    };
    let result = match (parts.method, t.name.is_some(), t.sub.as_deref()) {
        (Method::GET, false, _) if ctx.flag("watch") => return watch(ctx, t).await,
        (Method::GET, false, _) => list(&ctx, &t).await,
        (Method::GET, true, Some("log")) => logs(&ctx, &t).await,
        (Method::GET, true, Some("scale")) => get(&ctx, &t).await.map(|(o, _)| scale_of(&o)),
        (Method::GET, true, _) => get(&ctx, &t)
            .await
            .map(|(o, w)| ctx.render_one(t.res, o, w)),
        (Method::POST, false, None) => create(&ctx, &t).await,
        (Method::POST, true, Some("eviction")) => evict(&ctx, &t).await,
        (Method::PUT, true, _) => update(&ctx, &t).await,
        (Method::PATCH, true, _) => patch(&ctx, &t).await,
        (Method::DELETE, true, None) => delete(&ctx, &t).await,
        (Method::DELETE, false, None) => delete_collection(&ctx, &t).await,
        (m, _, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    };
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// One request's inputs.
struct Ctx {
    kube: Arc<KubeApi>,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    /// Where the request came from (None for requests not from the
    /// listener, in tests).
    client: Option<std::net::IpAddr>,
}

impl Ctx {
    fn param(&self, k: &str) -> Option<&str> {
        self.q.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.param(k), Some("true" | "1"))
    }

    fn dry_run(&self) -> ApiResult<bool> {
        match self.param("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}: only All is supported"
            ))),
        }
    }

    fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .unwrap_or("")
    }

    fn selectors(&self, res: &Resource) -> ApiResult<(LabelSelector, FieldSelector)> {
        let labels = LabelSelector::parse(self.param("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
        let fields = FieldSelector::parse(res.kind, self.param("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((labels, fields))
    }

    /// Consistent reads wait for the cache to reach a read index; a
    /// resourceVersion ("0" or a revision) accepts the cache as it is.
    async fn sync_unless_rv(&self) -> ApiResult<()> {
        match self.param("resourceVersion") {
            None | Some("") => self
                .kube
                .cache
                .sync(&self.kube.store, self.kube.timeout)
                .await
                .map(|_| ())
                .map_err(ApiError::from),
            Some(_) => Ok(()),
        }
    }

    /// One object as JSON, or as a one-row Table.
    fn render_one(&self, res: &Resource, obj: Arc<Value>, warnings: Vec<String>) -> Response {
        let body = if self.wants_table() {
            table(res, &[obj], None, self.param("includeObject"))
        } else {
            (*obj).clone()
        };
        respond(StatusCode::OK, body, &warnings)
    }
}

fn respond(code: StatusCode, body: Value, warnings: &[String]) -> Response {
    let mut r = (code, Json(body)).into_response();
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

fn key_of(t: &Target, name: &str) -> Vec<u8> {
    t.res.key(t.ns.as_deref().unwrap_or(""), name)
}

fn name_of(t: &Target) -> &str {
    t.name.as_deref().unwrap_or("")
}

/// The Table of `objs` (meta.k8s.io/v1), with the printers' columns.
fn table(res: &Resource, objs: &[Arc<Value>], rev: Option<u64>, include: Option<&str>) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = match include {
                Some("None") => Value::Null,
                Some("Object") => (**o).clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            };
            json!({"cells": super::printers::cells(res.kind, o, now), "object": object})
        })
        .collect();
    let mut meta = json!({});
    if let Some(r) = rev {
        meta["resourceVersion"] = json!(r.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": super::printers::columns(res.kind),
        "rows": rows,
    })
}

async fn list(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let (labels, fields) = ctx.selectors(t.res)?;
    ctx.sync_unless_rv().await?;
    let prefix = match (fields.name(), &t.ns) {
        (Some(name), _) if !t.res.namespaced || t.ns.is_some() => key_of(t, name),
        _ => t.res.prefix(t.ns.as_deref()),
    };
    let exact = fields.name().is_some() && (!t.res.namespaced || t.ns.is_some());
    // A name prefix would also match longer names: `exact` filters them.
    let keep = |o: &Value| {
        (!exact || objects::name_of(o) == fields.name().unwrap_or(""))
            && labels.matches_object(o)
            && fields.matches(o)
    };
    let limit = match ctx.param("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
    };
    let page = match ctx.param("continue") {
        Some(token) if !token.is_empty() => {
            pages::next(&ctx.kube.store, &prefix, token, limit, keep).await?
        }
        _ => {
            let (items, rev) = ctx.kube.cache.list(&prefix, keep);
            let key = |o: &Value| key_of_object(t, o);
            let selected = !labels.is_empty() || !fields.is_empty();
            pages::first(items, rev, limit, &prefix, key, selected)
        }
    };
    let mut body = if ctx.wants_table() {
        table(
            t.res,
            &page.items,
            Some(page.rev),
            ctx.param("includeObject"),
        )
    } else {
        let items: Vec<Value> = page.items.iter().map(|o| (**o).clone()).collect();
        json!({
            "kind": format!("{}List", t.res.kind),
            "apiVersion": t.res.api_version(),
            "metadata": {"resourceVersion": page.rev.to_string()},
            "items": items,
        })
    };
    if let Some(next) = page.next {
        body["metadata"]["continue"] = json!(next);
    }
    if let Some(n) = page.remaining {
        body["metadata"]["remainingItemCount"] = json!(n);
    }
    Ok(respond(StatusCode::OK, body, &[]))
}

/// The store key of `o`, an object of `t`'s resource.
fn key_of_object(t: &Target, o: &Value) -> Vec<u8> {
    t.res.key(objects::namespace_of(o), objects::name_of(o))
}

async fn get(ctx: &Ctx, t: &Target) -> ApiResult<(Arc<Value>, Vec<String>)> {
    ctx.sync_unless_rv().await?;
    let key = key_of(t, name_of(t));
    ctx.kube
        .cache
        .get(&key)
        .map(|o| (o, vec![]))
        .ok_or_else(|| ApiError::not_found(t.res, name_of(t)))
}

/// The current object from the store itself (linearizable), with its
/// mod_rev: the base of every read-modify-write.
async fn current(kube: &KubeApi, t: &Target) -> ApiResult<(Value, u64)> {
    let ns = t.ns.as_deref().unwrap_or("");
    kube.registry.current(t.res, ns, name_of(t)).await
}

async fn create(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let fv = FieldValidation::parse(ctx.param("fieldValidation"))?;
    let body = objects::decode(t.res, &ctx.body)?;
    let warnings = objects::check_fields(t.res, &body, fv)?;
    let ns = t.ns.clone().unwrap_or_default();
    let obj = ctx
        .kube
        .registry
        .create(t.res, &ns, body, ctx.dry_run()?)
        .await?;
    Ok(respond(StatusCode::CREATED, obj, &warnings))
}

async fn update(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let fv = FieldValidation::parse(ctx.param("fieldValidation"))?;
    if t.sub.as_deref() == Some("log") {
        return Err(ApiError::method_not_allowed("pods/log is read-only"));
    }
    let body: Value = serde_json::from_slice(&ctx.body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    if t.sub.as_deref() == Some("scale") {
        let replicas = body
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("a Scale needs spec.replicas"))?;
        let wanted = objects::rv_of(&body)?;
        return set_replicas(ctx, t, replicas, wanted).await;
    }
    let body = objects::decode(t.res, &ctx.body)?;
    let warnings = objects::check_fields(t.res, &body, fv)?;
    let wanted = objects::rv_of(&body)?;
    let obj = update_target(ctx, t, t.sub.as_deref(), wanted, |_| Ok(body.clone())).await?;
    Ok(respond(StatusCode::OK, obj, &warnings))
}

/// Applies a patch of the request's content type to `base`.
fn apply_patch(ctx: &Ctx, kind: &str, base: &Value) -> ApiResult<Value> {
    let parse = |what: &str| -> ApiResult<Value> {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
    };
    match ctx.content_type() {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(parse("JSON patch")?)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            patches::json_patch(base, &p)
        }
        "application/merge-patch+json" => {
            let p = parse("merge patch")?;
            if !p.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut out = base.clone();
            json_patch::merge(&mut out, &p);
            Ok(out)
        }
        "application/strategic-merge-patch+json" => {
            let p = parse("strategic merge patch")?;
            patches::strategic(kind, base, &p)
        }
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(ApiError::unsupported_media(
            "server-side apply is not supported yet; use client-side apply (kubectl apply without --server-side)",
        )),
        other => Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, \
             application/strategic-merge-patch+json (got {other:?})"
        ))),
    }
}

async fn patch(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let fv = FieldValidation::parse(ctx.param("fieldValidation"))?;
    if t.sub.as_deref() == Some("log") {
        return Err(ApiError::method_not_allowed("pods/log is read-only"));
    }
    if t.sub.as_deref() == Some("scale") {
        let (old, mod_rev) = current(&ctx.kube, t).await?;
        let patched = apply_patch(ctx, "Scale", &scale_json(&old))?;
        let replicas = patched
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("a Scale needs spec.replicas"))?;
        let wanted = objects::rv_of(&patched)?.filter(|w| *w != mod_rev);
        return set_replicas(ctx, t, replicas, wanted).await;
    }
    let warnings = std::sync::Mutex::new(Vec::new());
    let obj = update_target(ctx, t, t.sub.as_deref(), None, |old| {
        let patched = apply_patch(ctx, t.res.kind, old)?;
        if !patched.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        // A resourceVersion in the patch pins the object it was
        // written against.
        let wanted = objects::rv_of(&patched)?;
        if wanted.is_some_and(|w| Some(w) != objects::rv_of(old).ok().flatten()) {
            return Err(ApiError::conflict(t.res, name_of(t)));
        }
        let w = objects::check_fields(t.res, &patched, fv)?;
        *warnings.lock().unwrap_or_else(|p| p.into_inner()) = w;
        Ok(patched)
    })
    .await?;
    let warnings = warnings.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(respond(StatusCode::OK, obj, &warnings))
}

/// A registry update of the request's target (through `sub`, pinned to
/// `precondition`, dry-run as the request asks).
async fn update_target(
    ctx: &Ctx,
    t: &Target,
    sub: Option<&str>,
    precondition: Option<u64>,
    make: impl Fn(&Value) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let opts = UpdateOptions {
        sub,
        precondition,
        dry_run: ctx.dry_run()?,
    };
    let ns = t.ns.as_deref().unwrap_or("");
    ctx.kube
        .registry
        .update(t.res, ns, name_of(t), opts, make)
        .await
}

/// autoscaling/v1 Scale of a Deployment, ReplicaSet or StatefulSet.
fn scale_json(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn scale_of(obj: &Value) -> Response {
    respond(StatusCode::OK, scale_json(obj), &[])
}

async fn set_replicas(
    ctx: &Ctx,
    t: &Target,
    replicas: i64,
    wanted: Option<u64>,
) -> ApiResult<Response> {
    if replicas < 0 {
        return Err(ApiError::invalid(
            t.res,
            name_of(t),
            vec![shoal_model::errors::Cause::invalid(
                "spec.replicas",
                &replicas.to_string(),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let obj = update_target(ctx, t, None, wanted, |old| {
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        Ok(new)
    })
    .await?;
    Ok(scale_of(&obj))
}

/// Creates the namespaces every cluster has (`default`, `kube-system`,
/// `kube-public`) once the store answers. Every API node tries; the
/// create-if-absent transaction makes that idempotent.
pub async fn bootstrap(kube: Arc<KubeApi>) {
    let nss = &resources::NAMESPACES;
    let mut pause = Duration::from_millis(100);
    for ns in SYSTEM_NAMESPACES {
        loop {
            let key = nss.key("", ns);
            let done = match kube.cache.sync(&kube.store, kube.timeout).await {
                Ok(_) if kube.cache.get(&key).is_some() => true,
                Ok(_) => {
                    let obj =
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                    match kube.registry.create(nss, "", obj, false).await {
                        Ok(_) => true,
                        Err(e) if e.code == 409 => true, // another API node made it
                        Err(e) if e.code >= 500 => {
                            tracing::debug!("creating namespace {ns}: {}", e.message);
                            false
                        }
                        Err(e) => {
                            tracing::error!("namespace {ns}: {}", e.message);
                            true
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("waiting for the store to create namespace {ns}: {e}");
                    false
                }
            };
            if done {
                break;
            }
            // Back-off while the store has no leader yet.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
    // The Services that stand for the nodes: the cluster DNS, and the API
    // as pods reach it; their endpoints are the nodes' announcements (the
    // control plane's system-endpoints controllers). And the built-in
    // Ingress controller's class, the default one, the default StorageClass
    // and the RuntimeClasses.
    let (dns_ns, dns) = shoal_model::objects::KUBE_DNS;
    let (api_ns, api) = shoal_model::objects::KUBERNETES;
    let mut services = vec![
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": dns, "namespace": dns_ns,
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "spec": {"ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ]},
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": api, "namespace": api_ns,
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": shoal_model::objects::INGRESS_CLASS,
                "annotations": {shoal_model::objects::DEFAULT_INGRESS_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": shoal_model::objects::INGRESS_CONTROLLER},
        }),
    ];
    // The built-in local-path provisioner's class, the default one.
    services.push(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": shoal_model::objects::LOCAL_CLASS,
            "annotations": {shoal_model::registry::DEFAULT_CLASS: "true"}},
        "provisioner": shoal_model::objects::storage::LOCAL_PATH,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }));
    // The RuntimeClasses of the runtimes kubelets offer.
    services.extend(
        shoal_model::objects::RUNTIME_CLASSES
            .iter()
            .map(|h| shoal_model::objects::runtime_class(h)),
    );
    for obj in services {
        let (ns, name) = (objects::namespace_of(&obj), objects::name_of(&obj));
        let res = match obj["kind"].as_str() {
            Some("Service") => &resources::SERVICES,
            Some("RuntimeClass") => &resources::RUNTIMECLASSES,
            Some("StorageClass") => &resources::STORAGECLASSES,
            _ => &resources::INGRESSCLASSES,
        };
        loop {
            if kube.cache.get(&res.key(ns, name)).is_some() {
                break;
            }
            match kube.registry.create(res, ns, obj.clone(), false).await {
                Ok(_) => break,
                Err(e) if e.code == 409 => break,
                Err(e) if e.code >= 500 || e.code == 404 => {
                    tracing::debug!("creating {} {ns}/{name}: {}", res.kind, e.message);
                }
                Err(e) => {
                    tracing::error!("{} {ns}/{name}: {}", res.kind, e.message);
                    break;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests;
