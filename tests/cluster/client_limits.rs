//! Limits a client meets at the API: the watches one client address may
//! hold open at once (`api.max_watches_per_client`); one more is a 429
//! until one of them ends.

use std::time::Duration;

use shoal::cli::http::ApiClient;
use shoal_harness::{wait_until, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_per_client_are_capped() {
    let c = TestCluster::start_with(1, |cfg| cfg.api.max_watches_per_client = 3).unwrap();
    let cfg = c.config(1).clone();
    let token = std::fs::read_to_string(&cfg.auth.admin_token_file).unwrap();
    let client = ApiClient::new(cfg.listen.api, &cfg.tls.ca, Some(token.trim().into())).unwrap();
    let path = "/api/v1/namespaces/default/configmaps?watch=true";
    // A watch that is open says so with its first event: the ConfigMap
    // made below, listed as ADDED.
    let ended = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel::<()>();
    let open = |client: ApiClient| {
        let ended = ended.clone();
        let opened_tx = opened_tx.clone();
        tokio::spawn(async move {
            let r = client
                .stream_lines(path, Duration::from_secs(10), |_| {
                    let _ = opened_tx.send(());
                    true
                })
                .await;
            ended.lock().unwrap().push(format!("{r:?}"));
        })
    };
    // Three held open (once the API serves).
    wait_until(Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let (code, _) = client
                .request(
                    hyper::Method::GET,
                    "/api/v1/namespaces/default",
                    None,
                    Duration::from_secs(5),
                )
                .await
                .map_err(|e| e.to_string())?;
            if code.is_success() {
                Ok(())
            } else {
                Err(code.to_string())
            }
        }
    })
    .await
    .unwrap();
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"seen"}}"#.to_vec();
    let (code, _) = client
        .request(
            hyper::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(code.is_success(), "{code}");
    // One at a time, each open before the next.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(client.clone()));
        tokio::time::timeout(Duration::from_secs(20), opened.recv())
            .await
            .expect("the watch opens")
            .unwrap();
    }
    // A fourth: 429 once the three are open. The probe's own watch ends
    // by itself after a second (timeoutSeconds) when it is let in.
    let probe = |client: ApiClient| async move {
        let path = format!("{path}&timeoutSeconds=1");
        client
            .request(hyper::Method::GET, &path, None, Duration::from_secs(20))
            .await
            .map(|(code, body)| (code.as_u16(), String::from_utf8_lossy(&body).into_owned()))
            .map_err(|e| e.to_string())
    };
    wait_until(Duration::from_secs(30), || {
        let client = client.clone();
        let ended = ended.clone();
        async move {
            match probe(client).await? {
                (429, body) if body.contains("too many watches") => Ok(()),
                (code, body) => Err(format!(
                    "{code}: {body}; held watches that ended: {:?}",
                    ended.lock().unwrap()
                )),
            }
        }
    })
    .await
    .unwrap();
    // One ends: room for another.
    held[0].abort();
    wait_until(Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            match probe(client).await? {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code}: {body}")),
            }
        }
    })
    .await
    .unwrap();
    for h in held {
        h.abort();
    }
}
