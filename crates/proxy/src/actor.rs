//! The `proxy` actor of a node (`proxy@<node>`): it answers [`ProxyStatus`]
//! with what the node's proxy has programmed (its table, the store revision
//! the table reflects, its syncs), for tests, benchmarks and operators.
//! The rules themselves are fed by store watches (see [`crate::proxy`]).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use shoal_fabric::actor::{Actor, Ctx, Handler, Message, RemoteMessage, Reply};

use crate::proxy::Status;

/// The actor's name on every node.
pub const PROXY: &str = "proxy";

/// "What have you programmed?"
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyStatus;

impl Message for ProxyStatus {
    type Reply = Status;
}

impl RemoteMessage for ProxyStatus {
    const TAG: &'static str = "shoal.proxy.status/1";
}

/// The `proxy` actor: reads the status the proxy's loop keeps.
pub struct ProxyActor {
    pub status: Arc<Mutex<Status>>,
}

impl Actor for ProxyActor {}

impl Handler<ProxyStatus> for ProxyActor {
    fn handle(&mut self, _msg: ProxyStatus, _ctx: &mut Ctx<Self>) -> Reply<Status> {
        Reply::Now(
            self.status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Serves the actor to every member.
pub fn serve(
    registry: &shoal_fabric::actor::Registry,
    addr: shoal_fabric::actor::Addr<ProxyActor>,
) {
    registry.serve::<ProxyActor, ProxyStatus>(PROXY, addr);
}
