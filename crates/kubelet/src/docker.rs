//! The `docker` runtime (issue 22), built on the Docker Engine API through
//! bollard: a sandbox container per pod running shoal's own pause program,
//! which holds the pod's network and IPC namespaces for its app
//! containers, wired by the same CNI bridge as the process runtime.
//!
//! Built so far: the engine client pinned to API 1.41, its health, and
//! the pause image, imported at first use without a registry ([`engine`]);
//! pods with a sandbox and containers under the restartPolicy, image pull
//! policy, limits, logs, exec and port-forward ([`runtime`], [`pod`]). A
//! node offers it as its default or beside the process runtime (see
//! `multi`); an agent that starts again adopts its pods ([`adopt`]);
//! probes and hooks through engine exec instances, volumes as bind
//! mounts, securityContext and termination messages (`spec`).

pub mod adopt;
mod ctr;
pub mod engine;
mod exec;
pub mod metrics;
mod pod;
pub mod runtime;
mod spec;

pub use runtime::DockerRuntime;

/// Removes what node `node`'s docker runtime left on the engine at
/// `socket` and in `root` (`shoal dev` at exit; an engine that does not
/// answer leaves its containers, said in the log).
pub async fn stop_leftovers(
    socket: &std::path::Path,
    node: u32,
    root: &std::path::Path,
    sandboxes: Option<&crate::process::sandbox::Sandboxes>,
) {
    match engine::Engine::connect(socket) {
        Ok(engine) => runtime::remove_node(&engine, node, root, sandboxes).await,
        Err(e) => tracing::warn!("docker runtime: the pods' containers stay: {e}"),
    }
}
