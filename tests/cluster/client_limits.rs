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
    let open = |client: ApiClient| {
        tokio::spawn(async move {
            client
                .stream_lines(path, Duration::from_secs(10), |_| true)
                .await
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
    let held: Vec<_> = (0..3).map(|_| open(client.clone())).collect();
    // A fourth: 429 once the three are open. (A watch that opens never
    // answers a plain request in time: the probe then times out.)
    let probe = |client: ApiClient| async move {
        match client
            .request(hyper::Method::GET, path, None, Duration::from_millis(500))
            .await
        {
            Ok((code, body)) if code.as_u16() == 429 => {
                Ok(String::from_utf8_lossy(&body).into_owned())
            }
            Ok((code, _)) => Err(format!("{code}")),
            Err(e) => Err(e.to_string()),
        }
    };
    wait_until(Duration::from_secs(10), || {
        let client = client.clone();
        async move { probe(client).await.map(|_| ()) }
    })
    .await
    .unwrap();
    let body = probe(client.clone()).await.unwrap();
    assert!(body.contains("too many watches"), "{body}");
    // One ends: room for another (the probe's watch opens and times out).
    held[0].abort();
    wait_until(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            match probe(client).await {
                Ok(_) => Err("still 429".to_string()),
                Err(e) if e.contains("did not answer") => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await
    .unwrap();
    for h in held {
        h.abort();
    }
}
