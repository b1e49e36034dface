//! [`ActorSystem`]: the typed client for `name@node` addresses.
//!
//! A call to this node is dispatched through the local registry (same codec,
//! no network); a call to another node goes through the transport. Either
//! way the caller gets the same errors, so components need not care where
//! an actor lives.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::access::Caller;
use super::envelope::{Envelope, Kind};
use super::remote::{
    decode, encode, ActorPath, AskError, Inbound, RemoteMessage, RemoteSubscription, Subscription,
};
use crate::transport::Transport;

/// Cheap-clone handle for remote messaging from one node.
#[derive(Clone)]
pub struct ActorSystem {
    transport: Transport,
    subscription_buffer: usize,
}

impl ActorSystem {
    pub fn new(transport: Transport, subscription_buffer: usize) -> Self {
        ActorSystem {
            transport,
            subscription_buffer,
        }
    }

    pub fn node(&self) -> &str {
        self.transport.node()
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// This node as the caller of its own actors.
    fn myself(&self) -> Caller {
        Caller::new(self.node(), self.transport.roles())
    }

    fn envelope(&self, kind: Kind, to: &ActorPath, tag: &str, payload: Vec<u8>) -> Envelope {
        Envelope {
            kind,
            to: to.name.clone(),
            from: self.node().to_string(),
            tag: tag.to_string(),
            corr: self.transport.next_corr(),
            budget_ms: 0,
            payload,
        }
    }

    /// Asks `to` and waits for the reply, at most `timeout` (carried to the
    /// far side as a remaining budget).
    pub async fn ask<M>(
        &self,
        to: &ActorPath,
        msg: M,
        timeout: Duration,
    ) -> Result<M::Reply, AskError>
    where
        M: RemoteMessage,
        M::Reply: Serialize + DeserializeOwned,
    {
        let payload = encode(&msg)?;
        let bytes = if to.node == self.node() {
            let inb = Inbound {
                caller: self.myself(),
                payload,
                budget: timeout,
            };
            let reg = self.transport.registry();
            tokio::time::timeout(timeout, reg.dispatch_ask(&to.name, M::TAG, inb))
                .await
                .map_err(|_| AskError::Timeout)??
        } else {
            self.transport
                .request(
                    &to.node,
                    self.envelope(Kind::Ask, to, M::TAG, payload),
                    timeout,
                )
                .await?
        };
        decode(&bytes)
    }

    /// Sends without a reply. Tells from one node to one actor arrive in
    /// the order they were sent (one ordered stream per connection).
    pub async fn tell<M>(&self, to: &ActorPath, msg: M) -> Result<(), AskError>
    where
        M: RemoteMessage,
        M::Reply: Serialize + DeserializeOwned,
    {
        let payload = encode(&msg)?;
        if to.node == self.node() {
            let inb = Inbound {
                caller: self.myself(),
                payload,
                budget: super::remote::DEFAULT_BUDGET,
            };
            return Ok(self
                .transport
                .registry()
                .dispatch_tell(&to.name, M::TAG, inb)
                .await?);
        }
        self.transport
            .tell(&to.node, self.envelope(Kind::Tell, to, M::TAG, payload))
            .await
    }

    /// Opens an ordered subscription on `to`.
    pub async fn subscribe<S: RemoteSubscription>(
        &self,
        to: &ActorPath,
        request: S,
        timeout: Duration,
    ) -> Result<Subscription<S::Event>, AskError> {
        let payload = encode(&request)?;
        let rx = if to.node == self.node() {
            let (tx, rx) = mpsc::channel(self.subscription_buffer);
            let inb = Inbound {
                caller: self.myself(),
                payload,
                budget: timeout,
            };
            tokio::time::timeout(
                timeout,
                self.transport
                    .registry()
                    .dispatch_subscribe(&to.name, S::TAG, inb, tx),
            )
            .await
            .map_err(|_| AskError::Timeout)??;
            rx
        } else {
            self.transport
                .subscribe(
                    &to.node,
                    self.envelope(Kind::Subscribe, to, S::TAG, payload),
                    timeout,
                )
                .await?
        };
        Ok(Subscription::new(rx))
    }
}
