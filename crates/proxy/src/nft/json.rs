//! [`Op`]s as libnftables JSON, run by `nft -j -f -` ([`Nft`]), on the
//! host or inside a network namespace; and `nft -j list table` in a
//! canonical form ([`canonical`]), so tests can compare what the kernel
//! holds. The JSON is built with the `nftables` crate's types.

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::expr::{
    BinaryOperation, Elem, Expression, Meta, MetaKey, NamedExpression, NgMode, Numgen, Payload,
    PayloadField, Prefix, Verdict, CT,
};
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue,
    Table,
};
use nftables::stmt::{
    JumpTarget, Mangle, Match, NATFlag, Operator, Set as SetStmt, SetOp, Statement, VerdictMap, NAT,
};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::{json, Value};

use super::{NftError, Op};
use crate::rules::{Hook, HookPoint, Key, MapName, Stmt};

/// How long one `nft` run may take.
const NFT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

fn cmd(c: NfCmd<'_>) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

fn chain_obj(table: &str, name: &str, hook: Option<Hook>) -> Chain<'static> {
    Chain {
        family: NfFamily::IP,
        table: table.to_string().into(),
        name: name.to_string().into(),
        newname: None,
        handle: None,
        _type: hook.map(|h| {
            if h.nat {
                NfChainType::NAT
            } else {
                NfChainType::Filter
            }
        }),
        hook: hook.map(|h| match h.hook {
            HookPoint::Prerouting => NfHook::Prerouting,
            HookPoint::Output => NfHook::Output,
            HookPoint::Postrouting => NfHook::Postrouting,
            HookPoint::Forward => NfHook::Forward,
        }),
        prio: hook.map(|h| h.prio),
        dev: None,
        policy: hook.map(|_| NfChainPolicy::Accept),
    }
}

fn set_obj(table: &str, name: &str) -> Set<'static> {
    Set {
        family: NfFamily::IP,
        table: table.to_string().into(),
        name: name.to_string().into(),
        handle: None,
        set_type: SetTypeValue::Single(SetType::Ipv4Addr),
        policy: None,
        // nft 1.0.6's JSON has no `dynamic`; it adds it itself for a set
        // that `update` statements fill.
        flags: Some(HashSet::from([SetFlag::Timeout])),
        elem: None,
        timeout: None,
        gc_interval: None,
        size: None,
        comment: None,
    }
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn string(s: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(s.into())
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn mark_op(
    op: fn(Expression<'static>, Expression<'static>) -> BinaryOperation<'static>,
    bits: u32,
) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: meta(MetaKey::Mark),
        value: Expression::BinaryOperation(Box::new(op(
            meta(MetaKey::Mark),
            Expression::Number(bits),
        ))),
    })
}

fn prefix(ip: std::net::Ipv4Addr, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(string(ip.to_string())),
        len: len.into(),
    }))
}

/// A statement as libnftables JSON.
pub fn statement(s: &Stmt) -> Statement<'static> {
    match s {
        Stmt::Iifname(name) => matches(meta(MetaKey::Iifname), Operator::EQ, string(name.clone())),
        Stmt::Daddr(ip) => matches(payload("ip", "daddr"), Operator::EQ, string(ip.to_string())),
        Stmt::Saddr(ip) => matches(payload("ip", "saddr"), Operator::EQ, string(ip.to_string())),
        Stmt::SaddrNotIn(ip, len) => {
            matches(payload("ip", "saddr"), Operator::NEQ, prefix(*ip, *len))
        }
        Stmt::DaddrIn(ip, len) => matches(payload("ip", "daddr"), Operator::EQ, prefix(*ip, *len)),
        Stmt::SaddrInSet(set) => matches(
            payload("ip", "saddr"),
            Operator::EQ,
            string(format!("@{set}")),
        ),
        Stmt::CtNew => matches(
            Expression::Named(NamedExpression::CT(CT {
                key: "state".into(),
                family: None,
                dir: None,
            })),
            Operator::IN,
            string("new"),
        ),
        Stmt::L4proto(p) => matches(meta(MetaKey::L4proto), Operator::EQ, string(p.nft())),
        Stmt::OneIn(n) => matches(
            Expression::Named(NamedExpression::Numgen(Numgen {
                mode: NgMode::Random,
                ng_mod: *n,
                offset: None,
            })),
            Operator::EQ,
            Expression::Number(0),
        ),
        Stmt::MarkClear(bits) => matches(
            Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                meta(MetaKey::Mark),
                Expression::Number(*bits),
            ))),
            Operator::EQ,
            Expression::Number(0),
        ),
        Stmt::MarkSet(bits) => mark_op(|a, b| BinaryOperation::OR(vec![a, b]), *bits),
        Stmt::MarkFlip(bits) => mark_op(BinaryOperation::XOR, *bits),
        Stmt::Vmap(map) => {
            let mut key = Vec::new();
            if map.has_addr() {
                key.push(payload("ip", "daddr"));
            }
            key.push(meta(MetaKey::L4proto));
            key.push(payload("th", "dport"));
            Statement::VerdictMap(VerdictMap {
                key: Expression::Named(NamedExpression::Concat(key)),
                data: string(format!("@{}", map.as_str())),
            })
        }
        Stmt::Jump(chain) => Statement::Jump(JumpTarget {
            target: chain.clone().into(),
        }),
        Stmt::Return => Statement::Return(None),
        Stmt::Reject => Statement::Reject(None),
        Stmt::Masquerade => Statement::Masquerade(Some(NAT {
            addr: None,
            family: None,
            port: None,
            flags: Some(HashSet::from([NATFlag::FullyRandom])),
        })),
        Stmt::Remember(set, secs) => Statement::Set(SetStmt {
            op: SetOp::Update,
            elem: Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(payload("ip", "saddr")),
                timeout: Some(*secs),
                expires: None,
                comment: None,
                counter: None,
            })),
            set: format!("@{set}").into(),
        }),
        Stmt::Dnat(ip, port) => Statement::DNAT(Some(NAT {
            addr: Some(string(ip.to_string())),
            family: None,
            port: Some(Expression::Number((*port).into())),
            flags: None,
        })),
    }
}

/// A map key as an nftables expression (a concatenation).
fn key_expr(key: &Key) -> Expression<'static> {
    let parts = match *key {
        Key::Ip(ip, proto, port) => vec![
            string(ip.to_string()),
            string(proto.nft()),
            Expression::Number(port.into()),
        ],
        Key::Port(proto, port) => vec![string(proto.nft()), Expression::Number(port.into())],
    };
    Expression::Named(NamedExpression::Concat(parts))
}

fn element(table: &str, map: MapName, elem: Vec<Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: NfFamily::IP,
        table: table.to_string().into(),
        name: map.as_str().into(),
        elem: elem.into(),
    })
}

fn table_obj(table: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: NfFamily::IP,
        name: table.to_string().into(),
        handle: None,
    })
}

/// One operation as `nft -j` commands.
pub fn to_json(op: &Op, out: &mut Vec<Value>) {
    match op {
        Op::ReplaceTable(t) => {
            out.push(cmd(NfCmd::Add(table_obj(t))));
            out.push(cmd(NfCmd::Delete(table_obj(t))));
            out.push(cmd(NfCmd::Add(table_obj(t))));
        }
        // The `nftables` crate has no `verdict` data type (0.6), so a map
        // is written as the JSON the crate would give.
        Op::AddMap(t, m) => out.push(json!({"add": {"map": {
            "family": "ip", "table": t, "name": m.as_str(),
            "type": m.key_types(), "map": "verdict",
        }}})),
        Op::AddSet(t, s) => out.push(cmd(NfCmd::Add(NfListObject::Set(Box::new(set_obj(t, s)))))),
        Op::DeleteSet(t, s) => out.push(cmd(NfCmd::Delete(NfListObject::Set(Box::new(set_obj(
            t, s,
        )))))),
        Op::AddChain(t, c, hook) => {
            out.push(cmd(NfCmd::Add(NfListObject::Chain(chain_obj(t, c, *hook)))))
        }
        Op::FlushChain(t, c) => {
            out.push(cmd(NfCmd::Flush(FlushObject::Chain(chain_obj(t, c, None)))))
        }
        Op::DeleteChain(t, c) => out.push(cmd(NfCmd::Delete(NfListObject::Chain(chain_obj(
            t, c, None,
        ))))),
        Op::AddRule(t, c, rule) => out.push(cmd(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: t.clone().into(),
            chain: c.clone().into(),
            expr: rule.iter().map(statement).collect::<Vec<_>>().into(),
            handle: None,
            index: None,
            comment: None,
        })))),
        Op::AddElement(t, m, key, chain) => {
            let pair = Expression::List(vec![
                key_expr(key),
                Expression::Verdict(Verdict::Goto(JumpTarget {
                    target: chain.clone().into(),
                })),
            ]);
            out.push(cmd(NfCmd::Add(element(t, *m, vec![pair]))));
        }
        Op::DeleteElement(t, m, key) => {
            out.push(cmd(NfCmd::Delete(element(t, *m, vec![key_expr(key)]))))
        }
    }
}

/// Where `nft` runs: on the host, or in a network namespace
/// (`ip netns exec <ns> nft`, for tests).
#[derive(Debug, Clone)]
pub struct Nft {
    program: String,
    args: Vec<String>,
}

impl Nft {
    /// `nft` on the host.
    pub fn host() -> Nft {
        Nft {
            program: "nft".into(),
            args: Vec::new(),
        }
    }

    /// `nft` inside network namespace `ns` (a name under /run/netns).
    pub fn in_netns(ns: &str) -> Nft {
        Nft {
            program: "ip".into(),
            args: vec!["netns".into(), "exec".into(), ns.into(), "nft".into()],
        }
    }

    /// Runs `ops` as one transaction: all of them or none.
    pub async fn apply(&self, ops: &[Op]) -> Result<(), NftError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut commands = Vec::new();
        for op in ops {
            to_json(op, &mut commands);
        }
        let payload = json!({"nftables": commands}).to_string();
        self.run(&["-j", "-f", "-"], Some(payload.as_bytes()))
            .await
            .map(drop)
    }

    /// Runs `nft <args>` (fed `input`); its stdout, or what it said on
    /// stderr when it failed. (The `nftables` crate's helper leaves stderr
    /// to the terminal, so the reason would be lost.)
    async fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<String, NftError> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| NftError::Spawn(format!("{}: {e}", self.program)))?;
        if let Some(mut stdin) = child.stdin.take() {
            if let Some(input) = input {
                stdin
                    .write_all(input)
                    .await
                    .map_err(|e| NftError::Spawn(format!("{}: {e}", self.program)))?;
            }
        }
        let out = tokio::time::timeout(NFT_DEADLINE, child.wait_with_output())
            .await
            .map_err(|_| NftError::Spawn(format!("nft took over {NFT_DEADLINE:?}")))?
            .map_err(|e| NftError::Spawn(format!("{}: {e}", self.program)))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NftError::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    /// `nft -j list table ip <table>`, canonical: without handles, chains
    /// sorted by name, each with its rules in order, map and set elements
    /// sorted (see [`canonical`]).
    pub async fn list_table(&self, table: &str) -> Result<Value, NftError> {
        let out = self
            .run(&["-j", "list", "table", "ip", table], None)
            .await?;
        let v: Value = serde_json::from_str(&out).map_err(|e| NftError::Output(e.to_string()))?;
        Ok(canonical(&v))
    }

    /// Deletes `table` if it is there.
    pub async fn delete_table(&self, table: &str) {
        let cmds = vec![
            json!({"add": {"table": {"family": "ip", "name": table}}}),
            json!({"delete": {"table": {"family": "ip", "name": table}}}),
        ];
        let payload = json!({"nftables": cmds}).to_string();
        if let Err(e) = self.run(&["-j", "-f", "-"], Some(payload.as_bytes())).await {
            tracing::warn!("proxy: deleting table {table}: {e}");
        }
    }
}

fn strip_handles(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("handle");
            for x in m.values_mut() {
                strip_handles(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_handles),
        _ => {}
    }
}

/// A listing in a form two equal tables share whatever order their
/// objects were made in: `{"chains": {name: {chain, rules}}, "maps": …,
/// "sets": …}`.
pub fn canonical(listing: &Value) -> Value {
    let mut chains = serde_json::Map::new();
    let mut maps = serde_json::Map::new();
    let mut sets = serde_json::Map::new();
    let mut rules: Vec<(String, Value)> = Vec::new();
    let empty = Vec::new();
    for o in listing["nftables"].as_array().unwrap_or(&empty) {
        let mut o = o.clone();
        strip_handles(&mut o);
        let Some((kind, body)) = o.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let name = body["name"].as_str().unwrap_or("").to_string();
        let sorted = |body: &Value| {
            let mut b = body.clone();
            if let Some(elems) = b.get_mut("elem").and_then(Value::as_array_mut) {
                elems.sort_by_key(|e| e.to_string());
            }
            b
        };
        match kind.as_str() {
            "chain" => {
                chains.insert(name, json!({"chain": body, "rules": []}));
            }
            "map" => {
                maps.insert(name, sorted(body));
            }
            "set" => {
                sets.insert(name, sorted(body));
            }
            "rule" => rules.push((
                body["chain"].as_str().unwrap_or("").to_string(),
                body.clone(),
            )),
            _ => {}
        }
    }
    for (chain, rule) in rules {
        if let Some(rs) = chains
            .get_mut(&chain)
            .and_then(|c| c["rules"].as_array_mut())
        {
            rs.push(rule);
        }
    }
    json!({"chains": chains, "maps": maps, "sets": sets})
}
