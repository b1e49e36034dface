//! rustls configurations, all on the ring provider.
//!
//! - QUIC server: TLS 1.3, ALPN `shoal/1`, client certificate required and
//!   verified against the cluster CA (mutual TLS).
//! - QUIC client: presents the node certificate; verifies the server against
//!   the cluster CA *and* the node name it dialled.
//! - HTTPS API server: the node certificate, no client certificate (bearer
//!   tokens authenticate API users), ALPN h2 and http/1.1.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// QUIC ALPN: `shoal/<major>`.
pub const ALPN: &[u8] = b"shoal/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Load {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The node's certificate chain, key and the cluster CA.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl TlsMaterial {
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
        let load_err = |what, path: &Path, e: &dyn std::fmt::Display| TlsError::Load {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let ca_certs: Vec<_> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| load_err("CA", ca, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| load_err("CA", ca, &e))?;
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| load_err("certificate", cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| load_err("certificate", cert, &e))?;
        if ca_certs.is_empty() || chain.is_empty() {
            return Err(TlsError::Load {
                what: "certificate",
                path: cert.display().to_string(),
                reason: "empty".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| load_err("key", key, &e))?;
        Ok(TlsMaterial {
            ca: ca_certs,
            chain,
            key: Arc::new(key),
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots
                .add(c.clone())
                .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC server side: mutual TLS against the cluster CA.
pub fn quic_server_config(m: &TlsMaterial) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots()?, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// QUIC client side: presents this node's certificate.
pub fn quic_client_config(m: &TlsMaterial) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(m.roots()?)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// HTTPS API server: server certificate only.
pub fn https_server_config(m: &TlsMaterial) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// HTTPS client trusting only the cluster CA (used by the CLI).
pub fn https_client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| TlsError::Load {
        what: "CA",
        path: ca.display().to_string(),
        reason: e.to_string(),
    })? {
        let c = c.map_err(|e| TlsError::Load {
            what: "CA",
            path: ca.display().to_string(),
            reason: e.to_string(),
        })?;
        roots.add(c).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
