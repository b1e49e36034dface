//! Leader-follow singletons with fencing: the scheduler and the
//! controllers run on the Raft leader only, under a token.
//!
//! A [`SingletonHost`] on every store node follows openraft's metrics. When
//! this node is the leader with a committed vote, it starts every
//! registered singleton with a [`FenceToken`] = the `LeaderId` (term, node)
//! it leads under; on any vote change it stops them all (and starts them
//! again under the new token if it still leads). Singletons write with
//! `Store::propose_fenced`, which proposes locally and never forwards; the
//! state machine applies a fenced transaction only if its token equals the
//! leader id of the entry that carries it, else answers `Fenced`. So a
//! singleton left running on a deposed leader cannot get a write applied
//! once another leader has been elected.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::command::FenceToken;
use super::service::Store;

/// What a singleton gets while it runs.
#[derive(Clone)]
pub struct SingletonCtx {
    pub store: Store,
    pub token: FenceToken,
}

/// A component that must run on exactly one node: the leader.
pub trait Singleton: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// Runs until done or stopped (the host aborts the task on a vote
    /// change, so anything held is dropped then).
    fn run(&self, ctx: SingletonCtx) -> BoxFuture<'static, ()>;
}

/// Follows leadership on one node and runs the singletons while it leads.
pub struct SingletonHost {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SingletonHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The token this node would run singletons under, if it leads now.
fn leading_token(store: &Store) -> Option<FenceToken> {
    let m = store.raft().metrics().borrow().clone();
    let leader = m.current_leader? == store.raft_id()
        && m.state == openraft::ServerState::Leader
        && m.vote.is_committed();
    leader.then(|| FenceToken {
        term: m.vote.leader_id().get_term(),
        node: store.raft_id(),
    })
}

impl SingletonHost {
    pub fn start(store: Store, singletons: Vec<Arc<dyn Singleton>>) -> SingletonHost {
        let task = tokio::spawn(async move {
            let mut metrics = store.raft().metrics();
            let mut running: Option<(FenceToken, Vec<tokio::task::JoinHandle<()>>)> = None;
            loop {
                let want = leading_token(&store);
                if running.as_ref().map(|(t, _)| *t) != want {
                    if let Some((token, tasks)) = running.take() {
                        tracing::info!(node = %store.node(), term = token.term, "stopping singletons: leadership changed");
                        tasks.iter().for_each(|t| t.abort());
                    }
                    if let Some(token) = want {
                        tracing::info!(node = %store.node(), term = token.term, "starting singletons");
                        let ctx = SingletonCtx {
                            store: store.clone(),
                            token,
                        };
                        let tasks = singletons
                            .iter()
                            .map(|s| tokio::spawn(s.run(ctx.clone())))
                            .collect();
                        running = Some((token, tasks));
                    }
                }
                if metrics.changed().await.is_err() {
                    if let Some((_, tasks)) = running.take() {
                        tasks.iter().for_each(|t| t.abort());
                    }
                    return;
                }
            }
        });
        SingletonHost { task }
    }
}
