//! The diagnostic actor (`diag@node`): echo, ordered counting and a numbered
//! subscription. Every node runs one; tests, benchmarks and operators use it
//! to check that a node's actor layer answers end to end.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::local::{Actor, Ctx, Handler, Message, Reply};
use super::remote::{RemoteMessage, RemoteSubscription, Subscribe};

pub const ACTOR: &str = "diag";

/// Replies with the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Echo(#[serde(with = "serde_bytes")] pub Vec<u8>);
impl Message for Echo {
    type Reply = serde_bytes::ByteBuf;
}
impl RemoteMessage for Echo {
    const TAG: &'static str = "shoal.diag.echo/1";
}

/// Appends `value` to the received log (told, in order).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub from: String,
    pub value: u64,
}
impl Message for Record {
    type Reply = ();
}
impl RemoteMessage for Record {
    const TAG: &'static str = "shoal.diag.record/1";
}

/// Returns the values recorded from `from`, in arrival order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recorded {
    pub from: String,
}
impl Message for Recorded {
    type Reply = Vec<u64>;
}
impl RemoteMessage for Recorded {
    const TAG: &'static str = "shoal.diag.recorded/1";
}

/// How many values were recorded from `from`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedCount {
    pub from: String,
}
impl Message for RecordedCount {
    type Reply = u64;
}
impl RemoteMessage for RecordedCount {
    const TAG: &'static str = "shoal.diag.recorded-count/1";
}

/// Sleeps on the receiving side before answering (deadline tests).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlowEcho {
    pub delay_ms: u64,
}
impl Message for SlowEcho {
    type Reply = u64;
}
impl RemoteMessage for SlowEcho {
    const TAG: &'static str = "shoal.diag.slow/1";
}

/// Streams `start, start+1, …, start+count-1`, then ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Count {
    pub start: u64,
    pub count: u64,
}
impl RemoteSubscription for Count {
    const TAG: &'static str = "shoal.diag.count/1";
    type Event = u64;
}

#[derive(Default)]
pub struct DiagActor {
    recorded: std::collections::HashMap<String, Vec<u64>>,
}

impl Actor for DiagActor {}

impl Handler<Echo> for DiagActor {
    fn handle(&mut self, msg: Echo, _ctx: &mut Ctx<Self>) -> Reply<serde_bytes::ByteBuf> {
        serde_bytes::ByteBuf::from(msg.0).into()
    }
}

impl Handler<Record> for DiagActor {
    fn handle(&mut self, msg: Record, _ctx: &mut Ctx<Self>) -> Reply<()> {
        self.recorded.entry(msg.from).or_default().push(msg.value);
        ().into()
    }
}

impl Handler<Recorded> for DiagActor {
    fn handle(&mut self, msg: Recorded, _ctx: &mut Ctx<Self>) -> Reply<Vec<u64>> {
        self.recorded
            .get(&msg.from)
            .cloned()
            .unwrap_or_default()
            .into()
    }
}

impl Handler<RecordedCount> for DiagActor {
    fn handle(&mut self, msg: RecordedCount, _ctx: &mut Ctx<Self>) -> Reply<u64> {
        (self.recorded.get(&msg.from).map_or(0, |v| v.len()) as u64).into()
    }
}

impl Handler<SlowEcho> for DiagActor {
    fn handle(&mut self, msg: SlowEcho, _ctx: &mut Ctx<Self>) -> Reply<u64> {
        Reply::later(async move {
            tokio::time::sleep(Duration::from_millis(msg.delay_ms)).await;
            msg.delay_ms
        })
    }
}

impl Handler<Subscribe<Count>> for DiagActor {
    fn handle(&mut self, msg: Subscribe<Count>, ctx: &mut Ctx<Self>) -> Reply<Result<(), String>> {
        let Count { start, count } = msg.request;
        if count > 10_000_000 {
            return Err("count too large".to_string()).into();
        }
        let sink = msg.sink;
        ctx.spawn(async move {
            for v in start..start.saturating_add(count) {
                if sink.send(&v).await.is_err() {
                    return;
                }
            }
            sink.end("done").await;
        });
        Ok(()).into()
    }
}

/// Registers the diagnostic actor's messages on `registry`.
pub fn serve(registry: &super::Registry, addr: super::Addr<DiagActor>) {
    registry.serve::<DiagActor, Echo>(ACTOR, addr.clone());
    registry.serve::<DiagActor, Record>(ACTOR, addr.clone());
    registry.serve::<DiagActor, Recorded>(ACTOR, addr.clone());
    registry.serve::<DiagActor, RecordedCount>(ACTOR, addr.clone());
    registry.serve::<DiagActor, SlowEcho>(ACTOR, addr.clone());
    registry.serve_subscription::<DiagActor, Count>(ACTOR, addr);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of<T: Serialize>(v: &T) -> String {
        hex::encode(postcard::to_allocvec(v).unwrap())
    }

    /// Pins the wire bytes of every diag message and reply. A change here
    /// needs a new tag, not a new golden value.
    #[test]
    fn golden_bytes() {
        assert_eq!(hex_of(&Echo(vec![1, 2])), "020102");
        assert_eq!(hex_of(&serde_bytes::ByteBuf::from(vec![1, 2])), "020102");
        assert_eq!(
            hex_of(&Record {
                from: "a".into(),
                value: 300
            }),
            "0161ac02"
        );
        assert_eq!(hex_of(&Recorded { from: "a".into() }), "0161");
        assert_eq!(hex_of(&RecordedCount { from: "a".into() }), "0161");
        assert_eq!(hex_of(&SlowEcho { delay_ms: 5 }), "05");
        assert_eq!(hex_of(&Count { start: 1, count: 2 }), "0102");
        let tags = [
            Echo::TAG,
            Record::TAG,
            Recorded::TAG,
            RecordedCount::TAG,
            SlowEcho::TAG,
            Count::TAG,
        ];
        assert_eq!(
            tags.iter().collect::<std::collections::HashSet<_>>().len(),
            tags.len(),
            "tags are unique"
        );
    }
}
