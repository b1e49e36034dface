//! Watches through kube-rs against an in-process cluster: a watch resumed
//! from its resourceVersion on another API node after the first is killed
//! (every event exactly once), `watcher()` with paged and streaming lists,
//! a resourceVersion older than the cache window (410 Gone), and watch
//! timeouts, bookmarks, status and deletecollection.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::{api_ready, config_map};

/// Waits for the next ADDED/MODIFIED/DELETED event of a raw watch.
async fn next_object<S>(stream: &mut S) -> Option<(String, ConfigMap)>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a watch event within 20 s")?;
        match ev {
            Ok(WatchEvent::Added(o)) => return Some(("ADDED".into(), o)),
            Ok(WatchEvent::Modified(o)) => return Some(("MODIFIED".into(), o)),
            Ok(WatchEvent::Deleted(o)) => return Some(("DELETED".into(), o)),
            Ok(WatchEvent::Bookmark(_)) => continue,
            Ok(WatchEvent::Error(e)) => panic!("watch error {e:?}"),
            Err(_) => return None,
        }
    }
}

/// With three API nodes, a watcher on node 3 loses its node (killed)
/// while another client writes; resumed on node 2 from its last
/// resourceVersion, it misses no event and sees none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_another_api_node_without_a_gap() {
    let mut c = TestCluster::start(3).unwrap();
    let writer = api_ready(&c, 1).await;
    let second = api_ready(&c, 2).await;
    let watcher = api_ready(&c, 3).await;
    let w: Api<ConfigMap> = Api::default_namespaced(writer.clone());
    let first = w
        .create(&PostParams::default(), &config_map("w-000", &[]))
        .await
        .unwrap();
    let from = first.metadata.resource_version.unwrap();

    let total = 40usize;
    // Half the writes before the kill, half after (maybe under a new
    // store leader, when node 3 led).
    let write = |range: std::ops::RangeInclusive<usize>| {
        let w = w.clone();
        async move {
            for k in range {
                let cm = config_map(&format!("w-{k:03}"), &[]);
                // Writes retry while the store elects a new leader.
                wait_until(Duration::from_secs(30), || {
                    let (w, cm) = (w.clone(), cm.clone());
                    async move {
                        match w.create(&PostParams::default(), &cm).await {
                            Ok(_) => Ok(()),
                            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                })
                .await
                .expect("the write goes through");
            }
        }
    };
    write(1..=total / 2).await;
    let on3: Api<ConfigMap> = Api::default_namespaced(watcher);
    let mut stream = on3
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    let mut seen: Vec<String> = Vec::new();
    let mut last_rv = from.clone();
    while seen.len() < 10 {
        let (kind, o) = next_object(&mut stream).await.expect("node 3 streams");
        assert_eq!(kind, "ADDED");
        seen.push(o.metadata.name.unwrap());
        last_rv = o.metadata.resource_version.unwrap();
    }
    c.kill(3);
    write(total / 2 + 1..=total).await;
    // The stream on the killed node ends (or errors) ...
    while let Some((_, o)) = next_object(&mut stream).await {
        seen.push(o.metadata.name.unwrap());
        last_rv = o.metadata.resource_version.unwrap();
    }
    // ... and the same watch resumes on node 2 from the last revision.
    let on2: Api<ConfigMap> = Api::default_namespaced(second);
    let mut resumed = on2
        .watch(&WatchParams::default(), &last_rv)
        .await
        .unwrap()
        .boxed();
    while seen.len() < total {
        let (kind, o) = next_object(&mut resumed).await.expect("node 2 streams");
        assert_eq!(kind, "ADDED");
        seen.push(o.metadata.name.unwrap());
    }
    let expected: Vec<String> = (1..=total).map(|k| format!("w-{k:03}")).collect();
    assert_eq!(seen, expected, "every event once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_with_and_without_streaming_lists() {
    use kube::runtime::{watcher, WatchStreamExt};
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let api: Api<ConfigMap> = Api::default_namespaced(k);
    let mut existing = BTreeSet::new();
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &config_map(name, &[]))
            .await
            .unwrap();
        existing.insert(name.to_string());
    }
    for (label, cfg) in [
        ("paged lists", watcher::Config::default()),
        (
            "streaming lists",
            watcher::Config::default().streaming_lists(),
        ),
    ] {
        // The initial list ends with InitDone: for streaming lists that
        // is the bookmark annotated k8s.io/initial-events-end.
        let mut raw = watcher(api.clone(), cfg.clone()).boxed();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(20), raw.try_next())
                .await
                .unwrap_or_else(|_| panic!("{label}: the initial list ends"))
                .unwrap()
                .unwrap();
            if matches!(ev, watcher::Event::InitDone) {
                break;
            }
        }
        drop(raw);
        let mut objects = watcher(api.clone(), cfg).applied_objects().boxed();
        let mut names = BTreeSet::new();
        while names.len() < existing.len() {
            let o = tokio::time::timeout(Duration::from_secs(20), objects.try_next())
                .await
                .unwrap_or_else(|_| panic!("{label}: the initial objects arrive"))
                .unwrap()
                .unwrap();
            names.insert(o.metadata.name.unwrap());
        }
        assert_eq!(
            names, existing,
            "{label}: the initial list is the current state"
        );
        let fresh = format!("after-{}", label.replace(' ', "-"));
        api.create(&PostParams::default(), &config_map(&fresh, &[]))
            .await
            .unwrap();
        existing.insert(fresh.clone());
        loop {
            let o = tokio::time::timeout(Duration::from_secs(20), objects.try_next())
                .await
                .unwrap_or_else(|_| panic!("{label}: the new object arrives"))
                .unwrap()
                .unwrap();
            if o.metadata.name.as_deref() == Some(fresh.as_str()) {
                break;
            }
        }
    }
}

/// A watch from a revision older than the node's cache window is 410
/// Expired (kube-rs then lists again): a restarted node's cache starts at
/// the revision it loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_older_than_the_cache_window_is_gone() {
    let mut c = TestCluster::start(3).unwrap();
    let k = api_ready(&c, 1).await;
    let api: Api<ConfigMap> = Api::default_namespaced(k);
    let first = api
        .create(&PostParams::default(), &config_map("old", &[]))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &config_map("newer", &[]))
        .await
        .unwrap();
    // Node 2 applied both before it stops, so the cache it loads on
    // restart starts after `old` (a lagging follower's would not).
    let before: Api<ConfigMap> = Api::default_namespaced(api_ready(&c, 2).await);
    wait_until(Duration::from_secs(30), || {
        let before = before.clone();
        async move {
            match before.get_opt("newer").await {
                Ok(Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("node 2 applies both writes");
    c.stop(2);
    c.restart(2).unwrap();
    let on2: Api<ConfigMap> = Api::default_namespaced(api_ready(&c, 2).await);
    match on2.watch(&WatchParams::default(), &old_rv).await {
        Ok(s) => match s.boxed().next().await {
            Some(Err(kube::Error::Api(st))) => assert_eq!(st.code, 410),
            other => panic!("expected 410 Gone, got {other:?}"),
        },
        Err(kube::Error::Api(st)) => assert_eq!((st.code, st.reason.as_str()), (410, "Expired")),
        Err(e) => panic!("expected 410 Gone, got {e}"),
    }
    // A list gives a current resourceVersion to watch from again.
    let rv = on2
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    assert!(on2.watch(&WatchParams::default(), &rv).await.is_ok());
}

/// Watch parameters: `timeoutSeconds` ends the stream, idle watches that
/// allow bookmarks get them, and the `status` subresource changes only
/// the status (and the main resource never does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_timeouts_bookmarks_status_and_deletecollection() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let deploys: Api<Deployment> = Api::default_namespaced(k.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(k.clone());
    let quiet = cms
        .create(&PostParams::default(), &config_map("quiet", &[]))
        .await
        .unwrap();
    let rv = quiet.metadata.resource_version.clone().unwrap();

    // timeoutSeconds=1: the server ends the stream; changes of other
    // kinds (a Deployment, and what its controllers do) never show.
    let started = std::time::Instant::now();
    let s = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "st"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "st"}},
                 "template": {"metadata": {"labels": {"app": "st"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(10), s.collect::<Vec<_>>())
        .await
        .expect("the watch ends by itself");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // An idle watch with bookmarks gets one, at the current revision.
    let mut s = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(15), s.next())
        .await
        .expect("a bookmark within 15 s")
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Bookmark(b) => {
            let at: u64 = b.metadata.resource_version.parse().unwrap();
            assert!(at >= rv.parse::<u64>().unwrap());
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }

    // status through /status; the spec stays.
    let pp = PatchParams::default();
    let patched = deploys
        .patch_status(
            "st",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 3, "observedGeneration": 1}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(1));
    // ... and the main resource ignores status.
    let spec_patch = json!({"spec": {"replicas": 2}, "status": {"replicas": 99}});
    let patched = deploys
        .patch("st", &pp, &Patch::Merge(spec_patch))
        .await
        .unwrap();
    // (The Deployment controller writes status too, so only the ignored
    // value is checked.)
    assert_ne!(patched.status.as_ref().and_then(|s| s.replicas), Some(99));
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(patched.metadata.generation, Some(2));
    let scale = deploys.get_scale("st").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.map(|s| s.selector),
        Some(Some("app=st".to_string()))
    );

    // deletecollection by label.
    for name in ["dc-1", "dc-2"] {
        cms.create(&PostParams::default(), &config_map(name, &[]))
            .await
            .unwrap();
    }
    let mut keep = config_map("dc-keep", &[]);
    keep.metadata.labels = None;
    cms.create(&PostParams::default(), &keep).await.unwrap();
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=kube-test"),
    )
    .await
    .unwrap();
    let left: Vec<_> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, vec!["dc-keep".to_string()]);
}
