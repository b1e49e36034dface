//! Per-actor authorization: a worker-only node (its certificate certifies
//! the worker role alone) cannot open exec on another node, append Raft
//! entries, write what is not its own, or read a Secret that none of its
//! pods uses; it reads the one its pod uses, decrypted, and watches Secrets
//! with their values hidden.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use shoal::actor::envelope::RemoteError;
use shoal::actor::{ActorPath, AskError};
use shoal::config::Role;
use shoal::model::resources::{NODES, SECRETS};
use shoal::store::actor::ClientWrite;
use shoal::store::command::Txn;
use shoal::store::network::RaftAppend;
use shoal::store::service::ClientRead;
use shoal::store::watch::{Watch, WatchEvent};
use shoal::store::{ClientError, ReadRequest};
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

const T: Duration = Duration::from_secs(5);

fn is_forbidden<T: std::fmt::Debug>(r: &Result<T, AskError>) -> bool {
    matches!(r, Err(AskError::Remote(RemoteError::Forbidden(_))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_certificate_reaches_only_what_its_node_authorizer_allows() {
    let c = TestCluster::start_with(4, |cfg| {
        if cfg.name == "node-4" {
            cfg.roles = vec![Role::Worker];
        }
    })
    .unwrap();
    c.wait_leader(1).await;
    let k = api_ready(&c, 1).await;
    let secrets: Api<Secret> = Api::default_namespaced(k.clone());
    for (name, value) in [("used", "used-value-1"), ("unused", "unused-value-2")] {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"v": value}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    // A pod on the worker that uses one of them.
    let pods: Api<Pod> = Api::default_namespaced(k);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "holder"},
        "spec": {"nodeName": "node-4", "containers": [{"name": "c", "image": "busybox",
            "env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": "used", "key": "v"}}}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let store = |node: &str| ActorPath::new("store", node);
    let h = c.node(4).clone();
    let worker = h.actors.clone();

    // Its own secret, by key: decrypted. The other one, or a list: refused.
    let read = |key: Vec<u8>| {
        let worker = worker.clone();
        async move {
            worker
                .ask(&store("node-1"), ClientRead(ReadRequest::key(key)), T)
                .await
        }
    };
    // (Once this replica has applied the pod.)
    wait_until(Duration::from_secs(10), || async {
        match read(SECRETS.key("default", "used")).await {
            Ok(Ok(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the worker reads the Secret its pod uses");
    let mine = read(SECRETS.key("default", "used")).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&mine.kvs[0].value).into_owned();
    assert!(text.contains(r#""name":"used""#), "{text}");
    let other = read(SECRETS.key("default", "unused")).await;
    assert!(
        matches!(&other, Ok(Err(ClientError::Forbidden(why))) if why.contains("no pod that uses Secret default/unused")),
        "{other:?}"
    );
    let listed = worker
        .ask(
            &store("node-1"),
            ClientRead(ReadRequest::prefix("/registry/")),
            T,
        )
        .await;
    assert!(
        matches!(listed, Ok(Err(ClientError::Forbidden(_)))),
        "{listed:?}"
    );
    // An API node reads it.
    let by_api = c
        .node(2)
        .actors
        .ask(
            &store("node-1"),
            ClientRead(ReadRequest::key(SECRETS.key("default", "unused"))),
            T,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&by_api.kvs[0].value).contains("unused"));

    // Watches: the keys come, the values do not.
    let mut sub = worker
        .subscribe(
            &store("node-1"),
            Watch {
                prefix: SECRETS.prefix(None),
                from_rev: 1,
                filter: None,
            },
            T,
        )
        .await
        .unwrap();
    let mut seen = 0;
    while seen < 2 {
        match tokio::time::timeout(T, sub.next()).await {
            Ok(Ok(WatchEvent::Events(events))) => {
                for e in events {
                    assert!(
                        e.value.is_empty(),
                        "a watched Secret's value reached a worker"
                    );
                    seen += 1;
                }
            }
            Ok(Ok(_)) => {}
            other => panic!("the watch ended: {other:?}"),
        }
    }

    // Writes: another node's Node, a Secret: refused.
    for key in [NODES.key("", "node-1"), SECRETS.key("default", "used")] {
        let w = worker
            .ask(&store("node-1"), ClientWrite(Txn::put(key, "{}")), T)
            .await;
        assert!(matches!(w, Ok(Err(ClientError::Forbidden(_)))), "{w:?}");
    }

    // Raft: a worker appends nothing, however high its term.
    let append = openraft::raft::AppendEntriesRequest {
        vote: openraft::Vote::new_committed(1_000, 4),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let r = worker.ask(&store("node-1"), RaftAppend(append), T).await;
    assert!(is_forbidden(&r), "{r:?}");

    // Exec into a pod of another node: refused before it is decoded.
    let exec = shoal::kubelet_proto::Exec {
        attach: false,
        namespace: "default".into(),
        pod: "holder".into(),
        container: "c".into(),
        command: vec!["id".into()],
        stdin: false,
        tty: false,
        session: "s".into(),
    };
    let path = ActorPath::new(shoal::kubelet_proto::KUBELET, "node-2");
    let r = worker.subscribe(&path, exec.clone(), T).await.map(|_| ());
    assert!(is_forbidden(&r), "{r:?}");
    // The same from an API node is let through (and fails for its own
    // reason: the pod is not on node-2).
    let r = c.node(1).actors.subscribe(&path, exec, T).await.map(|_| ());
    assert!(!is_forbidden(&r), "{r:?}");

    // The leader never saw the worker's term.
    let status = c.node(1).store.status();
    assert!(status.term < 1_000, "{status:?}");
}
