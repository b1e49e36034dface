//! The order of merged list elements, as upstream's `normalizeElementOrder` and
//! `mergeSortedSlice` leave it, and the identities that decide it: an element's merge-key value
//! (or the element itself in a list of scalars), indexed by a hashable key so that ordering and
//! merging stay linear in the lists' lengths.

use std::collections::HashMap;

use serde_json::Value;

/// What identifies a list element: its merge-key value, or the element itself for scalars.
pub(super) fn identity<'v>(item: &'v Value, key: &str) -> Option<&'v Value> {
    if key.is_empty() {
        Some(item)
    } else {
        item.as_object()?.get(key)
    }
}

pub(super) fn ids(items: &[Value], key: &str) -> Vec<Value> {
    items
        .iter()
        .filter_map(|item| identity(item, key).cloned())
        .collect()
}

/// A hashable stand-in for an identity, equal exactly when [`json_eq`] says so (numbers by
/// value).
pub(super) fn id_key(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => "n0".to_owned(),
            Some(f) => format!("n{f}"),
            None => format!("n{n}"),
        },
        Value::String(s) => format!("s{s}"),
        other => format!("j{other}"),
    }
}

/// Where each identity first appears in a list of identities.
pub(super) struct Positions(HashMap<String, usize>);

impl Positions {
    pub(super) fn of(ids: &[Value]) -> Positions {
        let mut map = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            map.entry(id_key(id)).or_insert(i);
        }
        Positions(map)
    }

    pub(super) fn get(&self, id: &Value) -> Option<usize> {
        self.0.get(&id_key(id)).copied()
    }

    pub(super) fn insert(&mut self, id: &Value, at: usize) {
        self.0.entry(id_key(id)).or_insert(at);
    }

    /// The position of `item`'s identity.
    fn of_item(&self, item: &Value, key: &str) -> Option<usize> {
        self.get(identity(item, key)?)
    }
}

/// Upstream's `normalizeElementOrder`: items named by `patch_ids` take that order, the other
/// (server-only) items keep their original order, and the two runs are interleaved so that a
/// server-only item stays in front of a patch item it preceded in the original list.
pub(super) fn order_items(
    merged: Vec<Value>,
    patch_ids: &[Value],
    server_ids: &[Value],
    key: &str,
) -> Vec<Value> {
    let (in_patch, in_server) = (Positions::of(patch_ids), Positions::of(server_ids));
    let mut from_patch: Vec<(usize, Value)> = Vec::new();
    let mut server_only: Vec<(usize, Value)> = Vec::new();
    for item in merged {
        match in_patch.of_item(&item, key) {
            Some(i) => from_patch.push((i, item)),
            None => server_only.push((in_server.of_item(&item, key).unwrap_or(usize::MAX), item)),
        }
    }
    from_patch.sort_by_key(|(i, _)| *i);
    server_only.sort_by_key(|(i, _)| *i);
    let from_patch = from_patch
        .into_iter()
        .map(|(_, item)| (in_server.of_item(&item, key), item))
        .collect();
    let server_only = server_only
        .into_iter()
        .map(|(i, item)| ((i != usize::MAX).then_some(i), item))
        .collect();
    interleave(server_only, from_patch)
}

/// Upstream's `mergeSortedSlice`: take from `left` only while both heads are in the original
/// list and `left`'s head came first there. Each item carries its original position.
fn interleave(left: Vec<(Option<usize>, Value)>, right: Vec<(Option<usize>, Value)>) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => matches!((l, r), (Some(li), Some(ri)) if li < ri),
        };
        out.extend(if take_left { left.next() } else { right.next() }.map(|(_, item)| item));
    }
    out
}

/// Equality as Go's `==` on decoded JSON: numbers compare by value (80 == 80.0).
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
