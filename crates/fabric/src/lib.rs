//! shoal-fabric: the bottom layer of shoal. Actors addressed as
//! `name@node` (`actor`), the QUIC transport with mutual TLS and fault
//! injection that carries their envelopes (`transport`), SWIM membership
//! over AEAD-sealed UDP (`membership`), the chaos actor that applies fault
//! rules (`chaos`), the cluster's key material (`pki`), the node's
//! Prometheus registry (`metrics`) and the config sections of a node's
//! identity (`config`). Nothing here knows of the store or of Kubernetes.
//!
//! ```text
//!   actor (local actix actors, remote asks/tells/subscriptions)
//!     │ envelopes (postcard)
//!   transport (quinn + rustls mTLS, faults) ◄── membership (foca, UDP)
//! ```

pub mod actor;
pub mod chaos;
pub mod config;
pub mod membership;
pub mod metrics;
pub mod pki;
pub mod private;
#[cfg(feature = "testing")]
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
