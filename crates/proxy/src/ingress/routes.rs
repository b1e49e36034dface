//! The routing table of the Ingress controller, built afresh from the
//! Ingresses of class `shoal` whenever one of them, a Service, an
//! EndpointSlice or a TLS Secret they use changes, and swapped in whole:
//! a request is routed by the table that was current when it arrived.
//!
//! Matching follows the Ingress spec (networking.k8s.io/v1):
//! - hosts: an exact host first, then a wildcard (`*.example.com` matches
//!   one label in place of the `*`, no more, no less), then the rules
//!   without a host. A request's host picks one group; no other group's
//!   paths are tried.
//! - paths: the longest matching path wins, `Exact` before `Prefix` at the
//!   same length. `Prefix` matches whole `/`-separated elements (`/foo`
//!   matches `/foo` and `/foo/bar`, not `/foobar`); `ImplementationSpecific`
//!   is read as `Prefix`.
//! - where two Ingresses name the same host, path and type, the older one
//!   wins (creation time, then namespace/name), as ingress-nginx does.
//! - a request no rule matches goes to the oldest Ingress's
//!   `defaultBackend`, and without one gets 404.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use rustls::sign::CertifiedKey;

use crate::model::{endpoints_of, Proto};

/// The class this controller serves.
pub const CLASS: &str = shoal_model::objects::INGRESS_CLASS;
pub use shoal_model::objects::{
    DEFAULT_INGRESS_CLASS_ANNOTATION as DEFAULT_CLASS_ANNOTATION,
    INGRESS_CLASS_ANNOTATION as CLASS_ANNOTATION,
};

/// Whether `ing` is this controller's (see
/// `shoal_model::objects::ingress_is_shoals`).
pub fn is_ours(ing: &Ingress, shoal_is_default: bool) -> bool {
    shoal_model::objects::ingress_is_shoals(
        ing.spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref()),
        ing.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLASS_ANNOTATION))
            .map(String::as_str),
        shoal_is_default,
    )
}

/// How a path rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    Exact,
    Prefix,
}

/// Where matched requests go: a Service port's endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/name` of the Ingress that named it (metrics, logs).
    pub ingress: String,
    pub namespace: String,
    pub service: String,
    /// The endpoints (ready ones, else serving-and-terminating ones).
    pub endpoints: Vec<SocketAddr>,
    /// Why there are none, when there are none (the 503's body).
    pub why_none: Option<String>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Its `requests_total{status="200"}` counter, once counted (the
    /// common case skips building labels).
    pub ok: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
}

impl Backend {
    /// The endpoints to try for one request, in order: round-robin start,
    /// then the others (a failed connect moves on to the next).
    pub fn order(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let n = self.endpoints.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| self.endpoints[(start + i) % n])
    }
}

#[derive(Debug)]
struct PathRule {
    path: String,
    kind: PathKind,
    backend: Arc<Backend>,
}

/// The certificates for TLS hosts, by exact host and by wildcard suffix.
#[derive(Default)]
pub struct Certs {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is kept as `example.com`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certs {
    /// The certificate for SNI name `host`, if an Ingress has one.
    pub fn for_host(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.to_ascii_lowercase();
        self.exact.get(&host).cloned().or_else(|| {
            let (_, parent) = host.split_once('.')?;
            self.wildcard.get(parent).cloned()
        })
    }
}

/// One routing table (see the module doc).
#[derive(Default)]
pub struct Routes {
    exact: HashMap<String, Vec<PathRule>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default: Option<Arc<Backend>>,
    pub certs: Certs,
    /// Ingresses routed, for status and tests.
    pub ingresses: usize,
}

/// What a request is routed to.
pub enum Routed<'a> {
    Backend(&'a Arc<Backend>),
    NotFound,
}

/// Whether request path `path` matches rule path `rule` of kind `kind`.
pub fn path_matches(kind: PathKind, rule: &str, path: &str) -> bool {
    match kind {
        PathKind::Exact => path == rule,
        PathKind::Prefix => {
            let rule = rule.trim_end_matches('/');
            if rule.is_empty() {
                return true; // "/" matches every path
            }
            match path.strip_prefix(rule) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            }
        }
    }
}

/// The matching path of `rules`: the longest, Exact first at one length.
fn best<'a>(rules: &'a [PathRule], path: &str) -> Option<&'a Arc<Backend>> {
    rules
        .iter()
        .filter(|r| path_matches(r.kind, &r.path, path))
        .max_by(|a, b| {
            let len = |r: &PathRule| r.path.trim_end_matches('/').len();
            len(a)
                .cmp(&len(b))
                // Exact sorts before Prefix: at one length it wins.
                .then(b.kind.cmp(&a.kind))
        })
        .map(|r| &r.backend)
}

impl Routes {
    /// Routes a request for `host` (without a port) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Routed<'_> {
        // Hosts are almost always lowercase already: no copy then.
        let host: std::borrow::Cow<str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        let group = self.exact.get(host.as_ref()).or_else(|| {
            host.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        });
        let group = group.map_or(self.any_host.as_slice(), Vec::as_slice);
        match best(group, path).or(self.default.as_ref()) {
            Some(b) => Routed::Backend(b),
            None => Routed::NotFound,
        }
    }

    /// Builds the table from `ingresses` (this controller's only),
    /// resolving backends through `services` and `slices` (by namespace
    /// and Service name) as node `node` sees them. `certs` comes from the
    /// TLS Secrets.
    pub fn build(
        ingresses: &[&Ingress],
        services: &HashMap<(String, String), Service>,
        slices: &HashMap<(String, String), Vec<EndpointSlice>>,
        certs: Certs,
        node: &str,
    ) -> Routes {
        let mut sorted: Vec<&&Ingress> = ingresses.iter().collect();
        sorted.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        });
        let mut routes = Routes {
            certs,
            ingresses: sorted.len(),
            ..Routes::default()
        };
        // (group, path, kind) already taken by an older Ingress.
        let mut taken: BTreeMap<(String, String, PathKind), ()> = BTreeMap::new();
        for ing in sorted {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let id = format!("{ns}/{}", ing.metadata.name.as_deref().unwrap_or(""));
            let Some(spec) = &ing.spec else { continue };
            let resolve =
                |b: &IngressBackend| Arc::new(resolve(&id, &ns, b, services, slices, node));
            if routes.default.is_none() {
                routes.default = spec.default_backend.as_ref().map(resolve);
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                for p in rule.http.iter().flat_map(|h| &h.paths) {
                    let kind = match p.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        _ => PathKind::Prefix,
                    };
                    let path = p.path.clone().unwrap_or_else(|| "/".into());
                    if taken
                        .insert((host.clone(), path.clone(), kind), ())
                        .is_some()
                    {
                        continue;
                    }
                    let group = if host.is_empty() {
                        &mut routes.any_host
                    } else if let Some(suffix) = host.strip_prefix("*.") {
                        routes.wildcard.entry(suffix.to_string()).or_default()
                    } else {
                        routes.exact.entry(host.clone()).or_default()
                    };
                    group.push(PathRule {
                        path,
                        kind,
                        backend: resolve(&p.backend),
                    });
                }
            }
        }
        routes
    }
}

/// A backend's endpoints, or why it has none.
fn resolve(
    ingress: &str,
    ns: &str,
    b: &IngressBackend,
    services: &HashMap<(String, String), Service>,
    slices: &HashMap<(String, String), Vec<EndpointSlice>>,
    node: &str,
) -> Backend {
    let mut out = Backend {
        ingress: ingress.to_string(),
        namespace: ns.to_string(),
        service: String::new(),
        endpoints: Vec::new(),
        why_none: None,
        next: AtomicUsize::new(0),
        ok: Default::default(),
    };
    let Some(sb) = &b.service else {
        out.why_none = Some("resource backends are not supported".into());
        return out;
    };
    out.service = sb.name.clone();
    let key = (ns.to_string(), sb.name.clone());
    let Some(svc) = services.get(&key) else {
        out.why_none = Some(format!("service {ns}/{} does not exist", sb.name));
        return out;
    };
    let wanted = sb.port.as_ref();
    let port = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| match wanted {
            Some(w) if w.number.is_some() => w.number == Some(p.port),
            Some(w) => w.name.is_some() && w.name == p.name,
            None => true,
        });
    let Some(port) = port else {
        out.why_none = Some(format!("service {ns}/{} has no such port", sb.name));
        return out;
    };
    let none = Vec::new();
    let slices: Vec<&EndpointSlice> = slices
        .get(&key)
        .unwrap_or(&none)
        .iter()
        .filter(|s| s.address_type == "IPv4")
        .collect();
    let port_name = port.name.clone().unwrap_or_default();
    out.endpoints = endpoints_of(&slices, &port_name, Proto::Tcp, node)
        .into_iter()
        .map(|e| SocketAddr::new(e.ip.into(), e.port))
        .collect();
    if out.endpoints.is_empty() {
        out.why_none = Some(format!("service {ns}/{} has no ready endpoint", sb.name));
    }
    out
}

#[cfg(test)]
mod tests;
