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

/// Namespaces every cluster has; they cannot be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub(super) async fn delete(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let opts = delete_options(&ctx.body)?;
    if t.res.kind == "Namespace" && SYSTEM_NAMESPACES.contains(&name_of(t)) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "namespaces {:?} is forbidden: this namespace may not be deleted",
                name_of(t)
            ),
        ));
    }
    let dry = ctx.dry_run()?
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    for _ in 0..RETRIES {
        let (old, mod_rev) = current(&ctx.kube, t).await?;
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str) {
            let have = old
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            if uid != have {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                ));
            }
        }
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            if rv != mod_rev.to_string() {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {mod_rev}"),
                ));
            }
        }
        let grace = graceful_seconds(t.res, &old, &opts);
        // Orphan and Foreground hand the dependents to the garbage
        // collector through a finalizer on the owner.
        let orphan = opts.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        let policy = opts.get("propagationPolicy").and_then(Value::as_str);
        let extra = match (policy, orphan) {
            (Some("Orphan"), _) | (None, true) => Some(shoal_model::objects::ORPHAN),
            (Some("Foreground"), _) => Some(shoal_model::objects::FOREGROUND),
            (Some("Background") | None, _) => None,
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy must be Orphan, Background or Foreground, not {other:?}"
                )))
            }
        };
        let pending = !objects::finalizers(&old).is_empty() || grace > 0 || extra.is_some();
        if pending {
            // Marked for deletion: whoever owns the finalizers (or the
            // kubelet, for a bound pod) finishes it.
            if old.pointer("/metadata/deletionTimestamp").is_some() && grace == 0 {
                return Ok(respond(StatusCode::OK, old, &[]));
            }
            let mut new = old.clone();
            let m = objects::meta_mut(&mut new);
            m.remove("resourceVersion");
            if !m.contains_key("deletionTimestamp") {
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
            }
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if let Some(f) = extra {
                let mut fins = objects::finalizers(&old);
                if !fins.iter().any(|x| x == f) {
                    fins.push(f.to_string());
                }
                m.insert("finalizers".into(), json!(fins));
            }
            if dry {
                return Ok(respond(StatusCode::OK, objects::with_rv(new, mod_rev), &[]));
            }
            let r = ctx
                .kube
                .store
                .write(Txn::update(key_of(t, name_of(t)), encode(&new)?, mod_rev))
                .await?;
            if r.succeeded {
                return Ok(respond(
                    StatusCode::OK,
                    objects::with_rv(new, r.revision),
                    &[],
                ));
            }
            continue;
        }
        if dry {
            return Ok(respond(StatusCode::OK, old, &[]));
        }
        let mut txn = Txn::delete(key_of(t, name_of(t)), Some(mod_rev));
        if t.res.kind == "Service" {
            ctx.kube.ranges.release(&old, &mut txn);
        }
        if t.res.kind == "Node" {
            PodCidrs::release(&old, &mut txn);
        }
        let r = ctx.kube.store.write(txn).await?;
        if r.succeeded {
            return Ok(respond(StatusCode::OK, old, &[]));
        }
    }
    Err(ApiError::conflict(t.res, name_of(t)))
}

/// Seconds a delete waits for its owner to finish: pods bound to a node
/// get their grace period (the kubelet stops them, then deletes), all
/// else is immediate.
pub(super) fn graceful_seconds(res: &Resource, obj: &Value, opts: &Value) -> i64 {
    if res.kind != "Pod"
        || obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return 0;
    }
    opts.get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
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
