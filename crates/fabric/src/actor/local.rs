//! Local actors: a thin, typed surface over actix 0.13.
//!
//! Components implement [`Actor`] and [`Handler`] from this module and talk
//! through [`Addr`] / [`Recipient`] with `tell` and `ask`; none of them names
//! actix. Underneath, each actor is an actix actor (`Shim<A>`) on the actix
//! arbiter of its node, so swapping the actor library touches only this file.
//!
//! Mailboxes are bounded: `tell` never blocks and fails with `Full` when the
//! mailbox is at capacity; `ask` waits for room within its timeout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix::{ActorContext, ActorFutureExt, AsyncContext};

/// A message a local actor handles.
pub trait Message: Send + 'static {
    type Reply: Send + 'static;
}

/// A local actor. Its state is private; others hold an [`Addr`].
pub trait Actor: Sized + Unpin + 'static {
    fn started(&mut self, _ctx: &mut Ctx<Self>) {}
    fn stopped(&mut self) {}
}

/// Handles `M`, replying now or later.
pub trait Handler<M: Message>: Actor {
    fn handle(&mut self, msg: M, ctx: &mut Ctx<Self>) -> Reply<M::Reply>;
}

/// A handler's answer: a value now, or a future that produces it while the
/// actor goes on with other messages.
pub enum Reply<T> {
    Now(T),
    Later(Pin<Box<dyn Future<Output = T>>>),
}

impl<T> From<T> for Reply<T> {
    fn from(v: T) -> Self {
        Reply::Now(v)
    }
}

impl<T> Reply<T> {
    pub fn later(fut: impl Future<Output = T> + 'static) -> Self {
        Reply::Later(Box::pin(fut))
    }
}

/// Why a `tell` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TellError {
    #[error("mailbox full")]
    Full,
    #[error("actor stopped")]
    Closed,
}

/// Why an `ask` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocalAskError {
    #[error("no reply within the deadline")]
    Timeout,
    #[error("actor stopped")]
    Closed,
}

#[doc(hidden)]
pub struct Shim<A>(A);

#[doc(hidden)]
pub struct Env<M>(M);

impl<M: Message> actix::Message for Env<M> {
    type Result = M::Reply;
}

impl<A: Actor> actix::Actor for Shim<A> {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.0.started(Ctx::cast(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.0.stopped();
    }
}

impl<A: Handler<M>, M: Message> actix::Handler<Env<M>> for Shim<A> {
    type Result = Reply<M::Reply>;

    fn handle(&mut self, msg: Env<M>, ctx: &mut Self::Context) -> Self::Result {
        self.0.handle(msg.0, Ctx::cast(ctx))
    }
}

impl<A: Actor, M: Message> actix::dev::MessageResponse<Shim<A>, Env<M>> for Reply<M::Reply> {
    fn handle(
        self,
        ctx: &mut actix::Context<Shim<A>>,
        tx: Option<actix::dev::OneshotSender<M::Reply>>,
    ) {
        match self {
            Reply::Now(v) => {
                if let Some(tx) = tx {
                    let _ = tx.send(v);
                }
            }
            Reply::Later(fut) => {
                ctx.spawn(actix::fut::wrap_future(async move {
                    let v = fut.await;
                    if let Some(tx) = tx {
                        let _ = tx.send(v);
                    }
                }));
            }
        }
    }
}

/// The context a handler runs in.
#[repr(transparent)]
pub struct Ctx<A: Actor>(actix::Context<Shim<A>>);

impl<A: Actor> Ctx<A> {
    fn cast(ctx: &mut actix::Context<Shim<A>>) -> &mut Ctx<A> {
        // SAFETY: Ctx is a repr(transparent) wrapper of actix::Context.
        unsafe { &mut *(ctx as *mut actix::Context<Shim<A>> as *mut Ctx<A>) }
    }

    pub fn address(&self) -> Addr<A> {
        Addr(self.0.address())
    }

    /// Runs a future on the actor's arbiter, detached from the actor state.
    pub fn spawn(&mut self, fut: impl Future<Output = ()> + 'static) {
        self.0.spawn(actix::fut::wrap_future(fut));
    }

    /// Runs a future, then hands its output back to the actor.
    pub fn spawn_then<R: 'static>(
        &mut self,
        fut: impl Future<Output = R> + 'static,
        then: impl FnOnce(R, &mut A, &mut Ctx<A>) + 'static,
    ) {
        let f = actix::fut::wrap_future::<_, Shim<A>>(fut).map(
            move |r, act: &mut Shim<A>, ctx: &mut actix::Context<Shim<A>>| {
                then(r, &mut act.0, Ctx::cast(ctx))
            },
        );
        self.0.spawn(f);
    }

    pub fn run_interval(
        &mut self,
        every: Duration,
        mut f: impl FnMut(&mut A, &mut Ctx<A>) + 'static,
    ) {
        self.0
            .run_interval(every, move |act, ctx| f(&mut act.0, Ctx::cast(ctx)));
    }

    pub fn run_later(&mut self, after: Duration, f: impl FnOnce(&mut A, &mut Ctx<A>) + 'static) {
        self.0
            .run_later(after, move |act, ctx| f(&mut act.0, Ctx::cast(ctx)));
    }

    pub fn stop(&mut self) {
        self.0.stop();
    }
}

/// The address of a local actor of type `A`. Cheap to clone, `Send`.
pub struct Addr<A: Actor>(actix::Addr<Shim<A>>);

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr(self.0.clone())
    }
}

/// Starts `actor` on the current node's arbiter with a bounded mailbox.
///
/// Must be called from inside a node's actor system (see `node::NodeRuntime`).
pub fn spawn<A: Actor>(actor: A, mailbox: usize) -> Addr<A> {
    use actix::Actor as _;
    let addr = Shim::<A>::create(move |ctx| {
        ctx.set_mailbox_capacity(mailbox);
        Shim(actor)
    });
    Addr(addr)
}

impl<A: Actor> Addr<A> {
    /// Delivers without waiting; fails when the mailbox is full.
    pub fn tell<M: Message>(&self, msg: M) -> Result<(), TellError>
    where
        A: Handler<M>,
    {
        self.0.try_send(Env(msg)).map_err(|e| match e {
            actix::dev::SendError::Full(_) => TellError::Full,
            actix::dev::SendError::Closed(_) => TellError::Closed,
        })
    }

    /// Like `tell`, but hands the message back when it was not delivered.
    pub fn try_tell<M: Message>(&self, msg: M) -> Result<(), (TellError, M)>
    where
        A: Handler<M>,
    {
        self.0.try_send(Env(msg)).map_err(|e| match e {
            actix::dev::SendError::Full(Env(m)) => (TellError::Full, m),
            actix::dev::SendError::Closed(Env(m)) => (TellError::Closed, m),
        })
    }

    /// Delivers, waiting (at most `timeout`) while the mailbox is full; the
    /// back-pressure path for ordered remote tells.
    pub async fn tell_wait<M: Message>(
        &self,
        mut msg: M,
        timeout: Duration,
    ) -> Result<(), TellError>
    where
        A: Handler<M>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            match self.try_tell(msg) {
                Ok(()) => return Ok(()),
                Err((TellError::Closed, _)) => return Err(TellError::Closed),
                Err((TellError::Full, m)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(TellError::Full);
                    }
                    msg = m;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Sends and waits for the reply, at most `timeout`.
    pub async fn ask<M: Message>(
        &self,
        msg: M,
        timeout: Duration,
    ) -> Result<M::Reply, LocalAskError>
    where
        A: Handler<M>,
    {
        match tokio::time::timeout(timeout, self.0.send(Env(msg))).await {
            Err(_) => Err(LocalAskError::Timeout),
            Ok(Err(actix::MailboxError::Timeout)) => Err(LocalAskError::Timeout),
            Ok(Err(actix::MailboxError::Closed)) => Err(LocalAskError::Closed),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// A handle that accepts only `M`, hiding the actor type.
    pub fn recipient<M: Message>(&self) -> Recipient<M>
    where
        A: Handler<M>,
    {
        Recipient(self.0.clone().recipient())
    }

    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}

/// A type-erased address for one message type.
pub struct Recipient<M: Message>(actix::Recipient<Env<M>>);

impl<M: Message> Clone for Recipient<M> {
    fn clone(&self) -> Self {
        Recipient(self.0.clone())
    }
}

impl<M: Message> Recipient<M> {
    pub fn tell(&self, msg: M) -> Result<(), TellError> {
        self.0.try_send(Env(msg)).map_err(|e| match e {
            actix::dev::SendError::Full(_) => TellError::Full,
            actix::dev::SendError::Closed(_) => TellError::Closed,
        })
    }

    pub async fn ask(&self, msg: M, timeout: Duration) -> Result<M::Reply, LocalAskError> {
        match tokio::time::timeout(timeout, self.0.send(Env(msg))).await {
            Err(_) => Err(LocalAskError::Timeout),
            Ok(Err(actix::MailboxError::Timeout)) => Err(LocalAskError::Timeout),
            Ok(Err(actix::MailboxError::Closed)) => Err(LocalAskError::Closed),
            Ok(Ok(v)) => Ok(v),
        }
    }

    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}

/// Starts actors on one node's actor thread from anywhere (any thread or
/// runtime). Cheap to clone.
#[derive(Clone)]
pub struct Spawner(actix_rt::ArbiterHandle);

impl Spawner {
    /// The spawner of the actor system the caller runs in.
    pub fn current() -> Spawner {
        Spawner(actix_rt::Arbiter::current())
    }

    /// Builds and starts an actor on the node's actor thread.
    pub async fn spawn<A, F>(&self, make: F, mailbox: usize) -> Option<Addr<A>>
    where
        A: Actor,
        F: FnOnce() -> A + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ok = self.0.spawn_fn(move || {
            let _ = tx.send(spawn(make(), mailbox));
        });
        if !ok {
            return None;
        }
        rx.await.ok()
    }
}

/// Runs `fut` as a node: a dedicated OS thread with its own actix system and
/// tokio runtime. Several nodes can live in one process this way, sharing no
/// global state; stopping the system drops every actor, socket and task of
/// that node.
pub fn run_system<F, Fut>(
    name: &str,
    worker_threads: usize,
    make: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let thread_name = format!("shoal-{name}");
    std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let runner = actix_rt::System::with_tokio_rt(move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(worker_threads.max(1))
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .expect("tokio runtime")
            });
            runner.block_on(make());
        })
}

/// Runs `fut` on the current thread inside a fresh actix system (for `main`).
pub fn block_on_system<Fut: Future>(worker_threads: usize, fut: Fut) -> Fut::Output {
    let runner = actix_rt::System::with_tokio_rt(move || runtime(worker_threads, "shoal"));
    runner.block_on(fut)
}

/// A node runtime: `0` workers means a current-thread runtime shared with the
/// actors (no cross-thread hops); otherwise a multi-thread runtime.
pub fn runtime(worker_threads: usize, name: &str) -> tokio::runtime::Runtime {
    let mut b = if worker_threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(worker_threads);
        b
    };
    b.thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        n: u64,
    }
    impl Actor for Counter {}

    struct Add(u64);
    impl Message for Add {
        type Reply = u64;
    }
    impl Handler<Add> for Counter {
        fn handle(&mut self, msg: Add, _ctx: &mut Ctx<Self>) -> Reply<u64> {
            self.n += msg.0;
            self.n.into()
        }
    }

    struct SlowGet;
    impl Message for SlowGet {
        type Reply = u64;
    }
    impl Handler<SlowGet> for Counter {
        fn handle(&mut self, _msg: SlowGet, _ctx: &mut Ctx<Self>) -> Reply<u64> {
            let n = self.n;
            Reply::later(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                n
            })
        }
    }

    #[test]
    fn tell_ask_and_timeouts() {
        block_on_system(1, async {
            let addr = spawn(Counter { n: 0 }, 16);
            addr.tell(Add(2)).unwrap();
            assert_eq!(addr.ask(Add(3), Duration::from_secs(1)).await.unwrap(), 5);
            let r = addr.recipient::<Add>();
            assert_eq!(r.ask(Add(1), Duration::from_secs(1)).await.unwrap(), 6);
            assert_eq!(
                addr.ask(SlowGet, Duration::from_millis(20)).await,
                Err(LocalAskError::Timeout)
            );
            assert_eq!(addr.ask(SlowGet, Duration::from_secs(2)).await.unwrap(), 6);
        });
    }

    #[test]
    fn bounded_mailbox_refuses_tells_when_full() {
        block_on_system(1, async {
            let addr = spawn(Counter { n: 0 }, 2);
            // Nothing runs the actor until we yield, so the mailbox fills.
            let mut full = 0;
            for _ in 0..50 {
                if addr.tell(Add(1)) == Err(TellError::Full) {
                    full += 1;
                }
            }
            assert!(full > 0, "a bounded mailbox must refuse some tells");
            let n = addr.ask(Add(0), Duration::from_secs(1)).await.unwrap();
            assert_eq!(n, 50 - full);
        });
    }
}
