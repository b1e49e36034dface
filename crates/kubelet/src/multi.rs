//! A node that offers more than one runtime: [`MultiRuntime`] runs each
//! pod with the handler its RuntimeClass names (`spec.runtimeClassName`,
//! read through a [`ClassLookup`]), and pods that name none with the
//! node's default runtime (`[kubelet] runtime`).
//!
//! ```text
//! start(pod) ─► runtimeClassName? ─► RuntimeClass.handler ─► that runtime (process, docker)
//!                    └─ none ─► the default runtime
//! ```
//!
//! The default runtime is there from the start. The others are built in
//! the background, and again after a failure, so a node whose Docker
//! Engine is missing still runs its process pods. A pod whose handler is
//! not built yet waits (`ContainerCreating`, saying why) and starts when
//! it is. Each runtime's handlers, and whether they can start pods now,
//! are merged into one pushed list ([`Runtime::handlers`]): the kubelet
//! publishes it on its Node as labels and a condition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, watch};

use shoal_kubelet_proto::PodLogs;

use crate::{
    ContainerState, ContainerStatus, Handler, NodeImage, PodConfig, PodState, Runtime, RuntimeError,
};

/// The handler a RuntimeClass names: Ok(None) when there is no such
/// class, Err when the store could not say.
pub type ClassLookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Option<String>, String>> + Send + Sync>;

/// Builds one runtime; called again (after a pause) while it fails.
pub type Build =
    Box<dyn FnMut() -> BoxFuture<'static, Result<Arc<dyn Runtime>, RuntimeError>> + Send>;

/// The pause between two tries at building a runtime.
const REBUILD_PAUSE: Duration = Duration::from_secs(5);

/// The runtimes of one node, one per handler (cheap to clone).
#[derive(Clone)]
pub struct MultiRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    default: Arc<dyn Runtime>,
    default_name: String,
    /// The other handlers, each with its runtime once built.
    others: BTreeMap<String, OnceLock<Arc<dyn Runtime>>>,
    /// Which handler runs each pod it started.
    placed: Mutex<HashMap<String, String>>,
    /// Pods whose handler is not built (or not offered), by uid.
    waiting: Mutex<HashMap<String, Waiting>>,
    lookup: ClassLookup,
    changes: broadcast::Sender<String>,
    /// Changes made while nobody listened (a runtime built before the
    /// kubelet subscribed), told to the next subscriber.
    unheard: Mutex<Vec<String>>,
    /// Each handler's state, by name; `handlers` is pushed its values.
    states: Mutex<BTreeMap<String, Handler>>,
    handlers: watch::Sender<Vec<Handler>>,
}

struct Waiting {
    handler: String,
    config: PodConfig,
    why: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MultiRuntime {
    /// The node's `default` runtime, and `others` by handler name, built
    /// in the background. Must be called within a Tokio runtime.
    pub fn new(
        default: Arc<dyn Runtime>,
        others: Vec<(String, Build)>,
        lookup: ClassLookup,
    ) -> MultiRuntime {
        let default_name = default.name().to_string();
        let mut states = BTreeMap::new();
        states.insert(
            default_name.clone(),
            Handler {
                name: default_name.clone(),
                default: true,
                problem: None,
            },
        );
        for (name, _) in &others {
            states.insert(
                name.clone(),
                Handler {
                    name: name.clone(),
                    default: false,
                    problem: Some(format!("the {name} runtime is starting")),
                },
            );
        }
        let multi = MultiRuntime {
            inner: Arc::new(Inner {
                default: default.clone(),
                default_name: default_name.clone(),
                others: others
                    .iter()
                    .map(|(name, _)| (name.clone(), OnceLock::new()))
                    .collect(),
                placed: Mutex::new(HashMap::new()),
                waiting: Mutex::new(HashMap::new()),
                lookup,
                changes: broadcast::channel(1024).0,
                unheard: Mutex::new(Vec::new()),
                handlers: watch::channel(states.values().cloned().collect()).0,
                states: Mutex::new(states),
            }),
        };
        multi.follow(&default_name, &default);
        for (name, build) in others {
            tokio::spawn(multi.clone().build(name, build));
        }
        multi
    }

    /// Builds handler `name`'s runtime, trying again while it fails (the
    /// failure is the handler's problem meanwhile), then starts the pods
    /// that waited for it.
    async fn build(self, name: String, mut build: Build) {
        let rt = loop {
            match build().await {
                Ok(rt) => break rt,
                Err(e) => {
                    tracing::warn!(
                        "kubelet: the {name} runtime: {e} (trying again in {REBUILD_PAUSE:?})"
                    );
                    self.set_problem(&name, Some(format!("the {name} runtime: {e}")));
                    tokio::time::sleep(REBUILD_PAUSE).await;
                }
            }
        };
        let Some(slot) = self.inner.others.get(&name) else {
            return;
        };
        let _ = slot.set(rt.clone());
        self.follow(&name, &rt);
        tracing::info!("kubelet: the {name} runtime is ready");
        let ready: Vec<PodConfig> = {
            let mut waiting = lock(&self.inner.waiting);
            let uids: Vec<String> = waiting
                .iter()
                .filter(|(_, w)| w.handler == name)
                .map(|(uid, _)| uid.clone())
                .collect();
            uids.iter()
                .filter_map(|uid| waiting.remove(uid))
                .map(|w| w.config)
                .collect()
        };
        // The pods it adopted from a previous agent: pushed, so the kubelet
        // reports them, or stops those no longer bound here.
        for uid in rt.running() {
            lock(&self.inner.placed).insert(uid.clone(), name.clone());
            self.announce(uid);
        }
        for config in ready {
            let uid = config.uid().to_string();
            lock(&self.inner.placed).insert(uid.clone(), name.clone());
            if !rt.resolved(&uid) {
                // Adopted: the kubelet resolved it for the waiting start.
                rt.update(&config);
            }
            rt.start(&config).await;
            self.announce(uid);
        }
    }

    /// Tells the kubelet that pod `uid` changed, now or, if it does not
    /// listen yet, when it does.
    fn announce(&self, uid: String) {
        let mut unheard = lock(&self.inner.unheard);
        if self.inner.changes.receiver_count() == 0 {
            unheard.push(uid);
        } else {
            let _ = self.inner.changes.send(uid);
        }
    }

    /// Forwards `rt`'s state changes and the state of its handler.
    fn follow(&self, name: &str, rt: &Arc<dyn Runtime>) {
        if let Some(mut rx) = rt.changes() {
            let tx = self.inner.changes.clone();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(uid) => {
                            let _ = tx.send(uid);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
        let mut rx = rt.handlers();
        let (me, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            loop {
                let problem = rx
                    .borrow_and_update()
                    .iter()
                    .find_map(|h| h.problem.clone());
                me.set_problem(&name, problem);
                if rx.changed().await.is_err() {
                    break;
                }
                // Told even when no problem changed: its images may have.
                me.inner.handlers.send_modify(|_| {});
            }
        });
    }

    fn set_problem(&self, name: &str, problem: Option<String>) {
        let mut states = lock(&self.inner.states);
        if let Some(h) = states.get_mut(name) {
            if h.problem != problem {
                h.problem = problem;
                self.inner
                    .handlers
                    .send_replace(states.values().cloned().collect());
            }
        }
    }

    /// The runtime that runs pod `uid`: where it was placed, else the one
    /// that knows it (adopted after an agent restart), else the default.
    fn route(&self, uid: &str) -> Arc<dyn Runtime> {
        if let Some(h) = lock(&self.inner.placed).get(uid) {
            if let Some(rt) = self.runtime(h) {
                return rt;
            }
        }
        self.built()
            .into_iter()
            .find(|rt| rt.state(uid).is_some())
            .unwrap_or_else(|| self.inner.default.clone())
    }

    fn runtime(&self, handler: &str) -> Option<Arc<dyn Runtime>> {
        if handler == self.inner.default_name {
            return Some(self.inner.default.clone());
        }
        self.inner.others.get(handler)?.get().cloned()
    }

    /// The runtimes built so far, the default first.
    fn built(&self) -> Vec<Arc<dyn Runtime>> {
        std::iter::once(self.inner.default.clone())
            .chain(self.inner.others.values().filter_map(|s| s.get().cloned()))
            .collect()
    }

    /// The handler pod `config` names through its RuntimeClass (the
    /// default without one); Err says why it has none.
    async fn handler_of(&self, config: &PodConfig) -> Result<String, String> {
        let class = config
            .spec()
            .and_then(|s| s.runtime_class_name.as_deref())
            .filter(|c| !c.is_empty());
        let Some(class) = class else {
            return Ok(self.inner.default_name.clone());
        };
        match (self.inner.lookup)(class.to_string()).await {
            Ok(Some(handler)) => Ok(handler),
            Ok(None) => Err(format!("RuntimeClass {class:?} not found")),
            Err(e) => Err(format!("reading RuntimeClass {class:?}: {e}")),
        }
    }

    /// Where a pod that cannot start yet is: each container waiting.
    fn waiting_state(config: &PodConfig, why: &str) -> PodState {
        let waiting = |c: &k8s_openapi::api::core::v1::Container| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: ContainerState::Waiting {
                reason: "ContainerCreating".into(),
                message: why.to_string(),
            },
            ready: false,
            restart_count: 0,
            last_state: None,
            container_id: String::new(),
        };
        PodState {
            pod_ip: String::new(),
            containers: config.containers().iter().map(waiting).collect(),
            init_containers: config.init_containers().iter().map(waiting).collect(),
        }
    }
}

impl Runtime for MultiRuntime {
    fn name(&self) -> &'static str {
        self.inner.default.name()
    }

    fn start(&self, pod: &PodConfig) -> BoxFuture<'static, PodState> {
        let uid = pod.uid().to_string();
        let placed = lock(&self.inner.placed).get(&uid).cloned();
        if let Some(rt) = placed.and_then(|h| self.runtime(&h)) {
            return rt.start(pod);
        }
        if let Some(rt) = self.built().into_iter().find(|rt| rt.state(&uid).is_some()) {
            return rt.start(pod);
        }
        let (me, config) = (self.clone(), pod.clone());
        Box::pin(async move {
            let handler = match me.handler_of(&config).await {
                Ok(h) => h,
                Err(why) => return MultiRuntime::waiting_state(&config, &why),
            };
            if let Some(rt) = me.runtime(&handler) {
                lock(&me.inner.placed).insert(uid, handler);
                return rt.start(&config).await;
            }
            let why = match lock(&me.inner.states).get(&handler) {
                Some(h) => h
                    .problem
                    .clone()
                    .unwrap_or_else(|| format!("the {handler} runtime is starting")),
                None => format!("RuntimeHandler {handler:?} not supported by this node"),
            };
            let state = MultiRuntime::waiting_state(&config, &why);
            lock(&me.inner.waiting).insert(
                uid,
                Waiting {
                    handler,
                    config,
                    why,
                },
            );
            state
        })
    }

    fn stop(&self, uid: &str, grace: Duration) -> BoxFuture<'static, ()> {
        lock(&self.inner.waiting).remove(uid);
        let rt = self.route(uid);
        lock(&self.inner.placed).remove(uid);
        rt.stop(uid, grace)
    }

    fn running(&self) -> Vec<String> {
        let mut all: Vec<String> = self.built().iter().flat_map(|rt| rt.running()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    fn logs(&self, req: &PodLogs, uid: &str) -> BoxFuture<'static, Result<String, RuntimeError>> {
        self.route(uid).logs(req, uid)
    }

    fn follow(
        &self,
        req: &PodLogs,
        uid: &str,
        sink: shoal_fabric::actor::Sink<String>,
    ) -> BoxFuture<'static, ()> {
        self.route(uid).follow(req, uid, sink)
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        let mut unheard = lock(&self.inner.unheard);
        let rx = self.inner.changes.subscribe();
        for uid in unheard.drain(..) {
            let _ = self.inner.changes.send(uid);
        }
        Some(rx)
    }

    fn exec(
        &self,
        req: &shoal_kubelet_proto::Exec,
        uid: &str,
        input: Option<mpsc::Receiver<shoal_kubelet_proto::Input>>,
        sink: shoal_fabric::actor::Sink<shoal_kubelet_proto::ExecEvent>,
    ) -> BoxFuture<'static, ()> {
        self.route(uid).exec(req, uid, input, sink)
    }

    fn connect(
        &self,
        uid: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<tokio::net::TcpStream, RuntimeError>> {
        self.route(uid).connect(uid, port)
    }

    fn state(&self, uid: &str) -> Option<PodState> {
        if let Some(w) = lock(&self.inner.waiting).get(uid) {
            return Some(MultiRuntime::waiting_state(&w.config, &w.why));
        }
        self.route(uid).state(uid)
    }

    fn needs_config(&self) -> bool {
        // The other runtimes (process, docker) always want it.
        self.inner.default.needs_config() || !self.inner.others.is_empty()
    }

    fn update(&self, pod: &PodConfig) {
        if let Some(w) = lock(&self.inner.waiting).get_mut(pod.uid()) {
            w.config = pod.clone();
            return;
        }
        self.route(pod.uid()).update(pod);
    }

    fn resolved(&self, uid: &str) -> bool {
        self.route(uid).resolved(uid)
    }

    fn handlers(&self) -> watch::Receiver<Vec<Handler>> {
        self.inner.handlers.subscribe()
    }

    fn images(&self) -> BoxFuture<'static, Vec<NodeImage>> {
        let all: Vec<_> = self.built().iter().map(|rt| rt.images()).collect();
        Box::pin(async move {
            let mut images: Vec<NodeImage> = futures::future::join_all(all)
                .await
                .into_iter()
                .flatten()
                .collect();
            images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
            images
        })
    }
}

#[cfg(test)]
mod tests;
