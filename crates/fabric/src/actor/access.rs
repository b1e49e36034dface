//! Who called, and who may call. A node's certificate names the node and
//! certifies its roles (`api`, `store`, `worker`: the subject's
//! OrganizationalUnit, under Organization `shoal:nodes`, as Kubernetes
//! puts a node's groups in its certificate). Every inbound message carries
//! its [`Caller`], taken from the certificate of the connection it came on
//! (or this node's own, for a call to itself), and each served message
//! declares an [`Access`]: any member of the cluster, members holding one of
//! some roles, or a check of the caller's own. A refused call is answered
//! `Forbidden` before its payload is decoded.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// The Organization of every node certificate.
pub const NODES_ORGANIZATION: &str = "shoal:nodes";

/// A set of node roles, as certified.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    pub const API: Roles = Roles(1);
    pub const STORE: Roles = Roles(2);
    pub const WORKER: Roles = Roles(4);
    pub const ALL: Roles = Roles(7);

    const NAMES: [(Roles, &'static str); 3] = [
        (Roles::API, "api"),
        (Roles::STORE, "store"),
        (Roles::WORKER, "worker"),
    ];

    /// The role called `name`, if it is one.
    pub fn named(name: &str) -> Option<Roles> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| *r)
    }

    /// The roles of a comma-separated list; unknown names are ignored
    /// (a newer CA may certify roles this build does not know).
    pub fn parse_list(list: &str) -> Roles {
        list.split(',')
            .filter_map(|n| Roles::named(n.trim()))
            .fold(Roles::NONE, |a, r| a | r)
    }

    /// Whether every role of `other` is here.
    pub fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any role of `other` is here.
    pub fn intersects(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The role names, in order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(r, _)| self.contains(*r))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The roles a node certificate certifies (none for anything that is
    /// not one).
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Roles {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return Roles::NONE;
        };
        let subject = cert.subject();
        let is_node = subject
            .iter_organization()
            .any(|o| o.as_str().is_ok_and(|s| s == NODES_ORGANIZATION));
        if !is_node {
            return Roles::NONE;
        }
        subject
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok())
            .fold(Roles::NONE, |a, ou| a | Roles::parse_list(ou))
    }
}

impl std::ops::BitOr for Roles {
    type Output = Roles;
    fn bitor(self, rhs: Roles) -> Roles {
        Roles(self.0 | rhs.0)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roles({self})")
    }
}

/// The node a message came from, as its certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub node: String,
    pub roles: Roles,
}

impl Caller {
    pub fn new(node: &str, roles: Roles) -> Caller {
        Caller {
            node: node.to_string(),
            roles,
        }
    }
}

/// A check of the caller's own: `Err(reason)` refuses.
pub type Check = Arc<dyn Fn(&Caller) -> Result<(), String> + Send + Sync>;

/// Who may call one served message.
#[derive(Clone)]
pub enum Access {
    /// Any node of the cluster (a certificate of its CA).
    Members,
    /// A node certified with at least one of these roles.
    AnyOf(Roles),
    /// The check decides.
    Check(Check),
}

impl Access {
    /// A check of the caller's own.
    pub fn check(f: impl Fn(&Caller) -> Result<(), String> + Send + Sync + 'static) -> Access {
        Access::Check(Arc::new(f))
    }

    /// `Err(reason)` when `caller` may not call.
    pub fn allows(&self, caller: &Caller) -> Result<(), String> {
        match self {
            Access::Members => Ok(()),
            Access::AnyOf(roles) if caller.roles.intersects(*roles) => Ok(()),
            Access::AnyOf(roles) => Err(format!(
                "{} (roles: {}) is not a node with role {}",
                caller.node,
                caller.roles,
                roles.names().join(" or ")
            )),
            Access::Check(f) => f(caller),
        }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Members => f.write_str("Members"),
            Access::AnyOf(r) => write!(f, "AnyOf({r})"),
            Access::Check(_) => f.write_str("Check(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::pki::ClusterCa;

    #[test]
    fn a_certificate_certifies_the_roles_it_was_issued_with() {
        let ca = ClusterCa::generate("test").unwrap();
        for roles in [
            Roles::ALL,
            Roles::WORKER,
            Roles::API | Roles::STORE,
            Roles::NONE,
        ] {
            let issued = ca.issue_with_roles("node-1", &[], roles).unwrap();
            let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
            assert_eq!(Roles::of_certificate(&der), roles);
        }
        assert_eq!(
            Roles::of_certificate(&CertificateDer::from(vec![0x30, 3, 1, 2, 3])),
            Roles::NONE
        );
        // The CA's own certificate is not a node's.
        let der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        assert_eq!(Roles::of_certificate(&der), Roles::NONE);
    }

    #[test]
    fn access_by_role_and_by_check() {
        let worker = Caller::new("w", Roles::WORKER);
        let api = Caller::new("a", Roles::API | Roles::STORE);
        let only_api = Access::AnyOf(Roles::API);
        assert!(only_api.allows(&api).is_ok());
        let err = only_api.allows(&worker).unwrap_err();
        assert!(err.contains("role api"), "{err}");
        assert!(Access::Members.allows(&worker).is_ok());
        let named = Access::check(|c| {
            if c.node == "a" {
                Ok(())
            } else {
                Err("not a".into())
            }
        });
        assert!(named.allows(&api).is_ok());
        assert!(named.allows(&worker).is_err());
        assert_eq!(
            Roles::parse_list("api, worker,bogus"),
            Roles::API | Roles::WORKER
        );
        assert_eq!(Roles::ALL.to_string(), "api,store,worker");
    }
}
