//! kubectl 1.33 against `shoal dev`: Jobs (`kubectl wait`), DaemonSets
//! (`kubectl rollout status|history|undo daemonset`), namespace deletion
//! and Events (`kubectl get events`, `kubectl describe`), on sim nodes;
//! then on a process node, an Indexed Job whose pods print the index they
//! see, and a crash loop whose BackOff shows in the pod's Events.

use std::time::Duration;

use super::kubectl::Dev;

const JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: three
spec:
  completions: 3
  parallelism: 2
  template:
    metadata:
      annotations: {sim.shoal.dev/exit-code: "0"}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#;

const DS: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers: [{name: c, image: agent:1}]
"#;

/// The images of the DaemonSet's pods.
fn images(k: &Dev) -> Vec<String> {
    let out = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o=jsonpath={.items[*].spec.containers[0].image}",
    ]);
    out.split_whitespace().map(String::from).collect()
}

#[test]
fn kubectl_waits_for_jobs_rolls_daemon_sets_back_and_deletes_namespaces() {
    let Some(k) = Dev::start_with(2, "sim") else {
        return;
    };
    // A Job of 3 completions, 2 at a time: `kubectl wait` returns.
    let job = k.file("job.yaml", JOB);
    k.ok(&["apply", "-f", &job]);
    let waited = k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=60s",
    ]);
    assert_eq!(waited.trim(), "job.batch/three condition met");
    let row = k.ok(&["get", "job", "three", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["three", "Complete", "3/3"], "{row}");

    // A DaemonSet: a pod on each node, then a new template, then undo.
    let ds = k.file("ds.yaml", DS);
    k.ok(&["apply", "-f", &ds]);
    let status = |k: &Dev| k.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(status(&k).contains("daemon set \"agent\" successfully rolled out"));
    assert_eq!(images(&k), ["agent:1", "agent:1"]);
    let v2 = k.file("ds2.yaml", &DS.replace("agent:1", "agent:2"));
    k.ok(&["apply", "-f", &v2]);
    assert!(status(&k).contains("successfully rolled out"));
    assert_eq!(images(&k), ["agent:2", "agent:2"]);
    let history = k.ok(&["rollout", "history", "daemonset/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert_eq!(
        k.ok(&["rollout", "undo", "daemonset/agent"]).trim(),
        "daemonset.apps/agent rolled back"
    );
    assert!(status(&k).contains("successfully rolled out"));
    assert_eq!(images(&k), ["agent:1", "agent:1"]);
    let revs = k.ok(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=agent",
        "--no-headers",
    ]);
    assert_eq!(
        revs.lines().count(),
        2,
        "the old revision is reused: {revs}"
    );

    // Events: a scale says ScalingReplicaSet, in `get events` and `describe`.
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=1",
    ]);
    k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    k.ok(&["scale", "deploy/web", "--replicas=3"]);
    super::wait_for(Duration::from_secs(30), "ScalingReplicaSet", || {
        let events = k.ok(&["get", "events"]);
        let described = k.ok(&["describe", "deploy", "web"]);
        let scaled = "Scaled up replica set web-";
        if events.contains("ScalingReplicaSet")
            && described.contains("ScalingReplicaSet")
            && described.contains("from 1 to 3")
            && events.contains(scaled)
        {
            Ok(())
        } else {
            Err(format!("{events}\n{described}"))
        }
    });

    // Deleting a namespace deletes what it holds, then itself.
    k.ok(&["create", "namespace", "doomed"]);
    k.ok(&[
        "-n",
        "doomed",
        "create",
        "deployment",
        "web",
        "--image=nginx",
    ]);
    k.ok(&[
        "-n",
        "doomed",
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=b",
    ]);
    k.ok(&[
        "-n",
        "doomed",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=60s",
    ]);
    assert_eq!(
        k.ok(&["delete", "namespace", "doomed", "--timeout=60s"])
            .trim(),
        "namespace \"doomed\" deleted"
    );
    let gone = k.fails(&["get", "namespace", "doomed"]);
    assert!(gone.contains("NotFound"), "{gone}");
}

const INDEXED: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX"]
"#;

const CRASH: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "exit 3"]
"#;

#[test]
fn kubectl_shows_indexed_pods_their_index_and_a_crash_loops_back_off() {
    let Some(k) = Dev::start_with(1, "process") else {
        return;
    };
    let idx = k.file("idx.yaml", INDEXED);
    k.ok(&["apply", "-f", &idx]);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=60s",
    ]);
    let names = k.ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=idx",
        "-o=jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-completion-index} {.metadata.name}{\"\\n\"}{end}",
    ]);
    let mut seen = Vec::new();
    for line in names.lines() {
        let (index, pod) = line.split_once(' ').unwrap();
        let log = k.ok(&["logs", pod]);
        assert_eq!(log.trim(), format!("index={index}"), "{pod}");
        seen.push(index.to_string());
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    // A crash loop: BackOff in `kubectl get events` and in `describe pod`.
    let crash = k.file("crash.yaml", CRASH);
    k.ok(&["apply", "-f", &crash]);
    super::wait_for(Duration::from_secs(60), "BackOff", || {
        let events = k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=crash",
        ]);
        let described = k.ok(&["describe", "pod", "crash"]);
        let back_off = "Back-off restarting failed container c in pod crash";
        if events.contains("BackOff")
            && described.contains("BackOff")
            && described.contains(back_off)
            && described.contains("Started")
        {
            Ok(())
        } else {
            Err(format!("{events}\n{described}"))
        }
    });
}

const CRON: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  timeZone: Europe/Paris
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {sim.shoal.dev/exit-code: "0"}
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
"#;

/// One real minute: a `*/1` CronJob runs a Job that completes; a Job made
/// by hand from it (`kubectl create job --from=cronjob/…`) runs too.
#[test]
fn kubectl_sees_a_cron_job_run_every_minute_and_a_job_made_from_it() {
    let Some(k) = Dev::start_with(1, "sim") else {
        return;
    };
    let cron = k.file("cron.yaml", CRON);
    k.ok(&["apply", "-f", &cron]);
    assert_eq!(
        k.ok(&["create", "job", "by-hand", "--from=cronjob/tick"])
            .trim(),
        "job.batch/by-hand created"
    );
    let annotation = k.ok(&[
        "get",
        "job",
        "by-hand",
        "-o=jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}",
    ]);
    assert_eq!(annotation, "manual");
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/by-hand",
        "--timeout=60s",
    ]);
    // The next whole minute's run, complete, within 75 s.
    super::wait_for(Duration::from_secs(75), "a scheduled run", || {
        let names = k.ok(&["get", "jobs", "-o=jsonpath={.items[*].metadata.name}"]);
        let scheduled: Vec<&str> = names
            .split_whitespace()
            .filter(|n| {
                n.strip_prefix("tick-")
                    .is_some_and(|m| m.parse::<u64>().is_ok())
            })
            .collect();
        let Some(run) = scheduled.first() else {
            return Err(names);
        };
        let done = k.run(&[
            "wait",
            "--for=condition=complete",
            &format!("job/{run}"),
            "--timeout=1s",
        ]);
        if done.status.success() {
            Ok(())
        } else {
            Err(format!("{run} not complete yet"))
        }
    });
    let row = k.ok(&["get", "cronjob", "tick", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..2], ["tick", "*/1"], "{row}");
    assert!(!row.contains("<none>"), "a last schedule: {row}");
}
