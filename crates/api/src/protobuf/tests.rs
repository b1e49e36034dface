//! Tests of the protobuf decoder: messages encoded with k8s-pb against the exact JSON.

use super::*;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;
use std::collections::BTreeMap;

mod hostile_and_captured;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn smap(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn wrap(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = runtime::Unknown {
        type_meta: Some(runtime::TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn body<M: prost::Message>(api_version: &str, kind: &str, msg: &M) -> Vec<u8> {
    wrap(api_version, kind, msg.encode_to_vec())
}

fn named(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        ..Default::default()
    })
}

fn int_or_str_int(v: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: s(""),
    })
}

fn int_or_str_str(v: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    })
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity { string: s(v) }))
        .collect()
}

fn decode_err(body: &[u8]) -> String {
    match decode(body) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.0,
    }
}

#[test]
fn schema_table_parses_and_has_every_kind() {
    let schema = parse_schema(SCHEMA_TEXT).expect("schema");
    assert!(schema.messages.len() > 200, "{}", schema.messages.len());
    for (api_version, kind) in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "Pod"),
        ("v1", "Endpoints"),
        ("v1", "Event"),
        ("v1", "Node"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "StatefulSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("networking.k8s.io/v1", "Ingress"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("coordination.k8s.io/v1", "Lease"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
        ("autoscaling/v1", "Scale"),
        ("policy/v1", "Eviction"),
        ("policy/v1", "PodDisruptionBudget"),
    ] {
        let m = schema.kind(api_version, kind).expect(kind);
        assert!(schema.messages[m].name.ends_with(kind), "{kind}");
        // An object with only a name (or an empty DeleteOptions) decodes.
        let raw = if kind == "DeleteOptions" {
            Vec::new()
        } else {
            named("n").unwrap().encode_to_vec()
        };
        let mut raw_with_meta = Vec::new();
        if !raw.is_empty() {
            prost::encoding::encode_key(1, WireType::LengthDelimited, &mut raw_with_meta);
            prost::encoding::encode_varint(raw.len() as u64, &mut raw_with_meta);
            raw_with_meta.extend(raw);
        }
        let got = decode(&wrap(api_version, kind, raw_with_meta)).unwrap();
        let mut want = json!({"apiVersion": api_version, "kind": kind});
        if kind != "DeleteOptions" {
            want["metadata"] = json!({"name": "n"});
        }
        assert_eq!(got, want);
    }
    assert!(schema.kind("apps/v1", "ConfigMap").is_none());
    assert!(schema.kind("v1", "Role").is_none());
}

#[test]
fn configmap_with_data() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("cfg"),
            namespace: s("default"),
            ..Default::default()
        }),
        data: smap(&[("a", "1"), ("empty", ""), ("multi", "x\ny\n")]),
        ..Default::default()
    };
    let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a": "1", "empty": "", "multi": "x\ny\n"}
        })
    );
}

#[test]
fn secret_with_binary_data_and_type() {
    let secret = core::Secret {
        metadata: named("creds"),
        data: [
            ("bin".to_string(), vec![0u8, 159, 146, 150, 255]),
            ("pw".to_string(), b"hunter2".to_vec()),
            ("none".to_string(), Vec::new()),
        ]
        .into_iter()
        .collect(),
        r#type: s("Opaque"),
        immutable: Some(false),
        ..Default::default()
    };
    let got = decode(&body("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"bin": "AJ+Slv8=", "pw": "aHVudGVyMg==", "none": ""},
            "type": "Opaque",
            "immutable": false
        })
    );
}

#[test]
fn deployment_with_container_ports_env_resources_and_probe() {
    let labels = smap(&[("app", "web")]);
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        args: vec!["--port=8080".to_string()],
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            core::EnvVar {
                name: s("MODE"),
                value: s("prod"),
                ..Default::default()
            },
            core::EnvVar {
                name: s("POD_NAME"),
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("metadata.name"),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
            requests: quantities(&[("cpu", "250m")]),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_or_str_int(8080),
                    scheme: s("HTTP"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..Default::default()
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: int_or_str_str("http"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            labels: labels.clone(),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: vec!["fe".to_string(), "be".to_string()],
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels.clone(),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_str_int(0),
                    max_surge: int_or_str_str("25%"),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&body("apps/v1", "Deployment", &deployment)).unwrap();
    let want = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "args": ["--port=8080"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}
                        ],
                        "resources": {
                            "limits": {"cpu": "500m", "memory": "128Mi"},
                            "requests": {"cpu": "250m"}
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10
                        },
                        "livenessProbe": {"tcpSocket": {"port": "http"}}
                    }]
                }
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}
            }
        }
    });
    assert_eq!(got, want);
}

#[test]
fn service_cluster_ip_and_target_ports() {
    let svc = core::Service {
        metadata: named("web"),
        spec: Some(core::ServiceSpec {
            r#type: s("ClusterIP"),
            cluster_ip: s("10.96.0.10"),
            cluster_ips: vec!["10.96.0.10".to_string()],
            external_ips: vec!["192.0.2.1".to_string()],
            selector: smap(&[("app", "web")]),
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: int_or_str_int(8080),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("metrics"),
                    port: Some(9090),
                    target_port: int_or_str_str("metrics"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&body("v1", "Service", &svc)).unwrap();
    assert_eq!(got["spec"]["clusterIP"], json!("10.96.0.10"));
    assert_eq!(got["spec"]["ports"][0]["targetPort"], json!(8080));
    assert_eq!(got["spec"]["ports"][1]["targetPort"], json!("metrics"));
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "externalIPs": ["192.0.2.1"],
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "port": 9090, "targetPort": "metrics"}
                ]
            }
        })
    );
}

#[test]
fn pod_with_times_inline_volume_sources_and_int64_lists() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(123),
            }),
            // Go's zero time: an empty message.
            deletion_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: s("cfg"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("my-config"),
                        }),
                        items: vec![core::KeyToPath {
                            key: s("a"),
                            path: s("a.txt"),
                            mode: None,
                        }],
                        default_mode: Some(0o644),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: s("c"),
                image: s("busybox"),
                ..Default::default()
            }],
            security_context: Some(core::PodSecurityContext {
                run_as_user: Some(1000),
                supplemental_groups: vec![5, 6, -1],
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            start_time: Some(meta::Time {
                seconds: Some(1_700_003_600),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
    };
    let got = decode(&body("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "deletionTimestamp": null
            },
            "spec": {
                "volumes": [{
                    "name": "cfg",
                    "configMap": {
                        "name": "my-config",
                        "items": [{"key": "a", "path": "a.txt"}],
                        "defaultMode": 420
                    }
                }],
                "containers": [{"name": "c", "image": "busybox"}],
                "securityContext": {"runAsUser": 1000, "supplementalGroups": [5, 6, -1]}
            },
            "status": {"phase": "Running", "startTime": "2023-11-14T23:13:20Z"}
        })
    );
}

#[test]
fn packed_repeated_scalars_are_accepted() {
    // supplementalGroups (PodSecurityContext field 4) as a packed list: [7, 300].
    let ctx = [0x22, 0x03, 0x07, 0xac, 0x02];
    let mut spec = vec![0x72, ctx.len() as u8]; // PodSpec.securityContext = 14
    spec.extend(ctx);
    let mut pod = vec![0x12, spec.len() as u8]; // Pod.spec = 2
    pod.extend(spec);
    let got = decode(&wrap("v1", "Pod", pod)).unwrap();
    assert_eq!(
        got["spec"]["securityContext"],
        json!({"supplementalGroups": [7, 300]})
    );
}

#[test]
fn event_and_lease_micro_times() {
    let event = core::Event {
        metadata: named("e"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("p"),
            ..Default::default()
        }),
        reason: s("Started"),
        count: Some(2),
        first_timestamp: Some(meta::Time {
            seconds: Some(1_700_000_000),
            nanos: None,
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        series: Some(core::EventSeries {
            count: Some(3),
            last_observed_time: Some(meta::MicroTime {
                seconds: Some(0),
                nanos: Some(0),
            }),
        }),
        ..Default::default()
    };
    let got = decode(&body("v1", "Event", &event)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Started",
            "count": 2,
            "firstTimestamp": "2023-11-14T22:13:20Z",
            "eventTime": "2023-11-14T22:13:20.123456Z",
            "series": {"count": 3, "lastObservedTime": "1970-01-01T00:00:00.000000Z"}
        })
    );

    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: named("l"),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_700_000_000),
                nanos: Some(5_000),
            }),
            ..Default::default()
        }),
    };
    let got = decode(&body("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 40,
            "renewTime": "2023-11-14T22:13:20.000005Z"
        })
    );
}

#[test]
fn job_with_zero_values_present_and_absent_fields_absent() {
    let job = batch::Job {
        metadata: named("pi"),
        spec: Some(batch::JobSpec {
            parallelism: Some(2),
            completions: Some(4),
            backoff_limit: Some(6),
            ttl_seconds_after_finished: Some(0),
            suspend: Some(false),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    restart_policy: s("Never"),
                    containers: vec![core::Container {
                        name: s("pi"),
                        image: s("perl:5.34"),
                        command: vec!["perl".into(), "-Mbignum=bpi".into(), "-e".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&body("batch/v1", "Job", &job)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi"},
            "spec": {
                "parallelism": 2,
                "completions": 4,
                "backoffLimit": 6,
                "ttlSecondsAfterFinished": 0,
                "suspend": false,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "pi",
                            "image": "perl:5.34",
                            "command": ["perl", "-Mbignum=bpi", "-e"]
                        }]
                    }
                }
            }
        })
    );
}

#[test]
fn metadata_labels_annotations_owner_references_managed_fields() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("team-a"),
            generation: Some(0),
            labels: smap(&[("team", "a"), ("env", "prod")]),
            annotations: smap(&[("note", "hello: world")]),
            finalizers: vec!["kubernetes".to_string()],
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("rs-1"),
                uid: s("0b5c-11"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl-create"),
                operation: s("Update"),
                api_version: s("v1"),
                time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:metadata":{"f:labels":{".":{}}}}"#.to_vec()),
                }),
                subresource: None,
            }],
            ..Default::default()
        }),
        spec: None,
        status: None,
    };
    let got = decode(&body("v1", "Namespace", &ns)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team-a",
                "generation": 0,
                "labels": {"team": "a", "env": "prod"},
                "annotations": {"note": "hello: world"},
                "finalizers": ["kubernetes"],
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "rs-1",
                    "uid": "0b5c-11",
                    "controller": true,
                    "blockOwnerDeletion": false
                }],
                "managedFields": [{
                    "manager": "kubectl-create",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2023-11-14T22:13:20Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}
                }]
            }
        })
    );
}

#[test]
fn delete_options_under_any_group_version_and_scale() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".to_string()],
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        ..Default::default()
    };
    for api_version in ["v1", "meta.k8s.io/v1", "apps/v1"] {
        let got = decode(&body(api_version, "DeleteOptions", &opts)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": api_version,
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "propagationPolicy": "Foreground",
                "dryRun": ["All"],
                "preconditions": {"uid": "u-1"}
            })
        );
    }
    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: named("web"),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(5) }),
        status: None,
    };
    let got = decode(&body("autoscaling/v1", "Scale", &scale)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 5}})
    );
    // kubectl drain's eviction, as client-go encodes it.
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: named("web-0"),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(5),
            ..Default::default()
        }),
    };
    let got = decode(&body("policy/v1", "Eviction", &eviction)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0"},
               "deleteOptions": {"gracePeriodSeconds": 5}})
    );
}

#[test]
fn unknown_fields_are_skipped_and_repeated_messages_merge() {
    let mut raw = core::ConfigMap {
        metadata: named("cfg"),
        data: smap(&[("a", "1")]),
        ..Default::default()
    }
    .encode_to_vec();
    // Unknown fields of every wire type: 99 varint, 100 fixed64, 101 bytes, 102 fixed32.
    raw.extend([0x98, 0x06, 0x2a]);
    raw.extend([0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
    raw.extend([0xaa, 0x06, 0x02, b'h', b'i']);
    raw.extend([0xb5, 0x06, 1, 2, 3, 4]);
    // A second metadata occurrence is merged into the first (protobuf semantics).
    raw.extend(
        core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                namespace: s("ns"),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let got = decode(&wrap("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"}, "data": {"a": "1"}})
    );
}
