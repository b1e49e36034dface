//! Remote messaging: typed messages with stable tags, the per-node registry
//! that dispatches inbound envelopes to local actors, and ordered
//! subscription streams.
//!
//! ```text
//!  caller ── ActorSystem::ask(path, M) ──► transport ══QUIC══► transport
//!                                                               │ Registry: (actor, tag) → handler
//!                                                               ▼
//!                                                        local Addr<A>.ask(M)
//! ```
//!
//! A handler decodes the payload with postcard, asks the local actor within
//! the remaining budget, and encodes the reply. A payload that does not
//! decode is answered with `RemoteError::Malformed`; nothing panics. The
//! registry belongs to one node: there is no process-global state. Each
//! served message has an [`Access`]; a caller it does not admit is
//! answered `Forbidden` before the payload is decoded.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use tokio::sync::mpsc;

use super::access::{Access, Caller};
use super::envelope::RemoteError;
use super::local::{Addr, Handler, LocalAskError, Message, TellError};

/// Budget used for an inbound tell or a request that carried none.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// A message that may cross nodes. `TAG` is frozen once released: a changed
/// layout gets a new tag.
pub trait RemoteMessage: Message + Serialize + DeserializeOwned
where
    Self::Reply: Serialize + DeserializeOwned,
{
    const TAG: &'static str;
}

/// A subscription request that may cross nodes; the server pushes ordered
/// `Event`s until it ends the stream or the subscriber goes away.
pub trait RemoteSubscription: Serialize + DeserializeOwned + Send + 'static {
    const TAG: &'static str;
    type Event: Serialize + DeserializeOwned + Send + 'static;
}

/// Delivered to the serving actor when someone subscribes.
pub struct Subscribe<S: RemoteSubscription> {
    pub request: S,
    pub sink: Sink<S::Event>,
    /// Who subscribed.
    pub caller: Caller,
}

impl<S: RemoteSubscription> Message for Subscribe<S> {
    /// `Err(reason)` refuses the subscription.
    type Reply = Result<(), String>;
}

/// One item of a subscription stream, before decoding.
#[derive(Debug)]
pub enum StreamItem {
    Event(Vec<u8>),
    End(String),
}

/// The serving side of a subscription: bounded and ordered.
pub struct Sink<E> {
    tx: mpsc::Sender<StreamItem>,
    _event: PhantomData<fn(E)>,
}

impl<E> Clone for Sink<E> {
    fn clone(&self) -> Self {
        Sink {
            tx: self.tx.clone(),
            _event: PhantomData,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("subscriber is too far behind")]
    Full,
    #[error("subscriber is gone")]
    Closed,
}

impl<E: Serialize + DeserializeOwned> Sink<E> {
    /// A sink and its subscription in this process (`capacity` events in
    /// flight), for serving code driven directly, as in tests.
    pub fn channel(capacity: usize) -> (Sink<E>, Subscription<E>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Sink {
                tx,
                _event: PhantomData,
            },
            Subscription::new(rx),
        )
    }
}

impl<E: Serialize> Sink<E> {
    fn encode(event: &E) -> Result<Vec<u8>, SinkError> {
        // Encoding a serde value into a Vec only fails for types postcard
        // cannot represent; that is a programming error on the serving side,
        // reported as a closed stream rather than a panic.
        postcard::to_allocvec(event).map_err(|_| SinkError::Closed)
    }

    /// Waits for room, keeping order.
    pub async fn send(&self, event: &E) -> Result<(), SinkError> {
        let bytes = Self::encode(event)?;
        self.tx
            .send(StreamItem::Event(bytes))
            .await
            .map_err(|_| SinkError::Closed)
    }

    /// Never waits; `Full` means the subscriber lags and should be ended.
    pub fn try_send(&self, event: &E) -> Result<(), SinkError> {
        let bytes = Self::encode(event)?;
        self.tx
            .try_send(StreamItem::Event(bytes))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SinkError::Full,
                mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
            })
    }

    /// Ends the stream with a reason the subscriber sees.
    pub async fn end(self, reason: &str) {
        let _ = self.tx.send(StreamItem::End(reason.to_string())).await;
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once the subscriber is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The subscriber side: events in the order the server sent them.
pub struct Subscription<E> {
    rx: mpsc::Receiver<StreamItem>,
    _event: PhantomData<fn() -> E>,
}

/// How a subscription stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionEnd {
    #[error("ended by the server: {0}")]
    Ended(String),
    #[error("stream lost: {0}")]
    Lost(String),
    #[error("undecodable event: {0}")]
    Malformed(String),
}

impl<E: DeserializeOwned> Subscription<E> {
    pub fn new(rx: mpsc::Receiver<StreamItem>) -> Self {
        Subscription {
            rx,
            _event: PhantomData,
        }
    }

    /// The next event, or how the stream ended.
    pub async fn next(&mut self) -> Result<E, SubscriptionEnd> {
        match self.rx.recv().await {
            Some(StreamItem::Event(bytes)) => {
                postcard::from_bytes(&bytes).map_err(|e| SubscriptionEnd::Malformed(e.to_string()))
            }
            Some(StreamItem::End(reason)) => Err(SubscriptionEnd::Ended(reason)),
            None => Err(SubscriptionEnd::Lost("stream closed".into())),
        }
    }
}

/// An inbound request as the registry sees it.
#[derive(Debug)]
pub struct Inbound {
    /// The sender, as its certificate names and certifies it.
    pub caller: Caller,
    pub payload: Vec<u8>,
    pub budget: Duration,
}

/// A message with the node that sent it, for actors whose answer depends
/// on the caller (served with [`Registry::serve_called`]).
pub struct Called<M> {
    pub caller: Caller,
    pub msg: M,
}

impl<M: Message> Message for Called<M> {
    type Reply = M::Reply;
}

type AskFn = Arc<dyn Fn(Inbound) -> BoxFuture<'static, Result<Vec<u8>, RemoteError>> + Send + Sync>;
type TellFn = Arc<dyn Fn(Inbound) -> BoxFuture<'static, Result<(), RemoteError>> + Send + Sync>;
type SubFn = Arc<
    dyn Fn(Inbound, mpsc::Sender<StreamItem>) -> BoxFuture<'static, Result<(), RemoteError>>
        + Send
        + Sync,
>;

/// The handlers of one actor name, by tag, and who may call each.
#[derive(Default)]
struct Handlers {
    asks: HashMap<String, (AskFn, Access)>,
    tells: HashMap<String, (TellFn, Access)>,
    subs: HashMap<String, (SubFn, Access)>,
}

/// Read-mostly: written at registration, read (without allocating) on
/// every inbound envelope.
#[derive(Default)]
struct RegistryInner {
    actors: RwLock<HashMap<String, Handlers>>,
}

/// Which local actor handles which tag, for one node.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

impl RegistryInner {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Handlers>> {
        self.actors.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Handlers>> {
        self.actors.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Forbidden` (logged) when `access` does not admit `caller`.
fn refused(access: &Access, caller: &Caller, actor: &str, tag: &str) -> Result<(), RemoteError> {
    access.allows(caller).map_err(|reason| {
        tracing::warn!(from = %caller.node, roles = %caller.roles, actor, tag, "refused: {reason}");
        RemoteError::Forbidden(format!("{actor}/{tag}: {reason}"))
    })
}

fn mailbox_err(e: LocalAskError) -> RemoteError {
    match e {
        LocalAskError::Timeout => RemoteError::DeadlineExceeded,
        LocalAskError::Closed => RemoteError::Mailbox("actor stopped".into()),
    }
}

impl Registry {
    /// Serves `M` (asked or told) at actor name `name` with `addr`, to any
    /// member of the cluster.
    pub fn serve<A, M>(&self, name: &str, addr: Addr<A>)
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Reply: Serialize + DeserializeOwned,
    {
        self.serve_with::<A, M>(name, addr, Access::Members)
    }

    /// Serves `M` at `name` to the callers `access` admits.
    pub fn serve_with<A, M>(&self, name: &str, addr: Addr<A>, access: Access)
    where
        A: Handler<M>,
        M: RemoteMessage,
        M::Reply: Serialize + DeserializeOwned,
    {
        self.serve_mapped::<A, M, M>(name, addr, access, |_, m| m)
    }

    /// Serves `M` at `name` to the callers `access` admits, handing the
    /// actor the caller with each message.
    pub fn serve_called<A, M>(&self, name: &str, addr: Addr<A>, access: Access)
    where
        A: Handler<Called<M>>,
        M: RemoteMessage,
        M::Reply: Serialize + DeserializeOwned,
    {
        self.serve_mapped::<A, M, Called<M>>(name, addr, access, |caller, msg| Called {
            caller,
            msg,
        })
    }

    fn serve_mapped<A, M, H>(
        &self,
        name: &str,
        addr: Addr<A>,
        access: Access,
        wrap: fn(Caller, M) -> H,
    ) where
        A: Handler<H>,
        H: Message<Reply = M::Reply>,
        M: RemoteMessage,
        M::Reply: Serialize + DeserializeOwned,
    {
        let a = addr.clone();
        let ask: AskFn = Arc::new(move |inb: Inbound| {
            let a = a.clone();
            Box::pin(async move {
                let msg: M = postcard::from_bytes(&inb.payload)
                    .map_err(|e| RemoteError::Malformed(e.to_string()))?;
                let reply = a
                    .ask(wrap(inb.caller, msg), inb.budget)
                    .await
                    .map_err(mailbox_err)?;
                postcard::to_allocvec(&reply)
                    .map_err(|e| RemoteError::Handler(format!("reply does not encode: {e}")))
            })
        });
        // Tells wait for mailbox room: the sender's ordered stream then feels
        // QUIC flow control instead of losing messages.
        let tell: TellFn = Arc::new(move |inb: Inbound| {
            let a = addr.clone();
            Box::pin(async move {
                let msg: M = postcard::from_bytes(&inb.payload)
                    .map_err(|e| RemoteError::Malformed(e.to_string()))?;
                let budget = inb.budget;
                a.tell_wait(wrap(inb.caller, msg), budget)
                    .await
                    .map_err(|e| match e {
                        TellError::Full => RemoteError::Mailbox("mailbox full".into()),
                        TellError::Closed => RemoteError::Mailbox("actor stopped".into()),
                    })
            })
        });
        let mut actors = self.inner.write();
        let h = actors.entry(name.to_string()).or_default();
        h.asks.insert(M::TAG.to_string(), (ask, access.clone()));
        h.tells.insert(M::TAG.to_string(), (tell, access));
    }

    /// Serves subscriptions `S` at actor name `name` to any member.
    pub fn serve_subscription<A, S>(&self, name: &str, addr: Addr<A>)
    where
        A: Handler<Subscribe<S>>,
        S: RemoteSubscription,
    {
        self.serve_subscription_with::<A, S>(name, addr, Access::Members)
    }

    /// Serves subscriptions `S` at `name` to the callers `access` admits.
    pub fn serve_subscription_with<A, S>(&self, name: &str, addr: Addr<A>, access: Access)
    where
        A: Handler<Subscribe<S>>,
        S: RemoteSubscription,
    {
        let sub: SubFn = Arc::new(move |inb: Inbound, tx| {
            let a = addr.clone();
            Box::pin(async move {
                let request: S = postcard::from_bytes(&inb.payload)
                    .map_err(|e| RemoteError::Malformed(e.to_string()))?;
                let sink = Sink {
                    tx,
                    _event: PhantomData,
                };
                let caller = inb.caller;
                a.ask(
                    Subscribe {
                        request,
                        sink,
                        caller,
                    },
                    inb.budget,
                )
                .await
                .map_err(mailbox_err)?
                .map_err(RemoteError::Handler)
            })
        });
        self.inner
            .write()
            .entry(name.to_string())
            .or_default()
            .subs
            .insert(S::TAG.to_string(), (sub, access));
    }

    fn missing(&self, actor: &str, tag: &str) -> RemoteError {
        if self.inner.read().contains_key(actor) {
            RemoteError::UnknownTag(tag.to_string())
        } else {
            RemoteError::UnknownActor(actor.to_string())
        }
    }

    pub async fn dispatch_ask(
        &self,
        actor: &str,
        tag: &str,
        inb: Inbound,
    ) -> Result<Vec<u8>, RemoteError> {
        let f = self
            .inner
            .read()
            .get(actor)
            .and_then(|h| h.asks.get(tag))
            .cloned();
        match f {
            Some((f, access)) => {
                refused(&access, &inb.caller, actor, tag)?;
                let budget = inb.budget;
                tokio::time::timeout(budget, f(inb))
                    .await
                    .unwrap_or(Err(RemoteError::DeadlineExceeded))
            }
            None => Err(self.missing(actor, tag)),
        }
    }

    pub async fn dispatch_tell(
        &self,
        actor: &str,
        tag: &str,
        inb: Inbound,
    ) -> Result<(), RemoteError> {
        let f = self
            .inner
            .read()
            .get(actor)
            .and_then(|h| h.tells.get(tag))
            .cloned();
        match f {
            Some((f, access)) => {
                refused(&access, &inb.caller, actor, tag)?;
                f(inb).await
            }
            None => Err(self.missing(actor, tag)),
        }
    }

    pub async fn dispatch_subscribe(
        &self,
        actor: &str,
        tag: &str,
        inb: Inbound,
        tx: mpsc::Sender<StreamItem>,
    ) -> Result<(), RemoteError> {
        let f = self
            .inner
            .read()
            .get(actor)
            .and_then(|h| h.subs.get(tag))
            .cloned();
        match f {
            Some((f, access)) => {
                refused(&access, &inb.caller, actor, tag)?;
                let budget = inb.budget;
                tokio::time::timeout(budget, f(inb, tx))
                    .await
                    .unwrap_or(Err(RemoteError::DeadlineExceeded))
            }
            None => Err(self.missing(actor, tag)),
        }
    }
}

/// `name@node`, e.g. `kubelet@node-2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActorPath {
    pub name: String,
    pub node: String,
}

impl ActorPath {
    pub fn new(name: &str, node: &str) -> Self {
        ActorPath {
            name: name.into(),
            node: node.into(),
        }
    }

    pub fn parse(s: &str) -> Option<ActorPath> {
        let (name, node) = s.rsplit_once('@')?;
        (!name.is_empty() && crate::config::is_node_name(node)).then(|| ActorPath::new(name, node))
    }
}

impl std::fmt::Display for ActorPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.node)
    }
}

/// Why a remote call failed, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("no reply within the deadline")]
    Timeout,
    #[error("node {0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("remote error: {0}")]
    Remote(#[from] RemoteError),
    #[error("stream failed: {0}")]
    Stream(String),
    #[error("cannot encode or decode: {0}")]
    Codec(String),
    #[error("unknown node {0}")]
    UnknownNode(String),
    #[error("transport is shut down")]
    Shutdown,
}

impl AskError {
    /// True when trying again (maybe elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AskError::Timeout
                | AskError::Unreachable(..)
                | AskError::Stream(_)
                | AskError::UnknownNode(_)
        ) || matches!(
            self,
            AskError::Remote(RemoteError::DeadlineExceeded | RemoteError::Mailbox(_))
        )
    }
}

/// Encodes the payload of a message; shared by local and remote paths.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AskError> {
    postcard::to_allocvec(v).map_err(|e| AskError::Codec(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, AskError> {
    postcard::from_bytes(b).map_err(|e| AskError::Codec(e.to_string()))
}
