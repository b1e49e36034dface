//! The filter and score plugins (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit), each with upstream's failure reasons and weights.

use super::*;

// ---------------------------------------------------------------------------------------
// Filter plugins
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FitFailure {
    pub(super) pods: bool,
    pub(super) cpu: bool,
    pub(super) memory: bool,
    pub(super) ephemeral_storage: bool,
}

/// Why one node was rejected: the status of the first failing filter plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Failure<'n> {
    Unschedulable,
    NodeName,
    Taint(&'n Taint),
    NodeAffinity,
    Fit(FitFailure),
}

impl Failure<'_> {
    pub(super) fn reasons(&self, mut out: impl FnMut(String)) {
        match self {
            Failure::Unschedulable => out(REASON_UNSCHEDULABLE.to_string()),
            Failure::NodeName => out(REASON_NODE_NAME.to_string()),
            Failure::NodeAffinity => out(REASON_NODE_AFFINITY.to_string()),
            Failure::Taint(t) => out(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
            Failure::Fit(f) => {
                for (hit, reason) in [
                    (f.pods, REASON_TOO_MANY_PODS),
                    (f.cpu, REASON_INSUFFICIENT_CPU),
                    (f.memory, REASON_INSUFFICIENT_MEMORY),
                    (f.ephemeral_storage, REASON_INSUFFICIENT_EPHEMERAL),
                ] {
                    if hit {
                        out(reason.to_string());
                    }
                }
            }
        }
    }
}

pub(super) fn filter_node_unschedulable<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    (ni.unschedulable && !ctx.tolerates_unschedulable).then_some(Failure::Unschedulable)
}

pub(super) fn filter_node_name<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    match ctx.node_name {
        Some(want) if want != ni.name() => Some(Failure::NodeName),
        _ => None,
    }
}

pub(super) fn filter_taint_toleration<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    if !ni.has_hard_taints {
        return None;
    }
    ni.taints()
        .iter()
        .find(|t| {
            (t.effect == EFFECT_NO_SCHEDULE || t.effect == EFFECT_NO_EXECUTE)
                && !tolerated(ctx.tolerations, t)
        })
        .map(Failure::Taint)
}

pub(super) fn filter_node_affinity<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    if let Some(sel) = ctx.node_selector {
        let labels = ni.labels();
        let ok = sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !ok {
            return Some(Failure::NodeAffinity);
        }
    }
    match &ctx.required {
        Some(terms) if !terms.iter().any(|t| t.matches(ni)) => Some(Failure::NodeAffinity),
        _ => None,
    }
}

pub(super) fn filter_node_resources_fit<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    let (r, a, u) = (&ctx.req.res, &ni.allocatable, &ni.requested);
    let mut f = FitFailure {
        pods: u.pods.saturating_add(1) > a.pods,
        ..FitFailure::default()
    };
    if r.milli_cpu != 0 || r.memory != 0 || r.ephemeral_storage != 0 {
        let short =
            |want: i64, alloc: i64, used: i64| want > 0 && want > alloc.saturating_sub(used);
        f.cpu = short(r.milli_cpu, a.milli_cpu, u.milli_cpu);
        f.memory = short(r.memory, a.memory, u.memory);
        f.ephemeral_storage = short(
            r.ephemeral_storage,
            a.ephemeral_storage,
            u.ephemeral_storage,
        );
    }
    (f != FitFailure::default()).then_some(Failure::Fit(f))
}

/// Runs the filter plugins in upstream's default order; `None` means the node is feasible.
pub(super) fn run_filters<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    filter_node_unschedulable(ctx, ni)
        .or_else(|| filter_node_name(ctx, ni))
        .or_else(|| filter_taint_toleration(ctx, ni))
        .or_else(|| filter_node_affinity(ctx, ni))
        .or_else(|| filter_node_resources_fit(ctx, ni))
}

// ---------------------------------------------------------------------------------------
// Score plugins
// ---------------------------------------------------------------------------------------

/// NodeResourcesFit score over cpu and memory (weights 1, 1), using non-zero requests.
pub(super) fn score_node_resources_fit(
    strategy: ScoringStrategy,
    ctx: &PodCtx,
    ni: &NodeInfo,
) -> i64 {
    let mut sum = 0;
    let mut weight = 0;
    for (alloc, req) in [
        (
            ni.allocatable.milli_cpu,
            ni.nz_cpu.saturating_add(ctx.req.nz_cpu),
        ),
        (
            ni.allocatable.memory,
            ni.nz_mem.saturating_add(ctx.req.nz_mem),
        ),
    ] {
        if alloc <= 0 {
            continue;
        }
        let (alloc, req) = (i128::from(alloc), i128::from(req));
        let s = match strategy {
            ScoringStrategy::LeastAllocated if req > alloc => 0,
            ScoringStrategy::LeastAllocated => (alloc - req) * 100 / alloc,
            ScoringStrategy::MostAllocated => req.min(alloc) * 100 / alloc,
        };
        sum += s.clamp(0, 100) as i64;
        weight += 1;
    }
    if weight == 0 {
        0
    } else {
        sum / weight
    }
}

/// NodeAffinity raw score: the summed weights of the matching preferred terms.
pub(super) fn score_node_affinity(ctx: &PodCtx, ni: &NodeInfo) -> i64 {
    ctx.preferred
        .iter()
        .filter(|(_, t)| t.matches(ni))
        .map(|(w, _)| *w)
        .sum()
}

/// TaintToleration raw score: the number of PreferNoSchedule taints the pod does not tolerate.
pub(super) fn score_taint_toleration(ctx: &PodCtx, ni: &NodeInfo) -> i64 {
    if !ni.has_soft_taints {
        return 0;
    }
    ni.taints()
        .iter()
        .filter(|t| t.effect == EFFECT_PREFER_NO_SCHEDULE && !tolerated(ctx.tolerations, t))
        .count() as i64
}

/// Upstream's `DefaultNormalizeScore` for one value, given the maximum raw value.
pub(super) fn normalize(raw: i64, max: i64, reverse: bool) -> i64 {
    if max <= 0 {
        return if reverse { MAX_NODE_SCORE } else { 0 };
    }
    let s = (MAX_NODE_SCORE * raw / max).clamp(0, MAX_NODE_SCORE);
    if reverse {
        MAX_NODE_SCORE - s
    } else {
        s
    }
}
