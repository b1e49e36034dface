//! shoal: a Kubernetes-shaped container orchestrator built as a distributed
//! actor system. This root package is the `shoal` binary: the command line
//! (`cli`), the node config file (`config`), the data dir (`datadir`), the
//! wiring of one node's components (`node`, its runtimes `runtimes`) and an in-process cluster of
//! nodes (`local`, for `shoal sim` and the test harness).
//!
//! The components are library crates under `crates/`, each a layer that
//! depends only on the layers below it (the compiler keeps it so, and
//! `scripts/check-layers.py` checks the graph):
//!
//! ```text
//!   shoal (this package: cli, config, node wiring, local clusters)
//!     │
//!   shoal-api (HTTP)   shoal-control (scheduler,      shoal-kubelet (agent,
//!     │                 controllers)                   runtimes)
//!     ├──────────────────────┼─────────────────────────────┤
//!     │              shoal-kubelet-proto (kubelet wire protocol; not control→kubelet)
//!   shoal-model (Kubernetes object model, watch cache)
//!     │
//!   shoal-store (Raft + redb MVCC store)
//!     │
//!   shoal-fabric (actors, QUIC transport, SWIM membership, pki, metrics)
//! ```
//!
//! `shoal-harness` is the dev-only test harness. The layers are re-exported
//! here under their component names (`shoal::store`, `shoal::api`, …) for
//! the binary and the tests. See `docs/ARCHITECTURE.md` for the map.

pub mod cli;
pub mod config;
pub mod datadir;
pub mod fdlimit;
pub mod local;
pub mod node;
#[cfg(test)]
mod quantity_agreement;
pub mod runtimes;

pub use shoal_api as api;
pub use shoal_control::{clock, controllers, scheduler};
pub use shoal_fabric::{
    actor, chaos, install_crypto_provider, membership, metrics, pki, private, transport, VERSION,
};
pub use shoal_kubelet as kubelet;
pub use shoal_kubelet_proto as kubelet_proto;
pub use shoal_model as model;
pub use shoal_proxy as proxy;
pub use shoal_store as store;
