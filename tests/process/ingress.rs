//! The built-in Ingress end to end with kubectl 1.33 on a 3-node `shoal
//! dev`: `kubectl get ingressclass` shows `shoal` as the default; an
//! Ingress without a class, applied with kubectl, routes two hosts and two
//! paths to two Deployments' pods on every node's address, serves TLS
//! with the certificate of a Secret made by `kubectl create secret tls`,
//! names the nodes in its status, and answers 503 once a backend has no
//! ready endpoint. As root the nodes listen on their bridge gateways, ports
//! 80 and 443; without root, on 127.0.0.1, ports 18080 + i and 18443 + i,
//! routing to 127.x pod IPs (the README's degraded mode).

use std::time::Duration;

use serde_json::Value;

use super::kubectl::Dev;

/// A Deployment of one pod answering `GET /` with `<name> <path>`, and its
/// Service.
fn app(name: &str) -> String {
    let server = "import http.server,os\n\
         name=os.environ['APP']\n\
         class H(http.server.BaseHTTPRequestHandler):\n  \
           def do_GET(self):\n    \
             b=(name+' '+self.path+' '+str(self.headers.get('X-Forwarded-Proto'))).encode()\n    \
             self.send_response(200);self.send_header('Content-Length',str(len(b)));self.end_headers();self.wfile.write(b)\n  \
           def log_message(self,*a): pass\n\
         http.server.ThreadingHTTPServer(('0.0.0.0',int(os.environ['PORT'])),H).serve_forever()\n";
    let server = serde_json::to_string(server).unwrap();
    // Distinct ports: without sandboxes pods share the host's network.
    let port = if name == "alpha" { 8101 } else { 8102 };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: python:3
        command: ["python3", "-c", {server}]
        env: [{{name: APP, value: {name}}}, {{name: PORT, value: "{port}"}}]
        ports: [{{name: http, containerPort: {port}}}]
        readinessProbe:
          tcpSocket: {{port: {port}}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

const INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  tls:
  - hosts: [secure.test]
    secretName: web-tls
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
      - {path: /b, pathType: Prefix, backend: {service: {name: beta, port: {name: http}}}}
  - host: b.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
  - host: secure.test
    http:
      paths:
      - {path: /, pathType: Exact, backend: {service: {name: alpha, port: {number: 80}}}}
"#;

/// `curl` of `scheme://host:port/path` sent to `ip`: (status, body).
fn curl(
    scheme: &str,
    host: &str,
    ip: &str,
    port: u16,
    path: &str,
    ca: &str,
) -> Result<(u16, String), String> {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "3",
            "--cacert",
            ca,
            "-w",
            "\n%{http_code}",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:{ip}"))
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').ok_or("no status")?;
    Ok((code.parse().map_err(|_| text.clone())?, body.to_string()))
}

#[test]
fn an_ingress_applied_with_kubectl_routes_hosts_paths_and_tls_on_every_node() {
    let sandboxed = super::cni_sandboxes();
    let Some(k) = Dev::start_with(3, "process") else {
        return;
    };
    // The built-in class, the default.
    let class: Value =
        serde_json::from_str(&k.ok(&["get", "ingressclass", "shoal", "-o", "json"])).unwrap();
    assert_eq!(class["spec"]["controller"], "shoal.io/ingress");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert!(k.ok(&["get", "ingressclass"]).contains("shoal.io/ingress"));

    // A certificate for secure.test from the test's own CA.
    let dir = tempfile::tempdir().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf whose issuer is its own
    // subject for self-signed.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "shoal test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["secure.test".into()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "secure.test");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("tls.crt"), cert.pem()).unwrap();
    std::fs::write(path("tls.key"), key.serialize_pem()).unwrap();
    k.ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        "--cert",
        &path("tls.crt"),
        "--key",
        &path("tls.key"),
    ]);

    let manifest = k.file(
        "apps.yaml",
        &format!("{}---\n{}---\n{INGRESS}", app("alpha"), app("beta")),
    );
    k.ok(&["apply", "-f", &manifest]);
    k.ok(&["rollout", "status", "deploy/alpha", "--timeout=90s"]);
    k.ok(&["rollout", "status", "deploy/beta", "--timeout=90s"]);

    // Every node's address, and its ports.
    let mut at: Vec<(String, u16, u16)> = Vec::new();
    for (name, ip) in super::services::internal_ips(&k) {
        let i: u16 = name.trim_start_matches("node-").parse::<u16>().unwrap() - 1;
        let ports = if sandboxed {
            (80, 443)
        } else {
            (18_080 + i, 18_443 + i)
        };
        at.push((ip, ports.0, ports.1));
    }
    assert_eq!(at.len(), 3);
    let ca_file = path("ca.pem");
    for (ip, http, https) in &at {
        super::wait_for(
            Duration::from_secs(60),
            &format!("a.test on {ip}:{http}"),
            || match curl("http", "a.test", ip, *http, "/x", &ca_file)? {
                (200, body) if body == "alpha /x http" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(
            curl("http", "a.test", ip, *http, "/b/c", &ca_file).unwrap(),
            (200, "beta /b/c http".to_string())
        );
        assert_eq!(
            curl("http", "b.test", ip, *http, "/", &ca_file).unwrap(),
            (200, "beta / http".to_string())
        );
        assert_eq!(
            curl("http", "c.test", ip, *http, "/", &ca_file).unwrap().0,
            404
        );
        // TLS by SNI, verified against the test's CA.
        assert_eq!(
            curl("https", "secure.test", ip, *https, "/", &ca_file).unwrap(),
            (200, "alpha / https".to_string())
        );
    }

    // The status names the nodes' addresses.
    super::wait_for(Duration::from_secs(30), "the Ingress status", || {
        let ing: Value = serde_json::from_str(&k.ok(&["get", "ingress", "web", "-o", "json"]))
            .map_err(|e| e.to_string())?;
        let mut ips: Vec<String> = ing["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().map(String::from))
            .collect();
        ips.sort();
        let mut want: Vec<String> = at.iter().map(|a| a.0.clone()).collect();
        want.sort();
        want.dedup();
        (ips == want)
            .then_some(())
            .ok_or(format!("{ips:?}, want {want:?}"))
    });

    // No ready endpoint: 503.
    k.ok(&["scale", "deploy/beta", "--replicas=0"]);
    let (ip, http, _) = &at[0];
    super::wait_for(
        Duration::from_secs(60),
        "503 without endpoints",
        || match curl("http", "b.test", ip, *http, "/", &ca_file)? {
            (503, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}
