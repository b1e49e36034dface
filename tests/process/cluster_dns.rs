//! Cluster DNS (issue 21), end to end on a 2-node `shoal dev` as root with
//! pod sandboxes: each node's DNS answers on its bridge gateway; pods
//! reach Services by short and full names through their own resolv.conf;
//! headless Services, SRV, ExternalName and NXDOMAIN answer as the DNS
//! spec says; names outside the cluster reach an upstream the test runs
//! itself (`SHOAL_KUBELET_DNS_UPSTREAMS`); `kube-system/kube-dns`'s
//! ClusterIP reaches the nodes' DNS, and `kubernetes.default.svc` an API
//! node from a pod. Without root: SKIPPED (no
//! sandboxes, no per-pod resolv.conf; see the README).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use serde_json::Value;

use super::kubectl::Dev;

/// Where the fake upstream answers: every name under `outside.test` is
/// this address; anything else NXDOMAIN.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 44);

/// A DNS server on 127.0.0.1 standing in for the node's upstream.
fn fake_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_desired(q.recursion_desired())
                .set_recursion_available(true);
            r.add_queries(q.queries().to_vec());
            for query in q.queries() {
                let name = query.name().to_ascii().to_ascii_lowercase();
                if name.ends_with("outside.test.") {
                    if query.query_type() == RecordType::A {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::A(A(OUTSIDE)),
                        ));
                    }
                } else {
                    r.set_response_code(ResponseCode::NXDomain);
                }
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

/// A resolver asking only `server`, names taken as fully qualified.
fn resolver(server: Ipv4Addr) -> TokioResolver {
    let group = NameServerConfigGroup::from_ips_clear(&[IpAddr::V4(server)], 53, true);
    let mut opts = ResolverOpts::default();
    opts.ndots = 0;
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), group),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build()
}

const APPS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
spec:
  replicas: 2
  selector:
    matchLabels: {app: backend}
  template:
    metadata:
      labels: {app: backend}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: python:3
        command: ["python3", "-m", "http.server", "8000"]
        ports: [{name: http, containerPort: 8000}]
        readinessProbe:
          tcpSocket: {port: 8000}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: hl
spec:
  clusterIP: None
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: search
spec:
  type: ExternalName
  externalName: www.outside.test
"#;

#[test]
fn cluster_dns_answers_pods_and_forwards_the_rest() {
    if !super::cni_sandboxes() {
        eprintln!(
            "SKIPPED: per-pod resolv.conf and DNS on the node's bridge need pod sandboxes (root)"
        );
        return;
    }
    let upstream = fake_upstream().to_string();
    let Some(k) = Dev::start_with_env(2, "process", &[("SHOAL_KUBELET_DNS_UPSTREAMS", &upstream)])
    else {
        return;
    };
    let apps = k.file("apps.yaml", APPS);
    k.ok(&["apply", "-f", &apps]);
    k.ok(&["rollout", "status", "deploy/backend", "--timeout=90s"]);
    let pods = super::kubectl_process::pods(&k, "app=backend");
    let pod_ips: BTreeSet<Ipv4Addr> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().parse().unwrap())
        .collect();
    let svc: Value = serde_json::from_str(&k.ok(&["get", "svc", "backend", "-o", "json"])).unwrap();
    let cluster_ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();

    // From the host, each node's DNS (on its bridge gateway).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = pod_ips
        .iter()
        .next()
        .map(|ip| Ipv4Addr::from(u32::from(*ip) & !0xff | 1))
        .unwrap();
    let dns = resolver(node);
    let a = |name: &str| -> Result<BTreeSet<Ipv4Addr>, String> {
        rt.block_on(dns.lookup(name, RecordType::A))
            .map(|l| l.iter().filter_map(|r| r.as_a().map(|a| a.0)).collect())
            .map_err(|e| e.to_string())
    };
    super::wait_for(Duration::from_secs(20), "the Services have names", || {
        let got = a("backend.default.svc.cluster.local.")?;
        if got == BTreeSet::from([cluster_ip]) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    // Headless: the pods' own addresses.
    super::wait_for(
        Duration::from_secs(20),
        "the headless Service names its pods",
        || {
            let got = a("hl.default.svc.cluster.local.")?;
            if got == pod_ips {
                Ok(())
            } else {
                Err(format!("{got:?}, want {pod_ips:?}"))
            }
        },
    );
    // SRV for the named port.
    let srv = rt
        .block_on(dns.lookup(
            "_http._tcp.backend.default.svc.cluster.local.",
            RecordType::SRV,
        ))
        .unwrap();
    let srv: Vec<(u16, String)> = srv
        .iter()
        .filter_map(|r| r.as_srv().map(|s| (s.port(), s.target().to_ascii())))
        .collect();
    assert_eq!(
        srv,
        vec![(80, "backend.default.svc.cluster.local.".to_string())]
    );
    // ExternalName: a CNAME, chased through the upstream.
    let cname = rt
        .block_on(dns.lookup("search.default.svc.cluster.local.", RecordType::CNAME))
        .unwrap();
    let targets: Vec<String> = cname
        .iter()
        .filter_map(|r| r.as_cname().map(|c| c.0.to_ascii()))
        .collect();
    assert_eq!(targets, vec!["www.outside.test.".to_string()]);
    assert_eq!(
        a("search.default.svc.cluster.local."),
        Ok(BTreeSet::from([OUTSIDE]))
    );
    // Unknown names: NXDOMAIN, inside the domain and out.
    for missing in [
        "nope.default.svc.cluster.local.",
        "web.nons.svc.cluster.local.",
        "nothing.example.",
    ] {
        let err = rt.block_on(dns.lookup(missing, RecordType::A)).unwrap_err();
        assert!(err.is_nx_domain(), "{missing}: {err}");
    }
    // Outside the cluster: the upstream's answer.
    assert_eq!(a("www.outside.test."), Ok(BTreeSet::from([OUTSIDE])));

    // kube-system/kube-dns: its ClusterIP reaches the nodes' DNS.
    let kube_dns: Value =
        serde_json::from_str(&k.ok(&["get", "svc", "-n", "kube-system", "kube-dns", "-o", "json"]))
            .unwrap();
    let kube_dns_ip: Ipv4Addr = kube_dns["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let via_service = resolver(kube_dns_ip);
    super::wait_for(
        Duration::from_secs(30),
        "kube-dns answers through its ClusterIP",
        || {
            let got: BTreeSet<Ipv4Addr> = rt
                .block_on(via_service.lookup("backend.default.svc.cluster.local.", RecordType::A))
                .map_err(|e| e.to_string())?
                .iter()
                .filter_map(|r| r.as_a().map(|a| a.0))
                .collect();
            if got == BTreeSet::from([cluster_ip]) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );

    // Inside a pod, through its own resolv.conf: short and full names,
    // and a name outside.
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    let pod_ip: Ipv4Addr = pods[0]["status"]["podIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let own = Ipv4Addr::from(u32::from(pod_ip) & !0xff | 1);
    let resolv = k.ok(&["exec", pod, "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.starts_with(&format!("nameserver {own}\n")),
        "{resolv}"
    );
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let script = "import socket\n\
                  print(socket.gethostbyname('backend'))\n\
                  print(socket.gethostbyname('backend.default.svc.cluster.local'))\n\
                  print(socket.gethostbyname('www.outside.test'))\n";
    let out = k.ok(&["exec", pod, "--", "python3", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    let ip = cluster_ip.to_string();
    let outside = OUTSIDE.to_string();
    assert_eq!(
        lines,
        vec![ip.as_str(), ip.as_str(), outside.as_str()],
        "{out}"
    );

    // `kubernetes.default.svc` resolves to the kubernetes Service and
    // reaches an API node from the pod (TLS; the answer's status is the
    // API's: 200, or 401 without a token).
    let api: Value =
        serde_json::from_str(&k.ok(&["get", "svc", "kubernetes", "-o", "json"])).unwrap();
    let api_ip = api["spec"]["clusterIP"].as_str().unwrap().to_string();
    let script = "import socket,ssl,urllib.request,urllib.error\n\
                  print(socket.gethostbyname('kubernetes.default.svc'))\n\
                  ctx=ssl._create_unverified_context()\n\
                  try: print(urllib.request.urlopen('https://kubernetes.default.svc/version',context=ctx,timeout=5).status)\n\
                  except urllib.error.HTTPError as e: print(e.code)\n";
    super::wait_for(
        Duration::from_secs(30),
        "a pod reaches the API through kubernetes.default.svc",
        || {
            let out = k.run(&["exec", pod, "--", "python3", "-c", script]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            match lines.as_slice() {
                [ip, code] if *ip == api_ip && (*code == "200" || *code == "401") => Ok(()),
                _ => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
            }
        },
    );
}
