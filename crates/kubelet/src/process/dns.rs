//! A sandboxed pod's `/etc/resolv.conf` and `/etc/hosts`, as the kubelet
//! writes them: `dnsPolicy` (ClusterFirst, the default, points at the
//! cluster DNS on the pod's own node with the namespace's search list and
//! `ndots:5`; Default copies the node's; None starts empty), then
//! `dnsConfig` merged in; the hosts file names the pod (with its
//! `<hostname>.<subdomain>.<ns>.svc.<domain>` when it has a subdomain)
//! and its `hostAliases`. Each container gets both bound read-only over
//! the host's, in its own mount namespace.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// Upstream's limits on what a resolv.conf may hold.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The parts of a resolv.conf.
#[derive(Debug, Default, PartialEq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// (name, value) in order.
    options: Vec<(String, Option<String>)>,
}

impl Resolv {
    fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(String::from)),
                Some("search") | Some("domain") => {
                    r.searches = words.map(String::from).collect();
                }
                Some("options") => {
                    for o in words {
                        r.option(o);
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Sets option `o` (`name` or `name:value`), replacing one of its name.
    fn option(&mut self, o: &str) {
        let (name, value) = match o.split_once(':') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (o.to_string(), None),
        };
        match self.options.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.options.push((name, value)),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for ns in self.nameservers.iter().take(MAX_NAMESERVERS) {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            let s: Vec<&str> = self
                .searches
                .iter()
                .take(MAX_SEARCHES)
                .map(String::as_str)
                .collect();
            out.push_str(&format!("search {}\n", s.join(" ")));
        }
        if !self.options.is_empty() {
            let o: Vec<String> = self
                .options
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}:{v}"),
                    None => n.clone(),
                })
                .collect();
            out.push_str(&format!("options {}\n", o.join(" ")));
        }
        out
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// The pod's resolv.conf: `nameserver` is the cluster DNS of its node,
/// `domain` the cluster's, `host` the node's own resolv.conf text.
pub fn resolv_conf(pod: &Pod, nameserver: Ipv4Addr, domain: &str, host: &str) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut r = match policy {
        "None" => Resolv::default(),
        // A pod on the host's network with ClusterFirst gets the node's
        // resolvers, as upstream's kubelet gives it.
        "Default" => Resolv::parse(host),
        "ClusterFirst" if host_network => Resolv::parse(host),
        _ => Resolv {
            nameservers: vec![nameserver.to_string()],
            searches: vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ],
            options: vec![("ndots".into(), Some("5".into()))],
        },
    };
    if let Some(c) = spec.and_then(|s| s.dns_config.as_ref()) {
        for n in c.nameservers.iter().flatten() {
            push_unique(&mut r.nameservers, n);
        }
        for s in c.searches.iter().flatten() {
            push_unique(&mut r.searches, s);
        }
        for o in c.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            match &o.value {
                Some(v) => r.option(&format!("{name}:{v}")),
                None => r.option(name),
            }
        }
    }
    r.render()
}

/// The pod's hosts file: localhost, the pod's own names at `ip`, its
/// `hostAliases`.
pub fn hosts(pod: &Pod, ip: &str, domain: &str) -> String {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let hostname = spec
        .and_then(|s| s.hostname.as_deref())
        .unwrap_or(name)
        .chars()
        .take(63)
        .collect::<String>();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    match spec.and_then(|s| s.subdomain.as_deref()) {
        Some(sub) if !sub.is_empty() => {
            out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{ns}.svc.{domain}\t{hostname}\n"
            ));
        }
        _ => out.push_str(&format!("{ip}\t{hostname}\n")),
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if aliases.is_some_and(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases.into_iter().flatten() {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    const HOST: &str = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";
    const NS: Ipv4Addr = Ipv4Addr::new(10, 88, 3, 1);

    #[test]
    fn cluster_first_points_at_the_node_with_the_namespace_search_list() {
        let r = resolv_conf(&pod(json!({"containers": []})), NS, "cluster.local", HOST);
        assert_eq!(
            r,
            "nameserver 10.88.3.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        // On the host's network ClusterFirst means the node's resolvers.
        let r = resolv_conf(
            &pod(json!({"hostNetwork": true})),
            NS,
            "cluster.local",
            HOST,
        );
        assert_eq!(r, HOST);
        let r = resolv_conf(
            &pod(json!({"dnsPolicy": "Default"})),
            NS,
            "cluster.local",
            HOST,
        );
        assert_eq!(r, HOST);
    }

    #[test]
    fn dns_config_merges_and_none_starts_empty() {
        let cfg = json!({"nameservers": ["1.1.1.1", "10.88.3.1"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]});
        let r = resolv_conf(&pod(json!({"dnsConfig": cfg})), NS, "cluster.local", HOST);
        assert_eq!(
            r,
            "nameserver 10.88.3.1\nnameserver 1.1.1.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local a.example\noptions ndots:2 single-request-reopen\n"
        );
        let r = resolv_conf(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["9.9.9.9"]}})),
            NS,
            "cluster.local",
            HOST,
        );
        assert_eq!(r, "nameserver 9.9.9.9\n");
    }

    #[test]
    fn hosts_name_the_pod_and_its_aliases() {
        let p = pod(json!({"hostname": "db", "subdomain": "dbs",
            "hostAliases": [{"ip": "192.0.2.7", "hostnames": ["foo.local", "bar.local"]}]}));
        let h = hosts(&p, "10.88.3.9", "cluster.local");
        assert!(h.contains("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(
            h.contains("10.88.3.9\tdb.dbs.shop.svc.cluster.local\tdb\n"),
            "{h}"
        );
        assert!(h.contains("192.0.2.7\tfoo.local\tbar.local\n"), "{h}");
        let h = hosts(&pod(json!({})), "10.88.3.9", "cluster.local");
        assert!(h.contains("10.88.3.9\tweb-0\n"), "{h}");
    }
}
