//! Tests of environment resolution: envFrom and env from ConfigMaps,
//! Secrets and fieldRefs, `$(VAR)` expansion, optional and missing sources.

use super::*;

fn node() -> Node<'static> {
    Node {
        services: &[],
        name: "node-2",
        host_ip: "10.0.0.2",
    }
}

fn sources() -> Sources {
    let mut s = Sources::new();
    s.insert(
        ("ConfigMap", "cfg".into()),
        BTreeMap::from([("MODE".into(), "fast".into()), ("LEVEL".into(), "3".into())]),
    );
    let secret = json!({"data": {"password": "czNjcjN0"}});
    s.insert(("Secret", "creds".into()), data_of("Secret", &secret));
    s
}

fn pod(container: Value) -> Value {
    json!({"metadata": {"name": "web-1", "namespace": "prod", "uid": "u-1",
                        "labels": {"app": "web"}},
           "spec": {"containers": [container]}})
}

fn env_map(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn env_from_sources_fields_and_literals_with_overrides_and_expansion() {
    let c = json!({"name": "c", "command": ["echo", "$(GREETING) $(CFG_MODE) $$(HOME)"],
    "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
    "env": [
        {"name": "CFG_LEVEL", "value": "9"},
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    ]});
    let out = resolve(&pod(c), &sources(), &node());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let c = &out.pod["spec"]["containers"][0];
    let env = env_map(c);
    assert_eq!(env["CFG_MODE"], "fast");
    assert_eq!(env["CFG_LEVEL"], "9", "env overrides envFrom");
    assert_eq!(env["NODE"], "node-2");
    assert_eq!(env["APP"], "web");
    assert_eq!(env["PASS"], "s3cr3t");
    // Expansion uses what is defined before (POD_NAME comes later).
    assert_eq!(env["GREETING"], "hi $(POD_NAME)");
    // command/args are the runtime's to expand (it knows the pod IP).
    assert_eq!(c["command"][1], "$(GREETING) $(CFG_MODE) $$(HOME)");
    // The pod IP is left to the runtime, as a fieldRef.
    let ip = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "IP")
        .unwrap();
    assert_eq!(ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    assert!(c.get("envFrom").is_none());
}

#[test]
fn missing_sources_are_config_errors_unless_optional() {
    let missing = json!({"name": "c", "env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]});
    let out = resolve(&pod(missing), &sources(), &node());
    assert_eq!(out.errors["c"], "configmap \"nope\" not found");
    let no_key = json!({"name": "c", "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}}]});
    let out = resolve(&pod(no_key), &sources(), &node());
    assert_eq!(out.errors["c"], "couldn't find key user in secret creds");
    let optional = json!({"name": "c",
        "envFrom": [{"secretRef": {"name": "nope", "optional": true}}],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}]});
    let out = resolve(&pod(optional), &sources(), &node());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(env_map(&out.pod["spec"]["containers"][0]).is_empty());
}

#[test]
fn references_are_collected_for_the_kubelet_to_fetch() {
    let c = json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "b"}}],
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]});
    let refs = referenced(&pod(c));
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec![
            ("ConfigMap", "a".to_string()),
            ("ConfigMap", "c".to_string()),
            ("Secret", "b".to_string())
        ]
    );
}

#[test]
fn expansion_keeps_unknown_references_and_escapes() {
    let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
    assert_eq!(
        expand("$(A)-$(B)-$$(A)-$-$(", &vars).unwrap(),
        "1-$(B)-$(A)-$-$("
    );
}

/// Forty entries, each twice the one before: 2^40 bytes unchecked. The
/// container is refused with the reason; the agent builds nothing large.
#[test]
fn a_doubling_chain_is_a_config_error_not_an_exhausted_agent() {
    let mut env = vec![json!({"name": "V0", "value": "xxxxxxxx"})];
    for i in 1..40 {
        env.push(json!({"name": format!("V{i}"), "value": format!("$(V{0})$(V{0})", i - 1)}));
    }
    let c = json!({"name": "c", "env": env});
    let out = resolve(&pod(c), &sources(), &node());
    let why = &out.errors["c"];
    assert!(why.contains("over 131072 bytes"), "{why}");
    assert!(why.starts_with("env V"), "{why}");
    // Just under the limit per value, but too much together.
    let big = "y".repeat(MAX_VALUE_BYTES - 10);
    let env: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("B{i}"), "value": big}))
        .collect();
    let out = resolve(&pod(json!({"name": "c", "env": env})), &sources(), &node());
    assert!(
        out.errors["c"].contains("over the limit of 1048576"),
        "{:?}",
        out.errors
    );
    // The limits leave an ordinary environment alone.
    let v = "z".repeat(1000);
    let vars = BTreeMap::from([("A".to_string(), v.clone())]);
    assert_eq!(expand("$(A)$(A)", &vars).unwrap().len(), 2000);
    let long = "$(A)".repeat(200);
    assert_eq!(expand(&long, &vars), Err(TooLong));
}

#[test]
fn services_give_upstreams_variables_first_and_the_container_may_use_them() {
    // The example of upstream's Service documentation.
    let svc = json!({"metadata": {"name": "redis-primary"},
        "spec": {"clusterIP": "10.0.0.11", "ports": [{"port": 6379, "protocol": "TCP"}]}});
    let s = ServiceEnv::of(&svc).unwrap();
    let vars = service_vars(std::slice::from_ref(&s));
    let want = [
        ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
        ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
        ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
    ];
    let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
    // Headless and port-less Services give none.
    let headless =
        json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}});
    assert!(ServiceEnv::of(&headless).is_none());
    // A named port gets its own variable; the container's env comes after
    // and may refer to them.
    let named = json!({"metadata": {"name": "web"},
        "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http-alt", "port": 8080}]}});
    let services = [ServiceEnv::of(&named).unwrap()];
    let node = Node {
        services: &services,
        ..node()
    };
    let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c",
        "env": [{"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT_HTTP_ALT)"},
                {"name": "WEB_SERVICE_PORT", "value": "mine"}]}]}});
    let r = resolve(&pod, &Sources::new(), &node);
    let env: BTreeMap<String, String> = r.pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(env["URL"], "http://10.96.0.9:8080");
    assert_eq!(env["WEB_SERVICE_PORT"], "mine");
    assert_eq!(env["WEB_PORT_8080_TCP_ADDR"], "10.96.0.9");
    let first = r.pod["spec"]["containers"][0]["env"][0]["name"].clone();
    assert_eq!(first, "WEB_SERVICE_HOST");
}
