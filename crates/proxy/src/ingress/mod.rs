//! The built-in Ingress controller (IngressClass `shoal`, the default):
//! every node serves HTTP and HTTPS on its own address and routes by the
//! Ingresses of class `shoal` to the ready endpoints of their backend
//! Services, straight to the pod IPs as ingress-nginx does (no ClusterIP
//! hop, so it also works where pods share the host's network).
//!
//! Ingresses, IngressClasses, Services, EndpointSlices and Secrets are
//! pushed to it by store watches ([`crate::follow`]). A change that touches
//! what an Ingress of ours uses builds a new [`routes::Routes`] and swaps
//! it in whole: requests in flight keep the table they started with, new
//! ones take the new one, and no listener restarts (ingress-nginx's reload
//! dropped traffic for seconds, ingress-nginx #7564). TLS Secrets are read
//! by key (a node may read those an Ingress names, see
//! `shoal_model::node_authorizer`) whenever their watch says they changed.
//!
//! The status of Ingresses and the Events for missing Secrets are written
//! by the control plane (`shoal_control::controllers::ingress`), once, not
//! by every node.

pub mod metrics;
pub mod routes;
pub mod server;
pub mod tls;
pub mod upstream;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use rustls::sign::CertifiedKey;
use shoal_model::resources::{ENDPOINTSLICES, INGRESSCLASSES, INGRESSES, SECRETS, SERVICES};
use shoal_store::{ReadRequest, Store};

use crate::proxy::Status;
use metrics::IngressMetrics;
use routes::{Certs, Routes, CLASS, DEFAULT_CLASS_ANNOTATION};

type Key = (String, String);

/// What a node's Ingress controller needs.
pub struct IngressStart {
    pub store: Store,
    pub node: String,
    /// Where it listens (the node's address); port 0: that listener is off.
    pub http_port: u16,
    pub https_port: u16,
    /// Threads of the data plane's own runtime (0: one per core).
    pub threads: usize,
    pub metrics: IngressMetrics,
    pub status: Arc<Mutex<Status>>,
}

impl IngressStart {
    /// Serves the node's Ingress on `ip`, forever.
    pub async fn run(self, ip: IpAddr) {
        if self.http_port == 0 && self.https_port == 0 {
            return;
        }
        let routes = Arc::new(RwLock::new(Arc::new(Routes::default())));
        let shared = server::Shared::new(routes.clone(), self.metrics.clone());
        let default_cert = match tls::default_cert() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("ingress: no default certificate, no HTTPS: {e}");
                return;
            }
        };
        let resolver = Arc::new(tls::Resolver {
            routes: routes.clone(),
            default: default_cert,
        });
        let data_plane = match data_plane(self.threads) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("ingress: no runtime for the data plane: {e}");
                return;
            }
        };
        let listeners = [(self.http_port, false), (self.https_port, true)];
        for (port, https) in listeners.into_iter().filter(|(p, _)| *p != 0) {
            let (shared, status, resolver) =
                (shared.clone(), self.status.clone(), resolver.clone());
            data_plane.spawn(async move {
                let what = if https { "HTTPS" } else { "HTTP" };
                let listener = server::bind(SocketAddr::new(ip, port), what).await;
                let at = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!("ingress: {what} on {at}");
                let tls = if https {
                    match tls::server_config(resolver) {
                        Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
                        Err(e) => {
                            tracing::error!("ingress: HTTPS: {e}");
                            return;
                        }
                    }
                } else {
                    None
                };
                {
                    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                    *(if https {
                        &mut s.ingress_https
                    } else {
                        &mut s.ingress_http
                    }) = Some(at);
                }
                server::serve(listener, tls, shared).await
            });
        }
        let mut state = State {
            store: Some(self.store.clone()),
            node: self.node.clone(),
            routes,
            metrics: self.metrics,
            status: self.status,
            ..State::default()
        };
        let prefixes = [
            INGRESSES.prefix(None),
            INGRESSCLASSES.prefix(None),
            SERVICES.prefix(None),
            ENDPOINTSLICES.prefix(None),
        ];
        let who = format!("ingress of {}", self.node);
        let secrets = [SECRETS.prefix(None)];
        crate::follow::follow(&self.store, &who, &prefixes, &secrets, &mut state).await
    }
}

/// The data plane's own runtime, on threads of its own (so requests do
/// not queue behind the node's other work, and an operator can size it as
/// nginx's `worker_processes`): one thread runs a current-thread runtime.
fn data_plane(threads: usize) -> std::io::Result<tokio::runtime::Handle> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ingress")
            .enable_all()
            .build()?
    };
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("ingress".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// What the controller knows, and the table it serves.
#[derive(Default)]
struct State {
    store: Option<Store>,
    node: String,
    routes: Arc<RwLock<Arc<Routes>>>,
    metrics: IngressMetrics,
    status: Arc<Mutex<Status>>,
    ingresses: HashMap<Key, Ingress>,
    shoal_is_default: bool,
    services: HashMap<Key, Service>,
    /// By (namespace, slice name), with their Service's name.
    slices: HashMap<Key, (String, EndpointSlice)>,
    /// TLS Secrets as read, by (namespace, name).
    certs: HashMap<Key, Result<Arc<CertifiedKey>, String>>,
    /// Secrets to read again (they changed).
    stale: BTreeSet<Key>,
    /// Services (namespace, name) the current table uses.
    used: BTreeSet<Key>,
    /// A change the table must take in.
    dirty: bool,
}

fn split(key: &[u8], prefix: &[u8]) -> Option<Key> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix)?).ok()?;
    match rest.split_once('/') {
        Some((ns, name)) => Some((ns.to_string(), name.to_string())),
        None => Some((String::new(), rest.to_string())),
    }
}

/// Keeps `value` (a JSON object) under `k`, or forgets `k` (deleted).
fn parse_into<T: serde::de::DeserializeOwned>(map: &mut HashMap<Key, T>, k: Key, value: &[u8]) {
    match serde_json::from_slice(value) {
        Ok(v) if !value.is_empty() => {
            map.insert(k, v);
        }
        _ => {
            map.remove(&k);
        }
    }
}

impl State {
    fn ours(&self) -> impl Iterator<Item = &Ingress> {
        self.ingresses
            .values()
            .filter(|i| routes::is_ours(i, self.shoal_is_default))
    }

    /// The TLS Secrets our Ingresses name.
    fn tls_secrets(&self) -> BTreeSet<Key> {
        self.ours()
            .flat_map(|i| {
                let ns = i.metadata.namespace.clone().unwrap_or_default();
                i.spec
                    .iter()
                    .flat_map(|s| s.tls.iter().flatten())
                    .filter_map(move |t| t.secret_name.clone().map(|n| (ns.clone(), n)))
            })
            .collect()
    }

    /// Reads the TLS Secrets that are new or changed.
    async fn read_secrets(&mut self) {
        let wanted = self.tls_secrets();
        self.certs.retain(|k, _| wanted.contains(k));
        let Some(store) = self.store.clone() else {
            return;
        };
        for k in wanted {
            if self.certs.contains_key(&k) && !self.stale.contains(&k) {
                continue;
            }
            let read = store.read(ReadRequest::key(SECRETS.key(&k.0, &k.1))).await;
            let cert = match read {
                Ok(r) => match r.kvs.first() {
                    Some(kv) => serde_json::from_slice::<Secret>(&kv.value)
                        .map_err(|e| format!("not a Secret: {e}"))
                        .and_then(|s| tls::from_secret(&s)),
                    None => Err("the Secret does not exist".into()),
                },
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &cert {
                tracing::warn!(
                    "ingress: TLS Secret {}/{}: {e} (the default certificate serves)",
                    k.0,
                    k.1
                );
            }
            self.certs.insert(k, cert);
        }
        self.stale.clear();
    }

    /// Builds the table and swaps it in.
    fn rebuild(&mut self, rev: u64) {
        let ours: Vec<&Ingress> = self.ours().collect();
        let mut certs = Certs::default();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|i| i.metadata.creation_timestamp.as_ref().map(|t| t.0));
        for ing in &sorted {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(Ok(cert)) = t
                    .secret_name
                    .as_ref()
                    .and_then(|n| self.certs.get(&(ns.clone(), n.clone())))
                else {
                    continue;
                };
                for host in t.hosts.iter().flatten() {
                    let host = host.to_ascii_lowercase();
                    let (map, name) = match host.strip_prefix("*.") {
                        Some(suffix) => (&mut certs.wildcard, suffix.to_string()),
                        None => (&mut certs.exact, host),
                    };
                    map.entry(name).or_insert_with(|| cert.clone());
                }
            }
        }
        let used: BTreeSet<Key> = ours
            .iter()
            .flat_map(|i| {
                let ns = i.metadata.namespace.clone().unwrap_or_default();
                let spec = i.spec.as_ref();
                let defaults = spec.and_then(|s| s.default_backend.as_ref());
                let paths = spec
                    .into_iter()
                    .flat_map(|s| s.rules.iter().flatten())
                    .flat_map(|r| r.http.iter().flat_map(|h| &h.paths))
                    .map(|p| &p.backend);
                defaults
                    .into_iter()
                    .chain(paths)
                    .filter_map(|b| b.service.as_ref())
                    .map(move |s| (ns.clone(), s.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Only the slices of Services an Ingress uses (not every slice of
        // the cluster, on every rebuild).
        let mut slices: HashMap<Key, Vec<EndpointSlice>> = HashMap::new();
        for ((ns, _), (svc, s)) in &self.slices {
            let key = (ns.clone(), svc.clone());
            if used.contains(&key) {
                slices.entry(key).or_default().push(s.clone());
            }
        }
        let table = Routes::build(&ours, &self.services, &slices, certs, &self.node);
        let count = table.ingresses;
        self.used = used;
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.dirty = false;
        self.metrics.reloads.inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.last_reload.set(now);
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.ingresses = count;
        s.ingress_revision = rev;
    }
}

#[async_trait::async_trait]
impl crate::follow::Follower for State {
    fn reset(&mut self) {
        self.ingresses.clear();
        self.services.clear();
        self.slices.clear();
        self.certs.clear();
        self.stale.clear();
        self.shoal_is_default = false;
        self.dirty = true;
    }

    fn apply(&mut self, key: &[u8], value: &[u8]) {
        if let Some(k) = split(key, &INGRESSES.prefix(None)) {
            parse_into(&mut self.ingresses, k, value);
            self.dirty = true;
        } else if let Some((_, name)) = split(key, &INGRESSCLASSES.prefix(None)) {
            if name == CLASS {
                let class = serde_json::from_slice::<IngressClass>(value).ok();
                self.shoal_is_default = class.is_some_and(|c| {
                    c.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                        .is_some_and(|v| v == "true")
                });
                self.dirty = true;
            }
        } else if let Some(k) = split(key, &SERVICES.prefix(None)) {
            self.dirty |= self.used.contains(&k);
            parse_into(&mut self.services, k, value);
        } else if let Some(k) = split(key, &ENDPOINTSLICES.prefix(None)) {
            if let Some((svc, _)) = self.slices.remove(&k) {
                self.dirty |= self.used.contains(&(k.0.clone(), svc));
            }
            let Ok(s) = serde_json::from_slice::<EndpointSlice>(value) else {
                return;
            };
            if let Some(svc) = crate::model::service_of(&s) {
                self.dirty |= self.used.contains(&(k.0.clone(), svc.clone()));
                self.slices.insert(k, (svc, s));
            }
        } else if let Some(k) = split(key, &SECRETS.prefix(None)) {
            // A node sees a Secret's key and revision, not its value: read
            // it again if an Ingress uses it.
            if self.certs.contains_key(&k) {
                self.stale.insert(k);
                self.dirty = true;
            }
        }
    }

    async fn listed(&mut self, rev: u64) {
        self.read_secrets().await;
        self.rebuild(rev);
    }

    async fn changed(&mut self, rev: u64) {
        if self.dirty {
            self.read_secrets().await;
            self.rebuild(rev);
        } else {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            s.ingress_revision = rev;
        }
    }
}
