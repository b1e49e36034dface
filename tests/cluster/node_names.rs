//! Node names are opaque and pod subnets are allocated: nodes named
//! `alpha`, `beta-2` and `c` each get a /24 of the pod range when they
//! register (`spec.podCIDR`), their pods' sandboxes sit on three distinct
//! subnets with bridges named after the allocation; an exhausted range is a
//! clear registration error; a Node created through the API gets a /24 too,
//! and deleting it frees the /24.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use shoal::kubelet::config::{PodNetwork, RuntimeKind};
use shoal::model::podcidr::PodCidrs;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

/// Whether this machine gives pods CNI sandboxes (root with the plugins;
/// `scripts/test.sh` installs them, so CI always does).
fn sandboxes() -> bool {
    // SAFETY: a libc call without arguments.
    let root = unsafe { libc::geteuid() } == 0;
    let plugins = ["bridge", "host-local", "loopback"]
        .iter()
        .all(|p| std::path::Path::new("/usr/lib/cni").join(p).exists());
    assert!(
        !root || plugins,
        "running as root without the CNI plugins in /usr/lib/cni: run scripts/test.sh"
    );
    root
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// name → podCIDR of each Node in `want`; an error until all have one.
async fn try_pod_cidrs(
    nodes: &Api<Node>,
    want: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    for name in want {
        let n = nodes
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or(format!("no Node {name} yet"))?;
        let cidr = n
            .spec
            .and_then(|s| s.pod_cidr)
            .ok_or(format!("Node {name} has no podCIDR"))?;
        found.push((name.clone(), cidr));
    }
    Ok(found)
}

/// The pod IP of each pod named, once all are Running.
async fn try_running_ips(pods: &Api<Pod>, names: &[String]) -> Result<Vec<String>, String> {
    let mut ips = Vec::new();
    for name in names {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = p.status.unwrap_or_default();
        if status.phase.as_deref() != Some("Running") {
            return Err(format!("{name}: {:?}", status.phase));
        }
        ips.push(status.pod_ip.ok_or(format!("{name} has no IP"))?);
    }
    Ok(ips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_any_name_run_pods_in_sandboxes_on_their_own_subnets() {
    let sandboxed = sandboxes();
    let c = TestCluster::start_named(
        &names(&["alpha", "beta-2", "c"]),
        |cfg| {
            cfg.kubelet.runtime = RuntimeKind::Process;
            cfg.kubelet.shim = env!("CARGO_BIN_EXE_shoal").into();
            // Its own range, so no other cluster's routes overlap it.
            cfg.kubelet.pod_cidr = "10.123.0.0/16".into();
            cfg.kubelet.network = if sandboxed {
                PodNetwork::Cni
            } else {
                PodNetwork::Host
            };
        },
        |_| Default::default(),
    )
    .unwrap();
    let k = api_ready(&c, 1).await;
    let nodes: Api<Node> = Api::all(k.clone());
    let want = names(&["alpha", "beta-2", "c"]);
    wait_until(Duration::from_secs(30), || async {
        try_pod_cidrs(&nodes, &want).await.map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let cidrs = try_pod_cidrs(&nodes, &want).await.unwrap();
    let range = PodCidrs::new("10.123.0.0/16").unwrap();
    let slots: Vec<_> = cidrs
        .iter()
        .map(|(n, cidr)| {
            range
                .slot_of(cidr)
                .unwrap_or_else(|| panic!("{n}: {cidr} is not a /24 of the range"))
        })
        .collect();
    let distinct: BTreeSet<&String> = cidrs.iter().map(|(_, c)| c).collect();
    assert_eq!(distinct.len(), 3, "{cidrs:?}");

    // One pod on each node.
    let pods: Api<Pod> = Api::default_namespaced(k);
    for (node, _) in &cidrs {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("on-{node}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "none",
                     "command": ["sleep", "600"]}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let pod_names: Vec<String> = cidrs.iter().map(|(n, _)| format!("on-{n}")).collect();
    wait_until(Duration::from_secs(30), || async {
        try_running_ips(&pods, &pod_names).await.map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ips = try_running_ips(&pods, &pod_names).await.unwrap();
    eprintln!("sandboxes: {sandboxed}; pods {ips:?} on {cidrs:?}");
    for ((node, cidr), (ip, slot)) in cidrs.iter().zip(ips.iter().zip(&slots)) {
        if sandboxed {
            // The pod's address is in its node's /24, behind the bridge
            // named after the node's slot.
            let prefix = cidr.trim_end_matches("0/24");
            assert!(ip.starts_with(prefix), "{ip} of a pod on {node} ({cidr})");
            let bridge = format!("/sys/class/net/shoal-{}", slot.index);
            assert!(
                std::path::Path::new(&bridge).exists(),
                "{bridge} for {node}"
            );
        } else {
            assert!(
                ip.starts_with(&format!("127.{}.", slot.index % 254 + 1)),
                "{ip} of a pod on {node} (slot {})",
                slot.index
            );
        }
    }
    let subnets: BTreeSet<String> = ips
        .iter()
        .map(|ip| ip.rsplit_once('.').unwrap().0.to_string())
        .collect();
    assert_eq!(subnets.len(), 3, "three distinct subnets: {ips:?}");
    for (node, _) in &cidrs {
        let _ = pods
            .delete(
                &format!("on-{node}"),
                &DeleteParams::default().grace_period(0),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pod_range_is_a_registration_error() {
    // One /24, and one worker holding it (node-2 only keeps the store
    // company, so nothing else competes for the /24 once it is freed).
    let c = TestCluster::start_with(2, |cfg| {
        cfg.kubelet.pod_cidr = "10.124.0.0/24".into();
        if cfg.name != "node-1" {
            cfg.roles.retain(|r| *r != shoal::config::Role::Worker);
        }
    })
    .unwrap();
    let k = api_ready(&c, 1).await;
    let nodes: Api<Node> = Api::all(k);
    wait_until(Duration::from_secs(30), || async {
        let list = nodes
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        match list.items.len() {
            1 => Ok(()),
            n => Err(format!("{n} Nodes")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let list = nodes.list(&Default::default()).await.unwrap();
    let holder = list.items[0].metadata.name.clone().unwrap_or_default();
    assert_eq!(holder, "node-1");
    let got = nodes.get(&holder).await.unwrap();
    assert_eq!(got.spec.unwrap().pod_cidr.as_deref(), Some("10.124.0.0/24"));

    // Registering another node says why it cannot.
    let err = c
        .on(1, |h| async move {
            let spec = shoal::kubelet::NodeSpec {
                name: "gamma".into(),
                address: "127.0.0.1".into(),
                region: "r".into(),
                zone: "z".into(),
                milli_cpu: 1000,
                memory_bytes: 1 << 30,
                pods: 10,
            };
            let range = PodCidrs::new("10.124.0.0/24").unwrap();
            shoal::kubelet::register_node(&h.store, &spec, "sim", &range).await
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, 500);
    assert!(
        err.message.contains(
            "cannot register node \"gamma\": the pod CIDR range 10.124.0.0/24 is exhausted"
        ),
        "{}",
        err.message
    );
    // So does a Node created through the API.
    let gamma: Node = serde_json::from_value(json!({"metadata": {"name": "gamma"}})).unwrap();
    match nodes.create(&PostParams::default(), &gamma).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 500, "{e:?}");
            assert!(e.message.contains("is exhausted"), "{}", e.message);
        }
        other => panic!("expected the exhausted range, got {other:?}"),
    }
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        1
    );
    // Deleting the holder frees its /24; the API's Node takes it.
    nodes
        .delete(&holder, &DeleteParams::default())
        .await
        .unwrap();
    let r = nodes.create(&PostParams::default(), &gamma).await.unwrap();
    assert_eq!(r.spec.unwrap().pod_cidr.as_deref(), Some("10.124.0.0/24"));
}
