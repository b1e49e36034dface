//! `shoal agent`: runs one node until SIGINT/SIGTERM (restart-safe shutdown,
//! exit 0) or until it has left the cluster (`shoal leave`).

use std::path::Path;

use crate::config::NodeConfig;
use crate::node::Node;

pub fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    crate::actor::local::block_on_system(cfg.worker_threads, async move {
        let node = Node::start(cfg).await?;
        let mut exit = node.handle.exit.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let reason = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = exit.wait_for(|v| *v) => "left the cluster",
        };
        tracing::info!(node = %node.handle.name, "shutting down: {reason}");
        node.shutdown().await;
        Ok(())
    })
}
