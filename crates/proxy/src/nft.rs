//! The rules in the kernel: [`full`] builds a node's table afresh in one
//! transaction (at start, and after a failed delta), [`delta`] gives the
//! commands between two versions of one [`Part`] — so a change to one
//! Service costs a transaction the size of that Service, never a listing
//! of the table (kube-proxy 1.36 lists a 44k-Service table on each full
//! sync, about 40 s; kubernetes #139513). [`Nft`] runs them through
//! `nft -j -f -` (libnftables JSON, built with the `nftables` crate's
//! types), on the host or inside a network namespace.
//!
//! Order within a delta matters: new sets and chains first (elements and
//! rules refer to them), then elements leave and changed chains are
//! flushed, then the new rules and elements go in, and only then do chains
//! and sets nothing refers to any more go.

use std::collections::BTreeSet;
use std::collections::HashSet;

use nftables::expr::{Expression, Verdict};
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue,
    Table,
};
use nftables::stmt::JumpTarget;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily};
use serde_json::{json, Value};

use crate::rules::{ChainDef, Key, MapName, Part};

/// Why `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft could not run: {0}")]
    Spawn(String),
    #[error("nft refused the transaction: {0}")]
    Refused(String),
    #[error("nft printed what is not JSON: {0}")]
    Output(String),
}

/// How long one `nft` run may take.
const NFT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Commands for `nft -j -f -`, in order.
pub type Commands = Vec<Value>;

fn cmd(c: NfCmd<'_>) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

fn chain_obj(table: &str, name: &str, def: Option<&ChainDef>) -> Chain<'static> {
    let hook = def.and_then(|d| d.hook);
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
        hook: hook.map(|h| h.hook),
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

fn rules_of(table: &str, name: &str, def: &ChainDef, out: &mut Commands) {
    for r in &def.rules {
        out.push(cmd(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: table.to_string().into(),
            chain: name.to_string().into(),
            expr: r.clone().into(),
            handle: None,
            index: None,
            comment: None,
        }))));
    }
}

fn element(table: &str, map: MapName, elem: Vec<Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: NfFamily::IP,
        table: table.to_string().into(),
        name: map.as_str().into(),
        elem: elem.into(),
    })
}

fn add_element(table: &str, map: MapName, key: &Key, chain: &str) -> Value {
    let pair = Expression::List(vec![
        key.expr(),
        Expression::Verdict(Verdict::Goto(JumpTarget {
            target: chain.to_string().into(),
        })),
    ]);
    cmd(NfCmd::Add(element(table, map, vec![pair])))
}

fn delete_element(table: &str, map: MapName, key: &Key) -> Value {
    cmd(NfCmd::Delete(element(table, map, vec![key.expr()])))
}

/// The verdict maps' declarations. The `nftables` crate has no `verdict`
/// data type (0.6), so these three objects are written as the JSON the
/// crate would give.
fn maps(table: &str) -> Commands {
    MapName::ALL
        .iter()
        .map(|m| {
            json!({"add": {"map": {
                "family": "ip", "table": table, "name": m.as_str(),
                "type": m.key_types(), "map": "verdict",
            }}})
        })
        .collect()
}

/// Builds `table` afresh from `parts`, replacing what is there, in one
/// transaction.
pub fn full<'a>(table: &str, parts: impl IntoIterator<Item = &'a Part> + Clone) -> Commands {
    let t = || {
        NfListObject::Table(Table {
            family: NfFamily::IP,
            name: table.to_string().into(),
            handle: None,
        })
    };
    let mut out = vec![
        cmd(NfCmd::Add(t())),
        cmd(NfCmd::Delete(t())),
        cmd(NfCmd::Add(t())),
    ];
    out.extend(maps(table));
    for p in parts.clone() {
        for s in &p.sets {
            out.push(cmd(NfCmd::Add(NfListObject::Set(Box::new(set_obj(
                table, s,
            ))))));
        }
        for (name, def) in &p.chains {
            out.push(cmd(NfCmd::Add(NfListObject::Chain(chain_obj(
                table,
                name,
                Some(def),
            )))));
        }
    }
    for p in parts.clone() {
        for (name, def) in &p.chains {
            rules_of(table, name, def, &mut out);
        }
    }
    for p in parts {
        for ((map, key), chain) in &p.elements {
            out.push(add_element(table, *map, key, chain));
        }
    }
    out
}

/// The commands that turn `old` into `new` in `table` (none if equal).
pub fn delta(table: &str, old: &Part, new: &Part) -> Commands {
    let mut out = Vec::new();
    if old == new {
        return out;
    }
    for s in new.sets.difference(&old.sets) {
        out.push(cmd(NfCmd::Add(NfListObject::Set(Box::new(set_obj(
            table, s,
        ))))));
    }
    for (name, def) in &new.chains {
        if !old.chains.contains_key(name) {
            out.push(cmd(NfCmd::Add(NfListObject::Chain(chain_obj(
                table,
                name,
                Some(def),
            )))));
        }
    }
    // Elements that go or change.
    for (k, chain) in &old.elements {
        if new.elements.get(k) != Some(chain) {
            out.push(delete_element(table, k.0, &k.1));
        }
    }
    // Chains whose rules change, and chains that go: emptied.
    let mut flushed = BTreeSet::new();
    for (name, def) in &old.chains {
        match new.chains.get(name) {
            Some(d) if d.rules == def.rules => {}
            _ => {
                out.push(cmd(NfCmd::Flush(FlushObject::Chain(chain_obj(
                    table, name, None,
                )))));
                flushed.insert(name);
            }
        }
    }
    for (name, def) in &new.chains {
        if !old.chains.contains_key(name) || flushed.contains(name) {
            rules_of(table, name, def, &mut out);
        }
    }
    for (k, chain) in &new.elements {
        if old.elements.get(k) != Some(chain) {
            out.push(add_element(table, k.0, &k.1, chain));
        }
    }
    for name in old.chains.keys() {
        if !new.chains.contains_key(name) {
            out.push(cmd(NfCmd::Delete(NfListObject::Chain(chain_obj(
                table, name, None,
            )))));
        }
    }
    for s in old.sets.difference(&new.sets) {
        out.push(cmd(NfCmd::Delete(NfListObject::Set(Box::new(set_obj(
            table, s,
        ))))));
    }
    out
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

    /// Runs `commands` as one transaction: all of them or none.
    pub async fn apply(&self, commands: &Commands) -> Result<(), NftError> {
        if commands.is_empty() {
            return Ok(());
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
        if let Err(e) = self.apply(&cmds).await {
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
