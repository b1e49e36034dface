//! Who is on the other end of a QUIC connection: the node named by its
//! certificate. Every envelope names its sender (`from`); the serving side
//! accepts it only when the peer's certificate is valid for that name (a
//! DNS name of the certificate, never `localhost` or an address), so a
//! node's certificate speaks for that node alone, with the roles it
//! certifies (`actor::access`).

use std::sync::Mutex;

use rustls::pki_types::{CertificateDer, DnsName, ServerName};

use crate::actor::access::Roles;

/// The certificate a connection's peer presented.
pub struct Peer {
    cert: Option<CertificateDer<'static>>,
    /// The roles the certificate certifies.
    roles: Roles,
    /// The last name the certificate was found valid for.
    verified: Mutex<Option<String>>,
}

impl Peer {
    /// The peer of `conn` (its leaf certificate; the handshake has already
    /// checked it against the cluster CA).
    pub fn of(conn: &quinn::Connection) -> Peer {
        let cert = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().cloned());
        Peer::with_cert(cert)
    }

    pub fn with_cert(cert: Option<CertificateDer<'static>>) -> Peer {
        let roles = cert.as_ref().map_or(Roles::NONE, Roles::of_certificate);
        Peer {
            cert,
            roles,
            verified: Mutex::new(None),
        }
    }

    /// The roles the peer's certificate certifies.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// Whether the peer may send as node `from`.
    pub fn may_send_as(&self, from: &str) -> bool {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.as_deref() == Some(from) {
            return true;
        }
        if from.eq_ignore_ascii_case("localhost") || !crate::config::is_dns1123_subdomain(from) {
            return false;
        }
        let Some(cert) = &self.cert else {
            return false;
        };
        let Ok(name) = DnsName::try_from(from) else {
            return false;
        };
        let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        let ok = ee
            .verify_is_valid_for_subject_name(&ServerName::DnsName(name))
            .is_ok();
        if ok {
            *verified = Some(from.to_string());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::pki::ClusterCa;

    fn cert_of(name: &str) -> CertificateDer<'static> {
        let ca = ClusterCa::generate("test-cluster").unwrap();
        let issued = ca.issue(name, &[]).unwrap();
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_certificate_speaks_for_its_own_node_only() {
        let peer = Peer::with_cert(Some(cert_of("node-2")));
        assert!(peer.may_send_as("node-2"));
        assert!(peer.may_send_as("node-2"), "cached");
        for other in [
            "node-3",
            "node-20",
            "localhost",
            "127.0.0.1",
            "",
            "node-2.evil",
        ] {
            assert!(!peer.may_send_as(other), "{other}");
        }
        assert!(peer.may_send_as("node-2"));
        assert!(!Peer::with_cert(None).may_send_as("node-2"));
        let garbage = Peer::with_cert(Some(CertificateDer::from(vec![1, 2, 3])));
        assert!(!garbage.may_send_as("node-2"));
    }
}
