//! Deletes: preconditions, finalizers and propagation policies, graceful deletion of bound pods, deletecollection.

use super::*;

/// The DeleteOptions of a request body (it may be empty).
pub(super) fn delete_options(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))
}

pub(super) async fn delete(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let mut opts = DeleteOptions::from_json(&delete_options(&ctx.body)?)?;
    opts.dry_run |= ctx.dry_run()?;
    let ns = t.ns.as_deref().unwrap_or("");
    let obj = ctx
        .kube
        .registry
        .delete(t.res, ns, name_of(t), &opts)
        .await?;
    Ok(respond(StatusCode::OK, obj, &[]))
}

pub(super) async fn delete_collection(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let (labels, fields) = ctx.selectors(t.res)?;
    ctx.kube
        .cache
        .sync(&ctx.kube.store, ctx.kube.timeout)
        .await?;
    let (items, _) = ctx.kube.cache.list(&t.res.prefix(t.ns.as_deref()), |o| {
        labels.matches_object(o) && fields.matches(o)
    });
    let mut deleted = Vec::new();
    for o in items {
        let one = Target {
            name: Some(objects::name_of(&o).to_string()),
            ns: t.ns.clone().or_else(|| {
                Some(objects::namespace_of(&o).to_string()).filter(|_| t.res.namespaced)
            }),
            ..t.clone()
        };
        match delete(ctx, &one).await {
            Ok(_) => deleted.push((*o).clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": format!("{}List", t.res.kind),
        "apiVersion": t.res.api_version(),
        "metadata": {},
        "items": deleted,
    });
    Ok(respond(StatusCode::OK, body, &[]))
}

/// `POST pods/{name}/eviction`: a policy/v1 Eviction (its DeleteOptions
/// apply to the delete); the pod's budget decides (`Registry::evict`).
/// Answers 201 with a Success Status, as upstream.
pub(super) async fn evict(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let eviction: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("invalid Eviction: {e}")))?;
    let name = name_of(t);
    let named = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if named != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let given = eviction
        .get("deleteOptions")
        .filter(|o| !o.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut opts = DeleteOptions::from_json(&given)?;
    opts.dry_run |= ctx.dry_run()?;
    let ns = t.ns.as_deref().unwrap_or("");
    ctx.kube
        .registry
        .evict(ns, name, &opts, shoal_model::registry::Budget::Respect)
        .await?;
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    });
    Ok(respond(StatusCode::CREATED, status, &[]))
}
