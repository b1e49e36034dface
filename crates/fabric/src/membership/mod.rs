//! Membership: SWIM gossip with foca over AEAD-sealed UDP.
//!
//! ```text
//!  UDP ──open──► foca ──notifications──► MemberTable ──events──► subscribers
//!   ▲              │ sends / timers                                (transport peer
//!   └──seal◄───────┘                                                table, API, …)
//! ```
//!
//! One loop owns foca, the socket, the timer heap and the member table; the
//! rest of the node holds a cheap-clone [`Membership`] handle. Gossip runs on
//! its own UDP socket, so it never shares congestion control with the QUIC
//! actor streams. Fault rules apply per packet, in both directions.
//!
//! Joining: announce to every seed at start, again every announce period
//! while no member is alive, and to seeds not currently alive. After a
//! partition each side sees the other `down`; foca's announce-to-down plus
//! identity renewal (generation + 1, persisted) brings both sides back.

pub mod gossip;
pub mod identity;
pub mod meta;
pub mod signed;
pub mod view;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PeriodicParams, PostcardCodec, Timer};
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::actor::{Message, Recipient};
use crate::metrics::Metrics;
use crate::transport::faults::{Faults, Verdict};
use gossip::GossipCipher;
pub use identity::NodeId;
use meta::{MetaHandler, NodeMeta};
use view::MemberTable;
pub use view::{MemberEvent, MemberInfo, MemberState};

impl Message for MemberEvent {
    type Reply = ();
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot bind gossip socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("membership loop has stopped")]
    Stopped,
    #[error("cannot sign node metadata: {0}")]
    Signer(String),
}

/// Everything the membership loop needs to start.
pub struct MembershipSettings {
    pub name: String,
    pub bind: SocketAddr,
    pub generation: u64,
    pub seeds: Vec<(String, SocketAddr)>,
    pub gossip: crate::config::Gossip,
    /// The address peers reach this node's gossip at, when it binds an
    /// unspecified one.
    pub advertise: Option<std::net::IpAddr>,
    pub key: [u8; 32],
    pub meta: NodeMeta,
    /// This node's certificate and key (metadata is signed with them) and
    /// the cluster CA (others' metadata is checked against it).
    pub tls: crate::transport::tls::TlsMaterial,
    /// Called (on the loop) whenever the generation is renewed, so it can be
    /// persisted before the cluster relies on it.
    pub on_generation: Box<dyn FnMut(u64) + Send>,
}

enum Command {
    Snapshot(oneshot::Sender<Vec<MemberInfo>>),
    Subscribe(mpsc::Sender<MemberEvent>),
    Leave(oneshot::Sender<()>),
    Shutdown,
}

/// Cheap-clone handle to the membership loop of one node.
#[derive(Clone)]
pub struct Membership {
    tx: mpsc::Sender<Command>,
    ready: Arc<AtomicBool>,
    local_addr: SocketAddr,
}

impl Membership {
    /// Binds the gossip socket and starts the loop on the current runtime.
    pub async fn start(
        s: MembershipSettings,
        faults: Faults,
        metrics: Metrics,
    ) -> Result<Membership, MembershipError> {
        let socket = UdpSocket::bind(s.bind)
            .await
            .map_err(|source| MembershipError::Bind {
                addr: s.bind,
                source,
            })?;
        let local_addr = socket
            .local_addr()
            .map_err(|source| MembershipError::Bind {
                addr: s.bind,
                source,
            })?;
        // Peers answer the identity's address: the advertised one.
        let local_addr = match s.advertise {
            Some(ip) => SocketAddr::new(ip, local_addr.port()),
            None => local_addr,
        };
        let (tx, rx) = mpsc::channel(256);
        let ready = Arc::new(AtomicBool::new(s.seeds.is_empty()));
        let handle = Membership {
            tx,
            ready: ready.clone(),
            local_addr,
        };
        let signer = signed::MetaSigner::new(&s.tls).map_err(MembershipError::Signer)?;
        let lp = Loop::new(s, socket, local_addr, faults, metrics, ready, signer);
        tokio::spawn(lp.run(rx));
        Ok(handle)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True once this node has joined (seen another member), or at once for
    /// a cluster with no other node configured.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub async fn members(&self) -> Result<Vec<MemberInfo>, MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(tx))
            .await
            .map_err(|_| MembershipError::Stopped)?;
        rx.await.map_err(|_| MembershipError::Stopped)
    }

    /// Events for every change, starting with the current rows. Bounded: a
    /// subscriber that does not keep up misses events (counted), never
    /// blocks gossip.
    pub async fn subscribe(
        &self,
        capacity: usize,
    ) -> Result<mpsc::Receiver<MemberEvent>, MembershipError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.tx
            .send(Command::Subscribe(tx))
            .await
            .map_err(|_| MembershipError::Stopped)?;
        Ok(rx)
    }

    /// Delivers membership events to a local actor.
    pub async fn subscribe_actor(
        &self,
        to: Recipient<MemberEvent>,
        capacity: usize,
    ) -> Result<(), MembershipError> {
        let mut rx = self.subscribe(capacity).await?;
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let Err(crate::actor::TellError::Closed) = to.tell(ev) {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Announces `leaving`, lets it spread, then leaves the cluster.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Leave(tx))
            .await
            .map_err(|_| MembershipError::Stopped)?;
        rx.await.map_err(|_| MembershipError::Stopped)
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// The named branches of the loop.
enum Branch {
    Command(Option<Command>),
    Packet(std::io::Result<(usize, SocketAddr)>),
    Timer,
    Announce,
    Refresh,
    LeaveDue,
}

type SwimFoca = Foca<NodeId, PostcardCodec, rand::rngs::StdRng, MetaHandler>;

struct Loop {
    name: String,
    foca: SwimFoca,
    rt: AccumulatingRuntime<NodeId>,
    socket: Arc<UdpSocket>,
    cipher: Arc<GossipCipher>,
    table: MemberTable,
    inbox: Arc<Mutex<Vec<NodeMeta>>>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_map: HashMap<u64, Timer<NodeId>>,
    timer_seq: u64,
    subscribers: Vec<mpsc::Sender<MemberEvent>>,
    meta: NodeMeta,
    seeds: Vec<NodeId>,
    gossip: crate::config::Gossip,
    faults: Faults,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    on_generation: Box<dyn FnMut(u64) + Send>,
    leave: Option<(Instant, oneshot::Sender<()>)>,
    left: bool,
    signer: signed::MetaSigner,
}

fn foca_config(g: &crate::config::Gossip, n: usize) -> foca::Config {
    let n = n.max(1);
    let transmissions = ((((n + 1) as f64).log10() * 4.0).floor() as u8).max(6);
    foca::Config {
        probe_period: g.probe_period(),
        probe_rtt: g.probe_rtt(),
        num_indirect_probes: NonZeroUsize::new(3).expect("3 > 0"),
        max_transmissions: NonZeroU8::new(transmissions).expect("at least 6"),
        suspect_to_down_after: g.suspect_to_down(n),
        remove_down_after: Some(Duration::from_secs(3600)),
        max_packet_size: NonZeroUsize::new(g.max_packet_size).expect("validated above 512"),
        notify_down_members: true,
        periodic_announce: Some(PeriodicParams {
            // Also what repairs views after a partition heals (a member left
            // `suspect` or half-joined): keep it as frequent as announcing
            // to down members.
            frequency: Duration::from_millis(g.announce_period_ms),
            num_members: NonZeroUsize::new(2).expect("2 > 0"),
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: Duration::from_millis(g.announce_period_ms),
            num_members: NonZeroUsize::new(3).expect("3 > 0"),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: Duration::from_millis(g.gossip_period_ms),
            num_members: NonZeroUsize::new(g.gossip_fanout).expect("validated above 0"),
        }),
    }
}

impl Loop {
    fn new(
        s: MembershipSettings,
        socket: UdpSocket,
        local_addr: SocketAddr,
        faults: Faults,
        metrics: Metrics,
        ready: Arc<AtomicBool>,
        signer: signed::MetaSigner,
    ) -> Loop {
        let id = NodeId {
            name: s.name.clone(),
            addr: local_addr,
            generation: s.generation,
        };
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let cfg = foca_config(&s.gossip, s.seeds.len() + 1);
        let rng = rand::rngs::StdRng::seed_from_u64(rand::random());
        let foca = Foca::with_custom_broadcast(
            id.clone(),
            cfg,
            rng,
            PostcardCodec,
            MetaHandler::new(inbox.clone(), signed::MetaVerifier::new(&s.tls)),
        );
        let mut meta = s.meta;
        meta.generation = s.generation;
        let table = MemberTable::new(&id, meta.clone(), Instant::now().into_std());
        let seeds = s
            .seeds
            .iter()
            .map(|(name, addr)| NodeId {
                name: name.clone(),
                addr: *addr,
                generation: 0,
            })
            .collect();
        Loop {
            name: s.name,
            foca,
            rt: AccumulatingRuntime::new(),
            socket: Arc::new(socket),
            cipher: Arc::new(GossipCipher::new(&s.key)),
            table,
            inbox,
            timers: BinaryHeap::new(),
            timer_map: HashMap::new(),
            timer_seq: 0,
            subscribers: Vec::new(),
            meta,
            seeds,
            gossip: s.gossip,
            faults,
            metrics,
            ready,
            on_generation: s.on_generation,
            leave: None,
            left: false,
            signer,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        self.broadcast_meta();
        for seed in self.seeds.clone() {
            let _ = self.foca.announce(seed, &mut self.rt);
        }
        self.drain();
        let mut buf = vec![0u8; 65_536];
        let mut announce =
            tokio::time::interval(Duration::from_millis(self.gossip.announce_period_ms));
        let mut refresh = tokio::time::interval(Duration::from_millis(100));
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let leave_at = self.leave.as_ref().map(|(at, _)| *at);
            let branch = tokio::select! {
                biased;
                cmd = rx.recv() => Branch::Command(cmd),
                _ = tokio::time::sleep_until(leave_at.unwrap_or(far)), if leave_at.is_some() => Branch::LeaveDue,
                res = self.socket.recv_from(&mut buf) => Branch::Packet(res),
                _ = tokio::time::sleep_until(next_timer.unwrap_or(far)), if next_timer.is_some() => Branch::Timer,
                _ = announce.tick() => Branch::Announce,
                _ = refresh.tick() => Branch::Refresh,
            };
            let started = Instant::now();
            let label = match branch {
                Branch::Command(None) | Branch::Command(Some(Command::Shutdown)) => return,
                Branch::Command(Some(cmd)) => {
                    self.on_command(cmd);
                    "command"
                }
                Branch::LeaveDue => {
                    self.finish_leave();
                    "leave"
                }
                Branch::Packet(Ok((n, _src))) => {
                    self.on_packet(&mut buf[..n]);
                    "packet"
                }
                Branch::Packet(Err(e)) => {
                    tracing::debug!(node = %self.name, "gossip recv error: {e}");
                    "packet"
                }
                Branch::Timer => {
                    self.on_timers();
                    "timer"
                }
                Branch::Announce => {
                    self.on_announce();
                    "announce"
                }
                Branch::Refresh => {
                    self.on_refresh();
                    "refresh"
                }
            };
            self.drain();
            let took = started.elapsed();
            if took > Duration::from_millis(50) {
                tracing::warn!(node = %self.name, branch = label, ?took, "slow membership branch");
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Snapshot(tx) => {
                let _ = tx.send(self.table.snapshot(std::time::Instant::now()));
            }
            Command::Subscribe(tx) => {
                for ev in self.table.events() {
                    let _ = tx.try_send(ev);
                }
                self.subscribers.push(tx);
            }
            Command::Leave(tx) => {
                if self.left {
                    let _ = tx.send(());
                    return;
                }
                self.meta.leaving = true;
                self.broadcast_meta();
                let _ = self.foca.broadcast(&mut self.rt);
                let _ = self.foca.gossip(&mut self.rt);
                self.table.leave_self(std::time::Instant::now());
                let settle = Duration::from_millis(
                    self.gossip.gossip_period_ms * 3 + self.gossip.probe_rtt_ms,
                );
                self.leave = Some((Instant::now() + settle, tx));
            }
            Command::Shutdown => {}
        }
    }

    fn finish_leave(&mut self) {
        if let Some((_, tx)) = self.leave.take() {
            let _ = self.foca.broadcast(&mut self.rt);
            // Set first: leaving makes foca Defunct, which must not renew.
            self.left = true;
            if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
                tracing::warn!(node = %self.name, "leave_cluster: {e}");
            }
            self.drain();
            let _ = tx.send(());
        }
    }

    fn on_packet(&mut self, packet: &mut [u8]) {
        let (from, data) = match self.cipher.open(packet) {
            Ok(v) => v,
            Err(e) => {
                self.metrics
                    .gossip_packets_rejected
                    .get_or_create(&Metrics::label("reason", "auth"))
                    .inc();
                tracing::debug!(node = %self.name, "gossip packet refused: {e}");
                return;
            }
        };
        if self.faults.on_receive(&from, &self.name) {
            self.metrics
                .fault_drops
                .get_or_create(&Metrics::label("path", "gossip"))
                .inc();
            return;
        }
        if self.left {
            return;
        }
        self.metrics.gossip_packets_received.inc();
        if let Err(e) = self.foca.handle_data(data, &mut self.rt) {
            self.metrics
                .gossip_packets_rejected
                .get_or_create(&Metrics::label("reason", "decode"))
                .inc();
            tracing::debug!(node = %self.name, %from, "gossip packet not accepted: {e}");
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, seq))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.timer_map.remove(&seq) {
                if let Err(e) = self.foca.handle_timer(timer, &mut self.rt) {
                    tracing::debug!(node = %self.name, "foca timer: {e}");
                }
            }
        }
    }

    fn on_announce(&mut self) {
        if self.left {
            return;
        }
        let alive: HashSet<String> = self
            .foca
            .iter_members()
            .map(|m| m.id().name.clone())
            .collect();
        let mut targets: Vec<NodeId> = self
            .seeds
            .iter()
            .filter(|s| !alive.contains(&s.name))
            .cloned()
            .collect();
        if alive.is_empty() {
            targets.extend(self.table.down_ids());
        }
        for t in targets {
            let _ = self.foca.announce(t, &mut self.rt);
        }
    }

    fn on_refresh(&mut self) {
        let suspects: HashSet<String> = self
            .foca
            .iter_members()
            .filter(|m| m.state() == foca::State::Suspect)
            .map(|m| m.id().name.clone())
            .collect();
        for ev in self.table.suspects(&suspects, std::time::Instant::now()) {
            self.publish(ev);
        }
        for state in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Down,
            MemberState::Left,
        ] {
            self.metrics
                .members
                .get_or_create(&Metrics::label("state", state.as_str()))
                .set(self.table.count(state) as i64);
        }
    }

    fn broadcast_meta(&mut self) {
        self.meta.seq += 1;
        match self.signer.sign(&self.meta) {
            Ok(bytes) => {
                if let Err(e) = self.foca.add_broadcast(&bytes) {
                    tracing::warn!(node = %self.name, "cannot broadcast metadata: {e}");
                }
            }
            Err(e) => tracing::warn!(node = %self.name, "cannot encode metadata: {e}"),
        }
    }

    fn publish(&mut self, ev: MemberEvent) {
        tracing::debug!(node = %self.name, member = %ev.name, state = ev.state.as_str(), generation = ev.generation, "membership change");
        self.subscribers.retain(|s| match s.try_send(ev.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("membership subscriber is full; event dropped");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Sends what foca queued, schedules its timers and applies its
    /// notifications, until all three queues are empty.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some((to, data)) = self.rt.to_send() {
                progressed = true;
                self.send(&to, &data);
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                progressed = true;
                self.timer_seq += 1;
                self.timers
                    .push(Reverse((Instant::now() + after, self.timer_seq)));
                self.timer_map.insert(self.timer_seq, timer);
            }
            while let Some(n) = self.rt.to_notify() {
                progressed = true;
                self.on_notification(n);
            }
            let metas: Vec<NodeMeta> =
                std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
            for m in metas {
                progressed = true;
                if let Some(ev) = self.table.meta(m, std::time::Instant::now()) {
                    self.publish(ev);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<NodeId>) {
        let now = std::time::Instant::now();
        match n {
            OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                self.ready.store(true, Ordering::Relaxed);
                if let Some(ev) = self.table.up(&id, now) {
                    self.publish(ev);
                    // A newcomer needs everyone's metadata: send ours again.
                    if !self.left {
                        self.broadcast_meta();
                    }
                }
            }
            OwnedNotification::MemberDown(id) => {
                if let Some(ev) = self.table.down(&id, now) {
                    self.publish(ev);
                }
            }
            OwnedNotification::Active => self.ready.store(true, Ordering::Relaxed),
            OwnedNotification::Rejoin(id) => self.renewed(id.generation),
            OwnedNotification::Defunct => {
                if self.left {
                    return;
                }
                let renewed = foca::Identity::renew(self.foca.identity());
                if let Some(new) = renewed {
                    let generation = new.generation;
                    if self.foca.change_identity(new, &mut self.rt).is_ok() {
                        self.renewed(generation);
                    }
                }
            }
            _ => {}
        }
    }

    fn renewed(&mut self, generation: u64) {
        (self.on_generation)(generation);
        self.meta.generation = generation;
        self.meta.seq = 0;
        self.table.renew_self(generation, self.meta.clone());
        self.broadcast_meta();
        tracing::info!(node = %self.name, generation, "rejoined with a renewed identity");
    }

    fn send(&self, to: &NodeId, data: &[u8]) {
        let verdict = self.faults.on_send(&self.name, &to.name);
        let packet = self.cipher.seal(&self.name, data);
        match verdict {
            Verdict::Drop => {
                self.metrics
                    .fault_drops
                    .get_or_create(&Metrics::label("path", "gossip"))
                    .inc();
            }
            Verdict::Deliver => {
                self.metrics.gossip_packets_sent.inc();
                if let Err(e) = self.socket.try_send_to(&packet, to.addr) {
                    tracing::debug!(node = %self.name, "gossip send to {}: {e}", to.addr);
                }
            }
            Verdict::Delay(d) => {
                self.metrics.gossip_packets_sent.inc();
                let socket = self.socket.clone();
                let addr = to.addr;
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = socket.send_to(&packet, addr).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod hostile;
