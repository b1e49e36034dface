//! kube-rs, unmodified, against the Kubernetes API of an in-process
//! cluster: CRUD with read-your-writes across nodes, conflicts on a stale
//! resourceVersion, JSON patches with a `test` op, Events, `pods/log`
//! errors, and bad input answered with the right `Status` and no partial
//! write. Watches are in `kube_watch`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use shoal_harness::{wait_until, TestCluster};

/// A kube-rs client on node `i`, from the kubeconfig `shoal dev` writes
/// (one context per node), with `token` as the bearer token.
pub async fn client_with_token(c: &TestCluster, i: usize, token: Option<&str>) -> Client {
    Client::try_from(config_with_token(c, i, token).await).unwrap()
}

/// The kube-rs configuration of `client_with_token`.
pub async fn config_with_token(c: &TestCluster, i: usize, token: Option<&str>) -> kube::Config {
    let cfgs: Vec<_> = (1..=c.len()).map(|k| c.config(k).clone()).collect();
    let mut kc = shoal::cli::dev::kubeconfig(&c.path(), &cfgs, token.unwrap_or(""));
    if token.is_none() {
        kc["users"][0]["user"] = json!({});
    }
    let kc: Kubeconfig = serde_json::from_value(kc).unwrap();
    let opts = KubeConfigOptions {
        context: Some(c.config(i).name.clone()),
        ..Default::default()
    };
    kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .unwrap()
}

pub async fn client(c: &TestCluster, i: usize) -> Client {
    let token = std::fs::read_to_string(&c.config(1).auth.admin_token_file).unwrap();
    client_with_token(c, i, Some(token.trim())).await
}

/// Waits until the API on node `i` serves the system namespaces.
pub async fn api_ready(c: &TestCluster, i: usize) -> Client {
    let k = client(c, i).await;
    let ns: Api<Namespace> = Api::all(k.clone());
    wait_until(Duration::from_secs(30), || {
        let ns = ns.clone();
        async move {
            match ns.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("the default namespace appears");
    k
}

pub fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(BTreeMap::from([(
        "app".to_string(),
        "kube-test".to_string(),
    )]));
    cm.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm
}

fn code_of<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_conflicts_and_patches() {
    let c = TestCluster::start(3).unwrap();
    let a = api_ready(&c, 1).await;
    let b = api_ready(&c, 2).await;
    let on_a: Api<ConfigMap> = Api::default_namespaced(a.clone());
    let on_b: Api<ConfigMap> = Api::default_namespaced(b.clone());

    let created = on_a
        .create(&PostParams::default(), &config_map("cfg", &[("k", "v")]))
        .await
        .unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert_eq!(created.metadata.uid.as_ref().map(String::len), Some(36));
    assert!(created.metadata.creation_timestamp.is_some());
    // Read-your-writes through another node, at once.
    let got = on_b.get("cfg").await.unwrap();
    assert_eq!(got.metadata.resource_version.as_deref(), Some(rv1.as_str()));
    assert_eq!(got.data, created.data);
    // A second create of the name: AlreadyExists.
    let (code, reason, _) = code_of(
        on_b.create(&PostParams::default(), &config_map("cfg", &[]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    // Update with the current resourceVersion, then a stale one: Conflict.
    let mut next = got.clone();
    next.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    let updated = on_b
        .replace("cfg", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );
    let mut stale = got.clone();
    stale.data = Some(BTreeMap::from([("k".into(), "lost".into())]));
    let (code, reason, _) = code_of(on_a.replace("cfg", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(on_a.get("cfg").await.unwrap().data.unwrap()["k"], "v2");

    // JSON patch with a passing `test`, then a failing one (nothing applied).
    let pp = PatchParams::default();
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v2"},
        {"op": "replace", "path": "/data/k", "value": "v3"},
    ]))
    .unwrap();
    let patched = on_a
        .patch("cfg", &pp, &Patch::Json::<()>(ok))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["k"], "v3");
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v2"},
        {"op": "replace", "path": "/data/k", "value": "never"},
    ]))
    .unwrap();
    let (code, _, msg) = code_of(on_b.patch("cfg", &pp, &Patch::Json::<()>(failing)).await);
    assert_eq!(code, 422, "{msg}");
    assert_eq!(on_b.get("cfg").await.unwrap().data.unwrap()["k"], "v3");
    // Merge and strategic merge patches.
    let merged = on_b
        .patch(
            "cfg",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "x"}}, "data": {"n": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["tier"], "x");
    assert_eq!(merged.data.as_ref().unwrap().len(), 2);

    // A Deployment: generation moves with the spec, not with labels; a
    // strategic merge patch of the image keeps the container's ports.
    let deploys: Api<Deployment> = Api::default_namespaced(a.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.14.2",
                                                       "ports": [{"containerPort": 80}]}]}}}
    }))
    .unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.revision_history_limit, Some(10));
    let smp = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}],
                                                    "containers": [{"name": "web", "image": "nginx:1.16.1"}]}}}});
    let d = deploys
        .patch("web", &pp, &Patch::Strategic(smp))
        .await
        .unwrap();
    let container = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(container.image.as_deref(), Some("nginx:1.16.1"));
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 80);
    assert_eq!(d.metadata.generation, Some(2));
    let d = deploys
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));

    // dryRun runs everything but the commit.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let shown = on_a
        .create(&dry, &config_map("dry", &[("a", "1")]))
        .await
        .unwrap();
    assert_eq!(shown.metadata.name.as_deref(), Some("dry"));
    assert!(on_b.get_opt("dry").await.unwrap().is_none());

    // A finalizer holds a delete: the object gets a deletionTimestamp and
    // goes when the last finalizer is removed.
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    on_a.create(&PostParams::default(), &held).await.unwrap();
    on_a.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = on_b.get("held").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    on_b.patch(
        "held",
        &pp,
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(on_a.get_opt("held").await.unwrap().is_none());

    // List with a label selector; delete; gone everywhere.
    on_a.create(&PostParams::default(), &{
        let mut other = config_map("other", &[]);
        other.metadata.labels = None;
        other
    })
    .await
    .unwrap();
    let listed = on_b
        .list(&ListParams::default().labels("app=kube-test"))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["cfg".to_string()]);
    on_a.delete("cfg", &DeleteParams::default()).await.unwrap();
    let (code, reason, msg) = code_of(on_b.get("cfg").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(msg, "configmaps \"cfg\" not found");
}

/// Sends a raw request through kube-rs (TLS and token from the
/// kubeconfig) and returns the error Status it gets.
async fn raw_status(
    k: &Client,
    method: &str,
    uri: &str,
    ctype: &str,
    body: Vec<u8>,
) -> (u16, String, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ctype)
        .body(body)
        .unwrap();
    code_of(k.request_text(req).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_status_and_writes_nothing() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let json = "application/json";

    let (code, reason, msg) = raw_status(
        &k,
        "POST",
        cms,
        json,
        b"{\"kind\": \"ConfigMap\", ".to_vec(),
    )
    .await;
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        msg.contains("EOF while parsing"),
        "the parse error is carried: {msg}"
    );

    let yaml = "application/yaml";
    let (code, reason, msg) = raw_status(
        &k,
        "POST",
        cms,
        yaml,
        b"metadata: {name: x\n  bad: [".to_vec(),
    )
    .await;
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        msg.contains("unknown format: "),
        "the YAML error is carried: {msg}"
    );
    let ok = http::Request::builder()
        .method("POST")
        .uri(cms)
        .header("content-type", yaml)
        .body(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml}\ndata: {a: '1'}\n"
                .to_vec(),
        )
        .unwrap();
    let made: Value = serde_json::from_str(&k.request_text(ok).await.unwrap()).unwrap();
    assert_eq!(made["data"]["a"], "1");

    let (code, _, _) = raw_status(
        &k,
        "GET",
        "/api/v1/namespaces/default/widgets",
        json,
        vec![],
    )
    .await;
    assert_eq!(code, 404);
    let (code, _, _) =
        raw_status(&k, "GET", "/apis/nope.example.com/v1/things", json, vec![]).await;
    assert_eq!(code, 404);

    let bad_name =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}});
    let (code, reason, msg) = raw_status(
        &k,
        "POST",
        cms,
        json,
        serde_json::to_vec(&bad_name).unwrap(),
    )
    .await;
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(msg.contains("metadata.name"), "{msg}");

    let unknown = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "dataa": {"x": "y"}});
    let strict = format!("{cms}?fieldValidation=Strict");
    let (code, _, msg) = raw_status(
        &k,
        "POST",
        &strict,
        json,
        serde_json::to_vec(&unknown).unwrap(),
    )
    .await;
    assert_eq!(code, 422);
    assert!(msg.contains("unknown field \"dataa\""), "{msg}");

    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                     "data": {"x": "y".repeat(3 * 1024 * 1024 + 10)}});
    let (code, _, _) = raw_status(&k, "POST", cms, json, serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(code, 413);

    let api: Api<ConfigMap> = Api::default_namespaced(k.clone());
    let good = api
        .create(&PostParams::default(), &config_map("good", &[("a", "1")]))
        .await
        .unwrap();
    let mut stale = good.clone();
    stale.metadata.resource_version = Some("1".into());
    let (code, reason, _) = code_of(api.replace("good", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    let (code, _, _) = raw_status(
        &k,
        "PATCH",
        &format!("{cms}/good"),
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(code, 415);
    let (code, _, _) = raw_status(&k, "PUT", cms, json, b"{}".to_vec()).await;
    assert_eq!(code, 405);

    for token in [None, Some("wrong-token")] {
        let anon = client_with_token(&c, 1, token).await;
        let (code, reason, _) = raw_status(&anon, "GET", cms, json, vec![]).await;
        assert_eq!(
            (code, reason.as_str()),
            (401, "Unauthorized"),
            "token {token:?}"
        );
    }

    // Nothing but the good object was written, and the node still serves.
    let names: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, vec!["from-yaml".to_string(), "good".to_string()]);
}

/// The Event helper folds repeats into one Event with a count, also when
/// recorders on two nodes race, and the Events are found by the field
/// selector `kubectl describe` uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_folded_with_counts_and_found_by_involved_object() {
    use k8s_openapi::api::core::v1::Event;
    use shoal::model::events::{EventRecorder, EventType, ObjectRef};
    let c = TestCluster::start(2).unwrap();
    let k = api_ready(&c, 1).await;
    api_ready(&c, 2).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(k.clone());
    let cm = cms
        .create(&PostParams::default(), &config_map("evented", &[]))
        .await
        .unwrap();
    let obj = ObjectRef::of(&serde_json::to_value(&cm).unwrap());
    assert_eq!(obj.kind, "ConfigMap");
    let r1 = EventRecorder::new(
        std::sync::Arc::new(c.node(1).store.clone()),
        "test-controller",
        "node-1",
    );
    let r2 = EventRecorder::new(
        std::sync::Arc::new(c.node(2).store.clone()),
        "test-controller",
        "node-1",
    );
    // Same source on two nodes, racing: one Event, no count lost.
    let race = |r: EventRecorder, obj: ObjectRef| async move {
        for _ in 0..5 {
            r.record(&obj, EventType::Normal, "Synced", "synced ok")
                .await
                .unwrap();
        }
    };
    tokio::join!(race(r1.clone(), obj.clone()), race(r2, obj.clone()));
    assert_eq!(
        r1.record(&obj, EventType::Warning, "Failed", "it broke")
            .await
            .unwrap(),
        1
    );

    let events: Api<Event> = Api::default_namespaced(k);
    let fs = format!(
        "involvedObject.name=evented,involvedObject.namespace=default,involvedObject.kind=ConfigMap,involvedObject.uid={}",
        obj.uid
    );
    let mut listed = events
        .list(&ListParams::default().fields(&fs))
        .await
        .unwrap()
        .items;
    listed.sort_by_key(|e| e.reason.clone());
    let summary: Vec<_> = listed
        .iter()
        .map(|e| (e.reason.clone().unwrap(), e.count, e.type_.clone().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Failed".to_string(), Some(1), "Warning".to_string()),
            ("Synced".to_string(), Some(10), "Normal".to_string()),
        ]
    );
    let other = events
        .list(&ListParams::default().fields("involvedObject.name=nothing"))
        .await
        .unwrap();
    assert!(other.items.is_empty());
}

/// `pods/log` is asked of the kubelet of the pod's node; with none
/// answering, the client gets a clear Status, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_without_a_kubelet_are_a_clear_error() {
    use k8s_openapi::api::core::v1::Pod;
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k);
    let pod = |name: &str, node: Option<&str>| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "schedulerName": "manual",
                     "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("pending", None))
        .await
        .unwrap();
    // Bound to a node without a kubelet (none runs on node-9).
    pods.create(&PostParams::default(), &pod("bound", Some("node-9")))
        .await
        .unwrap();
    let created = pods.get("pending").await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let (code, _, msg) = code_of(pods.logs("pending", &Default::default()).await);
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("not scheduled"), "{msg}");
    let (code, _, msg) = code_of(pods.logs("bound", &Default::default()).await);
    assert_eq!(code, 500, "{msg}");
    assert!(
        msg.contains("no kubelet answers on node \"node-9\""),
        "{msg}"
    );
    // A bound pod is deleted gracefully: it stays, marked, for its kubelet.
    pods.delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    let marked = pods.get("bound").await.unwrap();
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("pending", &DeleteParams::default())
        .await
        .unwrap();
    assert!(pods.get_opt("pending").await.unwrap().is_none());
}
