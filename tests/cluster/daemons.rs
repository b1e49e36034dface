//! DaemonSets on a 3-node in-process cluster (sim kubelets): a pod on each
//! node, one on a node that joins, a rolling update within maxUnavailable
//! with its ControllerRevisions; and a deleted namespace takes its
//! content with it, refusing creates while it terminates.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use serde_json::json;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The DaemonSet's live pods by node (name, image, ready).
async fn by_node(pods: &Api<Pod>) -> BTreeMap<String, Vec<(String, String, bool)>> {
    let mut out: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
    let list = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap();
    for p in list.items {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let spec = p.spec.clone().unwrap_or_default();
        let node = spec.node_name.clone().unwrap_or_default();
        let image = spec.containers[0].image.clone().unwrap_or_default();
        out.entry(node)
            .or_default()
            .push((p.metadata.name.clone().unwrap(), image, ready(&p)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_on_every_node_and_rolls_within_max_unavailable() {
    let c = TestCluster::start(3).unwrap();
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let k = api_ready(&c, 1).await;
    let nodes: Api<Node> = Api::all(k.clone());
    wait_until(Duration::from_secs(30), || async {
        let n = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        (n.items.len() == 3)
            .then_some(())
            .ok_or(format!("{} nodes", n.items.len()))
    })
    .await
    .unwrap();
    let dss: Api<DaemonSet> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "c", "image": "v1"}]}}}
    }))
    .unwrap();
    dss.create(&PostParams::default(), &ds).await.unwrap();
    let one_each = |want: usize, image: &'static str| {
        let pods = pods.clone();
        async move {
            wait_until(Duration::from_secs(30), || async {
                let m = by_node(&pods).await;
                let ok = m.len() == want
                    && m.values()
                        .all(|ps| ps.len() == 1 && ps[0].1 == image && ps[0].2);
                ok.then_some(()).ok_or(format!("{m:?}"))
            })
            .await
            .unwrap();
        }
    };
    one_each(3, "v1").await;

    // A node that joins gets its pod (registered as its kubelet would; no
    // kubelet runs it, so it is bound but never Ready).
    let spec = shoal::kubelet::NodeSpec {
        name: "node-9".into(),
        address: "127.0.0.9".into(),
        region: "local".into(),
        zone: "a".into(),
        milli_cpu: 8_000,
        memory_bytes: 8 << 30,
        pods: 110,
    };
    let node: Node =
        serde_json::from_value(shoal::kubelet::node_object(&spec, "sim", &[], &[])).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    wait_until(Duration::from_secs(20), || async {
        let m = by_node(&pods).await;
        m.contains_key("node-9")
            .then_some(())
            .ok_or(format!("{m:?}"))
    })
    .await
    .unwrap();
    // It leaves again: its pod goes with it.
    nodes
        .delete("node-9", &DeleteParams::default())
        .await
        .unwrap();
    one_each(3, "v1").await;

    // A rolling update, watched: never more than one node without a ready pod.
    let listed = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap();
    let rv = listed.metadata.resource_version.clone().unwrap();
    let mut seen: BTreeMap<String, (String, bool)> = listed
        .items
        .iter()
        .map(|p| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (p.metadata.name.clone().unwrap(), (node, ready(p)))
        })
        .collect();
    let wp = kube::api::WatchParams::default().labels("app=agent");
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}});
    dss.patch("agent", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let mut worst = 3usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let m = by_node(&pods).await;
        if m.len() == 3
            && m.values()
                .all(|ps| ps.len() == 1 && ps[0].1 == "v2" && ps[0].2)
        {
            break;
        }
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the rolling update finishes within 40 s");
        match ev {
            Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                let live = p.metadata.deletion_timestamp.is_none() && ready(&p);
                seen.insert(p.metadata.name.clone().unwrap(), (node, live));
            }
            Some(Ok(WatchEvent::Deleted(p))) => {
                seen.remove(p.metadata.name.as_deref().unwrap());
            }
            Some(_) => {}
            None => break,
        }
        let nodes_ready: std::collections::BTreeSet<&String> =
            seen.values().filter(|(_, r)| *r).map(|(n, _)| n).collect();
        worst = worst.min(nodes_ready.len());
    }
    one_each(3, "v2").await;
    assert!(
        worst >= 2,
        "more than maxUnavailable 1 node without a ready pod: {worst} ready"
    );
    // Two templates, two ControllerRevisions; the newest is revision 2.
    let revs: Api<ControllerRevision> = Api::default_namespaced(k.clone());
    let mut r: Vec<i64> = revs
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.revision)
        .collect();
    r.sort();
    assert_eq!(r, [1, 2]);
    // The status follows the pods (the controller's next reconcile).
    wait_until(Duration::from_secs(20), || async {
        let st = dss.get("agent").await.map_err(|e| e.to_string())?.status;
        let st = st.unwrap_or_default();
        let counts = (
            st.desired_number_scheduled,
            st.updated_number_scheduled,
            st.number_available,
        );
        (counts == (3, Some(3), Some(3)))
            .then_some(())
            .ok_or(format!("{counts:?}"))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_its_content_then_itself() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let nss: Api<Namespace> = Api::all(k.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let pp = PostParams::default();
    let deploys: Api<Deployment> = Api::namespaced(k.clone(), "doomed");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    deploys.create(&pp, &d).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(k.clone(), "doomed");
    cms.create(
        &pp,
        &serde_json::from_value(json!({"metadata": {"name": "cfg"}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(k.clone(), "doomed");
    secrets
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(k.clone(), "doomed");
    svcs.create(
        &pp,
        &serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(k.clone(), "doomed");
    wait_until(Duration::from_secs(20), || async {
        let n = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (n == 2).then_some(()).ok_or(format!("{n} pods"))
    })
    .await
    .unwrap();

    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    // Terminating at once; a create is refused with upstream's words.
    let now = nss.get("doomed").await;
    if let Ok(n) = now {
        assert_eq!(n.status.unwrap().phase.as_deref(), Some("Terminating"));
        let refused = cms
            .create(
                &pp,
                &serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap(),
            )
            .await;
        match refused {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 403);
                assert_eq!(
                    e.message,
                    "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
                );
            }
            other => panic!("a create in a terminating namespace: {other:?}"),
        }
    }
    // Then everything goes, and the namespace with it.
    wait_until(Duration::from_secs(30), || async {
        match nss.get_opt("doomed").await {
            Ok(None) => Ok(()),
            Ok(Some(n)) => Err(format!("{:?}", n.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    for (what, n) in [
        (
            "deployments",
            deploys
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
        ),
        (
            "pods",
            pods.list(&ListParams::default()).await.unwrap().items.len(),
        ),
        (
            "configmaps",
            cms.list(&ListParams::default()).await.unwrap().items.len(),
        ),
        (
            "secrets",
            secrets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
        ),
        (
            "services",
            svcs.list(&ListParams::default()).await.unwrap().items.len(),
        ),
    ] {
        assert_eq!(n, 0, "{what} left in a deleted namespace");
    }
}
