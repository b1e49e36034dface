//! LIST in pages, as upstream: `limit` caps the items of a reply, and a
//! reply with more to come carries `metadata.continue`, a token naming the
//! revision of the first page and the key to go on from (upstream's format:
//! base64url of `{"v":"meta.k8s.io/v1","rv":REV,"start":KEY}`, the key
//! relative to the list's prefix). The first page comes from the watch
//! cache; the next ones from the store, read at that revision, so the
//! pages together are one consistent list. The store keeps its history
//! for at least `store.history_min_age_ms` (5 minutes), so a list in pages
//! outlives a burst of writes; a token whose revision was compacted anyway
//! is answered 410 Expired with upstream's inconsistent-continue token
//! (revision -1: go on at the latest revision).

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_model::errors::{ApiError, ApiResult};
use shoal_store::{ClientError, ReadRequest, Store};

/// Upstream's message for a continue token whose revision is compacted.
pub const INCONSISTENT_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Keys read from the store per round while a page fills.
const BATCH: u32 = 512;

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: i64,
    start: String,
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Arc<Value>>,
    /// The revision the page is consistent with.
    pub rev: u64,
    pub next: Option<String>,
    /// How many items follow (only known for a list without selectors).
    pub remaining: Option<u64>,
}

/// The token that goes on after `last` (a key under `prefix`) at `rv`.
pub fn encode(prefix: &[u8], last: &[u8], rv: i64) -> String {
    let mut start = last.strip_prefix(prefix).unwrap_or(last).to_vec();
    start.push(0);
    let token = Token {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: String::from_utf8_lossy(&start).into_owned(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// The revision (-1: the latest) and the absolute start key of `token`.
pub fn decode(prefix: &[u8], token: &str) -> ApiResult<(i64, Vec<u8>)> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad("not base64"))?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad(&format!("unknown version {:?}", t.v)));
    }
    if t.rv == 0 || t.rv < -1 {
        return Err(bad("incorrect encoded start resourceVersion"));
    }
    if t.start.is_empty() || t.start.starts_with('/') || t.start.contains("..") {
        return Err(bad("the start key is not under the list"));
    }
    let mut start = prefix.to_vec();
    start.extend_from_slice(t.start.as_bytes());
    Ok((t.rv, start))
}

/// The first page, from the cache's `items` (in key order) at `rev`.
pub fn first(
    mut items: Vec<Arc<Value>>,
    rev: u64,
    limit: usize,
    prefix: &[u8],
    key_of: impl Fn(&Value) -> Vec<u8>,
    selected: bool,
) -> Page {
    if limit == 0 || items.len() <= limit {
        return Page {
            items,
            rev,
            next: None,
            remaining: None,
        };
    }
    let remaining = (items.len() - limit) as u64;
    items.truncate(limit);
    let last = key_of(&items[limit - 1]);
    Page {
        items,
        rev,
        next: Some(encode(prefix, &last, rev as i64)),
        remaining: (!selected).then_some(remaining),
    }
}

/// The page that `token` names: at most `limit` items `keep` selects,
/// read from the store at the token's revision.
pub async fn next(
    store: &Store,
    prefix: &[u8],
    token: &str,
    limit: usize,
    keep: impl Fn(&Value) -> bool,
) -> ApiResult<Page> {
    let (rv, mut start) = decode(prefix, token)?;
    let at = (rv > 0).then_some(rv as u64);
    let mut items = Vec::new();
    let mut rev = at.unwrap_or(0);
    let mut more = false;
    'rounds: loop {
        let read = store
            .read(ReadRequest::page(prefix, &start, at, BATCH))
            .await
            .map_err(|e| match e {
                ClientError::Compacted { .. } => expired(prefix, &start),
                other => ApiError::from(other),
            })?;
        if at.is_none() && rev == 0 {
            // Without a revision (an inconsistent continue), every round
            // reads the latest: the page names the first one's.
            rev = read.revision;
        }
        let n = read.kvs.len();
        for kv in read.kvs {
            if limit != 0 && items.len() == limit {
                more = true;
                break 'rounds;
            }
            start = kv.key.clone();
            start.push(0);
            if let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) {
                if keep(&obj) {
                    items.push(Arc::new(obj));
                }
            }
        }
        if n < BATCH as usize {
            break;
        }
    }
    let next = more.then(|| {
        // `start` is one past the last key read: the token names that key.
        let last = &start[..start.len() - 1];
        encode(prefix, last, at.map_or(-1, |r| r as i64))
    });
    Ok(Page {
        items,
        rev,
        next,
        remaining: None,
    })
}

/// 410 Expired with a token that goes on from `start` at the latest
/// revision.
fn expired(prefix: &[u8], start: &[u8]) -> ApiError {
    let last = start.strip_suffix(&[0]).unwrap_or(start);
    let mut e = ApiError::gone(INCONSISTENT_CONTINUE);
    e.list_continue = Some(encode(prefix, last, -1));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let prefix = b"/registry/pods/";
        let t = encode(prefix, b"/registry/pods/default/web-1", 42);
        let (rv, start) = decode(prefix, &t).unwrap();
        assert_eq!(rv, 42);
        assert_eq!(start, b"/registry/pods/default/web-1\0");
        // Upstream's own encoding of the same token decodes alike.
        let upstream = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"v":"meta.k8s.io/v1","rv":42,"start":"default/web-1\u0000"}"#);
        assert_eq!(decode(prefix, &upstream).unwrap(), (42, start));
        for bad in [
            "",
            "!!",
            "e30",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(br#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(br#"{"v":"meta.k8s.io/v1","rv":5,"start":"../secrets/x"}"#),
        ] {
            let e = decode(prefix, bad).unwrap_err();
            assert_eq!(e.code, 400, "{bad}");
        }
        let e = expired(prefix, b"/registry/pods/default/web-1\0");
        assert_eq!(e.code, 410);
        let (rv, _) = decode(prefix, e.list_continue.as_deref().unwrap()).unwrap();
        assert_eq!(rv, -1);
        assert_eq!(
            e.status()["metadata"]["continue"],
            e.list_continue.clone().unwrap()
        );
    }

    #[test]
    fn the_first_page_names_the_last_key_and_what_remains() {
        let items: Vec<Arc<Value>> = (0..5)
            .map(|i| Arc::new(serde_json::json!({"metadata": {"name": format!("p{i}")}})))
            .collect();
        let key =
            |o: &Value| format!("/p/{}", o["metadata"]["name"].as_str().unwrap()).into_bytes();
        let page = first(items.clone(), 7, 2, b"/p/", key, false);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.remaining, Some(3));
        let (rv, start) = decode(b"/p/", page.next.as_deref().unwrap()).unwrap();
        assert_eq!((rv, start), (7, b"/p/p1\0".to_vec()));
        let whole = first(items, 7, 5, b"/p/", key, true);
        assert!(whole.next.is_none() && whole.remaining.is_none());
    }
}
