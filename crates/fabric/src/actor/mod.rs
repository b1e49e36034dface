//! The actor layer: local actors, addresses, and messages across nodes.
//!
//! Components see a small surface: [`Addr`] with `tell` / `ask`, remote
//! [`ActorPath`]s (`name@node`) reached through [`ActorSystem`], and ordered
//! subscription streams. actix stays inside `local.rs`; the wire format is in
//! `envelope.rs`; the per-node dispatch table is in `remote.rs`.

pub mod access;
pub mod diag;
pub mod envelope;
pub mod local;
pub mod remote;
mod system;

pub use access::{Access, Caller, Roles};
pub use local::{spawn, Actor, Addr, Ctx, Handler, Message, Recipient, Reply, Spawner, TellError};
pub use remote::{
    ActorPath, AskError, Called, Registry, RemoteMessage, RemoteSubscription, Sink, SinkError,
    Subscribe, Subscription, SubscriptionEnd,
};
pub use system::ActorSystem;
