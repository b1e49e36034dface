//! Taint toleration matching and node selector terms (labels and fields, with upstream's operators).

use super::*;

// ---------------------------------------------------------------------------------------
// Taints and tolerations
// ---------------------------------------------------------------------------------------

/// Upstream's `Toleration.ToleratesTaint`.
pub(super) fn toleration_tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

pub(super) fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_tolerates(t, taint))
}

// ---------------------------------------------------------------------------------------
// Node selector terms
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub(super) enum LabelOp<'p> {
    In(&'p [String]),
    NotIn(&'p [String]),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug)]
pub(super) struct LabelReq<'p> {
    pub(super) key: &'p str,
    pub(super) op: LabelOp<'p>,
}

impl LabelReq<'_> {
    pub(super) fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let v = labels.and_then(|l| l.get(self.key)).map(String::as_str);
        let num = || v.and_then(|v| v.parse::<i64>().ok());
        match &self.op {
            LabelOp::In(vals) => v.is_some_and(|v| vals.iter().any(|x| x == v)),
            LabelOp::NotIn(vals) => v.is_none_or(|v| !vals.iter().any(|x| x == v)),
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
            LabelOp::Gt(n) => num().is_some_and(|x| x > *n),
            LabelOp::Lt(n) => num().is_some_and(|x| x < *n),
        }
    }
}

#[derive(Debug)]
pub(super) struct FieldReq<'p> {
    pub(super) key: &'p str,
    pub(super) value: &'p str,
    pub(super) equal: bool,
}

/// A parsed, valid, non-empty node-selector term (requirements are ANDed).
#[derive(Debug)]
pub(super) struct Term<'p> {
    pub(super) labels: Vec<LabelReq<'p>>,
    pub(super) fields: Vec<FieldReq<'p>>,
}

impl<'p> Term<'p> {
    /// `None` for terms that can never match: empty ones and ones that fail validation.
    pub(super) fn compile(t: &'p NodeSelectorTerm) -> Option<Term<'p>> {
        let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
        let fields = t.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let labels = exprs
            .iter()
            .map(Self::compile_label)
            .collect::<Option<Vec<_>>>()?;
        let fields = fields
            .iter()
            .map(Self::compile_field)
            .collect::<Option<Vec<_>>>()?;
        Some(Term { labels, fields })
    }

    pub(super) fn compile_label(r: &'p NodeSelectorRequirement) -> Option<LabelReq<'p>> {
        if r.key.is_empty() {
            return None;
        }
        let vals = r.values.as_deref().unwrap_or(&[]);
        let op = match r.operator.as_str() {
            "In" if !vals.is_empty() => LabelOp::In(vals),
            "NotIn" if !vals.is_empty() => LabelOp::NotIn(vals),
            "Exists" if vals.is_empty() => LabelOp::Exists,
            "DoesNotExist" if vals.is_empty() => LabelOp::DoesNotExist,
            "Gt" if vals.len() == 1 => LabelOp::Gt(vals[0].parse().ok()?),
            "Lt" if vals.len() == 1 => LabelOp::Lt(vals[0].parse().ok()?),
            _ => return None,
        };
        Some(LabelReq { key: &r.key, op })
    }

    pub(super) fn compile_field(r: &'p NodeSelectorRequirement) -> Option<FieldReq<'p>> {
        let equal = match r.operator.as_str() {
            "In" => true,
            "NotIn" => false,
            _ => return None,
        };
        match r.values.as_deref() {
            Some([v]) => Some(FieldReq {
                key: &r.key,
                value: v,
                equal,
            }),
            _ => None,
        }
    }

    pub(super) fn matches(&self, ni: &NodeInfo) -> bool {
        let labels = ni.labels();
        if !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        let name = ni.name();
        // Upstream only checks field selectors when the node has fields (a name).
        if self.fields.is_empty() || name.is_empty() {
            return true;
        }
        self.fields.iter().all(|f| {
            let v = if f.key == FIELD_NODE_NAME { name } else { "" };
            (v == f.value) == f.equal
        })
    }
}
