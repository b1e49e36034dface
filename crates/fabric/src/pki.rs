//! Cluster key material: the CA, node certificates, the admin token and the
//! gossip key. Generated with rcgen by `shoal init` (and `shoal dev`).
//!
//! ```text
//! DIR/ca.pem  DIR/ca.key            cluster CA (the key signs new nodes)
//! DIR/node-K/cert.pem, key.pem      node K: serverAuth + clientAuth,
//!                                   SAN = node-K, localhost, 127.0.0.1
//! DIR/admin.token                   bearer token for the API (hex)
//! DIR/gossip.key                    32-byte AEAD key for SWIM (hex)
//! ```
//!
//! A node's certificate names the node, so a QUIC client that dials
//! `node-2` verifies that it reached node-2 and not merely "some node".

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::actor::access::{Roles, NODES_ORGANIZATION};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A CA able to sign node certificates.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// A PEM certificate and its PEM private key.
pub struct NodeCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    pub fn generate(cluster_id: &str) -> Result<ClusterCa, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("shoal cluster CA {cluster_id}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let cert_pem = CertifiedIssuer::self_signed(params, key)?.pem();
        ClusterCa::from_pem(&cert_pem, &key_pem)
    }

    /// The CA of `ca.pem` and `ca.key` as `shoal init` wrote them, to issue
    /// more certificates (a new node, or one with other roles).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(ClusterCa {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    /// [`ClusterCa::from_pem`] of `dir/ca.pem` and `dir/ca.key`.
    pub fn load(dir: &Path) -> Result<ClusterCa, PkiError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| PkiError::Io {
                path: dir.join(name).display().to_string(),
                source,
            })
        };
        ClusterCa::from_pem(&read("ca.pem")?, &read("ca.key")?)
    }

    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// Issues a certificate for `node_name`, valid as TLS server and client,
    /// certifying every role.
    pub fn issue(&self, node_name: &str, extra_ips: &[IpAddr]) -> Result<NodeCert, PkiError> {
        self.issue_with_roles(node_name, extra_ips, Roles::ALL)
    }

    /// Issues a certificate for `node_name` certifying `roles` (the
    /// subject's OrganizationalUnit under Organization `shoal:nodes`; see
    /// `actor::access`).
    pub fn issue_with_roles(
        &self,
        node_name: &str,
        extra_ips: &[IpAddr],
        roles: Roles,
    ) -> Result<NodeCert, PkiError> {
        let mut params =
            CertificateParams::new(vec![node_name.to_string(), "localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        for ip in extra_ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, node_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, NODES_ORGANIZATION);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, roles.names().join(","));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// `n` random bytes, hex encoded.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system randomness");
    hex::encode(buf)
}

/// Writes the CA, `nodes` node certificates (`node-1` …), the admin token
/// and the gossip key into `dir` (which must exist). Returns the admin token.
pub fn write_cluster_files(dir: &Path, cluster_id: &str, nodes: usize) -> Result<String, PkiError> {
    let names: Vec<String> = (1..=nodes).map(crate::config::node_name).collect();
    write_cluster_files_named(dir, cluster_id, &names)
}

/// [`write_cluster_files`] for nodes of any names.
pub fn write_cluster_files_named(
    dir: &Path,
    cluster_id: &str,
    names: &[String],
) -> Result<String, PkiError> {
    let nodes: Vec<(String, Vec<IpAddr>)> = names.iter().map(|n| (n.clone(), Vec::new())).collect();
    write_cluster_files_at(dir, cluster_id, &nodes)
}

/// [`write_cluster_files`] for nodes of any names, each certificate also
/// naming the node's host addresses (IP SANs), for clusters that span
/// machines.
pub fn write_cluster_files_at(
    dir: &Path,
    cluster_id: &str,
    nodes: &[(String, Vec<IpAddr>)],
) -> Result<String, PkiError> {
    let nodes: Vec<NodeToIssue> = nodes
        .iter()
        .map(|(name, ips)| NodeToIssue {
            name: name.clone(),
            ips: ips.clone(),
            roles: Roles::ALL,
        })
        .collect();
    write_cluster_files_for(dir, cluster_id, &nodes)
}

/// One node's certificate to issue: its name, host addresses and roles.
pub struct NodeToIssue {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub roles: Roles,
}

/// [`write_cluster_files_at`] with each node's certified roles; also writes
/// `admin.token.sha256`, the digest a node without the api role checks
/// tokens against.
pub fn write_cluster_files_for(
    dir: &Path,
    cluster_id: &str,
    nodes: &[NodeToIssue],
) -> Result<String, PkiError> {
    let ca = ClusterCa::generate(cluster_id)?;
    write(dir, "ca.pem", &ca.cert_pem(), false)?;
    write(dir, "ca.key", &ca.key_pem(), true)?;
    for NodeToIssue { name, ips, roles } in nodes {
        let cert = ca.issue_with_roles(name, ips, *roles)?;
        crate::private::dir(&dir.join(name)).map_err(|source| PkiError::Io {
            path: dir.join(name).display().to_string(),
            source,
        })?;
        write(dir, &format!("{name}/cert.pem"), &cert.cert_pem, false)?;
        write(dir, &format!("{name}/key.pem"), &cert.key_pem, true)?;
    }
    let token = random_hex(32);
    write(dir, "admin.token", &format!("{token}\n"), true)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    write(
        dir,
        "admin.token.sha256",
        &format!("{}\n", hex::encode(digest.as_ref())),
        false,
    )?;
    write(dir, "gossip.key", &format!("{}\n", random_hex(32)), true)?;
    write(dir, "secrets.key", &format!("{}\n", random_hex(32)), true)?;
    Ok(token)
}

fn write(dir: &Path, rel: &str, text: &str, secret: bool) -> Result<(), PkiError> {
    let path = dir.join(rel);
    let written = if secret {
        crate::private::write(&path, text.as_bytes())
    } else {
        std::fs::write(&path, text)
    };
    written.map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a hex secret file (admin token or gossip key).
pub fn read_hex_secret(path: &Path, expected_len: Option<usize>) -> Result<Vec<u8>, PkiError> {
    let text = std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|e| PkiError::Invalid {
        path: path.display().to_string(),
        reason: format!("not hex: {e}"),
    })?;
    if let Some(n) = expected_len {
        if bytes.len() != n {
            return Err(PkiError::Invalid {
                path: path.display().to_string(),
                reason: format!("expected {n} bytes, found {}", bytes.len()),
            });
        }
    }
    Ok(bytes)
}

/// Reads the admin token as the string clients send.
pub fn read_token(path: &Path) -> Result<String, PkiError> {
    let text = std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let t = text.trim().to_string();
    if t.len() < 16 {
        return Err(PkiError::Invalid {
            path: path.display().to_string(),
            reason: "token is too short".into(),
        });
    }
    Ok(t)
}
