//! Kubernetes' defaults for the fields kubectl and `describe` show: pod
//! spec and container defaults (restart and DNS policy, scheduler, grace
//! period, pull policy, termination message, port protocol, probe timings),
//! workload defaults (replicas, strategy, history limits), Service
//! defaults (type, protocol, targetPort, session affinity, IP families),
//! and the one-time settings of a create (a Job's selector, a Namespace's
//! name label, a Pod's `Pending` phase).
//!
//! `apply` is idempotent: it runs on every create and update, as
//! upstream's defaulting does on every decode. Cluster IPs and node ports
//! are allocated in `rest`, which can reach the store.

use serde_json::{json, Value};

use crate::quantity::{self, Quantity};

/// Sets `obj[path]` to `value` if absent or null, creating parents.
fn default_at(obj: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        if !cur.get(*p).is_some_and(Value::is_object) {
            cur[*p] = json!({});
        }
        cur = &mut cur[*p];
    }
    if cur.get(*last).is_none_or(Value::is_null) {
        cur[*last] = value;
    }
}

/// Applies `f` to each element of the array at `path`, if there is one.
fn each(obj: &mut Value, path: &[&str], mut f: impl FnMut(&mut Value)) {
    let mut cur = obj;
    for p in path {
        match cur.get_mut(*p) {
            Some(v) => cur = v,
            None => return,
        }
    }
    if let Some(a) = cur.as_array_mut() {
        a.iter_mut().for_each(&mut f);
    }
}

/// The pull policy upstream gives an image without one: Always for
/// `:latest` or no tag, IfNotPresent otherwise (digests count as tags).
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    default_at(p, &["timeoutSeconds"], json!(1));
    default_at(p, &["periodSeconds"], json!(10));
    default_at(p, &["successThreshold"], json!(1));
    default_at(p, &["failureThreshold"], json!(3));
    if p.get("httpGet").is_some_and(Value::is_object) {
        default_at(p, &["httpGet", "scheme"], json!("HTTP"));
        default_at(p, &["httpGet", "path"], json!("/"));
    }
}

fn container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default_at(c, &["imagePullPolicy"], json!(pull_policy(&image)));
    default_at(
        c,
        &["terminationMessagePath"],
        json!("/dev/termination-log"),
    );
    default_at(c, &["terminationMessagePolicy"], json!("File"));
    default_at(c, &["resources"], json!({}));
    resources(&mut c["resources"]);
    each(c, &["ports"], |p| {
        if p.is_object() {
            default_at(p, &["protocol"], json!("TCP"));
        }
    });
    for name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(name) {
            probe(p);
        }
    }
}

/// A container's `resources`: every quantity in upstream's canonical form
/// ("0.5" is stored as "500m", `2` as "2", "1024Mi" as "1Gi"), as the
/// apiserver stores what it decoded; and, as upstream, each limit without a
/// request is also the request. A malformed quantity is left for
/// validation to refuse.
fn resources(r: &mut Value) {
    for list in ["limits", "requests"] {
        if let Some(map) = r.get_mut(list).and_then(Value::as_object_mut) {
            for v in map.values_mut() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                if let Some(c) = quantity::canonical(&text) {
                    *v = Value::String(c);
                }
            }
        }
    }
    let Some(limits) = r.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    if !r.get("requests").is_some_and(Value::is_object) {
        r["requests"] = json!({});
    }
    if let Some(requests) = r["requests"].as_object_mut() {
        for (name, limit) in limits {
            requests.entry(name).or_insert(limit);
        }
    }
}

/// Defaults of a pod spec (a Pod's, or a template's).
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_at(spec, &["restartPolicy"], json!("Always"));
    default_at(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_at(spec, &["schedulerName"], json!("default-scheduler"));
    default_at(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_at(spec, &["securityContext"], json!({}));
    each(spec, &["containers"], container);
    each(spec, &["initContainers"], container);
    each(spec, &["volumes"], |v| {
        for src in ["configMap", "secret"] {
            if v.get(src).is_some_and(Value::is_object) {
                default_at(v, &[src, "defaultMode"], json!(420));
            }
        }
    });
}

fn template(obj: &mut Value, at: &[&str]) {
    let mut cur = &mut *obj;
    for p in at {
        match cur.get_mut(*p) {
            Some(v) => cur = v,
            None => return,
        }
    }
    if let Some(spec) = cur.get_mut("spec") {
        pod_spec(spec);
    }
}

/// A Secret's `stringData` merged into `data` (base64, overriding the same
/// key there) and dropped, as upstream does on every write: `stringData`
/// is write-only and never stored or served.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(plain)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in plain {
        if let Some(text) = v.as_str() {
            obj["data"][k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

/// The defaults of `kind`, applied in place.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                default_at(spec, &["serviceAccountName"], json!("default"));
                default_at(spec, &["enableServiceLinks"], json!(true));
                default_at(spec, &["priority"], json!(0));
                default_at(spec, &["preemptionPolicy"], json!("PreemptLowerPriority"));
            }
        }
        "Deployment" => {
            default_at(obj, &["spec", "replicas"], json!(1));
            let rolling = obj
                .pointer("/spec/strategy/type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "RollingUpdate");
            if rolling {
                default_at(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
                default_at(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                    json!("25%"),
                );
                default_at(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxSurge"],
                    json!("25%"),
                );
            }
            default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
            default_at(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            template(obj, &["spec", "template"]);
        }
        "PersistentVolume" => {
            default_at(
                obj,
                &["spec", "persistentVolumeReclaimPolicy"],
                json!("Retain"),
            );
            default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
        }
        "PersistentVolumeClaim" => {
            default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
        }
        "StorageClass" => {
            default_at(obj, &["reclaimPolicy"], json!("Delete"));
            default_at(obj, &["volumeBindingMode"], json!("Immediate"));
        }
        "ReplicaSet" => {
            default_at(obj, &["spec", "replicas"], json!(1));
            template(obj, &["spec", "template"]);
        }
        "StatefulSet" => {
            default_at(obj, &["spec", "replicas"], json!(1));
            default_at(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            default_at(
                obj,
                &["spec", "updateStrategy", "type"],
                json!("RollingUpdate"),
            );
            if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
                default_at(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "partition"],
                    json!(0),
                );
            }
            default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
            for when in ["whenDeleted", "whenScaled"] {
                default_at(
                    obj,
                    &["spec", "persistentVolumeClaimRetentionPolicy", when],
                    json!("Retain"),
                );
            }
            template(obj, &["spec", "template"]);
        }
        "DaemonSet" => {
            default_at(
                obj,
                &["spec", "updateStrategy", "type"],
                json!("RollingUpdate"),
            );
            if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
                default_at(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
                    json!(1),
                );
                default_at(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "maxSurge"],
                    json!(0),
                );
            }
            default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
            template(obj, &["spec", "template"]);
        }
        "Job" => job_spec(obj, &["spec"]),
        "CronJob" => {
            default_at(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
            default_at(obj, &["spec", "suspend"], json!(false));
            default_at(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
            default_at(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
            job_spec(obj, &["spec", "jobTemplate", "spec"]);
        }
        "Service" => service(obj),
        "Secret" => {
            default_at(obj, &["type"], json!("Opaque"));
            fold_string_data(obj);
        }
        "Namespace" => {
            default_at(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            default_at(obj, &["status", "phase"], json!("Active"));
        }
        _ => {}
    }
}

/// A Job's spec defaults, at `at` (a Job's `spec`, or a CronJob's
/// `spec.jobTemplate.spec`).
fn job_spec(obj: &mut Value, at: &[&str]) {
    let path = |f: &[&'static str]| -> Vec<&str> { at.iter().chain(f).copied().collect() };
    // No completions and no parallelism: one pod, once. Parallelism alone
    // makes a work queue (completions stay unset), as upstream.
    let pointer = |f: &str| format!("/{}/{f}", at.join("/"));
    let unset = |v: Option<&Value>| v.is_none_or(Value::is_null);
    if unset(obj.pointer(&pointer("completions"))) && unset(obj.pointer(&pointer("parallelism"))) {
        default_at(obj, &path(&["completions"]), json!(1));
    }
    default_at(obj, &path(&["parallelism"]), json!(1));
    default_at(obj, &path(&["backoffLimit"]), json!(6));
    default_at(obj, &path(&["completionMode"]), json!("NonIndexed"));
    default_at(obj, &path(&["suspend"]), json!(false));
    default_at(obj, &path(&["manualSelector"]), json!(false));
    template(obj, &path(&["template"]));
}

fn service(obj: &mut Value) {
    default_at(obj, &["spec", "type"], json!("ClusterIP"));
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return;
    }
    default_at(obj, &["spec", "sessionAffinity"], json!("None"));
    default_at(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
    default_at(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
    default_at(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_at(obj, &["spec", "externalTrafficPolicy"], json!("Cluster"));
    }
    each(obj, &["spec", "ports"], |p| {
        if !p.is_object() {
            return;
        }
        default_at(p, &["protocol"], json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            default_at(p, &["targetPort"], port);
        }
    });
}

/// One-time settings of a create, for the object with `uid`.
pub fn on_create(kind: &str, obj: &mut Value, uid: &str) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match kind {
        "Namespace" => {
            default_at(
                obj,
                &["metadata", "labels", "kubernetes.io/metadata.name"],
                json!(name),
            );
        }
        "Pod" => {
            obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)});
        }
        // The volume controller moves them on (Available, Bound, ...).
        "PersistentVolume" | "PersistentVolumeClaim" => {
            obj["status"] = json!({"phase": "Pending"});
        }
        "Job" => {
            let manual = obj.pointer("/spec/manualSelector") == Some(&json!(true));
            if !manual {
                let labels = json!({
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                });
                if let Some(l) = labels.as_object() {
                    for (k, v) in l {
                        default_at(
                            obj,
                            &["spec", "template", "metadata", "labels", k],
                            v.clone(),
                        );
                    }
                }
                default_at(
                    obj,
                    &["spec", "selector"],
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                );
            }
        }
        _ => {}
    }
}

/// A pod's QoS class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        any |= req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty());
        let amount = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .and_then(|s| Quantity::parse(s).ok())
        };
        let full = ["cpu", "memory"].iter().all(|r| {
            let l = amount(lim.and_then(|l| l.get(*r)));
            let q = amount(req.and_then(|q| q.get(*r))).or(l);
            l.is_some_and(|l| !l.is_zero()) && q == l
        });
        guaranteed &= full;
    }
    match (any, guaranteed) {
        (_, true) => "Guaranteed",
        (true, false) => "Burstable",
        (false, _) => "BestEffort",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_string_data_is_folded_into_data_and_not_kept() {
        let mut s =
            json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "new", "c": "hi"}});
        apply("Secret", &mut s);
        assert_eq!(s["data"], json!({"a": "eA==", "b": "bmV3", "c": "aGk="}));
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
        let mut only = json!({"stringData": {"k": "v"}});
        apply("Secret", &mut only);
        assert_eq!(only["data"], json!({"k": "dg=="}));
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.14.2"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx:1"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn a_deployment_gets_the_defaults_describe_shows() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}],
             "readinessProbe": {"httpGet": {"port": 80}}}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        // Idempotent, and explicit values win.
        let before = d.clone();
        apply("Deployment", &mut d);
        assert_eq!(d, before);
        let mut r = json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 0}});
        apply("Deployment", &mut r);
        assert_eq!(r["spec"]["replicas"], 0);
        assert!(r["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn a_service_defaults_protocol_and_target_port() {
        let mut s =
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply("Service", &mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "https");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
    }

    #[test]
    fn create_time_settings() {
        let mut j = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {}}}});
        on_create("Job", &mut j, "u-1");
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        on_create("Pod", &mut p, "u");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
        let be = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let bu = json!({"spec": {"containers": [{"name": "a", "image": "x",
            "resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&bu), "Burstable");
    }

    #[test]
    fn resources_are_canonical_and_limits_default_requests() {
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "x",
            "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"},
                          "requests": {"cpu": 0.25, "ephemeral-storage": "bogus"}}}]}});
        apply("Pod", &mut p);
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(r["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        // An explicit request stays; a missing one is the limit; junk is left for validation.
        assert_eq!(
            r["requests"],
            json!({"cpu": "250m", "memory": "1Gi", "ephemeral-storage": "bogus"})
        );
        // Equal amounts in other spellings are still Guaranteed.
        let g = json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": {
            "limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "1000m", "memory": "1073741824"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
    }
}
