//! Printers of Services and networking: Service, Endpoints, EndpointSlice, Ingress, IngressClass.

use super::*;

// ---------------------------------------------------------------------------
// Services and networking
// ---------------------------------------------------------------------------

pub(super) fn service_row(ctx: &Ctx) -> Vec<Value> {
    let svc = ctx.obj;
    let service_type = or_placeholder(ctx.str("/spec/type"), "ClusterIP");
    vec![
        ctx.name(),
        json!(service_type),
        json!(cluster_ip(svc)),
        json!(external_ip(svc, &service_type)),
        json!(or_placeholder(&service_ports(svc), "<none>")),
        ctx.age(),
        json!(format_labels(svc, "/spec/selector")),
    ]
}

/// `clusterIPs[0]`, else `clusterIP`, else "<none>".
pub(super) fn cluster_ip(svc: &Value) -> String {
    match list_at(svc, "/spec/clusterIPs").first() {
        Some(first) => first.as_str().unwrap_or("").to_string(),
        None => or_placeholder(str_at(svc, "/spec/clusterIP"), "<none>"),
    }
}

/// The EXTERNAL-IP cell: external IPs, load-balancer ingress, "<pending>" or "<none>".
pub(super) fn external_ip(svc: &Value, service_type: &str) -> String {
    let external: Vec<&str> = list_at(svc, "/spec/externalIPs")
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match service_type {
        "ClusterIP" | "NodePort" => or_placeholder(&external.join(","), "<none>"),
        "LoadBalancer" => {
            let ingress = load_balancer_ingress(svc, "/status/loadBalancer/ingress");
            let all: Vec<&str> = ingress
                .split(',')
                .filter(|s| !s.is_empty())
                .chain(external)
                .collect();
            or_placeholder(&all.join(","), "<pending>")
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// "80/TCP,443:30443/TCP".
pub(super) fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = list_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = or_placeholder(str_at(p, "/protocol"), "TCP");
            let port = int0(p, "/port");
            match int0(p, "/nodePort") {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) fn endpoints_row(ctx: &Ctx) -> Vec<Value> {
    vec![ctx.name(), json!(format_endpoints(ctx.obj)), ctx.age()]
}

/// Every "ip:port" (or bare ip for a subset without ports), three at most then "+ N more...".
pub(super) fn format_endpoints(endpoints: &Value) -> String {
    let subsets = list_at(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut all = Vec::new();
    for subset in subsets {
        let ips: Vec<&str> = list_at(subset, "/addresses")
            .iter()
            .map(|a| str_at(a, "/ip"))
            .collect();
        let ports = list_at(subset, "/ports");
        if ports.is_empty() {
            all.extend(ips.iter().map(|ip| ip.to_string()));
        }
        for port in ports {
            let number = int0(port, "/port");
            all.extend(ips.iter().map(|ip| join_host_port(ip, number)));
        }
    }
    list_with_more(&all).unwrap_or_default()
}

pub(super) fn endpoint_slice_row(ctx: &Ctx) -> Vec<Value> {
    let slice = ctx.obj;
    let ports: Vec<String> = list_at(slice, "/ports")
        .iter()
        .map(|p| match (int_at(p, "/port"), at(p, "/name")) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.as_str().unwrap_or("").to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = list_at(slice, "/endpoints")
        .iter()
        .flat_map(|e| list_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        ctx.name(),
        json!(ctx.str("/addressType")),
        json!(list_with_more(&ports).unwrap_or_else(|| "<unset>".into())),
        json!(list_with_more(&addresses).unwrap_or_else(|| "<unset>".into())),
        ctx.age(),
    ]
}

pub(super) fn ingress_row(ctx: &Ctx) -> Vec<Value> {
    let ingress = ctx.obj;
    let ports = if list_at(ingress, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        ctx.name(),
        json!(or_placeholder(ctx.str("/spec/ingressClassName"), "<none>")),
        json!(ingress_hosts(ingress)),
        json!(load_balancer_ingress(
            ingress,
            "/status/loadBalancer/ingress"
        )),
        json!(ports),
        ctx.age(),
    ]
}

/// The rules' hosts, three at most then "+ N more..." (N counts every further rule,
/// as upstream), "*" when no rule names a host.
pub(super) fn ingress_hosts(ingress: &Value) -> String {
    const MAX: usize = 3;
    let rules = list_at(ingress, "/spec/rules");
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= hosts.len() == MAX;
        let host = str_at(rule, "/host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    match (hosts.is_empty(), more) {
        (true, _) => "*".to_string(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - MAX),
        (false, false) => hosts.join(","),
    }
}

pub(super) fn ingress_class_row(ctx: &Ctx) -> Vec<Value> {
    let params = ctx.obj.pointer("/spec/parameters").map_or_else(
        || "<none>".to_string(),
        |p| {
            let kind = p["kind"].as_str().unwrap_or("");
            let name = p["name"].as_str().unwrap_or("");
            match p["apiGroup"].as_str() {
                Some(g) => format!("{kind}.{g}/{name}"),
                None => format!("{kind}/{name}"),
            }
        },
    );
    vec![
        ctx.name(),
        json!(ctx.str("/spec/controller")),
        json!(params),
        ctx.age(),
    ]
}
