//! Storage end to end on two process-runtime nodes: a claim of the default
//! class waits for its first pod, is provisioned as a directory on that
//! pod's node, and keeps its data across pods; a pod of a bound claim goes
//! only where the volume is (Pending with upstream's message while that
//! node is cordoned); deleting the claim removes the volume and its
//! directory. Claims that cannot be met say why.

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use shoal_harness::TestCluster;

use crate::kube_api::api_ready;
use crate::until;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut c = json!({"metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    if let Some(k) = class {
        c["spec"]["storageClassName"] = json!(k);
    }
    obj(c)
}

fn pod_with(name: &str, claim: &str, script: &str) -> Pod {
    obj(json!({"metadata": {"name": name},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            "containers": [{"name": "c", "image": "none", "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}))
}

/// Whether an Event about `name` with `reason` exists (its message).
async fn event(events: &Api<Event>, name: &str, reason: &str) -> Result<String, String> {
    let list = events
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    list.items
        .iter()
        .find(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        })
        .map(|e| e.message.clone().unwrap_or_default())
        .ok_or_else(|| format!("no {reason} Event about {name}"))
}

fn phase<T: serde::Serialize>(o: &T) -> String {
    serde_json::to_value(o).unwrap()["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_claim_follows_its_first_pod_keeps_data_and_goes_with_its_directory() {
    let c = TestCluster::start_with(2, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let (claims, pods, events): (Api<PersistentVolumeClaim>, Api<Pod>, Api<Event>) = (
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
    );
    let (volumes, nodes, classes): (Api<PersistentVolume>, Api<Node>, Api<StorageClass>) = (
        Api::all(k.clone()),
        Api::all(k.clone()),
        Api::all(k.clone()),
    );
    // The built-in class is the default; each node announces its directory.
    until("the built-in class", 30, || async {
        classes
            .get("shoal-local")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let sc = classes.get("shoal-local").await.unwrap();
    assert_eq!(sc.provisioner, "shoal.io/local-path");
    assert_eq!(
        sc.volume_binding_mode.as_deref(),
        Some("WaitForFirstConsumer")
    );
    until("both nodes announce a local-path directory", 30, || async {
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let n = list
            .items
            .iter()
            .filter(|n| {
                n.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("storage.shoal.io/local-path"))
            })
            .count();
        (n == 2).then_some(()).ok_or(format!("{n} of 2"))
    })
    .await;

    // A claim with no class gets the default, and waits for a pod.
    claims
        .create(&PostParams::default(), &claim("data", None))
        .await
        .unwrap();
    let got = claims.get("data").await.unwrap();
    assert_eq!(
        got.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("shoal-local")
    );
    assert!(got
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"kubernetes.io/pvc-protection".to_string()));
    until("WaitForFirstConsumer", 20, || async {
        event(&events, "data", "WaitForFirstConsumer")
            .await
            .map(|_| ())
    })
    .await;
    assert_eq!(phase(&claims.get("data").await.unwrap()), "Pending");

    // Its first pod: the volume is made on that pod's node and written.
    pods.create(
        &PostParams::default(),
        &pod_with("writer", "data", "echo kept > /data/f"),
    )
    .await
    .unwrap();
    until("the writer succeeds", 60, || async {
        let p = pods.get("writer").await.map_err(|e| e.to_string())?;
        (phase(&p) == "Succeeded")
            .then_some(())
            .ok_or(format!("{:?}", p.status))
    })
    .await;
    let node = pods
        .get("writer")
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap();
    let bound = claims.get("data").await.unwrap();
    assert_eq!(phase(&bound), "Bound");
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    let pv = serde_json::to_value(volumes.get(&pv_name).await.unwrap()).unwrap();
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(
        pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0/values/0"),
        Some(&json!(node))
    );
    let dir = std::path::PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
    let i: usize = node.trim_start_matches("node-").parse().unwrap();
    assert!(
        dir.starts_with(&c.config(i).data_dir),
        "{} under node {i}'s data dir",
        dir.display()
    );
    assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "kept\n");
    assert!(event(&events, "data", "ProvisioningSucceeded")
        .await
        .is_ok());

    // The volume's node cordoned: a new pod of the claim waits, saying why.
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes
        .patch(&node, &PatchParams::default(), &Patch::Merge(&cordon))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &pod_with("reader", "data", "cat /data/f"),
    )
    .await
    .unwrap();
    until("the reader unschedulable", 30, || async {
        let p = serde_json::to_value(pods.get("reader").await.map_err(|e| e.to_string())?).unwrap();
        let msg = p.pointer("/status/conditions/0/message").and_then(Value::as_str).unwrap_or("");
        let want = "0/2 nodes are available: 1 node(s) had volume node affinity conflict, 1 node(s) were unschedulable.";
        (msg.starts_with(want)).then_some(()).ok_or(format!("{msg:?}"))
    })
    .await;
    let uncordon = json!({"spec": {"unschedulable": false}});
    nodes
        .patch(&node, &PatchParams::default(), &Patch::Merge(&uncordon))
        .await
        .unwrap();
    until("the reader succeeds on the volume's node", 60, || async {
        let p = pods.get("reader").await.map_err(|e| e.to_string())?;
        (phase(&p) == "Succeeded")
            .then_some(())
            .ok_or(format!("{:?}", p.status))
    })
    .await;
    let reader = pods.get("reader").await.unwrap();
    assert_eq!(
        reader.spec.unwrap().node_name.as_deref(),
        Some(node.as_str())
    );
    assert_eq!(
        pods.logs("reader", &LogParams::default()).await.unwrap(),
        "kept\n"
    );

    // The claim deleted: it goes once no pod uses it, its volume (policy
    // Delete) with it, and the directory before the volume.
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    for p in ["writer", "reader"] {
        pods.delete(p, &DeleteParams::default()).await.unwrap();
    }
    until(
        "the claim, the volume and the directory gone",
        60,
        || async {
            let claim = claims.get_opt("data").await.map_err(|e| e.to_string())?;
            let pv = volumes.get_opt(&pv_name).await.map_err(|e| e.to_string())?;
            match (claim, pv, dir.exists()) {
                (None, None, false) => Ok(()),
                (c, v, d) => Err(format!(
                    "claim {}, volume {:?}, directory {d}",
                    c.is_some(),
                    v.map(|v| v.status)
                )),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_volumes_bind_by_class_and_size_and_bad_claims_say_why() {
    let c = TestCluster::start_with(1, |cfg| {
        cfg.kubelet.runtime = shoal::kubelet::config::RuntimeKind::Process;
        cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let (claims, pods, events): (Api<PersistentVolumeClaim>, Api<Pod>, Api<Event>) = (
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k.clone()),
    );
    let volumes: Api<PersistentVolume> = Api::all(k.clone());
    // A class that does not exist: Pending, with an Event.
    claims
        .create(&PostParams::default(), &claim("nowhere", Some("nope")))
        .await
        .unwrap();
    until("ProvisioningFailed", 20, || async {
        let m = event(&events, "nowhere", "ProvisioningFailed").await?;
        (m == "storageclass.storage.k8s.io \"nope\" not found")
            .then_some(())
            .ok_or(m)
    })
    .await;
    assert_eq!(phase(&claims.get("nowhere").await.unwrap()), "Pending");

    // Hand-made hostPath volumes of class "manual": the claim takes the
    // smallest that fits; Retain keeps the volume and its data after.
    let dir = c.dir.path().join("manual");
    let pv = |name: &str, size: &str, path: &std::path::Path| -> PersistentVolume {
        obj(json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": path}}}))
    };
    volumes
        .create(
            &PostParams::default(),
            &pv("small", "512Mi", &dir.join("small")),
        )
        .await
        .unwrap();
    volumes
        .create(
            &PostParams::default(),
            &pv("fits", "2Gi", &dir.join("fits")),
        )
        .await
        .unwrap();
    volumes
        .create(
            &PostParams::default(),
            &pv("huge", "100Gi", &dir.join("huge")),
        )
        .await
        .unwrap();
    claims
        .create(&PostParams::default(), &claim("manual", Some("manual")))
        .await
        .unwrap();
    until("bound to the smallest that fits", 20, || async {
        let c = claims.get("manual").await.map_err(|e| e.to_string())?;
        let v = c.spec.as_ref().and_then(|s| s.volume_name.clone());
        (phase(&c) == "Bound" && v.as_deref() == Some("fits"))
            .then_some(())
            .ok_or(format!("{v:?}"))
    })
    .await;
    pods.create(
        &PostParams::default(),
        &pod_with("w", "manual", "echo retained > /data/f"),
    )
    .await
    .unwrap();
    until("the pod writes", 60, || async {
        let p = pods.get("w").await.map_err(|e| e.to_string())?;
        (phase(&p) == "Succeeded")
            .then_some(())
            .ok_or(format!("{:?}", p.status))
    })
    .await;
    pods.delete("w", &DeleteParams::default()).await.unwrap();
    claims
        .delete("manual", &DeleteParams::default())
        .await
        .unwrap();
    until("Released", 30, || async {
        let v = volumes.get("fits").await.map_err(|e| e.to_string())?;
        (phase(&v) == "Released").then_some(()).ok_or(phase(&v))
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(dir.join("fits/f")).unwrap(),
        "retained\n"
    );
    assert_eq!(phase(&volumes.get("small").await.unwrap()), "Available");

    // A volume whose directory cannot be made: the pod waits, FailedMount.
    volumes
        .create(
            &PostParams::default(),
            &pv(
                "broken",
                "1Gi",
                std::path::Path::new("/proc/shoal-cannot/x"),
            ),
        )
        .await
        .unwrap();
    let mut bad = claim("bad", Some("manual"));
    bad.spec.as_mut().unwrap().volume_name = Some("broken".into());
    claims.create(&PostParams::default(), &bad).await.unwrap();
    pods.create(&PostParams::default(), &pod_with("stuck", "bad", "true"))
        .await
        .unwrap();
    until("FailedMount", 60, || async {
        let p = pods.get("stuck").await.map_err(|e| e.to_string())?;
        let m = event(&events, "stuck", "FailedMount")
            .await
            .map_err(|e| format!("{e}: {:?}", p.status))?;
        m.contains("MountVolume.SetUp failed for volume \"data\"")
            .then_some(())
            .ok_or(m)
    })
    .await;
    assert_eq!(phase(&pods.get("stuck").await.unwrap()), "Pending");
    // A claim may not grow: no class here expands.
    let grow = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
    let err = claims
        .patch("bad", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only dynamically provisioned pvc can be resized"),
        "{err}"
    );
}
