//! HTTP watches: from a resourceVersion or the current state, with selectors, bookmarks, initial events and timeouts, as JSON lines or Tables.

use super::*;
use crate::ApiErrorResponse;

/// Longest a watch runs without a timeoutSeconds (clients re-watch).
pub(super) const MAX_WATCH: Duration = Duration::from_secs(1800);

/// How often an idle watch that allows bookmarks gets one.
pub(super) const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// What a watcher with these selectors sees of `e`, as (type, object).
pub(super) fn visible(
    e: &CacheEvent,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<Kind> {
    let sel = |o: &Value| labels.matches_object(o) && fields.matches(o);
    let now = e.kind != Kind::Deleted && sel(&e.object);
    let before = e.prev.as_deref().is_some_and(sel);
    match (e.kind, before, now) {
        (Kind::Deleted, true, _) => Some(Kind::Deleted),
        (Kind::Deleted, false, _) => None,
        (_, true, true) => Some(Kind::Modified),
        (_, false, true) => Some(Kind::Added),
        (_, true, false) => Some(Kind::Deleted),
        (_, false, false) => None,
    }
}

pub(super) async fn watch(ctx: Ctx, t: Target) -> Response {
    match open_watch(ctx, t).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The watches each client address holds open, under a cap.
pub struct ClientWatches {
    per_client: usize,
    open: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// One open watch of a client; counted until dropped.
pub struct WatchSlot {
    book: Arc<ClientWatches>,
    client: std::net::IpAddr,
}

impl ClientWatches {
    pub fn new(per_client: usize) -> Arc<ClientWatches> {
        Arc::new(ClientWatches {
            per_client: per_client.max(1),
            open: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more watch of `client`; 429 at the cap.
    pub fn enter(
        self: &Arc<Self>,
        client: Option<std::net::IpAddr>,
    ) -> ApiResult<Option<WatchSlot>> {
        let Some(client) = client else {
            return Ok(None);
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(client).or_default();
        if *n >= self.per_client {
            return Err(ApiError::new(
                429,
                "TooManyRequests",
                format!(
                    "too many watches from {client}: at most {} at once (api.max_watches_per_client)",
                    self.per_client
                ),
            ));
        }
        *n += 1;
        Ok(Some(WatchSlot {
            book: self.clone(),
            client,
        }))
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.book.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

pub(super) async fn open_watch(ctx: Ctx, t: Target) -> ApiResult<Response> {
    let slot = ctx.kube.watches.enter(ctx.client)?;
    let (labels, fields) = ctx.selectors(t.res)?;
    let initial_events = ctx.flag("sendInitialEvents");
    let rv = ctx.param("resourceVersion").unwrap_or("").to_string();
    if initial_events && ctx.param("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            t.res,
            "",
            vec![shoal_model::errors::Cause {
                reason: "FieldValueInvalid",
                field: "resourceVersionMatch".into(),
                message: "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
                    .into(),
            }],
        ));
    }
    let start = if initial_events || rv.is_empty() || rv == "0" {
        if initial_events && rv.is_empty() {
            ctx.kube
                .cache
                .sync(&ctx.kube.store, ctx.kube.timeout)
                .await?;
        }
        if let (true, Ok(r)) = (initial_events, rv.parse::<u64>()) {
            ctx.kube.cache.wait_for(r, ctx.kube.timeout).await?;
        }
        Start::Snapshot
    } else {
        let r: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
        Start::After(r)
    };
    let prefix = t.res.prefix(t.ns.as_deref());
    let opened = ctx.kube.cache.watch(&prefix, start)?;
    let timeout = ctx
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(MAX_WATCH, Duration::from_secs)
        .min(MAX_WATCH);
    let spec = WatchSpec {
        res: t.res,
        table: ctx.wants_table(),
        include: ctx.param("includeObject").map(String::from),
        bookmarks: ctx.flag("allowWatchBookmarks"),
        initial_end: initial_events,
        labels,
        fields,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        run_watch(spec, opened, tx, timeout).await;
        drop(slot);
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

pub(super) struct WatchSpec {
    pub(super) res: &'static Resource,
    pub(super) table: bool,
    pub(super) include: Option<String>,
    pub(super) bookmarks: bool,
    pub(super) initial_end: bool,
    pub(super) labels: LabelSelector,
    pub(super) fields: FieldSelector,
}

impl WatchSpec {
    pub(super) fn line(&self, kind: &str, object: Value) -> Bytes {
        let mut out =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    pub(super) fn event(&self, kind: Kind, obj: &Arc<Value>) -> Bytes {
        let object = if self.table {
            table(
                self.res,
                std::slice::from_ref(obj),
                None,
                self.include.as_deref(),
            )
        } else {
            (**obj).clone()
        };
        self.line(kind.as_str(), object)
    }

    pub(super) fn bookmark(&self, rev: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line(
            "BOOKMARK",
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta}),
        )
    }
}

pub(super) async fn run_watch(
    spec: WatchSpec,
    mut opened: shoal_model::cache::Opened,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = opened.rev;
    for e in &opened.initial {
        let Some(kind) = visible(e, &spec.labels, &spec.fields) else {
            continue;
        };
        if tx.send(Ok(spec.event(kind, &e.object))).await.is_err() {
            return;
        }
        last = last.max(e.rev);
    }
    if spec.initial_end && tx.send(Ok(spec.bookmark(last, true))).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(BOOKMARK_EVERY);
    tick.tick().await;
    let mut since_sent = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
            got = opened.live.recv() => match got {
                Ok(batch) => {
                    for e in opened.mine(&batch).filter(|e| e.rev > last) {
                        if let Some(kind) = visible(e, &spec.labels, &spec.fields) {
                            if tx.send(Ok(spec.event(kind, &e.object))).await.is_err() {
                                return;
                            }
                            since_sent = tokio::time::Instant::now();
                        }
                    }
                    last = last.max(batch.rev);
                }
                // Lagged or reset: end; the client resumes from its last
                // resourceVersion (or gets 410 and lists again).
                Err(_) => return,
            },
            _ = tick.tick() => {
                if spec.bookmarks && since_sent.elapsed() >= BOOKMARK_EVERY {
                    if tx.send(Ok(spec.bookmark(last, false))).await.is_err() {
                        return;
                    }
                    since_sent = tokio::time::Instant::now();
                }
            }
        }
    }
}
