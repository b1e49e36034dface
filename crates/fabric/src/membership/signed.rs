//! Node metadata signed by its node. Gossip is sealed with the cluster's
//! key, so only members can speak; the signature binds each node's
//! metadata (its QUIC and API addresses, roles, `leaving`) to that node,
//! so one member cannot speak for another. A broadcast carries the
//! metadata's bytes, the node's certificate and an ECDSA P-256 signature by
//! the certificate's key. A receiver accepts it only if the certificate
//! chains to the cluster CA, is valid for the node name the metadata
//! gives, certifies every role it claims, and signed these bytes.

use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

use super::meta::{MetaError, NodeMeta};
use crate::actor::access::Roles;
use crate::transport::tls::TlsMaterial;

/// What a metadata broadcast carries.
#[derive(Serialize, Deserialize)]
struct Signed {
    #[serde(with = "serde_bytes")]
    meta: Vec<u8>,
    #[serde(with = "serde_bytes")]
    cert: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sig: Vec<u8>,
}

/// Signs this node's metadata with its certificate's key.
pub struct MetaSigner {
    key: ring::signature::EcdsaKeyPair,
    cert: Vec<u8>,
    rng: ring::rand::SystemRandom,
}

impl MetaSigner {
    /// The signer of `tls`'s node (an ECDSA P-256 key, as `shoal init`
    /// issues).
    pub fn new(tls: &TlsMaterial) -> Result<MetaSigner, String> {
        let PrivateKeyDer::Pkcs8(pkcs8) = tls.key.as_ref() else {
            return Err("the node key is not PKCS#8".into());
        };
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| format!("the node key is not ECDSA P-256: {e}"))?;
        let cert = tls
            .chain
            .first()
            .ok_or("no node certificate")?
            .as_ref()
            .to_vec();
        Ok(MetaSigner { key, cert, rng })
    }

    /// The broadcast of `meta`.
    pub fn sign(&self, meta: &NodeMeta) -> Result<Vec<u8>, String> {
        let bytes = postcard::to_allocvec(meta).map_err(|e| e.to_string())?;
        let sig = self
            .key
            .sign(&self.rng, &bytes)
            .map_err(|e| format!("cannot sign: {e}"))?;
        postcard::to_allocvec(&Signed {
            meta: bytes,
            cert: self.cert.clone(),
            sig: sig.as_ref().to_vec(),
        })
        .map_err(|e| e.to_string())
    }
}

/// Checks broadcasts against the cluster CA.
#[derive(Clone)]
pub struct MetaVerifier {
    ca: Vec<CertificateDer<'static>>,
}

impl MetaVerifier {
    pub fn new(tls: &TlsMaterial) -> MetaVerifier {
        MetaVerifier { ca: tls.ca.clone() }
    }

    /// The metadata a broadcast claims, unverified (to skip old versions
    /// cheaply), and the broadcast decoded.
    fn open(bytes: &[u8]) -> Result<(Signed, NodeMeta), MetaError> {
        let signed: Signed =
            postcard::from_bytes(bytes).map_err(|e| MetaError::new(e.to_string()))?;
        let meta: NodeMeta =
            postcard::from_bytes(&signed.meta).map_err(|e| MetaError::new(e.to_string()))?;
        Ok((signed, meta))
    }

    /// The claimed metadata, before any check.
    pub fn claimed(bytes: &[u8]) -> Result<NodeMeta, MetaError> {
        Self::open(bytes).map(|(_, m)| m)
    }

    /// The metadata of a broadcast whose signature and certificate hold.
    pub fn verify(&self, bytes: &[u8]) -> Result<NodeMeta, MetaError> {
        let (signed, meta) = Self::open(bytes)?;
        let refuse = |why: &str| MetaError::new(format!("metadata of {:?}: {why}", meta.name));
        let cert = CertificateDer::from(signed.cert.as_slice());
        let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| refuse(&e.to_string()))?;
        let anchors: Vec<_> = self
            .ca
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect();
        let algs = [
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P384_SHA384,
            webpki::ring::ED25519,
        ];
        ee.verify_for_usage(
            &algs,
            &anchors,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| refuse(&format!("certificate not of this cluster: {e}")))?;
        let name = DnsName::try_from(meta.name.as_str()).map_err(|_| refuse("not a DNS name"))?;
        if meta.name.eq_ignore_ascii_case("localhost") {
            return Err(refuse("not a node name"));
        }
        ee.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
            .map_err(|_| refuse("the certificate is another node's"))?;
        ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, &signed.meta, &signed.sig)
            .map_err(|_| refuse("bad signature"))?;
        let certified = Roles::of_certificate(&cert);
        if let Some(r) = meta
            .roles
            .iter()
            .find(|r| !Roles::named(r).is_some_and(|r| certified.contains(r)))
        {
            return Err(refuse(&format!("role {r:?} is not certified")));
        }
        Ok(meta)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::membership::meta::Capacity;
    use crate::pki::ClusterCa;
    use rustls::pki_types::pem::PemObject;

    fn material(ca: &ClusterCa, name: &str, roles: Roles) -> TlsMaterial {
        let issued = ca.issue_with_roles(name, &[], roles).unwrap();
        TlsMaterial {
            ca: vec![CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()],
            chain: vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()],
            key: std::sync::Arc::new(
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
            ),
        }
    }

    /// The TLS material of node `name` of a new cluster, every role.
    pub(in crate::membership) fn material_for(name: &str) -> TlsMaterial {
        material(&ClusterCa::generate("t").unwrap(), name, Roles::ALL)
    }

    fn meta(name: &str, roles: &[&str]) -> NodeMeta {
        NodeMeta {
            name: name.into(),
            generation: 1,
            seq: 1,
            leaving: false,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            region: "r".into(),
            zone: "a".into(),
            api: Some("10.0.0.2:6443".parse().unwrap()),
            quic: "10.0.0.2:7443".parse().unwrap(),
            version: "0.1.0".into(),
            capacity: Capacity {
                cpu_millis: 4000,
                memory_bytes: 1 << 33,
                pods: 110,
            },
        }
    }

    #[test]
    fn metadata_is_accepted_only_as_signed_by_its_own_node() {
        let ca = ClusterCa::generate("c").unwrap();
        let n2 = material(&ca, "node-2", Roles::ALL);
        let w3 = material(&ca, "node-3", Roles::WORKER);
        let verifier = MetaVerifier::new(&n2);
        let signer = MetaSigner::new(&n2).unwrap();
        let good = signer.sign(&meta("node-2", &["api", "worker"])).unwrap();
        // It fits a gossip packet (1,200 bytes) with room for SWIM's own.
        assert!(good.len() < 900, "{} bytes", good.len());
        assert_eq!(verifier.verify(&good).unwrap().name, "node-2");
        // node-2's key speaking for node-3.
        let spoofed = signer.sign(&meta("node-3", &["worker"])).unwrap();
        assert!(verifier.verify(&spoofed).is_err());
        // A worker's certificate claiming the api role.
        let w = MetaSigner::new(&w3).unwrap();
        assert!(verifier
            .verify(&w.sign(&meta("node-3", &["worker"])).unwrap())
            .is_ok());
        let err = verifier
            .verify(&w.sign(&meta("node-3", &["api", "worker"])).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("not certified"), "{err}");
        // Tampered bytes: the signature no longer holds.
        let mut signed: Signed = postcard::from_bytes(&good).unwrap();
        let mut m: NodeMeta = postcard::from_bytes(&signed.meta).unwrap();
        m.quic = "10.6.6.6:7443".parse().unwrap();
        signed.meta = postcard::to_allocvec(&m).unwrap();
        let tampered = postcard::to_allocvec(&signed).unwrap();
        assert!(verifier.verify(&tampered).is_err());
        // Another cluster's CA.
        let other = ClusterCa::generate("other").unwrap();
        let foreign = MetaSigner::new(&material(&other, "node-2", Roles::ALL)).unwrap();
        assert!(verifier
            .verify(&foreign.sign(&meta("node-2", &[])).unwrap())
            .is_err());
        // Garbage.
        assert!(verifier.verify(b"\x01\x02\x03").is_err());
    }
}
