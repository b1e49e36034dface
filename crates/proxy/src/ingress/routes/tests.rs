//! The routing table: host and path matching by the spec, precedence
//! across Ingresses, backend resolution, round-robin, and class selection.

use serde_json::json;

use super::*;

fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": spec,
    }))
    .unwrap()
}

fn backend(svc: &str) -> serde_json::Value {
    json!({"service": {"name": svc, "port": {"number": 80}}})
}

fn rule(host: Option<&str>, paths: &[(&str, &str, &str)]) -> serde_json::Value {
    let paths: Vec<_> = paths
        .iter()
        .map(|(p, kind, svc)| json!({"path": p, "pathType": kind, "backend": backend(svc)}))
        .collect();
    let mut r = json!({"http": {"paths": paths}});
    if let Some(h) = host {
        r["host"] = json!(h);
    }
    r
}

/// Services `names` on port 80 → 8080, each with one ready endpoint whose
/// last octet is its position + 1.
type World = (
    HashMap<(String, String), Service>,
    HashMap<(String, String), Vec<EndpointSlice>>,
);

fn world(names: &[&str]) -> World {
    let mut services = HashMap::new();
    let mut slices = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        let key = ("ns".to_string(), n.to_string());
        services.insert(
            key.clone(),
            serde_json::from_value(json!({
                "metadata": {"name": n, "namespace": "ns"},
                "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "targetPort": 8080}]},
            }))
            .unwrap(),
        );
        slices.insert(
            key,
            vec![serde_json::from_value(json!({
                "metadata": {"name": format!("{n}-1"), "namespace": "ns",
                             "labels": {"kubernetes.io/service-name": n}},
                "addressType": "IPv4",
                "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [format!("10.1.0.{}", i + 1)],
                               "conditions": {"ready": true}}],
            }))
            .unwrap()],
        );
    }
    (services, slices)
}

fn to(routes: &Routes, host: &str, path: &str) -> String {
    match routes.route(host, path) {
        Routed::Backend(b) => b.service.clone(),
        Routed::NotFound => "404".into(),
    }
}

#[test]
fn prefix_matches_whole_path_elements_and_exact_only_itself() {
    assert!(path_matches(PathKind::Prefix, "/foo", "/foo"));
    assert!(path_matches(PathKind::Prefix, "/foo", "/foo/"));
    assert!(path_matches(PathKind::Prefix, "/foo/", "/foo/bar"));
    assert!(path_matches(PathKind::Prefix, "/", "/anything"));
    assert!(!path_matches(PathKind::Prefix, "/foo", "/foobar"));
    assert!(!path_matches(PathKind::Prefix, "/foo/bar", "/foo"));
    assert!(path_matches(PathKind::Exact, "/foo", "/foo"));
    assert!(!path_matches(PathKind::Exact, "/foo", "/foo/"));
}

#[test]
fn hosts_and_paths_route_by_the_spec_rules() {
    let (services, slices) = world(&["a", "b", "c", "d", "e", "w", "any", "def"]);
    let one = ingress(
        "one",
        "2026-01-01T00:00:00Z",
        json!({
            "defaultBackend": backend("def"),
            "rules": [
                rule(Some("foo.example.com"), &[("/", "Prefix", "a"), ("/api", "Prefix", "b"),
                                                ("/api", "Exact", "c")]),
                rule(Some("*.example.com"), &[("/", "Prefix", "w")]),
                rule(None, &[("/x", "ImplementationSpecific", "any")]),
            ]
        }),
    );
    // A younger Ingress naming the same host, path and type loses; a new
    // path of the same host is added.
    let two = ingress(
        "two",
        "2026-02-01T00:00:00Z",
        json!({
            "defaultBackend": backend("e"),
            "rules": [rule(Some("foo.example.com"), &[("/", "Prefix", "d"), ("/v2", "Prefix", "e")])]
        }),
    );
    let r = Routes::build(&[&two, &one], &services, &slices, Certs::default(), "n1");
    assert_eq!(r.ingresses, 2);
    assert_eq!(to(&r, "foo.example.com", "/"), "a");
    assert_eq!(to(&r, "FOO.example.com", "/index.html"), "a");
    assert_eq!(to(&r, "foo.example.com", "/api"), "c", "Exact wins a tie");
    assert_eq!(to(&r, "foo.example.com", "/api/v1"), "b", "longest prefix");
    assert_eq!(to(&r, "foo.example.com", "/apix"), "a");
    assert_eq!(to(&r, "foo.example.com", "/v2/x"), "e");
    assert_eq!(to(&r, "bar.example.com", "/z"), "w", "wildcard, one label");
    assert_eq!(
        to(&r, "a.bar.example.com", "/x"),
        "any",
        "two labels: not the wildcard"
    );
    assert_eq!(to(&r, "example.com", "/x"), "any");
    assert_eq!(to(&r, "other", "/y"), "def", "the oldest default backend");
}

#[test]
fn backends_resolve_ports_by_number_or_name_and_say_why_they_have_none() {
    let (mut services, slices) = world(&["a"]);
    let ing = ingress(
        "i",
        "2026-01-01T00:00:00Z",
        json!({"rules": [rule(Some("h"), &[("/", "Prefix", "a"), ("/gone", "Prefix", "missing")])]}),
    );
    let r = Routes::build(&[&ing], &services, &slices, Certs::default(), "n1");
    let Routed::Backend(b) = r.route("h", "/") else {
        panic!("no route")
    };
    assert_eq!(
        b.endpoints,
        vec!["10.1.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    let Routed::Backend(b) = r.route("h", "/gone") else {
        panic!("no route")
    };
    assert!(b.endpoints.is_empty());
    assert!(
        b.why_none.as_deref().unwrap().contains("does not exist"),
        "{:?}",
        b.why_none
    );
    // By port name.
    let svc = services.get_mut(&("ns".into(), "a".into())).unwrap();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].name = Some("web".into());
    let mut slices = slices;
    for s in slices.values_mut().flatten() {
        s.ports.as_mut().unwrap()[0].name = Some("web".into());
    }
    let named = ingress(
        "n",
        "2026-01-01T00:00:00Z",
        json!({"rules": [{"host": "h", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "a", "port": {"name": "web"}}}}]}}]}),
    );
    let r = Routes::build(&[&named], &services, &slices, Certs::default(), "n1");
    let Routed::Backend(b) = r.route("h", "/") else {
        panic!("no route")
    };
    assert_eq!(b.endpoints.len(), 1);
    assert_eq!(to(&r, "other", "/"), "404");
}

#[test]
fn round_robin_visits_every_endpoint_then_the_rest_in_order() {
    let b = Backend {
        ingress: String::new(),
        namespace: String::new(),
        service: String::new(),
        endpoints: (1..=3)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect(),
        why_none: None,
        next: AtomicUsize::new(0),
        ok: Default::default(),
    };
    let firsts: Vec<_> = (0..3).map(|_| b.order().next().unwrap()).collect();
    assert_eq!(firsts, b.endpoints);
    let all: Vec<_> = b.order().collect();
    assert_eq!(all.len(), 3);
}

#[test]
fn class_is_read_from_field_then_annotation_then_the_default() {
    let mut ing = ingress("i", "2026-01-01T00:00:00Z", json!({}));
    assert!(is_ours(&ing, true));
    assert!(!is_ours(&ing, false));
    ing.metadata.annotations = Some([(CLASS_ANNOTATION.to_string(), "nginx".to_string())].into());
    assert!(!is_ours(&ing, true));
    ing.spec.as_mut().unwrap().ingress_class_name = Some("shoal".into());
    assert!(is_ours(&ing, false));
}
