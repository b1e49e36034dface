//! TLS for the Ingress controller: certificates from `kubernetes.io/tls`
//! Secrets (`tls.crt`, `tls.key`, PEM), chosen per connection by the SNI
//! name from the routing table current at the handshake, so a changed
//! Secret or Ingress takes effect for the next connection without a
//! restart. A host with no usable certificate (no SNI, a missing or broken
//! Secret) gets the controller's default certificate, a self-signed one
//! made at start, as ingress-nginx serves its "Fake Certificate".

use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::routes::Routes;

/// The default certificate's subject (and its one DNS name).
pub const DEFAULT_CERT_NAME: &str = "Shoal Ingress Controller Fake Certificate";

/// A self-signed certificate for when no Secret applies.
pub fn default_cert() -> Result<Arc<CertifiedKey>, String> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    certified(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// A certificate chain and key from PEM.
pub fn certified(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: {e}"))?;
    let ck = CertifiedKey::new(chain, key);
    ck.keys_match()
        .map_err(|e| format!("tls.crt and tls.key: {e}"))?;
    Ok(Arc::new(ck))
}

/// The certificate of a `kubernetes.io/tls` Secret.
pub fn from_secret(secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
    let data = secret.data.as_ref();
    let get = |k: &str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .ok_or_else(|| format!("the Secret has no {k}"))
    };
    certified(get("tls.crt")?, get("tls.key")?)
}

/// Picks each connection's certificate from the current routing table.
#[derive(Debug)]
pub struct Resolver {
    pub routes: Arc<RwLock<Arc<Routes>>>,
    pub default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("ingresses", &self.ingresses)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        hello
            .server_name()
            .and_then(|name| routes.certs.for_host(name))
            .or_else(|| Some(self.default.clone()))
    }
}

/// The server configuration of the HTTPS listener (HTTP/2 and HTTP/1.1
/// by ALPN), ring only.
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
