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
