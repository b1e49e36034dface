//! Chaos control: the `chaos` actor that applies fault rules to this node's
//! transport and gossip, driven by `shoal chaos`, `POST /shoal/v1/chaos` and
//! tests. Fault *evaluation* lives in `transport::faults`; seeded chaos
//! scenarios (the `chaos/` folder at the top of the repository) build on it.

use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Ctx, Handler, Message, RemoteMessage, Reply};
use crate::transport::faults::{ChaosCommand, Faults, RuleView};

/// Actor name; the transport exempts it from fault injection.
pub const ACTOR: &str = crate::transport::CONTROL_ACTOR;

/// Applies a chaos command on the receiving node. The command travels in
/// its JSON form, the same contract as `POST /shoal/v1/chaos` (its
/// internally tagged shape is not something postcard can carry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Apply {
    pub command_json: String,
}

impl Apply {
    pub fn new(cmd: &ChaosCommand) -> Self {
        Apply {
            command_json: serde_json::to_string(cmd).expect("chaos commands serialize"),
        }
    }
}

impl Message for Apply {
    type Reply = Result<Vec<RuleView>, String>;
}
impl RemoteMessage for Apply {
    const TAG: &'static str = "shoal.chaos.apply/1";
}

/// The chaos actor of one node.
pub struct ChaosActor {
    faults: Faults,
}

impl ChaosActor {
    pub fn new(faults: Faults) -> Self {
        ChaosActor { faults }
    }
}

impl Actor for ChaosActor {}

impl Handler<Apply> for ChaosActor {
    fn handle(&mut self, msg: Apply, _ctx: &mut Ctx<Self>) -> Reply<Result<Vec<RuleView>, String>> {
        let res = serde_json::from_str::<ChaosCommand>(&msg.command_json)
            .map_err(|e| format!("invalid chaos command: {e}"))
            .and_then(|cmd| self.faults.apply(cmd).map_err(|e| e.to_string()))
            .map(|_| self.faults.view());
        if let Err(e) = &res {
            tracing::warn!("chaos command refused: {e}");
        }
        res.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let apply = Apply::new(&ChaosCommand::Heal);
        assert_eq!(
            hex::encode(postcard::to_allocvec(&apply).unwrap()),
            "0d7b226f70223a226865616c227d"
        );
    }
}
