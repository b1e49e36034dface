//! shoal: a Kubernetes-shaped container orchestrator built as a distributed
//! actor system.
//!
//! Every node runs the same binary. Components are actors addressed as
//! `name@node`; they talk over QUIC with mutual TLS (`transport`), find each
//! other and detect failures with SWIM gossip (`membership`), and are wired
//! together in one place (`node`). See `docs/ARCHITECTURE.md` for the map.
//!
//! ```text
//!   cli ──HTTPS──► api ──► membership (foca over AEAD UDP)
//!                   │            │ member events
//!                   ▼            ▼
//!               actor layer ◄── transport (quinn + rustls mTLS, faults)
//! ```

pub mod actor;
pub mod api;
pub mod chaos;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod datadir;
pub mod kubelet;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod scheduler;
pub mod store;
pub mod testing;
pub mod transport;

/// The shoal version carried in node metadata and `/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Installs the ring crypto provider as the process default, once.
///
/// Every TLS config in shoal is also built with an explicit ring provider, so
/// this only matters for code that asks rustls for the process default.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
