//! Cluster IPs and node ports of Services: allocated at random from the
//! configured ranges and claimed in the store in the same transaction as
//! the Service (a claim key per address, created only if absent), so two
//! API nodes can never hand out the same address. Claims live outside
//! `/registry/` and are released with the Service.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::errors::{ApiError, ApiResult, Cause};
use shoal_store::command::{Op, Txn};

const IP_CLAIMS: &str = "/alloc/serviceips/";
const PORT_CLAIMS: &str = "/alloc/nodeports/";

/// A configured address range that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {input:?}: {why}")]
pub struct RangeError {
    /// "service CIDR", "node port range", "pod CIDR".
    pub what: &'static str,
    pub input: String,
    pub why: String,
}

/// The Service ranges of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges {
    base: u32,
    size: u32,
    ports: (u16, u16),
}

fn invalid(field: &str, value: &str, why: &str) -> ApiError {
    let res = &crate::resources::SERVICES;
    ApiError::invalid(res, "", vec![Cause::invalid(field, value, why)])
}

impl Ranges {
    /// `cidr` such as "10.96.0.0/12", `ports` such as "30000-32767".
    pub fn new(cidr: &str, ports: &str) -> Result<Ranges, RangeError> {
        let bad = |what: &'static str, input: &str, why: String| RangeError {
            what,
            input: input.to_string(),
            why,
        };
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| bad("service CIDR", cidr, "not address/bits".into()))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|e| bad("service CIDR", cidr, format!("{e}")))?;
        let bits: u32 = bits
            .parse()
            .map_err(|e| bad("service CIDR", cidr, format!("{e}")))?;
        if !(8..=28).contains(&bits) {
            return Err(bad(
                "service CIDR",
                cidr,
                "the prefix must be /8 to /28".into(),
            ));
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        let (lo, hi) = ports
            .split_once('-')
            .ok_or_else(|| bad("node port range", ports, "not low-high".into()))?;
        let lo: u16 = lo
            .trim()
            .parse()
            .map_err(|e| bad("node port range", ports, format!("{e}")))?;
        let hi: u16 = hi
            .trim()
            .parse()
            .map_err(|e| bad("node port range", ports, format!("{e}")))?;
        if lo == 0 || lo > hi {
            return Err(bad("node port range", ports, "empty".into()));
        }
        Ok(Ranges {
            base,
            size,
            ports: (lo, hi),
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < self.size
    }

    /// Gives `svc` a cluster IP (unless headless, ExternalName or set) and
    /// node ports where its type needs them; returns the claim keys the
    /// create must take.
    pub fn allocate(&self, svc: &mut Value, _old: Option<&Value>) -> ApiResult<Vec<Vec<u8>>> {
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if ty == "ExternalName" {
            return Ok(vec![]);
        }
        let mut claims = Vec::new();
        let given = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ip = match given.as_str() {
            "None" => None,
            "" => {
                // .0 is the network and .1 the API's own Service.
                let off = rand::random_range(2..self.size - 1);
                Some(Ipv4Addr::from(self.base + off))
            }
            s => {
                let ip: Ipv4Addr = s
                    .parse()
                    .map_err(|_| invalid("spec.clusterIPs[0]", s, "must be a valid IP address"))?;
                if !self.contains(ip) {
                    return Err(invalid(
                        "spec.clusterIPs[0]",
                        s,
                        "provided IP is not in the valid range",
                    ));
                }
                Some(ip)
            }
        };
        let ip_text = ip.map_or_else(|| "None".to_string(), |ip| ip.to_string());
        svc["spec"]["clusterIP"] = json!(ip_text);
        svc["spec"]["clusterIPs"] = json!([ip_text]);
        if let Some(ip) = ip {
            claims.push(format!("{IP_CLAIMS}{ip}").into_bytes());
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            let (lo, hi) = self.ports;
            if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for (i, p) in ports.iter_mut().enumerate() {
                    let port = match p.get("nodePort").and_then(Value::as_u64) {
                        Some(n) if (lo as u64..=hi as u64).contains(&n) => n as u16,
                        Some(n) => {
                            return Err(invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                &n.to_string(),
                                &format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                            ))
                        }
                        None => rand::random_range(lo..=hi),
                    };
                    p["nodePort"] = json!(port);
                    claims.push(format!("{PORT_CLAIMS}{port}").into_bytes());
                }
            }
        }
        Ok(claims)
    }

    /// The addresses `svc` asks for by name (not picked at random), each as
    /// (its claim key, the error if another Service holds it): a create
    /// that fails over one of these is the user's error, upstream's 422
    /// "provided port is already allocated".
    pub fn requested(svc: &Value) -> Vec<(Vec<u8>, ApiError)> {
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let invalid = |field: &str, value: &str, why: &str| {
            let res = &crate::resources::SERVICES;
            ApiError::invalid(res, name, vec![Cause::invalid(field, value, why)])
        };
        let mut out = Vec::new();
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if ip.parse::<Ipv4Addr>().is_ok() {
                out.push((
                    format!("{IP_CLAIMS}{ip}").into_bytes(),
                    invalid(
                        "spec.clusterIPs",
                        ip,
                        "failed to allocate IP: provided IP is already allocated",
                    ),
                ));
            }
        }
        let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
        for (i, p) in ports.into_iter().flatten().enumerate() {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                out.push((
                    format!("{PORT_CLAIMS}{n}").into_bytes(),
                    invalid(
                        &format!("spec.ports[{i}].nodePort"),
                        &n.to_string(),
                        "provided port is already allocated",
                    ),
                ));
            }
        }
        out
    }

    /// Releases `svc`'s claims in `txn`.
    pub fn release(&self, svc: &Value, txn: &mut Txn) {
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if ip.parse::<Ipv4Addr>().is_ok() {
                txn.success.push(Op::Delete {
                    key: format!("{IP_CLAIMS}{ip}").into_bytes(),
                });
            }
        }
        let ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in ports {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                txn.success.push(Op::Delete {
                    key: format!("{PORT_CLAIMS}{n}").into_bytes(),
                });
            }
        }
    }

    /// An update keeps the addresses it was given: absent ones are carried
    /// over, changed ones are refused (they are immutable).
    pub fn keep(&self, old: &Value, new: &mut Value) -> ApiResult<()> {
        let old_ip = old.pointer("/spec/clusterIP").cloned();
        match new.pointer("/spec/clusterIP").and_then(Value::as_str) {
            None | Some("") => {
                if let Some(ip) = old_ip {
                    new["spec"]["clusterIP"] = ip;
                    if let Some(ips) = old.pointer("/spec/clusterIPs") {
                        new["spec"]["clusterIPs"] = ips.clone();
                    }
                }
            }
            Some(ip) if Some(ip) != old_ip.as_ref().and_then(Value::as_str) => {
                return Err(invalid("spec.clusterIPs[0]", ip, "may not change once set"));
            }
            Some(_) => {
                if new.pointer("/spec/clusterIPs").is_none() {
                    if let Some(ips) = old.pointer("/spec/clusterIPs") {
                        new["spec"]["clusterIPs"] = ips.clone();
                    }
                }
            }
        }
        let old_ports = old
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                if p.get("nodePort").is_some() {
                    continue;
                }
                let same = old_ports.iter().find(|o| {
                    o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                });
                if let Some(n) = same.and_then(|o| o.get("nodePort")) {
                    p["nodePort"] = n.clone();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ips_come_from_the_range_and_are_claimed() {
        let r = Ranges::new("10.96.0.0/12", "30000-32767").unwrap();
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let claims = r.allocate(&mut svc, None).unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(r.contains(ip) && ip != Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(svc["spec"]["clusterIPs"][0], svc["spec"]["clusterIP"]);
        let np = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&np));
        assert_eq!(claims.len(), 2);
        let mut txn = Txn::default();
        r.release(&svc, &mut txn);
        assert_eq!(txn.success.len(), 2);
        let mut headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
        assert!(r.allocate(&mut headless, None).unwrap().is_empty());
        let mut outside = json!({"spec": {"clusterIP": "192.168.0.1"}});
        assert_eq!(r.allocate(&mut outside, None).unwrap_err().code, 422);
        assert!(Ranges::new("10.96.0.0", "1-2").is_err());
        assert!(Ranges::new("10.96.0.0/12", "5-1").is_err());
    }

    #[test]
    fn updates_keep_addresses_and_refuse_changes() {
        let r = Ranges::new("10.0.0.0/24", "30000-30010").unwrap();
        let old = json!({"spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"],
                                   "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}});
        let mut new = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        r.keep(&old, &mut new).unwrap();
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.7");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30001);
        let mut moved = json!({"spec": {"clusterIP": "10.0.0.8"}});
        assert_eq!(r.keep(&old, &mut moved).unwrap_err().code, 422);
    }
}
