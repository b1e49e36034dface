//! One write path: the control plane's writes (through the registry over
//! its fenced writer) follow the API's rules, and a pod deleted by REST, by
//! the garbage collector or by its ReplicaSet leaves the same history in the
//! store and the same Events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use shoal::controllers::runtime::{Fenced, ReconcileError};
use shoal::model::registry::{Allocators, Registry};
use shoal::store::command::FenceToken;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

/// The control plane's registry on the leader `i`: the fenced writer with
/// the current term, the node's cache, the cluster's ranges.
fn control_registry(c: &TestCluster, h: &shoal::node::NodeHandle) -> Registry {
    let cfg = c.config(1);
    let alloc = Allocators {
        services: shoal::model::alloc::Ranges::new(&cfg.api.service_cidr, &cfg.api.node_port_range)
            .unwrap(),
        pod_cidrs: shoal::model::podcidr::PodCidrs::new(&cfg.kubelet.pod_cidr).unwrap(),
    };
    let fenced = Fenced {
        store: h.store.clone(),
        token: FenceToken {
            term: h.store.status().term,
            node: h.store.raft_id(),
        },
    };
    Registry::new(Arc::new(fenced), Some(h.cache.clone()), Arc::new(alloc))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_writes_by_the_apis_rules() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    c.wait_leader(1).await;
    let reg = control_registry(&c, c.node(1));

    // A missing namespace: refused exactly as REST refuses it.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let rest = Api::<ConfigMap>::namespaced(k.clone(), "nope")
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm.clone()).unwrap(),
        )
        .await;
    let Err(kube::Error::Api(rest)) = rest else {
        panic!("REST accepted an object in a missing namespace: {rest:?}")
    };
    let cms = &shoal::model::resources::CONFIGMAPS;
    let (r2, cms2) = (reg.clone(), cms);
    let control = c
        .on(1, move |_| async move {
            shoal::controllers::create_object(&r2, cms2, "nope", cm).await
        })
        .await;
    match control {
        Err(ReconcileError::Invalid {
            reason, message, ..
        }) => {
            assert_eq!(
                (rest.code, rest.reason.as_str(), rest.message.as_str()),
                (404, reason.as_str(), message.as_str())
            );
        }
        other => panic!("a controller's create in a missing namespace: {other:?}"),
    }

    // A writer's stale copy is refused even when it would change nothing
    // (a controller acting on a cache behind the store must not proceed).
    let cmapi = Api::<ConfigMap>::default_namespaced(k.clone());
    let v1 = cmapi
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "stale"}, "data": {"a": "1"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.data = Some([("a".to_string(), "2".to_string())].into());
    cmapi
        .replace("stale", &PostParams::default(), &v2)
        .await
        .unwrap();
    let old = serde_json::to_value(&v1).unwrap();
    let r2 = reg.clone();
    // (`update_at` is the write over the writer's own copy; here the copy
    // is the first version, as a lagging cache would hold it.)
    let noop = c
        .on(1, move |_| async move {
            r2.update_at(cms, None, &old, old.clone()).await
        })
        .await;
    assert_eq!(noop.map_err(|e| e.code).err(), Some(409));

    // A Service a component creates gets its cluster IP, as through REST.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "made"},
                     "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}});
    let services = &shoal::model::resources::SERVICES;
    let r2 = reg.clone();
    c.on(1, move |_| async move {
        shoal::controllers::create_object(&r2, services, "default", svc).await
    })
    .await
    .unwrap();
    let made = Api::<Service>::default_namespaced(k.clone())
        .get("made")
        .await
        .unwrap();
    let ip = made.spec.unwrap().cluster_ip.unwrap_or_default();
    let range = shoal::model::alloc::Ranges::new(
        &c.config(1).api.service_cidr,
        &c.config(1).api.node_port_range,
    )
    .unwrap();
    let mut probe = json!({"spec": {"clusterIP": ip}});
    range
        .allocate(&mut probe, None)
        .unwrap_or_else(|e| panic!("{ip} is not in the service range: {}", e.message));
}

/// The pod's history from `rv` on: (event type, marked for deletion,
/// grace period) until it is gone.
async fn history(pods: Api<Pod>, name: String, rv: String) -> Vec<(String, bool, Option<i64>)> {
    let wp = WatchParams::default().fields(&format!("metadata.name={name}"));
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
    let mut out = Vec::new();
    let step = |p: &Pod| {
        (
            p.metadata.deletion_timestamp.is_some(),
            p.metadata.deletion_grace_period_seconds,
        )
    };
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
        .await
        .unwrap_or_else(|_| panic!("{name}: no end within 30 s after {out:?}"))
        .map_err(|e| panic!("{name}: {e}"))
    {
        match ev {
            WatchEvent::Modified(p) => {
                let (marked, grace) = step(&p);
                out.push(("MODIFIED".into(), marked, grace));
            }
            WatchEvent::Deleted(p) => {
                let (marked, grace) = step(&p);
                out.push(("DELETED".into(), marked, grace));
                return out;
            }
            WatchEvent::Added(_) | WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{name}: {e:?}"),
        }
    }
    out
}

async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    wait_until(Duration::from_secs(30), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Running") => Ok(()),
            other => Err(format!("{name}: {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    pods.get(name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_by_rest_the_gc_or_its_replicaset_leaves_the_same_history() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let spec = json!({"terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "c", "image": "x"}]});

    // Through REST.
    let p: Pod =
        serde_json::from_value(json!({"metadata": {"name": "via-rest"}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    // Through the garbage collector: its owner goes.
    let cms: Api<ConfigMap> = Api::default_namespaced(k.clone());
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "via-gc", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
         "uid": owner.metadata.uid.clone().unwrap()}]}, "spec": spec}))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    // Through its ReplicaSet: scaled to zero.
    let rss: Api<ReplicaSet> = Api::default_namespaced(k.clone());
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "via-rs"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "via-rs"}},
                 "template": {"metadata": {"labels": {"app": "via-rs"}}, "spec": spec}}}))
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    wait_until(Duration::from_secs(30), || async {
        let l = pods
            .list(&kube::api::ListParams::default().labels("app=via-rs"))
            .await
            .map_err(|e| e.to_string())?;
        (l.items.len() == 1)
            .then_some(())
            .ok_or(format!("{} pods", l.items.len()))
    })
    .await
    .unwrap();
    let rs_pod = pods
        .list(&kube::api::ListParams::default().labels("app=via-rs"))
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();

    let mut watches = BTreeMap::new();
    let mut uids = BTreeMap::new();
    for name in ["via-rest", "via-gc", rs_pod.as_str()] {
        let p = running(&pods, name).await;
        let rv = p.metadata.resource_version.clone().unwrap();
        uids.insert(name.to_string(), p.metadata.uid.clone().unwrap());
        watches.insert(
            name.to_string(),
            tokio::spawn(history(pods.clone(), name.to_string(), rv)),
        );
    }
    pods.delete("via-rest", &DeleteParams::default())
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    rss.patch(
        "via-rs",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();

    let mut histories = BTreeMap::new();
    for (name, w) in watches {
        histories.insert(name, w.await.unwrap());
    }
    // Marked with its grace period, then removed by its kubelet: the same
    // for each, whoever deleted it.
    let want = vec![
        ("MODIFIED".to_string(), true, Some(1)),
        ("DELETED".to_string(), true, Some(1)),
    ];
    for (name, h) in &histories {
        assert_eq!(h, &want, "{name}: {histories:?}");
    }
    // And the same Events: the kubelet's Killing, one per container.
    let events: Api<Event> = Api::default_namespaced(k);
    wait_until(Duration::from_secs(10), || async {
        let all = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        for (name, uid) in &uids {
            let of: Vec<(String, String)> = all
                .items
                .iter()
                .filter(|e| e.involved_object.uid.as_deref() == Some(uid.as_str()))
                .filter(|e| e.reason.as_deref() == Some("Killing"))
                .map(|e| {
                    (
                        e.reason.clone().unwrap_or_default(),
                        e.message.clone().unwrap_or_default(),
                    )
                })
                .collect();
            if of != [("Killing".to_string(), "Stopping container c".to_string())] {
                let seen: Vec<_> = all
                    .items
                    .iter()
                    .map(|e| (e.involved_object.name.clone(), e.reason.clone()))
                    .collect();
                return Err(format!("{name}: {of:?} among {seen:?}"));
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_admission_merges_the_runtime_class_and_the_service_accounts_pull_secrets() {
    use k8s_openapi::api::node::v1::RuntimeClass;
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    // The built-in classes, made at bootstrap.
    let classes: Api<RuntimeClass> = Api::all(k.clone());
    wait_until(Duration::from_secs(30), || {
        let classes = classes.clone();
        async move {
            let names: Vec<String> = classes
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .map(|c| {
                    format!(
                        "{}={}",
                        c.metadata.name.clone().unwrap_or_default(),
                        c.handler
                    )
                })
                .collect();
            if names == ["docker=docker", "process=process"] {
                Ok(())
            } else {
                Err(format!("classes {names:?}"))
            }
        }
    })
    .await
    .unwrap();
    let fast: RuntimeClass = serde_json::from_value(json!({
        "metadata": {"name": "fast"},
        "handler": "docker",
        "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
        "scheduling": {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "fast", "effect": "NoSchedule"}],
        },
    }))
    .unwrap();
    classes.create(&PostParams::default(), &fast).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(k.clone(), "default");
    let pod = |class: &str, selector: serde_json::Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"runtimeClassName": class, "nodeSelector": selector,
                "containers": [{"name": "c", "image": "x"}]},
        }))
        .unwrap()
    };
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // The class's overhead, node selector and tolerations join the pod's.
    let admitted = pods
        .create(&dry, &pod("fast", json!({"zone": "a"})))
        .await
        .unwrap();
    let spec = admitted.spec.unwrap();
    let overhead = spec.overhead.unwrap();
    assert_eq!(overhead["cpu"].0, "250m");
    assert_eq!(overhead["memory"].0, "64Mi");
    let selector = spec.node_selector.unwrap();
    assert_eq!(selector.get("disk").map(String::as_str), Some("ssd"));
    assert_eq!(selector.get("zone").map(String::as_str), Some("a"));
    let tolerations = spec.tolerations.unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("dedicated")));

    // A selector that contradicts the class's, and a class that does not
    // exist, are refused (403, as upstream's admission).
    for (class, selector, says) in [
        ("fast", json!({"disk": "hdd"}), "conflict"),
        ("nope", json!({}), "RuntimeClass \"nope\" not found"),
    ] {
        let err = pods.create(&dry, &pod(class, selector)).await.unwrap_err();
        let kube::Error::Api(e) = err else {
            panic!("{err:?}")
        };
        assert_eq!(e.code, 403, "{e:?}");
        assert!(e.message.contains(says), "{}", e.message);
    }

    // A pod naming no imagePullSecrets gets its ServiceAccount's.
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(k.clone(), "default");
    let puller: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "regcred"}]}))
    .unwrap();
    accounts
        .create(&PostParams::default(), &puller)
        .await
        .unwrap();
    let with_account = |own: serde_json::Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "q"},
            "spec": {"serviceAccountName": "puller", "imagePullSecrets": own,
                "containers": [{"name": "c", "image": "x"}]},
        }))
        .unwrap()
    };
    let secrets = |p: Pod| -> Vec<String> {
        p.spec
            .unwrap()
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    // Admission reads the account from the watch cache (as upstream's
    // from its lister): it sees the account once the cache has it.
    wait_until(Duration::from_secs(10), || async {
        let admitted = pods
            .create(&dry, &with_account(json!([])))
            .await
            .map_err(|e| e.to_string())?;
        match secrets(admitted).as_slice() {
            [one] if one == "regcred" => Ok(()),
            other => Err(format!("secrets {other:?}")),
        }
    })
    .await
    .unwrap();
    let own = pods
        .create(&dry, &with_account(json!([{"name": "mine"}])))
        .await
        .unwrap();
    assert_eq!(secrets(own), ["mine"], "a pod's own secrets stay");

    // The handler of a class does not change.
    let mut changed = classes.get("fast").await.unwrap();
    changed.handler = "process".into();
    let err = classes
        .replace("fast", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code, 422, "{e:?}");
}
