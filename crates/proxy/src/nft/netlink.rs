//! [`Op`]s as one nf_tables netlink batch ([`Netlink`]), through the
//! `nlink` crate: no `nft` process, and no listing of the ruleset before a
//! transaction (what `nft` does, and what made a change cost the size of
//! every table in the kernel).
//!
//! Each [`Stmt`] becomes the register-level expressions `nft` itself would
//! send for it (its `netlink_linearize.c`), so `nft list` reads the rules
//! back as written; `kernel_tests` holds the two to that.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nlink::netlink::nftables::{
    BaseChain, Chain, ChainName, CmpOp, CtKey, DynsetExpr, DynsetOp, Expr, Family, FilterHook,
    LookupExpr, MetaKey, NatHook, NatStatement, NumgenKind, PayloadBase, Policy, Priority,
    Register, Rule, Set, SetElement, SetKeyType, Transaction, Verdict, NFT_REJECT_ICMP_UNREACH,
};
use nlink::netlink::{Connection, Nftables};

use super::{NftError, Op};
use crate::model::Proto;
use crate::rules::{Hook, HookPoint, Key, MapName, Stmt};

/// How long one transaction may take (a full build at 10,000 Services
/// sends about 100,000 messages).
const DEADLINE: Duration = Duration::from_secs(600);

/// ICMP port unreachable, what `reject` sends in an `ip` table.
const PORT_UNREACHABLE: u8 = 3;

/// A netlink socket to nf_tables, on the host or in a network namespace.
pub struct Netlink {
    conn: Connection<Nftables>,
}

fn refused(e: impl std::fmt::Display) -> NftError {
    NftError::Refused(e.to_string())
}

impl Netlink {
    /// nf_tables of the host's network namespace.
    pub fn host() -> Result<Netlink, NftError> {
        let conn = Connection::<Nftables>::new().map_err(|e| NftError::Spawn(e.to_string()))?;
        Ok(Netlink {
            conn: conn.timeout(DEADLINE),
        })
    }

    /// nf_tables of network namespace `ns` (a name under /run/netns).
    pub fn in_netns(ns: &str) -> Result<Netlink, NftError> {
        let conn = Connection::<Nftables>::new_in(ns)
            .map_err(|e| NftError::Spawn(format!("netns {ns}: {e}")))?;
        Ok(Netlink {
            conn: conn.timeout(DEADLINE),
        })
    }

    /// Sends `ops` as one batch: all of them or none.
    pub async fn apply(&self, ops: &[Op]) -> Result<(), NftError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut tx = self.conn.transaction();
        let mut bytes = 0;
        for op in ops {
            tx = add(tx, op)?;
            bytes += op_size(op);
        }
        self.make_room(bytes);
        tx.commit(&self.conn).await.map_err(refused)
    }

    /// A batch goes in one `sendmsg`, which the kernel refuses when it is
    /// larger than the socket's send buffer (`EMSGSIZE`); `nft` raises it
    /// the same way. Needs `CAP_NET_ADMIN`, which writing rules needs too.
    fn make_room(&self, bytes: usize) {
        let want = (bytes * 2 + (1 << 20)).min(i32::MAX as usize) as libc::c_int;
        let fd = self.conn.socket().as_raw_fd();
        // SAFETY: setsockopt(2) on a socket this connection owns, with a
        // pointer to a c_int that lives through the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&want as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(
                "proxy: SO_SNDBUFFORCE {want}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// A generous estimate of an operation's bytes on the wire.
fn op_size(op: &Op) -> usize {
    match op {
        Op::AddRule(_, _, rule) => 128 + rule.len() * 160,
        _ => 256,
    }
}

fn chain_name(name: &str) -> Result<ChainName, NftError> {
    ChainName::new(name).map_err(refused)
}

fn map_set(table: &str, map: MapName) -> Set {
    let mut key = Vec::new();
    if map.has_addr() {
        key.push(SetKeyType::Ipv4Addr);
    }
    key.extend([SetKeyType::InetProto, SetKeyType::InetService]);
    Set::new(table, map.as_str())
        .family(Family::Ip)
        .key_type(SetKeyType::Concat(key))
        .vmap()
}

fn affinity_set(table: &str, name: &str) -> Set {
    Set::new(table, name)
        .family(Family::Ip)
        .key_type(SetKeyType::Ipv4Addr)
        .per_element_timeouts()
        .dynamic()
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}

fn element(key: &Key) -> SetElement {
    match *key {
        Key::Ip(ip, proto, port) => SetElement::concat([
            SetElement::ipv4(ip),
            SetElement::inet_proto(proto_number(proto)),
            SetElement::port(port),
        ]),
        Key::Port(proto, port) => SetElement::concat([
            SetElement::inet_proto(proto_number(proto)),
            SetElement::port(port),
        ]),
    }
}

fn base_chain(hook: Hook) -> Result<BaseChain, NftError> {
    let prio = Priority::Custom(hook.prio);
    let chain = if hook.nat {
        let h = match hook.hook {
            HookPoint::Prerouting => NatHook::Prerouting,
            HookPoint::Output => NatHook::Output,
            HookPoint::Postrouting => NatHook::Postrouting,
            HookPoint::Forward => return Err(refused("a nat chain has no forward hook")),
        };
        BaseChain::nat(h, prio)
    } else {
        let h = match hook.hook {
            HookPoint::Prerouting => FilterHook::Prerouting,
            HookPoint::Output => FilterHook::Output,
            HookPoint::Postrouting => FilterHook::Postrouting,
            HookPoint::Forward => FilterHook::Forward,
        };
        BaseChain::filter(h, prio)
    };
    Ok(chain.policy(Policy::Accept))
}

/// Adds one operation to the batch.
fn add(tx: Transaction, op: &Op) -> Result<Transaction, NftError> {
    Ok(match op {
        // `NEWTABLE` without `NLM_F_EXCL` creates it or leaves it be, then
        // it goes and comes back empty: nft's `add; delete; add`.
        Op::ReplaceTable(t) => tx
            .update_table(t, Family::Ip, 0)
            .del_table(t, Family::Ip)
            .add_table(t, Family::Ip),
        Op::AddMap(t, m) => tx.add_set(map_set(t, *m)),
        Op::AddSet(t, s) => tx.add_set(affinity_set(t, s)),
        Op::DeleteSet(t, s) => tx.del_set(t, s, Family::Ip),
        Op::AddChain(t, c, hook) => {
            let mut chain = Chain::new(t.as_str(), c.as_str())
                .map_err(refused)?
                .family(Family::Ip);
            if let Some(h) = hook {
                chain = chain.base(base_chain(*h)?);
            }
            tx.add_chain(chain)
        }
        Op::FlushChain(t, c) => tx.flush_chain(t, c, Family::Ip),
        Op::DeleteChain(t, c) => tx.del_chain(t, c, Family::Ip),
        Op::AddRule(t, c, stmts) => {
            let mut rule = Rule::new(t, c).family(Family::Ip);
            for s in stmts {
                rule = lower(rule, s)?;
            }
            tx.add_rule(rule)
        }
        Op::AddElement(t, m, key, chain) => {
            let e = element(key).verdict(Verdict::GotoTo(chain_name(chain)?));
            tx.add_set_elements(&map_set(t, *m), &[e])
        }
        Op::DeleteElement(t, m, key) => tx.del_set_elements(&map_set(t, *m), &[element(key)]),
    })
}

const R: Register = Register::R0;

fn payload(offset: u32, len: u32) -> Expr {
    Expr::Payload {
        dreg: R,
        base: PayloadBase::Network,
        offset,
        len,
    }
}

/// `ip saddr` and `ip daddr`, at their offsets in the IPv4 header.
const SADDR: u32 = 12;
const DADDR: u32 = 16;

fn cmp(op: CmpOp, data: impl Into<Vec<u8>>) -> Expr {
    Expr::Cmp {
        sreg: R,
        op,
        data: data.into(),
    }
}

fn mask(mask: u32, xor: u32) -> Expr {
    Expr::Bitwise {
        sreg: R,
        dreg: R,
        len: 4,
        mask: mask.to_ne_bytes().to_vec(),
        xor: xor.to_ne_bytes().to_vec(),
    }
}

fn meta(key: MetaKey) -> Expr {
    Expr::Meta { dreg: R, key }
}

/// The packet's mark, changed as `(mark & and) ^ xor`.
fn set_mark(rule: Rule, and: u32, xor: u32) -> Rule {
    rule.expr(meta(MetaKey::Mark))
        .expr(mask(and, xor))
        .expr(Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: R,
        })
}

fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l => u32::MAX << (32 - u32::from(l.min(32))),
    }
}

/// `ip <saddr|daddr> [!=] <ip>/<len>`: masked, then compared.
fn in_prefix(rule: Rule, offset: u32, ip: Ipv4Addr, len: u8, op: CmpOp) -> Rule {
    let m = prefix_mask(len);
    let net = Ipv4Addr::from(u32::from(ip) & m);
    rule.expr(payload(offset, 4))
        .expr(Expr::Bitwise {
            sreg: R,
            dreg: R,
            len: 4,
            mask: m.to_be_bytes().to_vec(),
            xor: vec![0; 4],
        })
        .expr(cmp(op, net.octets()))
}

/// Appends one statement's expressions to `rule`.
fn lower(rule: Rule, s: &Stmt) -> Result<Rule, NftError> {
    Ok(match s {
        Stmt::Iifname(name) => {
            // An interface name is compared as the kernel's 16 bytes.
            let mut data = name.as_bytes().to_vec();
            data.resize(16, 0);
            rule.expr(meta(MetaKey::IifName)).expr(cmp(CmpOp::Eq, data))
        }
        Stmt::Daddr(ip) => rule
            .expr(payload(DADDR, 4))
            .expr(cmp(CmpOp::Eq, ip.octets())),
        Stmt::Saddr(ip) => rule
            .expr(payload(SADDR, 4))
            .expr(cmp(CmpOp::Eq, ip.octets())),
        Stmt::SaddrNotIn(ip, len) => in_prefix(rule, SADDR, *ip, *len, CmpOp::Neq),
        Stmt::DaddrIn(ip, len) => in_prefix(rule, DADDR, *ip, *len, CmpOp::Eq),
        Stmt::SaddrInSet(set) => rule
            .expr(payload(SADDR, 4))
            .expr(LookupExpr::new(set.as_str(), R)),
        // `ct state` is a bit mask in host order: `new` is bit 3.
        Stmt::CtNew => rule
            .expr(Expr::Ct {
                dreg: R,
                key: CtKey::State,
            })
            .expr(mask(1 << 3, 0))
            .expr(cmp(CmpOp::Neq, 0u32.to_ne_bytes())),
        Stmt::L4proto(p) => rule
            .expr(meta(MetaKey::L4Proto))
            .expr(cmp(CmpOp::Eq, [proto_number(*p)])),
        Stmt::OneIn(n) => rule
            .expr(Expr::Numgen {
                dreg: R,
                kind: NumgenKind::Random,
                modulus: *n,
                offset: 0,
            })
            .expr(cmp(CmpOp::Eq, 0u32.to_ne_bytes())),
        Stmt::MarkClear(bits) => rule
            .expr(meta(MetaKey::Mark))
            .expr(mask(*bits, 0))
            .expr(cmp(CmpOp::Eq, 0u32.to_ne_bytes())),
        Stmt::MarkSet(bits) => set_mark(rule, !bits, *bits),
        Stmt::MarkFlip(bits) => set_mark(rule, u32::MAX, *bits),
        Stmt::Vmap(map) => {
            // A concatenation fills 32-bit registers from the first on.
            let mut regs = [Register::R0, Register::Reg32_01, Register::Reg32_02].into_iter();
            let mut rule = rule;
            if map.has_addr() {
                rule = rule.expr(Expr::Payload {
                    dreg: regs.next().unwrap_or(R),
                    base: PayloadBase::Network,
                    offset: DADDR,
                    len: 4,
                });
            }
            rule = rule.expr(Expr::Meta {
                dreg: regs.next().unwrap_or(R),
                key: MetaKey::L4Proto,
            });
            rule.expr(Expr::Payload {
                dreg: regs.next().unwrap_or(R),
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
            })
            .expr(LookupExpr::new(map.as_str(), R).dreg(Register::Verdict))
        }
        Stmt::Jump(chain) => rule.expr(Expr::Verdict(Verdict::JumpTo(chain_name(chain)?))),
        Stmt::Return => rule.expr(Expr::Verdict(Verdict::Return)),
        Stmt::Reject => rule.expr(Expr::Reject {
            reject_type: NFT_REJECT_ICMP_UNREACH,
            icmp_code: PORT_UNREACHABLE,
        }),
        Stmt::Masquerade => rule.nat(NatStatement::masquerade().fully_random()),
        Stmt::Remember(set, secs) => rule.expr(payload(SADDR, 4)).expr(
            DynsetExpr::new(DynsetOp::Update, set.as_str(), R)
                .timeout(Duration::from_secs((*secs).into())),
        ),
        Stmt::Dnat(ip, port) => rule.nat(NatStatement::dnat(*ip).port(*port)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks_cover_the_edges() {
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(12), 0xfff0_0000);
        assert_eq!(prefix_mask(32), u32::MAX);
        assert_eq!(prefix_mask(40), u32::MAX);
    }

    #[test]
    fn a_chain_name_with_a_nul_is_refused_not_sent() {
        let err = chain_name("service-a\0b").unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
