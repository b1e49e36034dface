//! Tests of the printers for network and cluster kinds (Services,
//! Endpoints, Nodes, Events, Ingresses, …), column definitions, and
//! malformed objects.

use super::*;

#[test]
fn services() {
    let cluster_ip = json!({"metadata": {"name": "web"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                 "selector": {"app": "web"}}});
    let r = row("Service", &cluster_ip);
    assert_eq!(
        (
            &r["Type"],
            &r["Cluster-IP"],
            &r["External-IP"],
            &r["Port(s)"],
            &r["Selector"]
        ),
        (
            &json!("ClusterIP"),
            &json!("10.96.0.10"),
            &json!("<none>"),
            &json!("80/TCP,53/UDP"),
            &json!("app=web")
        )
    );

    let node_port = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.1.1",
        "externalIPs": ["1.2.3.4"], "ports": [{"port": 80, "nodePort": 30080}]}});
    let r = row("Service", &node_port);
    assert_eq!(
        (&r["Cluster-IP"], &r["External-IP"], &r["Port(s)"]),
        (
            &json!("10.96.1.1"),
            &json!("1.2.3.4"),
            &json!("80:30080/TCP")
        )
    );

    let pending = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}});
    assert_eq!(cell("Service", &pending, "External-IP"), "<pending>");
    assert_eq!(cell("Service", &pending, "Cluster-IP"), "<none>");
    let assigned = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}}});
    assert_eq!(
        cell("Service", &assigned, "External-IP"),
        "5.6.7.8,lb.example.com,9.9.9.9"
    );

    let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let r = row("Service", &external);
    assert_eq!(
        (&r["External-IP"], &r["Port(s)"], &r["Selector"]),
        (&json!("db.example.com"), &json!("<none>"), &json!("<none>"))
    );
    let headless = json!({"spec": {"clusterIP": "None"}});
    assert_eq!(cell("Service", &headless, "Cluster-IP"), "None");
    assert_eq!(cell("Service", &headless, "Type"), "ClusterIP");
}

#[test]
fn endpoints_and_slices() {
    let ep = json!({"subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}
    ]});
    assert_eq!(
        cell("Endpoints", &ep, "Endpoints"),
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
    );
    let small = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
                                   {"addresses": [{"ip": "10.0.0.9"}]}]});
    assert_eq!(
        cell("Endpoints", &small, "Endpoints"),
        "[fd00::1]:8080,10.0.0.9"
    );
    assert_eq!(cell("Endpoints", &json!({}), "Endpoints"), "<none>");

    let slice = json!({"addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "metrics"}, {}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]});
    let r = row("EndpointSlice", &slice);
    assert_eq!(
        (&r["AddressType"], &r["Ports"], &r["Endpoints"]),
        (
            &json!("IPv4"),
            &json!("80,metrics,*"),
            &json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
        )
    );
    let empty = row("EndpointSlice", &json!({}));
    assert_eq!(
        (&empty["Ports"], &empty["Endpoints"]),
        (&json!("<unset>"), &json!("<unset>"))
    );
}

#[test]
fn nodes() {
    let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(49 * 3600),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
                       "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.5"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "shoal://0.1"}}});
    assert_eq!(
        cells("Node", &node, now()),
        vec![
            json!("n1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,edge,worker"),
            json!("2d1h"),
            json!("v1.33.0"),
            json!("192.168.1.5"),
            json!("<none>"),
            json!("Debian"),
            json!("6.1"),
            json!("shoal://0.1"),
        ]
    );
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(cell("Node", &not_ready, "Status"), "NotReady");
    let bare = row("Node", &json!({"metadata": {"name": "n2"}}));
    assert_eq!(
        (
            &bare["Status"],
            &bare["Roles"],
            &bare["Version"],
            &bare["OS-Image"]
        ),
        (
            &json!("Unknown"),
            &json!("<none>"),
            &json!(""),
            &json!("<unknown>")
        )
    );
}

#[test]
fn config_secrets_accounts_namespaces_leases() {
    let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                        "data": {"tls.crt": "", "tls.key": ""}});
    let r = row("Secret", &secret);
    assert_eq!(
        (&r["Type"], &r["Data"]),
        (&json!("kubernetes.io/tls"), &json!(2))
    );
    let opaque = json!({"data": {"a": ""}, "stringData": {"a": "x", "b": "y"}});
    assert_eq!(
        (
            cell("Secret", &opaque, "Type"),
            cell("Secret", &opaque, "Data")
        ),
        (json!("Opaque"), json!(2))
    );

    let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
    assert_eq!(cell("ConfigMap", &cm, "Data"), 3);
    let sa = json!({"secrets": [{"name": "t"}]});
    assert_eq!(cell("ServiceAccount", &sa, "Secrets"), 1);
    let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
    assert_eq!(cell("Namespace", &ns, "Status"), "Active");
    let lease = json!({"spec": {"holderIdentity": "node-a"}});
    assert_eq!(cell("Lease", &lease, "Holder"), "node-a");
    assert_eq!(cell("Lease", &json!({}), "Holder"), "");
}

#[test]
fn events() {
    let event = json!({"metadata": {"name": "web-1.17a"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-a"},
        "count": 5, "firstTimestamp": ago(3600), "lastTimestamp": ago(30)});
    assert_eq!(
        cells("Event", &event, now()),
        vec![
            json!("30s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-1"),
            json!("spec.containers{web}"),
            json!("kubelet, node-a"),
            json!("Back-off restarting failed container"),
            json!("60m"),
            json!(5),
            json!("web-1.17a"),
        ]
    );
    let new_style = json!({"eventTime": "2024-06-01T11:59:50.123456Z", "reportingController": "shoal-scheduler",
        "involvedObject": {"kind": "Node"}, "reason": "Scheduled"});
    let r = row("Event", &new_style);
    assert_eq!(
        (
            &r["Last Seen"],
            &r["First Seen"],
            &r["Count"],
            &r["Object"],
            &r["Source"]
        ),
        (
            &json!("9s"),
            &json!("9s"),
            &json!(1),
            &json!("node"),
            &json!("shoal-scheduler")
        )
    );
    let series =
        json!({"eventTime": ago(600), "series": {"count": 4, "lastObservedTime": ago(60)}});
    let r = row("Event", &series);
    assert_eq!((&r["Last Seen"], &r["Count"]), (&json!("60s"), &json!(4)));
    assert_eq!(cell("Event", &json!({}), "Last Seen"), "<unknown>");
}

#[test]
fn ingresses() {
    let ing = json!({"spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}],
            "tls": [{"hosts": ["a.example"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"ip": "1.2.3.4"}]}}});
    let r = row("Ingress", &ing);
    assert_eq!(
        (&r["Class"], &r["Hosts"], &r["Address"], &r["Ports"]),
        (
            &json!("nginx"),
            &json!("a.example,b.example,c.example + 2 more..."),
            &json!("1.2.3.4,5.6.7.8"),
            &json!("80, 443")
        )
    );
    let bare = row("Ingress", &json!({"spec": {"rules": [{}]}}));
    assert_eq!(
        (
            &bare["Class"],
            &bare["Hosts"],
            &bare["Address"],
            &bare["Ports"]
        ),
        (&json!("<none>"), &json!("*"), &json!(""), &json!("80"))
    );
}

#[test]
fn wide_columns_have_priority_one() {
    let wide_names = |kind: &str| -> Vec<String> {
        columns(kind)
            .iter()
            .filter(|c| c["priority"] == 1)
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        wide_names("Pod"),
        ["IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    assert_eq!(
        wide_names("Deployment"),
        ["Containers", "Images", "Selector"]
    );
    assert_eq!(wide_names("StatefulSet"), ["Containers", "Images"]);
    assert_eq!(wide_names("Service"), ["Selector"]);
    assert_eq!(
        wide_names("Node"),
        [
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    assert_eq!(
        wide_names("Event"),
        ["Subobject", "Source", "First Seen", "Count", "Name"]
    );
    assert!(wide_names("Secret").is_empty());
}

#[test]
fn column_definitions_are_well_formed() {
    for kind in KINDS {
        let cols = columns(kind);
        assert!(!cols.is_empty());
        for c in &cols {
            let obj = c.as_object().expect("object");
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 5, "{kind}: {keys:?}");
            assert!(["string", "integer", "boolean"].contains(&c["type"].as_str().unwrap_or("")));
            assert!(c["description"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(c["format"] == "name", c["name"] == "Name", "{kind} {c}");
        }
    }
    let pod: Vec<&str> = POD_COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(pod[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
}

#[test]
fn unknown_kind_prints_name_and_age() {
    let names: Vec<Value> = columns("Widget")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("Name"), json!("Age")]);
    let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(45)}});
    assert_eq!(cells("Widget", &obj, now()), [json!("w"), json!("45s")]);
    assert_eq!(cells("pod", &running_pod(), now())[1], "1/1");
}

/// Objects with wrong types in every place a printer looks.
fn malformed_objects() -> Vec<Value> {
    let mut objects = vec![
        Value::Null,
        json!(7),
        json!("pod"),
        json!([1, 2]),
        json!({}),
        json!({"metadata": 1, "spec": "x", "status": [1]}),
        json!({"metadata": {"name": 5, "creationTimestamp": "yesterday", "deletionTimestamp": 3, "labels": [1]}}),
    ];
    let wrong = [
        json!(null),
        json!(-1),
        json!("x"),
        json!([null, 1, "a", {}]),
        json!({"a": [1]}),
        json!(true),
    ];
    for w in &wrong {
        objects.push(json!({
            "metadata": {"name": w, "creationTimestamp": w, "labels": w},
            "spec": {"containers": w, "initContainers": w, "replicas": w, "selector": w, "ports": w,
                     "type": w, "clusterIPs": w, "externalIPs": w, "rules": w, "tls": w, "template": w,
                     "jobTemplate": w, "completions": w, "readinessGates": w, "suspend": w, "unschedulable": w},
            "status": {"conditions": w, "containerStatuses": [w, {"state": w, "lastState": {"terminated": w}}],
                       "initContainerStatuses": [w, {"state": {"terminated": w, "waiting": w}}],
                       "podIPs": w, "loadBalancer": {"ingress": w}, "addresses": w, "nodeInfo": w,
                       "active": w, "startTime": w, "series": w},
            "subsets": [w, {"addresses": w, "ports": w}], "endpoints": [w, {"addresses": w}], "ports": [w],
            "data": w, "stringData": w, "binaryData": w, "secrets": w, "type": w,
            "involvedObject": w, "source": w, "series": w, "count": w, "eventTime": w
        }));
        objects.push(json!({"spec": {"selector": {"matchLabels": w, "matchExpressions": [w, {"key": w, "operator": w, "values": w}]}}}));
    }
    objects
}

#[test]
fn malformed_objects_never_panic() {
    for kind in KINDS {
        for obj in malformed_objects() {
            let row = cells(kind, &obj, now());
            assert_eq!(row.len(), columns(kind).len(), "{kind} {obj}");
        }
    }
}

#[test]
fn cells_match_columns_for_every_kind() {
    let samples = [json!({}), running_pod(), json!({"metadata": {"name": "n"}})];
    for kind in KINDS {
        let cols = columns(kind);
        for obj in &samples {
            let row = cells(kind, obj, now());
            assert_eq!(row.len(), cols.len(), "{kind}");
            for (c, v) in cols.iter().zip(&row) {
                match c["type"].as_str() {
                    Some("integer") => assert!(v.is_i64() || v.is_u64(), "{kind} {c} {v}"),
                    _ => assert!(v.is_string() || v.is_number(), "{kind} {c} {v}"),
                }
                if c["format"] == "name" {
                    assert!(v.is_string());
                }
            }
        }
    }
}

#[test]
fn label_selector_formats() {
    let sel = json!({"matchLabels": {"b": "2"}, "matchExpressions": [
        {"key": "a", "operator": "NotIn", "values": ["y", "x"]},
        {"key": "c", "operator": "Exists"}]});
    assert_eq!(
        selector_string(Some(&sel)),
        Ok("a notin (x,y),b=2,c".to_string())
    );
    assert_eq!(selector_string(None), Ok(String::new()));
    let bad = json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
    assert_eq!(selector_string(Some(&bad)), Err(()));
    let wrapper = json!({"s": bad});
    assert_eq!(format_label_selector(&wrapper, "/s"), "<error>");
}
