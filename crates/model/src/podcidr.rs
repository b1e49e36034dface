//! Pod CIDRs of Nodes: the cluster's pod range (`kubelet.pod_cidr`, a
//! /12 by default) cut into /24s, one per Node. A Node gets its /24 in the
//! transaction that creates it, as a Service gets its cluster IP: a claim
//! key per /24 (`/alloc/podcidrs/<network>`, holding the node's name) is
//! created only if absent, so two writers can never hand out the same
//! subnet. The /24 is written to `spec.podCIDR` and `spec.podCIDRs`; a
//! returning node keeps the one it holds; deleting the Node releases it.
//!
//! Node names carry no meaning: the /24's index in the range (its
//! [`PodSlot`]) is what names a node's bridge and its host-mode addresses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Value};
use shoal_store::command::{Compare, KeyValue, Op, Txn};
use shoal_store::{ReadRequest, Store};

use super::alloc::RangeError;
use super::errors::{ApiError, ApiResult, Cause};

/// Where the claims live (outside `/registry/`, like Service IP claims).
pub const CLAIMS: &str = "/alloc/podcidrs/";

/// The cluster's pod range, cut into /24s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCidrs {
    base: u32,
    count: u32,
    text: String,
}

/// One node's share of the pod range: its /24 and that /24's index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodSlot {
    pub index: u32,
    /// "10.88.3.0/24".
    pub cidr: String,
}

impl PodSlot {
    /// The /24's network address.
    pub fn network(&self) -> Ipv4Addr {
        self.cidr
            .split_once('/')
            .and_then(|(ip, _)| ip.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}

fn invalid(name: &str, field: &str, value: &str, why: &str) -> ApiError {
    let res = &crate::resources::NODES;
    ApiError::invalid(res, name, vec![Cause::invalid(field, value, why)])
}

impl PodCidrs {
    /// `cidr` such as "10.80.0.0/12": a network of /8 to /24.
    pub fn new(cidr: &str) -> Result<PodCidrs, RangeError> {
        let bad = |why: String| RangeError {
            what: "pod CIDR",
            input: cidr.to_string(),
            why,
        };
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| bad("not address/bits".into()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| bad(format!("{e}")))?;
        let bits: u32 = bits.parse().map_err(|e| bad(format!("{e}")))?;
        if !(8..=24).contains(&bits) {
            return Err(bad(
                "the prefix must be /8 to /24 (each node takes a /24)".into()
            ));
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip);
        if base & (size - 1) != 0 {
            return Err(bad("host bits set".into()));
        }
        Ok(PodCidrs {
            base,
            count: size >> 8,
            text: format!("{ip}/{bits}"),
        })
    }

    /// The range's network address and prefix length.
    pub fn network(&self) -> (Ipv4Addr, u8) {
        // count = 2^(24 - bits), so bits = 24 - log2(count).
        (
            Ipv4Addr::from(self.base),
            (24 - self.count.trailing_zeros()) as u8,
        )
    }

    /// How many nodes the range holds.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The /24 at `index`.
    pub fn slot(&self, index: u32) -> Option<PodSlot> {
        (index < self.count).then(|| PodSlot {
            index,
            cidr: format!("{}/24", Ipv4Addr::from(self.base + (index << 8))),
        })
    }

    /// The slot of `cidr` if it is one of this range's /24s.
    pub fn slot_of(&self, cidr: &str) -> Option<PodSlot> {
        let ip: Ipv4Addr = cidr.strip_suffix("/24")?.parse().ok()?;
        let off = u32::from(ip).checked_sub(self.base)?;
        (off & 0xff == 0)
            .then_some(off >> 8)
            .and_then(|i| self.slot(i))
    }

    /// The claims in the store: slot index → (holder, mod_rev), for the
    /// claims that fall in this range.
    pub fn claims(&self, kvs: &[KeyValue]) -> BTreeMap<u32, (String, u64)> {
        kvs.iter()
            .filter_map(|kv| {
                let net = std::str::from_utf8(kv.key.strip_prefix(CLAIMS.as_bytes())?).ok()?;
                let slot = self.slot_of(&format!("{net}/24"))?;
                let holder = String::from_utf8_lossy(&kv.value).into_owned();
                Some((slot.index, (holder, kv.mod_rev)))
            })
            .collect()
    }

    /// Reads the claims, then [`PodCidrs::assign_from`].
    pub async fn assign(
        &self,
        store: &Store,
        node: &mut Value,
        txn: &mut Txn,
    ) -> ApiResult<PodSlot> {
        let read = store
            .read(ReadRequest::prefix(CLAIMS))
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let mut claims = self.claims(&read.kvs);
        self.assign_from(&mut claims, node, txn)
    }

    /// Gives `node` its /24 and adds the claim to `txn` (the transaction
    /// that creates or updates the Node), recording it in `claims`:
    /// the `spec.podCIDR` it asks for (which must be free or its own), else
    /// the one it already holds, else the lowest free one. An exhausted
    /// range is an error naming it.
    pub fn assign_from(
        &self,
        claims: &mut BTreeMap<u32, (String, u64)>,
        node: &mut Value,
        txn: &mut Txn,
    ) -> ApiResult<PodSlot> {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let asked = node
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let slot = if let Some(asked) = asked {
            let slot = self.slot_of(&asked).ok_or_else(|| {
                invalid(
                    &name,
                    "spec.podCIDR",
                    &asked,
                    &format!("must be a /24 of the cluster's pod range {}", self.text),
                )
            })?;
            match claims.get(&slot.index) {
                Some((holder, _)) if *holder != name => {
                    return Err(invalid(
                        &name,
                        "spec.podCIDR",
                        &asked,
                        &format!("is allocated to node {holder:?}"),
                    ))
                }
                _ => slot,
            }
        } else if let Some((&i, _)) = claims.iter().find(|(_, (holder, _))| *holder == name) {
            self.slot(i).expect("a claim in range")
        } else {
            let free = (0..self.count).find(|i| !claims.contains_key(i));
            let Some(i) = free else {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    format!(
                        "cannot register node {name:?}: the pod CIDR range {} is exhausted (all {} /24s are allocated to other nodes)",
                        self.text, self.count
                    ),
                ));
            };
            self.slot(i).expect("a free index in range")
        };
        let key = format!("{CLAIMS}{}", slot.network()).into_bytes();
        match claims.get(&slot.index) {
            // Already ours: it must still be when the write lands.
            Some((_, rev)) => txn.compare.push(Compare { key, mod_rev: *rev }),
            None => {
                txn.compare.push(Compare {
                    key: key.clone(),
                    mod_rev: 0,
                });
                txn.success.push(Op::Put {
                    key,
                    value: name.clone().into_bytes(),
                });
                claims.insert(slot.index, (name, 0));
            }
        }
        if !node.get("spec").is_some_and(Value::is_object) {
            node["spec"] = json!({});
        }
        node["spec"]["podCIDR"] = json!(slot.cidr);
        node["spec"]["podCIDRs"] = json!([slot.cidr]);
        Ok(slot)
    }

    /// An update keeps the Node's pod CIDR: an absent one is carried over,
    /// a changed one refused (upstream: it may only go from "" to a value).
    pub fn keep(old: &Value, new: &mut Value) -> ApiResult<()> {
        let Some(was) = old.pointer("/spec/podCIDR").and_then(Value::as_str) else {
            return Ok(());
        };
        match new.pointer("/spec/podCIDR").and_then(Value::as_str) {
            None | Some("") => {
                if !new.get("spec").is_some_and(Value::is_object) {
                    new["spec"] = json!({});
                }
                new["spec"]["podCIDR"] = json!(was);
                new["spec"]["podCIDRs"] = json!([was]);
                Ok(())
            }
            Some(now) if now == was => Ok(()),
            Some(now) => {
                let name = old
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                Err(ApiError::invalid(
                    &crate::resources::NODES,
                    name,
                    vec![Cause {
                        reason: "FieldValueForbidden",
                        field: "spec.podCIDR".into(),
                        message: format!(
                            "Forbidden: node updates may not change podCIDR except from \"\" to valid (was {was}, now {now})"
                        ),
                    }],
                ))
            }
        }
    }

    /// Releases `node`'s /24 in `txn` (the transaction that deletes it).
    pub fn release(node: &Value, txn: &mut Txn) {
        let Some(cidr) = node.pointer("/spec/podCIDR").and_then(Value::as_str) else {
            return;
        };
        if let Some(net) = cidr
            .strip_suffix("/24")
            .filter(|n| n.parse::<Ipv4Addr>().is_ok())
        {
            txn.success.push(Op::Delete {
                key: format!("{CLAIMS}{net}").into_bytes(),
            });
        }
    }
}

impl std::fmt::Display for PodCidrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {}})
    }

    #[test]
    fn ranges_cut_into_24s() {
        let r = PodCidrs::new("10.80.0.0/12").unwrap();
        assert_eq!(r.len(), 4096);
        assert_eq!(r.slot(0).unwrap().cidr, "10.80.0.0/24");
        assert_eq!(r.slot(300).unwrap().cidr, "10.81.44.0/24");
        assert_eq!(r.slot(4095).unwrap().cidr, "10.95.255.0/24");
        assert!(r.slot(4096).is_none());
        assert_eq!(r.slot_of("10.81.44.0/24").unwrap().index, 300);
        assert!(r.slot_of("10.81.44.7/24").is_none());
        assert!(r.slot_of("10.96.0.0/24").is_none());
        assert!(r.slot_of("10.79.255.0/24").is_none());
        assert_eq!(PodCidrs::new("10.9.0.0/24").unwrap().len(), 1);
        assert!(PodCidrs::new("10.9.0.0/25").is_err());
        assert!(PodCidrs::new("10.9.0.1/16").is_err());
        assert!(PodCidrs::new("nonsense").is_err());
    }

    #[test]
    fn nodes_get_the_lowest_free_24_keep_theirs_and_exhaust_clearly() {
        let r = PodCidrs::new("10.9.0.0/23").unwrap();
        let mut claims = BTreeMap::new();
        let (mut a, mut b, mut c) = (node("alpha"), node("beta-2"), node("c"));
        let mut txn = Txn::default();
        let sa = r.assign_from(&mut claims, &mut a, &mut txn).unwrap();
        assert_eq!(
            (sa.index, a["spec"]["podCIDR"].as_str()),
            (0, Some("10.9.0.0/24"))
        );
        assert_eq!(a["spec"]["podCIDRs"], json!(["10.9.0.0/24"]));
        assert_eq!(
            txn.compare[0].mod_rev, 0,
            "a new claim is created only if absent"
        );
        let sb = r
            .assign_from(&mut claims, &mut b, &mut Txn::default())
            .unwrap();
        assert_eq!(sb.cidr, "10.9.1.0/24");
        // A returning node keeps its own, checked against the claim's revision.
        claims.insert(0, ("alpha".into(), 7));
        let mut again = node("alpha");
        let mut txn = Txn::default();
        assert_eq!(
            r.assign_from(&mut claims, &mut again, &mut txn).unwrap(),
            sa
        );
        assert_eq!((txn.compare[0].mod_rev, txn.success.len()), (7, 0));
        // Full: a clear error naming the range.
        let e = r
            .assign_from(&mut claims, &mut c, &mut Txn::default())
            .unwrap_err();
        assert_eq!(e.code, 500);
        assert!(
            e.message
                .contains("pod CIDR range 10.9.0.0/23 is exhausted"),
            "{}",
            e.message
        );
        // Asking for another node's /24, or one outside the range.
        let mut thief = json!({"metadata": {"name": "c"}, "spec": {"podCIDR": "10.9.1.0/24"}});
        assert_eq!(
            r.assign_from(&mut claims, &mut thief, &mut Txn::default())
                .unwrap_err()
                .code,
            422
        );
        let mut outside = json!({"metadata": {"name": "c"}, "spec": {"podCIDR": "10.1.0.0/24"}});
        assert_eq!(
            r.assign_from(&mut claims, &mut outside, &mut Txn::default())
                .unwrap_err()
                .code,
            422
        );
        // Release deletes the claim.
        let mut del = Txn::default();
        PodCidrs::release(&b, &mut del);
        assert_eq!(
            del.success,
            vec![Op::Delete {
                key: b"/alloc/podcidrs/10.9.1.0".to_vec()
            }]
        );
    }

    #[test]
    fn claims_are_read_back_by_range() {
        let r = PodCidrs::new("10.9.0.0/16").unwrap();
        let kv = |k: &str, v: &str, rev| KeyValue {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            create_rev: rev,
            mod_rev: rev,
            version: 1,
        };
        let claims = r.claims(&[
            kv("/alloc/podcidrs/10.9.4.0", "alpha", 3),
            kv("/alloc/podcidrs/10.10.0.0", "elsewhere", 4),
            kv("/alloc/podcidrs/garbage", "x", 5),
        ]);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[&4], ("alpha".to_string(), 3));
    }

    #[test]
    fn updates_keep_the_pod_cidr() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.9.0.0/24"}});
        let mut new = json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true}});
        PodCidrs::keep(&old, &mut new).unwrap();
        assert_eq!(new["spec"]["podCIDRs"], json!(["10.9.0.0/24"]));
        let mut moved = json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.9.1.0/24"}});
        assert_eq!(PodCidrs::keep(&old, &mut moved).unwrap_err().code, 422);
    }
}
