//! Tests of the printers: durations, pods, workloads.

use super::*;

mod network_and_cluster;

/// The fixed "now" of the tests.
fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().expect("valid test time")
}

/// `now` minus `seconds`, as an RFC 3339 string.
fn ago(seconds: i64) -> String {
    let t = Timestamp::from_second(now().as_second() - seconds).expect("valid test time");
    t.to_string()
}

/// The cells of `kind` for `obj` keyed by column name.
fn row(kind: &str, obj: &Value) -> std::collections::BTreeMap<String, Value> {
    let names: Vec<String> = columns(kind)
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    let values = cells(kind, obj, now());
    assert_eq!(names.len(), values.len(), "{kind}");
    names.into_iter().zip(values).collect()
}

fn cell(kind: &str, obj: &Value, column: &str) -> Value {
    row(kind, obj)
        .remove(column)
        .unwrap_or_else(|| panic!("{kind} has no column {column}"))
}

const KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "ControllerRevision",
    "StatefulSet",
    "Job",
    "CronJob",
    "Service",
    "Endpoints",
    "EndpointSlice",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Namespace",
    "Node",
    "Event",
    "Ingress",
    "Lease",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "StorageClass",
    "Widget",
];

#[test]
fn human_duration_matches_upstream_examples() {
    let (s, m, h, d) = (1u64, 60u64, 3600u64, 86400u64);
    let cases = [
        (s, "1s"),
        (70 * s, "70s"),
        (190 * s, "3m10s"),
        (70 * m, "70m"),
        (47 * h, "47h"),
        (49 * h, "2d1h"),
        ((8 * 24 + 2) * h, "8d"),
        (367 * d, "367d"),
        ((365 * 2 * 24 + 25) * h, "2y1d"),
        ((365 * 8 * 24 + 2) * h, "8y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
    }
}

#[test]
fn human_duration_matches_upstream_boundaries() {
    let ms = Duration::from_millis(1);
    let secs = Duration::from_secs;
    let (m, h, d, y) = (60, 3600, 86400, 365 * 86400);
    let cases = [
        (secs(0), "0s"),
        (secs(1) - ms, "0s"),
        (secs(59), "59s"),
        (secs(90), "90s"),
        (secs(2 * m) - ms, "119s"),
        (secs(2 * m), "2m"),
        (secs(2 * m + 1), "2m1s"),
        (secs(10 * m) - ms, "9m59s"),
        (secs(10 * m), "10m"),
        (secs(10 * m + 1), "10m"),
        (secs(3 * h) - ms, "179m"),
        (secs(3 * h), "3h"),
        (secs(3 * h + m), "3h1m"),
        (secs(8 * h) - ms, "7h59m"),
        (secs(8 * h), "8h"),
        (secs(8 * h + 59 * m), "8h"),
        (secs(2 * d) - ms, "47h"),
        (secs(2 * d), "2d"),
        (secs(2 * d + h), "2d1h"),
        (secs(8 * d) - ms, "7d23h"),
        (secs(8 * d), "8d"),
        (secs(8 * d + 23 * h), "8d"),
        (secs(2 * y) - ms, "729d"),
        (secs(2 * y), "2y"),
        (secs(2 * y + 23 * h + 59 * m), "2y"),
        (secs(2 * y + d) - ms, "2y"),
        (secs(2 * y + d), "2y1d"),
        (secs(4 * y), "4y"),
        (secs(8 * y) - ms, "7y364d"),
        (secs(8 * y), "8y"),
        (secs(8 * y + 364 * d), "8y"),
        (secs(9 * y), "9y"),
    ];
    for (duration, want) in cases {
        assert_eq!(human_duration(duration), want, "{duration:?}");
    }
}

#[test]
fn ages_tolerate_small_clock_skew_only() {
    let nanos = |secs: i128| secs * NANOS_PER_SECOND;
    assert_eq!(human_nanos(nanos(-2)), "<invalid>");
    assert_eq!(human_nanos(nanos(-2) + 1), "0s");
    let future = json!({"metadata": {"name": "x", "creationTimestamp": ago(-1)}});
    assert_eq!(cell("ConfigMap", &future, "Age"), "0s");
    let far_future = json!({"metadata": {"name": "x", "creationTimestamp": ago(-60)}});
    assert_eq!(cell("ConfigMap", &far_future, "Age"), "<invalid>");
    let unknown = json!({"metadata": {"name": "x"}});
    assert_eq!(cell("ConfigMap", &unknown, "Age"), "<unknown>");
}

fn running_pod() -> Value {
    json!({
        "metadata": {"name": "web-1", "creationTimestamp": ago(3 * 3600)},
        "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.1.0.7",
            "podIPs": [{"ip": "10.1.0.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "web", "ready": true, "restartCount": 2,
                "state": {"running": {"startedAt": ago(300)}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}
            }]
        }
    })
}

#[test]
fn running_pod_with_restarts() {
    let r = row("Pod", &running_pod());
    assert_eq!(r["Name"], "web-1");
    assert_eq!(r["Ready"], "1/1");
    assert_eq!(r["Status"], "Running");
    assert_eq!(r["Restarts"], "2 (5m ago)");
    assert_eq!(r["Age"], "3h");
    assert_eq!(r["IP"], "10.1.0.7");
    assert_eq!(r["Node"], "node-a");
    assert_eq!(r["Nominated Node"], "<none>");
    assert_eq!(r["Readiness Gates"], "<none>");
}

#[test]
fn pending_pods() {
    let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
                      "status": {"phase": "Pending"}});
    let r = row("Pod", &bare);
    assert_eq!(
        (
            &r["Ready"],
            &r["Status"],
            &r["Restarts"],
            &r["IP"],
            &r["Node"]
        ),
        (
            &json!("0/1"),
            &json!("Pending"),
            &json!("0"),
            &json!("<none>"),
            &json!("<none>")
        )
    );
    let creating = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "b", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}
    });
    assert_eq!(cell("Pod", &creating, "Status"), "ContainerCreating");
    assert_eq!(cell("Pod", &creating, "Ready"), "0/2");
    let gated = json!({"status": {"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
    assert_eq!(cell("Pod", &gated, "Status"), "SchedulingGated");
}

#[test]
fn terminating_pods() {
    let mut pod = running_pod();
    pod["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(cell("Pod", &pod, "Status"), "Terminating");
    pod["status"]["reason"] = json!("NodeLost");
    assert_eq!(cell("Pod", &pod, "Status"), "Unknown");
    let done = json!({"metadata": {"deletionTimestamp": ago(5)},
                      "status": {"phase": "Succeeded"}});
    assert_eq!(cell("Pod", &done, "Status"), "Succeeded");
}

#[test]
fn crash_looping_and_terminated_containers() {
    let mut pod = running_pod();
    pod["status"]["containerStatuses"][0]["ready"] = json!(false);
    pod["status"]["containerStatuses"][0]["restartCount"] = json!(7);
    pod["status"]["containerStatuses"][0]["state"] =
        json!({"waiting": {"reason": "CrashLoopBackOff"}});
    let r = row("Pod", &pod);
    assert_eq!(r["Status"], "CrashLoopBackOff");
    assert_eq!(r["Ready"], "0/1");
    assert_eq!(r["Restarts"], "7 (5m ago)");

    let state = |s: Value| {
        json!({"spec": {"containers": [{"name": "a"}]},
               "status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": s}]}})
    };
    let cases = [
        (
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            "Completed",
        ),
        (
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            "Error",
        ),
        (json!({"terminated": {"exitCode": 3}}), "ExitCode:3"),
        (
            json!({"terminated": {"exitCode": 137, "signal": 9}}),
            "Signal:9",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(cell("Pod", &state(s), "Status"), want);
    }
}

#[test]
fn completed_container_next_to_running_one() {
    let pod = |ready_condition: &str| {
        json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": ready_condition}],
                "containerStatuses": [
                    {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "b", "ready": true, "state": {"running": {}}}
                ]}
        })
    };
    assert_eq!(cell("Pod", &pod("True"), "Status"), "Running");
    assert_eq!(cell("Pod", &pod("False"), "Status"), "NotReady");
    assert_eq!(cell("Pod", &pod("False"), "Ready"), "1/2");
}

#[test]
fn init_containers() {
    let pod = |statuses: Value| {
        json!({
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}],
                     "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": statuses,
                       "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}
        })
    };
    let running = pod(
        json!([{"name": "i1", "state": {"running": {}}}, {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}]),
    );
    assert_eq!(cell("Pod", &running, "Status"), "Init:0/2");
    let second = pod(
        json!([{"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"running": {}}}]),
    );
    assert_eq!(cell("Pod", &second, "Status"), "Init:1/2");
    let crash = pod(
        json!([{"name": "i1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
    );
    assert_eq!(cell("Pod", &crash, "Status"), "Init:CrashLoopBackOff");
    assert_eq!(cell("Pod", &crash, "Restarts"), "4");
    let failed = pod(json!([{"name": "i1", "state": {"terminated": {"exitCode": 2}}}]));
    assert_eq!(cell("Pod", &failed, "Status"), "Init:ExitCode:2");
    let done = pod(
        json!([{"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"terminated": {"exitCode": 0}}}]),
    );
    assert_eq!(cell("Pod", &done, "Status"), "PodInitializing");
}

#[test]
fn sidecar_init_containers_count_as_containers() {
    let pod = json!({
        "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                 "containers": [{"name": "app"}]},
        "status": {"phase": "Running",
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                "state": {"running": {}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
    });
    let r = row("Pod", &pod);
    assert_eq!(r["Ready"], "2/2");
    assert_eq!(r["Status"], "Running");
    assert_eq!(r["Restarts"], "1");
}

#[test]
fn pod_wide_columns() {
    let mut pod = running_pod();
    pod["status"]["nominatedNodeName"] = json!("node-b");
    pod["spec"]["readinessGates"] =
        json!([{"conditionType": "lb/ready"}, {"conditionType": "x/y"}]);
    pod["status"]["conditions"] = json!([{"type": "lb/ready", "status": "True"}]);
    let r = row("Pod", &pod);
    assert_eq!(r["Nominated Node"], "node-b");
    assert_eq!(r["Readiness Gates"], "1/2");
    pod["status"]["podIPs"] = json!([]);
    assert_eq!(cell("Pod", &pod, "IP"), "10.1.0.7");
}

#[test]
fn deployment_ready_and_wide() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(600)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                 "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                 "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    assert_eq!(
        cells("Deployment", &d, now()),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("10m"),
            json!("web,log"),
            json!("nginx:1,busybox"),
            json!("app=web,env in (dev,prod),tier=fe"),
        ]
    );
    let empty = json!({"metadata": {"name": "x"}});
    assert_eq!(cell("Deployment", &empty, "Ready"), "0/1");
    assert_eq!(cell("Deployment", &empty, "Selector"), "");
    let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
    assert_eq!(cell("Deployment", &bad, "Selector"), "<invalid>");
}

#[test]
fn replica_daemon_and_stateful_sets() {
    let rs = json!({"metadata": {"name": "web-abc"},
        "spec": {"replicas": 3, "selector": {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}, {"key": "app", "operator": "Exists"}]}},
        "status": {"replicas": 3, "readyReplicas": 1}});
    let r = row("ReplicaSet", &rs);
    assert_eq!(
        (&r["Desired"], &r["Current"], &r["Ready"]),
        (&json!(3), &json!(3), &json!(1))
    );
    assert_eq!(r["Selector"], "app,!canary");
    assert_eq!(cell("ReplicaSet", &json!({}), "Selector"), "<none>");

    let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1}});
    let r = row("DaemonSet", &ds);
    assert_eq!(r["Desired"], 2);
    assert_eq!(r["Available"], 1);
    assert_eq!(r["Node Selector"], "kubernetes.io/os=linux");
    assert_eq!(cell("DaemonSet", &json!({}), "Node Selector"), "<none>");

    let sts = json!({"spec": {"replicas": 2}, "status": {"readyReplicas": 2}});
    assert_eq!(cell("StatefulSet", &sts, "Ready"), "2/2");
}

#[test]
fn jobs_and_cron_jobs() {
    let job = json!({"metadata": {"name": "pi"},
        "spec": {"completions": 1},
        "status": {"succeeded": 1, "startTime": ago(200), "completionTime": ago(100),
                   "conditions": [{"type": "Complete", "status": "True"}]}});
    let r = row("Job", &job);
    assert_eq!(
        (&r["Status"], &r["Completions"], &r["Duration"]),
        (&json!("Complete"), &json!("1/1"), &json!("100s"))
    );
    let queue = json!({"spec": {"parallelism": 3}, "status": {"startTime": ago(30)}});
    let r = row("Job", &queue);
    assert_eq!(
        (&r["Status"], &r["Completions"], &r["Duration"]),
        (&json!("Running"), &json!("0/1 of 3"), &json!("30s"))
    );
    let suspended = json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(cell("Job", &suspended, "Status"), "Suspended");
    assert_eq!(cell("Job", &suspended, "Duration"), "");

    let cj = json!({"metadata": {"name": "tick"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": ago(120)}});
    let r = row("CronJob", &cj);
    assert_eq!(
        (
            &r["Schedule"],
            &r["Timezone"],
            &r["Suspend"],
            &r["Active"],
            &r["Last Schedule"]
        ),
        (
            &json!("*/5 * * * *"),
            &json!("<none>"),
            &json!("False"),
            &json!(1),
            &json!("2m")
        )
    );
    assert_eq!(r["Images"], "busybox");
    assert_eq!(r["Selector"], "<none>");
    assert_eq!(cell("CronJob", &json!({}), "Last Schedule"), "<none>");
}

#[test]
fn controller_revisions_name_their_daemon_set() {
    let rev = json!({"metadata": {"name": "agent-5f6c", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true}]},
        "revision": 3});
    assert_eq!(
        cell("ControllerRevision", &rev, "Controller"),
        "daemonset.apps/agent"
    );
    assert_eq!(cell("ControllerRevision", &rev, "Revision"), 3);
}
