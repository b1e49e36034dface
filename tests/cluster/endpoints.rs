//! Endpoints and EndpointSlices follow the pods a Service selects: named
//! target ports resolved per pod, terminating pods leaving the Endpoints,
//! slices of at most 100 endpoints, everything gone with the Service; a
//! Service without a selector keeps the Endpoints its user wrote.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap()
}

/// The ready addresses and ports of Endpoints `name`.
async fn ready_of(eps: &Api<Endpoints>, name: &str) -> Result<(usize, Vec<i32>), String> {
    let e = eps.get(name).await.map_err(|e| e.to_string())?;
    let subsets = e.subsets.unwrap_or_default();
    let n = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let ports = subsets
        .iter()
        .flat_map(|s| s.ports.iter().flatten().map(|p| p.port))
        .collect();
    Ok((n, ports))
}

async fn slice_sizes(slices: &Api<EndpointSlice>) -> Vec<usize> {
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let mut sizes: Vec<usize> = slices
        .list(&lp)
        .await
        .map(|l| l.items.iter().map(|s| s.endpoints.len()).collect())
        .unwrap_or_default();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_the_pods_a_service_selects() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let svcs: Api<Service> = Api::default_namespaced(k.clone());
    let pods: Api<Pod> = Api::default_namespaced(k.clone());
    let eps: Api<Endpoints> = Api::default_namespaced(k.clone());
    let slices: Api<EndpointSlice> = Api::default_namespaced(k.clone());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    for i in 0..3 {
        pods.create(&PostParams::default(), &pod(&format!("web-{i}")))
            .await
            .unwrap();
    }
    let t = Duration::from_secs(30);
    wait_until(t, || async {
        match ready_of(&eps, "web").await? {
            (3, ports) if ports == [8080] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("three ready addresses on the named port");
    wait_until(t, || async {
        match slice_sizes(&slices).await.as_slice() {
            [3] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("one slice of three");
    let s = slices.get("web-0").await.unwrap();
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(s.ports.unwrap()[0].port, Some(8080));
    let e = &s.endpoints[0];
    let cond = e.conditions.clone().unwrap();
    assert_eq!(
        (cond.ready, cond.serving, cond.terminating),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(e.target_ref.as_ref().unwrap().kind.as_deref(), Some("Pod"));

    // A pod deleted leaves the Endpoints.
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(t, || async {
        match ready_of(&eps, "web").await? {
            (2, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("two addresses left");

    // 103 pods: slices of at most 100.
    for i in 3..104 {
        pods.create(&PostParams::default(), &pod(&format!("web-{i}")))
            .await
            .unwrap();
    }
    wait_until(Duration::from_secs(60), || async {
        match slice_sizes(&slices).await.as_slice() {
            [100, 3] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("two slices: 100 and 3");

    // A Service without a selector keeps its user's Endpoints.
    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &manual).await.unwrap();
    let mine: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}]
    }))
    .unwrap();
    eps.create(&PostParams::default(), &mine).await.unwrap();

    // The Service deleted: its Endpoints and slices go.
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    wait_until(t, || async {
        let gone = eps
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
            .is_none();
        let none = slice_sizes(&slices).await.is_empty();
        if gone && none {
            Ok(())
        } else {
            Err(format!("endpoints gone {gone}, slices gone {none}"))
        }
    })
    .await
    .expect("the Service's endpoints go with it");
    let kept = ready_of(&eps, "manual").await.unwrap();
    assert_eq!(kept, (1, vec![80]), "the user's Endpoints stay");
}

/// A Service asking for a nodePort or a clusterIP another Service holds
/// gets upstream's 422, naming the field; the holder keeps it. A
/// LoadBalancer's status names the Ready nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_addresses_are_422_and_load_balancers_name_the_nodes() {
    let c = TestCluster::start(1).unwrap();
    let k = api_ready(&c, 1).await;
    let svcs: Api<Service> = Api::default_namespaced(k.clone());
    let svc = |name: &str, spec: serde_json::Value| -> Service {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let first = svcs
        .create(
            &PostParams::default(),
            &svc(
                "a",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30555}]}),
            ),
        )
        .await
        .unwrap();
    let ip = first.spec.unwrap().cluster_ip.unwrap();
    let again = svc(
        "b",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30555}]}),
    );
    let Err(kube::Error::Api(e)) = svcs.create(&PostParams::default(), &again).await else {
        panic!("a taken nodePort was accepted")
    };
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
    assert!(
        e.message.contains("spec.ports[0].nodePort")
            && e.message.contains("provided port is already allocated"),
        "{}",
        e.message
    );
    let same_ip = svc("c", json!({"clusterIP": ip, "ports": [{"port": 80}]}));
    let Err(kube::Error::Api(e)) = svcs.create(&PostParams::default(), &same_ip).await else {
        panic!("a taken clusterIP was accepted")
    };
    assert_eq!(e.code, 422, "{e:?}");
    assert!(
        e.message.contains("provided IP is already allocated"),
        "{}",
        e.message
    );
    // Free ones still work, and the first keeps its port.
    svcs.create(
        &PostParams::default(),
        &svc(
            "d",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30556}]}),
        ),
    )
    .await
    .unwrap();
    let a = svcs.get("a").await.unwrap();
    assert_eq!(a.spec.unwrap().ports.unwrap()[0].node_port, Some(30555));

    // A LoadBalancer gets a node port and a status naming the Ready
    // nodes' addresses; as a ClusterIP again, the status is cleared.
    let lb = svcs
        .create(
            &PostParams::default(),
            &svc(
                "lb",
                json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap();
    assert!(lb.spec.unwrap().ports.unwrap()[0].node_port.is_some());
    let ingress = |s: &Service| -> Vec<String> {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip)
            .collect()
    };
    wait_until(Duration::from_secs(20), || async {
        let s = svcs.get("lb").await.map_err(|e| e.to_string())?;
        match ingress(&s).as_slice() {
            [ip] if ip == "127.0.0.1" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the LoadBalancer names the nodes' address");
    let patch = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": null}]}});
    svcs.patch(
        "lb",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(20), || async {
        let s = svcs.get("lb").await.map_err(|e| e.to_string())?;
        if ingress(&s).is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", ingress(&s)))
        }
    })
    .await
    .expect("a ClusterIP has no load balancer ingress");
}
