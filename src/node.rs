//! Wiring: builds one node's components from its config and connects them.
//!
//! ```text
//!  DataDir (lock, identity, generation)
//!  Faults ──► Transport (QUIC) ◄── Registry ◄── diag, chaos actors
//!     │           ▲ peer table
//!     └──► Membership (SWIM) ── events ─┘
//!  API (HTTPS) ── Membership, Faults, Metrics
//! ```
//!
//! Nothing here decides anything; it only starts, connects and stops. Must
//! run inside a node's actor system (`actor::local::run_system` or
//! `block_on_system`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::actor::{self, ActorSystem, Registry};
use crate::config::NodeConfig;
use crate::datadir::DataDir;
use crate::membership::meta::{Capacity, NodeMeta};
use crate::membership::{Membership, MembershipSettings};
use crate::metrics::Metrics;
use crate::store::log_store::LogStore;
use crate::store::state_machine::{SmSettings, StateMachine};
use crate::store::{Store, TypeConfig};
use crate::transport::faults::Faults;
use crate::transport::{tls, Transport, TransportSettings};

/// Cheap-clone handle to a running node's components.
#[derive(Clone)]
pub struct NodeHandle {
    pub name: String,
    pub actors: ActorSystem,
    pub membership: Membership,
    pub faults: Faults,
    pub metrics: Metrics,
    pub api_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub gossip_addr: SocketAddr,
    /// Turns true when the node should exit (after `leave`).
    pub exit: watch::Receiver<bool>,
    /// Starts actors on this node's actor thread.
    pub spawner: actor::Spawner,
    /// The replicated store, as seen from this node.
    pub store: Store,
    /// This node's watch cache of the Kubernetes objects.
    pub cache: crate::model::cache::Cache,
}

/// Start options that are not configuration (tests, tools).
#[derive(Clone, Default)]
pub struct NodeOptions {
    /// Storage backends for the store's databases (power-loss and full-disk
    /// tests); `None` uses the real files.
    pub disks: Option<crate::store::DiskFactory>,
    /// The control plane's clock (a fake one drives CronJob schedules in
    /// tests); None: the system's.
    pub clock: Option<shoal_control::clock::Clock>,
}

/// A running node; dropping it without `shutdown` is a crash.
pub struct Node {
    pub handle: NodeHandle,
    api_stop: watch::Sender<bool>,
    /// Runs the leader-follow singletons (autopilot) while this node leads.
    _singletons: crate::store::singleton::SingletonHost,
    _datadir: Arc<Mutex<DataDir>>,
}

impl Node {
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Node> {
        Self::start_with(cfg, NodeOptions::default()).await
    }

    /// `start` with options that only tests and tools set.
    pub async fn start_with(cfg: NodeConfig, opts: NodeOptions) -> anyhow::Result<Node> {
        crate::install_crypto_provider();
        cfg.validate()?;
        let datadir = DataDir::open(&cfg.data_dir, &cfg.cluster_id, &cfg.name)?;
        let generation = datadir.generation();
        let raft_id = datadir.identity().raft_id;
        let data_path = datadir.path().to_owned();
        let datadir = Arc::new(Mutex::new(datadir));

        let material = tls::TlsMaterial::load(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key)?;
        // A node without the api role keeps only the token's digest, and
        // one without the api and store roles no secrets key (`start_store`).
        let token = admin_token_digest(&cfg)?;
        let key_bytes = crate::pki::read_hex_secret(&cfg.gossip.key_file, Some(32))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&key_bytes);

        let metrics = Metrics::new(&cfg.name);
        let faults = Faults::default();
        let registry = Registry::default();
        let transport = Transport::bind(
            TransportSettings {
                node: cfg.name.clone(),
                listen: cfg.listen.quic,
                tls: material.clone(),
                max_frame_bytes: cfg.transport.max_frame_bytes,
                connect_timeout: Duration::from_millis(cfg.transport.connect_timeout_ms),
                idle_timeout: Duration::from_millis(cfg.transport.idle_timeout_ms),
                keep_alive: Duration::from_millis(cfg.transport.keep_alive_ms),
                subscription_buffer: cfg.transport.subscription_buffer,
                max_bidi_streams: cfg.transport.max_bidi_streams,
                max_uni_streams: cfg.transport.max_uni_streams,
            },
            registry.clone(),
            faults.clone(),
            metrics.clone(),
        )?;
        // A node acts only in the roles its certificate certifies: the
        // others refuse what it asks beyond them.
        let certified = transport.roles();
        if let Some(r) = cfg.roles.iter().find(|r| {
            !crate::actor::Roles::named(r.as_str()).is_some_and(|r| certified.contains(r))
        }) {
            anyhow::bail!(
                "roles: the certificate {} certifies roles {certified}, not {:?}: issue it again (shoal init) or drop the role",
                cfg.tls.cert.display(),
                r.as_str()
            );
        }
        for p in &cfg.peers {
            transport.set_peer(&p.name, p.quic);
        }
        let actors = ActorSystem::new(transport.clone(), cfg.transport.subscription_buffer);

        let mailbox = cfg.transport.mailbox_capacity;
        let diag = actor::spawn(actor::diag::DiagActor::default(), mailbox);
        actor::diag::serve(&registry, diag);
        let chaos = actor::spawn(crate::chaos::ChaosActor::new(faults.clone()), mailbox);
        registry.serve::<crate::chaos::ChaosActor, crate::chaos::Apply>(crate::chaos::ACTOR, chaos);

        let store = start_store(&cfg, &data_path, raft_id, &actors, &registry, &opts).await?;

        let listener = tokio::net::TcpListener::bind(cfg.listen.api)
            .await
            .with_context(|| format!("cannot bind the API on {}", cfg.listen.api))?;
        let api_addr = listener.local_addr()?;

        let meta = NodeMeta {
            name: cfg.name.clone(),
            generation,
            seq: 0,
            leaving: false,
            roles: cfg.roles.iter().map(|r| r.as_str().to_string()).collect(),
            region: cfg.region.clone(),
            zone: cfg.zone.clone(),
            api: Some(cfg.listen.advertised(api_addr)),
            quic: cfg.listen.advertised(transport.local_addr()),
            version: crate::VERSION.to_string(),
            capacity: Capacity {
                cpu_millis: cfg.capacity.cpu_millis,
                memory_bytes: cfg.capacity.memory_bytes,
                pods: cfg.capacity.pods,
            },
        };
        let dd = datadir.clone();
        let node_name = cfg.name.clone();
        let membership = Membership::start(
            MembershipSettings {
                name: cfg.name.clone(),
                bind: cfg.listen.gossip,
                generation,
                seeds: cfg
                    .peers
                    .iter()
                    .map(|p| (p.name.clone(), p.gossip))
                    .collect(),
                gossip: cfg.gossip.clone(),
                advertise: cfg.listen.advertise,
                key,
                meta,
                tls: material.clone(),
                on_generation: Box::new(move |g| {
                    let mut d = dd.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = d.set_generation(g) {
                        tracing::error!(node = %node_name, "cannot persist generation {g}: {e}");
                    }
                }),
            },
            faults.clone(),
            metrics.clone(),
        )
        .await?;

        // Consumer 1 of membership events: the transport's peer table.
        let mut events = membership.subscribe(1024).await?;
        let peer_table = transport.clone();
        tokio::spawn(async move {
            let mut generations = std::collections::HashMap::new();
            while let Some(ev) = events.recv().await {
                if let Some(meta) = &ev.meta {
                    peer_table.set_peer(&ev.name, meta.quic);
                }
                // A node that is down, gone, or back as a new generation (a
                // restart): drop its connection now rather than wait for the
                // QUIC idle timeout on a dead endpoint.
                let restarted = generations
                    .insert(ev.name.clone(), ev.generation)
                    .is_some_and(|g| g != ev.generation);
                if restarted
                    || matches!(
                        ev.state,
                        crate::membership::MemberState::Down | crate::membership::MemberState::Left
                    )
                {
                    peer_table.disconnect(&ev.name);
                }
            }
        });

        // The watch cache of this node's replica: the Kubernetes API serves
        // from it, and the control plane reads it while this node leads. A
        // node without the API role starts it only when it first leads: a
        // copy of every object is the largest memory cost of a node.
        let cache = if cfg.has_role(crate::config::Role::Api) {
            crate::model::cache::Cache::start(store.clone())
        } else {
            crate::model::cache::Cache::lazy(store.clone())
        };

        // Consumer 3: autopilot and the control plane, leader-follow
        // singletons.
        // The address ranges every writer of objects allocates from.
        let allocators = Arc::new(crate::model::registry::Allocators {
            services: crate::model::alloc::Ranges::new(
                &cfg.api.service_cidr,
                &cfg.api.node_port_range,
            )
            .map_err(|e| anyhow::anyhow!("api: {e}"))?,
            pod_cidrs: crate::model::podcidr::PodCidrs::new(&cfg.kubelet.pod_cidr)
                .map_err(|e| anyhow::anyhow!("kubelet.pod_cidr: {e}"))?,
        });
        let mut leader_only = crate::store::autopilot::singletons(
            membership.clone(),
            Duration::from_millis(cfg.store.autopilot_down_after_ms),
            cfg.store.voters,
        );
        leader_only.push(Arc::new(crate::controllers::ControlPlane {
            cache: cache.clone(),
            membership: membership.clone(),
            actors: actors.clone(),
            config: cfg.control_plane.clone(),
            allocators: allocators.clone(),
            clock: opts.clock.clone().unwrap_or_default(),
        }));
        let singletons = crate::store::singleton::SingletonHost::start(store.clone(), leader_only);

        // Consumer 2: nodes with the store role join the store as learners.
        // Until gossip tells who has that role, the configured peers are
        // the replicas a node without one asks.
        store.set_replicas(cfg.peers.iter().map(|p| p.name.clone()).collect());
        let mut events = membership.subscribe(1024).await?;
        let admit = store.clone();
        let me = cfg.name.clone();
        tokio::spawn(async move {
            let mut candidates = std::collections::BTreeSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        None => return,
                        Some(ev) => {
                            let store_role = ev.meta.as_ref().is_some_and(|m| m.roles.iter().any(|r| r == "store"));
                            if ev.state == crate::membership::MemberState::Alive && store_role && ev.name != me {
                                candidates.insert(ev.name);
                            } else {
                                candidates.remove(&ev.name);
                            }
                            // Where this node's requests go while it holds
                            // no replica (a worker-only node).
                            admit.set_replicas(candidates.iter().cloned().collect());
                        }
                    },
                    _ = tick.tick() => {
                        let list: Vec<String> = candidates.iter().cloned().collect();
                        admit.admit_learners(&list).await;
                    }
                }
            }
        });

        let kube = if cfg.has_role(crate::config::Role::Api) {
            let kube = Arc::new(crate::api::rest::KubeApi {
                cache: cache.clone(),
                store: store.clone(),
                registry: crate::model::registry::Registry::new(
                    Arc::new(store.clone()),
                    Some(cache.clone()),
                    allocators.clone(),
                ),
                actors: actors.clone(),
                timeout: Duration::from_millis(cfg.store.request_timeout_ms)
                    .max(Duration::from_secs(5)),
                watches: crate::api::rest::watch::ClientWatches::new(
                    cfg.api.max_watches_per_client,
                ),
            });
            tokio::spawn(crate::api::rest::bootstrap(kube.clone()));
            Some(kube)
        } else {
            None
        };
        // Worker nodes run a kubelet (`kubelet.runtime`: sim or process)
        // and serve `pods/log` as the `kubelet` actor.
        // Where this node's kubelet registered: the address pods reach the
        // node by, and whether they have sandboxes (the API announces
        // itself there, see below).
        let (registered_tx, registered_rx) =
            tokio::sync::oneshot::channel::<(std::net::Ipv4Addr, bool)>();
        if cfg.has_role(crate::config::Role::Worker) {
            let pod_range = crate::model::podcidr::PodCidrs::new(&cfg.kubelet.pod_cidr)
                .map_err(|e| anyhow::anyhow!("kubelet.pod_cidr: {e}"))?;
            // The runtimes need the node's /24, which registration gives:
            // they are built then (`runtimes`).
            let make = crate::runtimes::make(&cfg, store.clone(), &metrics)?;
            let runtime_name = cfg.kubelet.runtime.as_str();
            let cell = crate::kubelet::RuntimeCell::default();
            let kubelet_actor = actor::spawn(
                crate::kubelet::KubeletActor {
                    runtime: cell.clone(),
                    store: store.clone(),
                    sessions: Default::default(),
                },
                mailbox,
            );
            crate::kubelet::serve_actor(&registry, kubelet_actor);
            let kubelet_metrics = crate::kubelet::KubeletMetrics::default();
            kubelet_metrics.register(&metrics);
            // The service proxy routes ClusterIPs and NodePorts where pods
            // have sandboxes (nftables on the pod bridge); it starts once
            // the node has its slot. Without sandboxes pods share the
            // host's network and no ClusterIP is routed (see the README).
            let status = Arc::new(std::sync::Mutex::new(crate::proxy::proxy::Status::default()));
            crate::proxy::actor::serve(
                &registry,
                actor::spawn(
                    crate::proxy::actor::ProxyActor {
                        status: status.clone(),
                    },
                    mailbox,
                ),
            );
            let sandboxed = cfg.kubelet.runtime.sandboxed()
                && crate::kubelet::process::sandbox::Sandboxes::wanted(cfg.kubelet.network)
                    .unwrap_or(false);
            // The service proxy (rules where pods have sandboxes) and the
            // cluster DNS start once the node has its slot and address.
            // (Every worker: hollow pods have names too.)
            // `kubelet.dns_port = 0` without sandboxes: no DNS and no rules,
            // so nothing of the proxy runs (in-process test clusters).
            // The Ingress controller serves on the node's address from the
            // same moment (its ports 0: none).
            let ingress = crate::proxy::ingress::IngressStart {
                store: store.clone(),
                node: cfg.name.clone(),
                http_port: cfg.kubelet.ingress_http_port,
                https_port: cfg.kubelet.ingress_https_port,
                threads: cfg.kubelet.ingress_threads,
                metrics: Default::default(),
                status: status.clone(),
            };
            ingress.metrics.register(&metrics);
            let with_proxy = sandboxed || cfg.kubelet.dns_port != 0;
            let with_ingress = ingress.http_port != 0 || ingress.https_port != 0;
            let on_registered: Option<crate::kubelet::OnRegistered> =
                if !with_proxy && !with_ingress {
                    None
                } else {
                    let start = crate::proxy::start::ProxyStart {
                        store: store.clone(),
                        node: cfg.name.clone(),
                        pod_cidr: pod_range.network(),
                        service_cidr: parse_cidr(&cfg.api.service_cidr),
                        sandboxed,
                        cluster_domain: cfg.kubelet.cluster_domain.clone(),
                        upstreams: cfg
                            .kubelet
                            .dns_upstreams
                            .iter()
                            .filter_map(|u| u.parse().ok())
                            .collect(),
                        dns_port: cfg.kubelet.dns_port,
                        metrics: Default::default(),
                        dns_metrics: Default::default(),
                        status,
                    };
                    start.metrics.register(&metrics);
                    start.dns_metrics.register(&metrics);
                    Some(Box::new(move |slot, spec| {
                        let gateway = std::net::Ipv4Addr::from(u32::from(slot.network()) + 1);
                        let node_ip = spec.address.parse().unwrap_or(gateway);
                        let reach = if sandboxed { gateway } else { node_ip };
                        let _ = registered_tx.send((reach, sandboxed));
                        if with_proxy {
                            tokio::spawn(start.run(slot.clone(), node_ip));
                        }
                        if with_ingress {
                            tokio::spawn(ingress.run(node_ip.into()));
                        }
                    }))
                };
            let kubelet = crate::kubelet::KubeletStart {
                bridge_address: sandboxed
                    && cfg.kubelet.node_address == crate::kubelet::config::NodeAddress::Bridge,
                on_registered,
                metrics: kubelet_metrics,
                pod_range,
                runtime_name,
                data_dir: cfg.data_dir.clone(),
                cell,
                make,
                store: store.clone(),
                spec: crate::kubelet::NodeSpec {
                    name: cfg.name.clone(),
                    address: cfg.listen.advertised(cfg.listen.api).ip().to_string(),
                    region: cfg.region.clone(),
                    zone: cfg.zone.clone(),
                    milli_cpu: cfg.capacity.cpu_millis,
                    memory_bytes: cfg.capacity.memory_bytes,
                    pods: cfg.capacity.pods as u64,
                },
            };
            tokio::spawn(kubelet.run());
        }
        let (exit_tx, exit_rx) = watch::channel(false);
        let (api_stop, api_stop_rx) = watch::channel(false);
        let api_state = crate::api::ApiState {
            node: cfg.name.clone(),
            token,
            membership: membership.clone(),
            faults: faults.clone(),
            metrics: metrics.clone(),
            exit: Arc::new(exit_tx),
            store: Some(store.clone()),
            kube: kube.clone(),
        };
        let https = tls::https_server_config(&material)?;
        let limits = crate::api::listener::Limits::new(&cfg.api, crate::fdlimit::current());
        let listener_metrics = crate::api::listener::ListenerMetrics::default();
        listener_metrics.register(&metrics);
        let router = crate::api::router(api_state);
        // An API node with a kubelet announces where pods reach its API
        // (the `default/kubernetes` Service's endpoints): with sandboxes,
        // a second listener on its bridge gateway (pods cannot reach the
        // host's 127.0.0.1); without, its own address.
        if kube.is_some() {
            let (https, router, limits, m, stop) = (
                https.clone(),
                router.clone(),
                limits,
                listener_metrics.clone(),
                api_stop_rx.clone(),
            );
            let (store, node, advertised) = (
                store.clone(),
                cfg.name.clone(),
                cfg.listen.advertised(api_addr),
            );
            tokio::spawn(async move {
                let Ok((reach, sandboxed)) = registered_rx.await else {
                    return; // no kubelet here: no Node to announce on
                };
                let at = if sandboxed {
                    let at = SocketAddr::new(reach.into(), api_addr.port());
                    match tokio::net::TcpListener::bind(at).await {
                        Ok(l) => {
                            tokio::spawn(crate::api::serve_tls(l, https, router, limits, m, stop));
                            at
                        }
                        Err(e) => {
                            tracing::error!(%node, "the API on the pods' side ({at}): {e}");
                            return;
                        }
                    }
                } else {
                    advertised
                };
                let at = at.to_string();
                crate::model::announce::announce(
                    &store,
                    &node,
                    crate::model::announce::API_ADDRESS,
                    &at,
                )
                .await;
            });
        }
        tokio::spawn(crate::api::serve_tls(
            listener,
            https,
            router,
            limits,
            listener_metrics,
            api_stop_rx,
        ));

        let handle = NodeHandle {
            name: cfg.name.clone(),
            actors,
            gossip_addr: membership.local_addr(),
            membership,
            faults,
            metrics,
            api_addr,
            quic_addr: transport.local_addr(),
            exit: exit_rx,
            spawner: actor::Spawner::current(),
            store,
            cache,
        };
        tracing::info!(node = %cfg.name, generation, api = %api_addr, quic = %handle.quic_addr, gossip = %handle.gossip_addr, "node started");
        Ok(Node {
            handle,
            api_stop,
            _singletons: singletons,
            _datadir: datadir,
        })
    }

    /// Restart-safe shutdown: stops serving, closes connections politely and
    /// releases the data dir. Peers see this node `down` until it returns.
    pub async fn shutdown(self) {
        let _ = self.api_stop.send(true);
        let _ = self.handle.store.raft().shutdown().await;
        self.handle.membership.shutdown().await;
        self.handle.actors.transport().shutdown();
        tracing::info!(node = %self.handle.name, "node stopped");
    }
}

/// The admin token's digest: hashed from the token on a node with the api
/// role, read from `auth.admin_token_sha256_file` on one without (or from
/// the token when no digest file is named).
fn admin_token_digest(cfg: &NodeConfig) -> anyhow::Result<crate::api::TokenDigest> {
    match &cfg.auth.admin_token_sha256_file {
        Some(path) if !cfg.has_role(crate::config::Role::Api) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            crate::api::TokenDigest::from_hex(&text)
                .ok_or_else(|| anyhow::anyhow!("{}: not a hex SHA-256 digest", path.display()))
        }
        _ => Ok(crate::api::TokenDigest::of(&crate::pki::read_token(
            &cfg.auth.admin_token_file,
        )?)),
    }
}

/// Opens the store's databases, starts Raft and the `store` actor, and, on
/// the first initial voter, the one-time bootstrap.
async fn start_store(
    cfg: &NodeConfig,
    data: &std::path::Path,
    raft_id: u64,
    actors: &ActorSystem,
    registry: &Registry,
    opts: &NodeOptions,
) -> anyhow::Result<Store> {
    let st = &cfg.store;
    let cache = st.cache_mb << 20;
    let disks = opts.disks.as_ref();
    let log = LogStore::open_with(&data.join("raft-log.redb"), cache, disks)?;
    log.step_down_after_restart(raft_id)?;
    let sm = StateMachine::open_with(
        &data.join("state.redb"),
        &data.join("snapshots"),
        cache,
        SmSettings {
            history_revisions: st.history_revisions,
            history_min_age: std::time::Duration::from_millis(st.history_min_age_ms),
            durable_interval: std::time::Duration::from_millis(st.apply_sync_ms),
        },
        disks,
    )?;
    let db = sm.db();
    let hub = sm.hub();
    let raft_cfg = openraft::Config {
        cluster_name: cfg.cluster_id.clone(),
        heartbeat_interval: st.heartbeat_ms,
        election_timeout_min: st.election_timeout_min_ms,
        election_timeout_max: st.election_timeout_max_ms,
        install_snapshot_timeout: 2_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(st.snapshot_every),
        max_in_snapshot_log_to_keep: st.logs_to_keep,
        purge_batch_size: 256,
        ..Default::default()
    }
    .validate()?;
    let network = crate::store::network::Network {
        actors: actors.clone(),
        me: raft_id,
        // Half a frame (room for postcard and envelope overhead), and no
        // more than one heartbeat can carry: openraft gives each
        // AppendEntries the heartbeat interval to be answered in.
        max_append_bytes: (cfg.transport.max_frame_bytes / 2)
            .min(crate::store::network::MAX_APPEND_BYTES),
    };
    let raft =
        openraft::Raft::<TypeConfig>::new(raft_id, Arc::new(raft_cfg), network, log, sm).await?;
    let mut store = Store::new(raft, actors.clone(), db, &cfg.name, raft_id)
        .with_watch(hub, Duration::from_millis(st.watch_leaderless_ms))
        .with_policy(Arc::new(crate::model::node_authorizer::NodeAuthorizer));
    if cfg.has_role(crate::config::Role::Api) || cfg.has_role(crate::config::Role::Store) {
        let key = crate::pki::read_hex_secret(&st.secrets_key_file, Some(32))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| anyhow::anyhow!("secrets key must be 32 bytes"))?;
        store = store.with_secrets(crate::store::secrets::SecretBox::new(&key));
    }
    store.timeout = Duration::from_millis(st.request_timeout_ms);
    let addr = actor::spawn(
        crate::store::actor::StoreActor::new(store.clone()),
        cfg.transport.mailbox_capacity,
    );
    crate::store::actor::serve(registry, addr, store.raft());
    if st.initial_voters.first() == Some(&cfg.name) {
        let s = store.clone();
        let voters = st.initial_voters.clone();
        tokio::spawn(async move { s.bootstrap(voters).await });
    }
    Ok(store)
}

/// `a.b.c.d/len` (`api.service_cidr`, checked when the config loads).
fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}
