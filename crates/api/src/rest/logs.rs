//! pods/log: streamed from the kubelet actor on the pod's node, in pieces
//! (never one reply of the whole file, which could pass the frame limit),
//! cut at `limitBytes` when asked.

use super::*;

/// `pods/log`: asked of the kubelet actor on the pod's node.
pub(super) async fn logs(ctx: &Ctx, t: &Target) -> ApiResult<Response> {
    let (pod, _) = get(ctx, t).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let container = match ctx.param("container") {
        Some(c) => c.to_string(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {}, choose one of: {containers:?}",
                name_of(t)
            )))
        }
    };
    if !containers.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {}",
            name_of(t)
        )));
    }
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {:?} is waiting to start: the pod is not scheduled",
            name_of(t)
        )));
    }
    let req = shoal_kubelet_proto::PodLogs {
        namespace: t.ns.clone().unwrap_or_default(),
        pod: name_of(t).to_string(),
        container,
        tail_lines: ctx.param("tailLines").and_then(|s| s.parse().ok()),
        previous: ctx.flag("previous"),
        timestamps: ctx.flag("timestamps"),
        follow: ctx.flag("follow"),
    };
    let limit_bytes = match ctx.param("limitBytes") {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(ApiError::invalid(
                    t.res,
                    name_of(t),
                    vec![shoal_model::errors::Cause::invalid(
                        "limitBytes",
                        s,
                        "must be greater than 0",
                    )],
                ))
            }
        },
    };
    let to = shoal_fabric::actor::ActorPath::new(shoal_kubelet_proto::KUBELET, &node);
    let unreachable = |e: String| {
        // 500, as upstream answers when the kubelet cannot be reached
        // (clients do not retry it as they retry a 503).
        ApiError::new(
            500,
            "InternalError",
            format!(
                "no kubelet answers on node {node:?} for the logs of pod {:?}: {e}",
                name_of(t)
            ),
        )
    };
    // Streamed as the kubelet pushes it: the file so far, then (with
    // `follow`) what the container writes, until it ends or kubectl goes
    // away (the body's drop ends the subscription).
    let mut sub = ctx
        .kube
        .actors
        .subscribe(&to, shoal_kubelet_proto::FollowLogs(req), ctx.kube.timeout)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let first = match tokio::time::timeout(ctx.kube.timeout, sub.next()).await {
        Ok(Ok(text)) => text,
        Ok(Err(shoal_fabric::actor::SubscriptionEnd::Ended(why))) => {
            return Err(ApiError::bad_request(why))
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable("no answer in time".into())),
    };
    let left = limit_bytes.unwrap_or(u64::MAX);
    let stream = futures::stream::unfold(
        (Some(first), sub, left),
        |(first, mut sub, left)| async move {
            if left == 0 {
                return None;
            }
            let text = match first {
                Some(t) => t,
                None => sub.next().await.ok()?,
            };
            let mut bytes = bytes::Bytes::from(text);
            if bytes.len() as u64 > left {
                bytes.truncate(left as usize);
            }
            let left = left - bytes.len() as u64;
            Some((Ok::<_, std::convert::Infallible>(bytes), (None, sub, left)))
        },
    );
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}
