//! LIST in pages (`limit` / `continue`) under write load: 20,000 pods read
//! 500 at a time while pods are created and changed, every one of them
//! seen exactly once, all pages at the first page's revision; a token whose
//! revision was compacted is 410 Expired with an inconsistent-continue
//! token that goes on at the latest revision. A watch from the oldest
//! revision streams the whole history, a window at a time, each change
//! once, while the node goes on answering.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use shoal::cli::http::ApiClient;
use shoal::model::resources::PODS;
use shoal::store::command::Txn;
use shoal::store::watch::WatchEvent;
use shoal_harness::TestCluster;

const NS: &str = "pages";
const PODS_N: usize = 20_000;

/// A pod no scheduler or kubelet takes up.
fn pod(name: &str, generation: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
            "labels": {"gen": generation.to_string()}},
        "spec": {"schedulerName": "elsewhere", "containers": [{"name": "c", "image": "none"}]}
    }))
    .unwrap()
}

async fn get(client: &ApiClient, path: &str) -> (StatusCode, Value) {
    let (code, body) = client
        .request(Method::GET, path, None, Duration::from_secs(30))
        .await
        .unwrap();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_in_pages_under_write_load_sees_every_pod_once() {
    // 20,000 pods and their history load both cores for seconds: no
    // test with a time bound runs beside it.
    let _heavy = crate::timing_guard().await;
    let c = TestCluster::start(1).unwrap();
    c.wait_leader(1).await;
    let cfg = c.config(1).clone();
    let token = std::fs::read_to_string(&cfg.auth.admin_token_file).unwrap();
    let client = ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token.trim().into())).unwrap();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    let (code, _) = client
        .request(
            Method::POST,
            "/api/v1/namespaces",
            Some(serde_json::to_vec(&ns).unwrap()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(code, StatusCode::CREATED);
    let store = c.node(1).store.clone();
    let all: Vec<String> = (0..PODS_N).map(|i| format!("p-{i:05}")).collect();
    for chunk in all.chunks(1000) {
        let txns = chunk
            .iter()
            .map(|n| Txn::put(PODS.key(NS, n), pod(n, 0)))
            .collect();
        store.write_many(txns).await.unwrap();
    }

    let base = format!("/api/v1/namespaces/{NS}/pods?limit=500");
    let (code, first) = get(&client, &base).await;
    assert_eq!(code, StatusCode::OK, "{first}");
    // Write load: new pods, and the listed ones changed, from the first page on.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let load = {
        let (store, stop, writes) = (store.clone(), stop.clone(), writes.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let changed = format!("p-{:05}", (n * 7919) % PODS_N as u64);
                let extra = format!("extra-{n}");
                let txns = vec![
                    Txn::put(PODS.key(NS, &changed), pod(&changed, n)),
                    Txn::put(PODS.key(NS, &extra), pod(&extra, n)),
                ];
                store.write_many(txns).await.unwrap();
                writes.fetch_add(2, Ordering::Relaxed);
            }
        })
    };

    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen = names(&first);
    let mut pages = 1;
    let mut tokens = Vec::new();
    let mut next = first["metadata"]["continue"].as_str().map(str::to_string);
    let remaining = first["metadata"]["remainingItemCount"].as_u64().unwrap();
    assert_eq!(remaining as usize + 500, PODS_N);
    while let Some(token) = next {
        let (code, page) = get(&client, &format!("{base}&continue={token}")).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert_eq!(
            page["metadata"]["resourceVersion"],
            rv.as_str(),
            "one revision"
        );
        let got = names(&page);
        assert!(got.len() <= 500);
        seen.extend(got);
        pages += 1;
        tokens.push(token);
        next = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a pod was listed twice");
    let listed: BTreeSet<&String> = seen.iter().filter(|n| n.starts_with("p-")).collect();
    assert_eq!(listed.len(), PODS_N, "every pod once");
    assert_eq!(pages, PODS_N.div_ceil(500));
    // Pods created after the first page are not in a consistent list.
    assert!(
        seen.iter().all(|n| n.starts_with("p-")),
        "{} extra",
        seen.len() - PODS_N
    );
    assert!(
        writes.load(Ordering::Relaxed) > 0,
        "the list ran under writes"
    );

    // kubectl's `get --chunk-size=500` asks for Tables: they page alike.
    let k = crate::kube_api::api_ready(&c, 1).await;
    let req = http::Request::builder()
        .uri(format!("{base}&continue={}", tokens[0]))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = serde_json::from_str(&k.request_text(req).await.unwrap()).unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().unwrap().len(), 500);
    assert_eq!(table["metadata"]["resourceVersion"], rv.as_str());
    assert!(
        table["metadata"]["continue"].is_string(),
        "{}",
        table["metadata"]
    );

    // A watch from the oldest revision, over the whole history (nothing
    // compacted yet): every change once, in order, while the node answers.
    let now = store.read_index().await.unwrap();
    let mut sub = store
        .watch("node-1", &PODS.prefix(Some(NS)), 1)
        .await
        .unwrap();
    let (mut events, mut last) = (0u64, 0u64);
    let mut answered = false;
    while last < now {
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(Ok(WatchEvent::Events(batch))) => {
                for e in batch {
                    assert!(e.rev >= last, "in revision order");
                    last = e.rev;
                    events += 1;
                }
            }
            Ok(Ok(WatchEvent::Progress { rev })) => last = last.max(rev),
            other => panic!("the watch ended: {other:?}"),
        }
        if !answered {
            let started = std::time::Instant::now();
            let (code, _) = get(&client, "/api/v1/namespaces/pages/pods?limit=1").await;
            assert_eq!(code, StatusCode::OK);
            assert!(started.elapsed() < Duration::from_secs(5));
            answered = true;
        }
    }
    let expected = PODS_N as u64 + writes.load(Ordering::Relaxed);
    assert_eq!(events, expected, "every change once");

    // The revision compacted: 410 with a token that goes on at the latest.
    let now = store.read_index().await.unwrap();
    store.compact(now).await.unwrap();
    let (code, gone) = get(&client, &format!("{base}&continue={}", tokens[10])).await;
    assert_eq!(code, StatusCode::GONE, "{gone}");
    assert_eq!(gone["reason"], "Expired");
    assert!(gone["message"]
        .as_str()
        .unwrap()
        .starts_with("The provided continue parameter is too old"));
    let inconsistent = gone["metadata"]["continue"].as_str().unwrap();
    let (code, rest) = get(&client, &format!("{base}&continue={inconsistent}")).await;
    assert_eq!(code, StatusCode::OK, "{rest}");
    let first_rest = names(&rest)[0].clone();
    assert!(
        first_rest.as_str() > seen[11 * 500 - 1].as_str(),
        "{first_rest}"
    );
    // A malformed token is a 400.
    let (code, _) = get(&client, &format!("{base}&continue=bm90LWpzb24")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}
