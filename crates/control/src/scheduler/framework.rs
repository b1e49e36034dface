//! Pure pod-scheduling core: given a [`Pod`] and a snapshot of [`NodeInfo`]s, [`schedule`]
//! filters and scores nodes the way kube-scheduler's default profile does for the subset of
//! plugins shoal supports, and returns a [`Decision`] value (never an error, never a panic).
//!
//! Filters run in upstream's default order and a node's failure is the reasons of the *first*
//! plugin that rejects it (NodeResourcesFit may report several reasons for one node):
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity (spec.nodeSelector plus required
//! node-selector terms, with upstream's matchFields `metadata.name` PreFilter narrowing),
//! NodeResourcesFit (cpu, memory, pods, ephemeral-storage). Scores use upstream's default
//! weights: TaintToleration ×3 (PreferNoSchedule taints, normalized and reversed), NodeAffinity
//! ×2 (preferred terms, normalized), NodeResourcesFit ×1 (LeastAllocated or MostAllocated over
//! cpu and memory with the 100m / 200Mi defaults for containers that request nothing).
//!
//! Sampling follows upstream's `numFeasibleNodesToFind`: evaluation starts at `start` and walks
//! the node slice as a ring until enough feasible nodes are found; only those are scored. Where
//! upstream picks randomly among the top-scored nodes, this core picks the first one in
//! evaluation order (from `start`), so results are deterministic. Callers should advance their
//! start index like upstream's `nextStartNodeIndex`: `start = (start + evaluated) % nodes.len()`.
//!
//! Simplifications versus kube-scheduler (v1.33): extended/scalar resources (GPUs, hugepages),
//! pod-level resources and in-place-resize status resources are ignored; quantities are rounded
//! up per value rather than summed exactly; malformed quantities in pods or nodes count as 0;
//! label keys/values in affinity terms are not syntax-checked; invalid preferred terms score 0
//! instead of failing the cycle; a pod whose only feasible node is found is still scored (the
//! choice is the same); NodePorts, volume, topology-spread, inter-pod-affinity,
//! BalancedAllocation, ImageLocality and preemption are out of scope. Requests are read as given:
//! API defaulting (requests := limits when unset) must already have been applied.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use shoal_model::quantity;

mod plugins;
mod terms;

use plugins::*;
use terms::*;

const MAX_NODE_SCORE: i64 = 100;
const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_NODE_RESOURCES_FIT: i64 = 1;

const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
const EFFECT_NO_EXECUTE: &str = "NoExecute";
const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
const FIELD_NODE_NAME: &str = "metadata.name";

const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const REASON_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
const REASON_PREFILTER_ABSENT: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";
const REASON_TOO_MANY_PODS: &str = "Too many pods";
const REASON_INSUFFICIENT_CPU: &str = "Insufficient cpu";
const REASON_INSUFFICIENT_MEMORY: &str = "Insufficient memory";
const REASON_INSUFFICIENT_EPHEMERAL: &str = "Insufficient ephemeral-storage";
const MSG_NO_NODES: &str = "no nodes available to schedule pods";

/// Resource amounts in the units the scheduler compares: milli-CPU, bytes, pods,
/// ephemeral-storage bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.pods = self.pods.saturating_add(o.pods);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(o.ephemeral_storage);
    }

    /// Subtracts, never going below zero (removing a pod twice cannot create capacity).
    fn sub(&mut self, o: &Resources) {
        let s = |a: i64, b: i64| a.saturating_sub(b).max(0);
        self.milli_cpu = s(self.milli_cpu, o.milli_cpu);
        self.memory = s(self.memory, o.memory);
        self.pods = s(self.pods, o.pods);
        self.ephemeral_storage = s(self.ephemeral_storage, o.ephemeral_storage);
    }
}

type ResourceList = BTreeMap<String, Quantity>;

/// Reads one resource from a list: `None` when absent, 0 when malformed
/// (validation refuses malformed quantities, so only an object written
/// around it has one). Milli-units for cpu, units otherwise, rounded up.
fn quantity_of(list: Option<&ResourceList>, name: &str, milli: bool) -> Option<i64> {
    list?.get(name).map(|q| {
        quantity::Quantity::parse(&q.0).map_or(
            0,
            |q| {
                if milli {
                    q.milli_value()
                } else {
                    q.value()
                }
            },
        )
    })
}

/// Requests of one container, plus the "non-zero" cpu/memory upstream uses for scoring.
#[derive(Debug, Clone, Copy, Default)]
struct Req {
    cpu: i64,
    mem: i64,
    eph: i64,
    nz_cpu: i64,
    nz_mem: i64,
}

impl Req {
    fn of_container(c: &Container) -> Req {
        let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let cpu = quantity_of(reqs, "cpu", true);
        let mem = quantity_of(reqs, "memory", false);
        Req {
            cpu: cpu.unwrap_or(0),
            mem: mem.unwrap_or(0),
            eph: quantity_of(reqs, "ephemeral-storage", false).unwrap_or(0),
            nz_cpu: cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
            nz_mem: mem.unwrap_or(DEFAULT_MEMORY_REQUEST),
        }
    }

    fn add(&mut self, o: &Req) {
        self.cpu = self.cpu.saturating_add(o.cpu);
        self.mem = self.mem.saturating_add(o.mem);
        self.eph = self.eph.saturating_add(o.eph);
        self.nz_cpu = self.nz_cpu.saturating_add(o.nz_cpu);
        self.nz_mem = self.nz_mem.saturating_add(o.nz_mem);
    }

    fn max_with(&mut self, o: &Req) {
        self.cpu = self.cpu.max(o.cpu);
        self.mem = self.mem.max(o.mem);
        self.eph = self.eph.max(o.eph);
        self.nz_cpu = self.nz_cpu.max(o.nz_cpu);
        self.nz_mem = self.nz_mem.max(o.nz_mem);
    }
}

/// A pod's requests, computed once per scheduling call or NodeInfo update;
/// what a placed pod costs its node (the scheduler keeps this, not the pod).
#[derive(Debug, Clone, Copy, Default)]
pub struct PodRequest {
    res: Resources,
    nz_cpu: i64,
    nz_mem: i64,
}

impl PodRequest {
    pub fn of(pod: &Pod) -> PodRequest {
        let mut out = PodRequest {
            res: Resources {
                pods: 1,
                ..Resources::default()
            },
            ..PodRequest::default()
        };
        let Some(spec) = pod.spec.as_ref() else {
            return out;
        };
        let mut sum = Req::default();
        for c in &spec.containers {
            sum.add(&Req::of_container(c));
        }
        // Init container i needs its own requests plus the sidecars (restartable init
        // containers) started before it; sidecars also keep running beside the app containers.
        let mut sidecars = Req::default();
        let mut init_max = Req::default();
        for c in spec.init_containers.iter().flatten() {
            let r = Req::of_container(c);
            if c.restart_policy.as_deref() == Some("Always") {
                sum.add(&r);
                sidecars.add(&r);
                init_max.max_with(&sidecars);
            } else {
                let mut during = r;
                during.add(&sidecars);
                init_max.max_with(&during);
            }
        }
        sum.max_with(&init_max);
        if let Some(oh) = spec.overhead.as_ref() {
            let overhead = Req {
                cpu: quantity_of(Some(oh), "cpu", true).unwrap_or(0),
                mem: quantity_of(Some(oh), "memory", false).unwrap_or(0),
                eph: quantity_of(Some(oh), "ephemeral-storage", false).unwrap_or(0),
                nz_cpu: 0,
                nz_mem: 0,
            };
            sum.add(&Req {
                nz_cpu: overhead.cpu,
                nz_mem: overhead.mem,
                ..overhead
            });
        }
        out.res.milli_cpu = sum.cpu;
        out.res.memory = sum.mem;
        out.res.ephemeral_storage = sum.eph;
        out.nz_cpu = sum.nz_cpu;
        out.nz_mem = sum.nz_mem;
        out
    }
}

/// A pod's effective requests as kube-scheduler computes them: the sum of its containers
/// (including sidecar init containers), raised to the largest init-container need, plus
/// `spec.overhead`; `pods` is always 1.
pub fn pod_requests(pod: &Pod) -> Resources {
    PodRequest::of(pod).res
}

/// One node and what is already placed on it, with the values the scheduler reads on every
/// call cached. Keep it current with [`NodeInfo::add_pod`], [`NodeInfo::remove_pod`] and
/// [`NodeInfo::set_node`].
#[derive(Debug, Clone)]
pub struct NodeInfo {
    node: Node,
    requested: Resources,
    nz_cpu: i64,
    nz_mem: i64,
    allocatable: Resources,
    unschedulable: bool,
    has_hard_taints: bool,
    has_soft_taints: bool,
}

impl NodeInfo {
    /// Wraps a node with nothing placed on it.
    pub fn new(node: Node) -> Self {
        let mut ni = NodeInfo {
            node: Node::default(),
            requested: Resources::default(),
            nz_cpu: 0,
            nz_mem: 0,
            allocatable: Resources::default(),
            unschedulable: false,
            has_hard_taints: false,
            has_soft_taints: false,
        };
        ni.set_node(node);
        ni
    }

    /// Replaces the node object (e.g. after a watch update), keeping the placed pods.
    pub fn set_node(&mut self, node: Node) {
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = Resources {
            milli_cpu: quantity_of(alloc, "cpu", true).unwrap_or(0),
            memory: quantity_of(alloc, "memory", false).unwrap_or(0),
            pods: quantity_of(alloc, "pods", false).unwrap_or(0),
            ephemeral_storage: quantity_of(alloc, "ephemeral-storage", false).unwrap_or(0),
        };
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
        self.has_hard_taints = taints
            .iter()
            .any(|t| t.effect == EFFECT_NO_SCHEDULE || t.effect == EFFECT_NO_EXECUTE);
        self.has_soft_taints = taints.iter().any(|t| t.effect == EFFECT_PREFER_NO_SCHEDULE);
        self.node = node;
    }

    /// Accounts for a pod bound (or assumed) to this node.
    pub fn add_pod(&mut self, pod: &Pod) {
        self.add_request(&PodRequest::of(pod));
    }

    /// Forgets a pod previously passed to [`NodeInfo::add_pod`] (amounts never go below 0).
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.remove_request(&PodRequest::of(pod));
    }

    /// [`NodeInfo::add_pod`] with the pod's requests already computed.
    pub fn add_request(&mut self, r: &PodRequest) {
        self.requested.add(&r.res);
        self.nz_cpu = self.nz_cpu.saturating_add(r.nz_cpu);
        self.nz_mem = self.nz_mem.saturating_add(r.nz_mem);
    }

    /// [`NodeInfo::remove_pod`] with the pod's requests already computed.
    pub fn remove_request(&mut self, r: &PodRequest) {
        self.requested.sub(&r.res);
        self.nz_cpu = self.nz_cpu.saturating_sub(r.nz_cpu).max(0);
        self.nz_mem = self.nz_mem.saturating_sub(r.nz_mem).max(0);
    }

    /// The node object.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node's name ("" when unset).
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// Sum of the requests of the pods placed here (`pods` is their count).
    pub fn requested(&self) -> Resources {
        self.requested
    }

    /// `status.allocatable`, parsed once (missing or malformed amounts are 0).
    pub fn allocatable(&self) -> Resources {
        self.allocatable
    }

    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }

    fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[])
    }
}

/// How NodeResourcesFit scores cpu and memory (`control_plane.scoring`,
/// spelt as upstream's strategy types).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScoringStrategy {
    /// Prefer the emptiest node (spreads pods; upstream's default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that still fits (bin-packs).
    MostAllocated,
}

/// Scheduler configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    pub strategy: ScoringStrategy,
    /// Percentage of nodes to find feasible before scoring; 0 means upstream's adaptive
    /// default (50% minus 1% per 125 nodes, at least 5%). At least 100 nodes are always
    /// sought, and clusters under 100 nodes are searched fully.
    pub percentage_of_nodes_to_score: u32,
}

/// The outcome of one scheduling attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `node` won with weighted `score`; `feasible` nodes passed the filters out of
    /// `evaluated` nodes checked (advance the start index by `evaluated`).
    Scheduled {
        node: String,
        score: i64,
        feasible: usize,
        evaluated: usize,
    },
    /// No node fits. `message` reads like upstream's FitError; `reasons` counts nodes per
    /// failure reason (one node can add several reasons from NodeResourcesFit).
    Unschedulable {
        message: String,
        reasons: BTreeMap<String, usize>,
    },
}

/// How many feasible nodes to look for among `num_nodes` (upstream's `numFeasibleNodesToFind`).
pub fn num_feasible_nodes_to_find(percentage_of_nodes_to_score: u32, num_nodes: usize) -> usize {
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_nodes;
    }
    let mut pct = percentage_of_nodes_to_score as usize;
    if pct == 0 {
        pct = 50usize
            .saturating_sub(num_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_nodes.saturating_mul(pct) / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

// ---------------------------------------------------------------------------------------
// Per-pod state, computed once per call
// ---------------------------------------------------------------------------------------

struct PodCtx<'p> {
    req: PodRequest,
    node_name: Option<&'p str>,
    tolerations: &'p [Toleration],
    tolerates_unschedulable: bool,
    node_selector: Option<&'p BTreeMap<String, String>>,
    /// `Some` when required node affinity is set; an empty list matches no node.
    required: Option<Vec<Term<'p>>>,
    required_raw: &'p [NodeSelectorTerm],
    preferred: Vec<(i64, Term<'p>)>,
}

impl<'p> PodCtx<'p> {
    fn new(pod: &'p Pod) -> Self {
        let spec = pod.spec.as_ref();
        let tolerations = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        let unschedulable_taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: EFFECT_NO_SCHEDULE.to_string(),
            ..Taint::default()
        };
        let node_affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref());
        let required_sel = node_affinity.and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
        let preferred = node_affinity
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or(&[])
            .iter()
            .filter(|t| t.weight != 0)
            .filter_map(|t| Some((i64::from(t.weight), Term::compile(&t.preference)?)))
            .collect();
        PodCtx {
            req: PodRequest::of(pod),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            tolerations,
            tolerates_unschedulable: tolerated(tolerations, &unschedulable_taint),
            node_selector: spec
                .and_then(|s| s.node_selector.as_ref())
                .filter(|m| !m.is_empty()),
            required: required_sel.map(|sel| {
                sel.node_selector_terms
                    .iter()
                    .filter_map(Term::compile)
                    .collect()
            }),
            required_raw: required_sel.map_or(&[] as &[NodeSelectorTerm], |sel| {
                sel.node_selector_terms.as_slice()
            }),
            preferred,
        }
    }

    /// NodeAffinity PreFilter: terms that all pin `metadata.name` (operator In) restrict the
    /// candidate set to the union of their (intersected) names.
    fn prefilter(&self) -> PreFilter<'p> {
        let mut names: Option<BTreeSet<&'p str>> = None;
        for t in self.required_raw {
            let mut term_names: Option<BTreeSet<&'p str>> = None;
            for r in t.match_fields.iter().flatten() {
                if r.key == FIELD_NODE_NAME && r.operator == "In" {
                    let s: BTreeSet<&str> = r.values.iter().flatten().map(String::as_str).collect();
                    term_names = Some(match term_names {
                        None => s,
                        Some(prev) => prev.intersection(&s).copied().collect(),
                    });
                }
            }
            match term_names {
                None => return PreFilter::AllNodes,
                Some(tn) => names.get_or_insert_with(BTreeSet::new).extend(tn),
            }
        }
        match names {
            None => PreFilter::AllNodes,
            Some(n) if n.is_empty() => PreFilter::Conflict,
            Some(n) => PreFilter::Nodes(n),
        }
    }
}

enum PreFilter<'p> {
    AllNodes,
    Conflict,
    Nodes(BTreeSet<&'p str>),
}

// ---------------------------------------------------------------------------------------
// The scheduling cycle
// ---------------------------------------------------------------------------------------

struct Candidate {
    node: usize,
    fit: i64,
    affinity: i64,
    taints: i64,
}

/// Formats upstream's FitError message from per-reason node counts.
fn fit_error_message(num_all: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{num_all} nodes are available:");
    if !parts.is_empty() {
        msg.push(' ');
        msg.push_str(&parts.join(", "));
        msg.push('.');
    }
    msg
}

/// Filters then scores `nodes` for `pod`.
///
/// Evaluation begins at `start` (taken modulo the candidate count) and walks the nodes as a
/// ring, stopping once [`num_feasible_nodes_to_find`] feasible nodes are found; only those are
/// scored. The highest weighted score wins; ties go to the node met first from `start`.
/// Upstream's `NodeShouldRunDaemonPod` predicates for a DaemonSet's pod
/// on one node: (it should run there, a pod already there may stay). The
/// node selector and required affinity must match; an untolerated
/// NoSchedule taint keeps a new pod off, an untolerated NoExecute taint
/// removes a running one. Resources are left to the scheduler, as
/// upstream.
pub fn daemon_fit(pod: &Pod, ni: &NodeInfo) -> (bool, bool) {
    let ctx = PodCtx::new(pod);
    let affinity = plugins::filter_node_affinity(&ctx, ni).is_none();
    let untolerated = |effect: &str| {
        ni.taints()
            .iter()
            .any(|t| t.effect == effect && !tolerated(ctx.tolerations, t))
    };
    let no_execute = untolerated(EFFECT_NO_EXECUTE);
    let no_schedule = untolerated(EFFECT_NO_SCHEDULE);
    (
        affinity && !no_execute && !no_schedule,
        affinity && !no_execute,
    )
}

pub fn schedule(pod: &Pod, nodes: &[NodeInfo], cfg: &Config, start: usize) -> Decision {
    schedule_with(pod, nodes, cfg, start, &|_| None)
}

/// Does `ni` match one of `terms` (a PersistentVolume's required node
/// affinity; terms that cannot match, as upstream, match nothing)?
pub fn node_matches_terms(terms: &[NodeSelectorTerm], ni: &NodeInfo) -> bool {
    terms
        .iter()
        .filter_map(Term::compile)
        .any(|t| t.matches(ni))
}

/// `schedule` with one more filter after the framework's own (the
/// volume binding the scheduler judges from claims and volumes): `extra`
/// answers a node's failure reason, or None when it fits.
pub fn schedule_with(
    pod: &Pod,
    nodes: &[NodeInfo],
    cfg: &Config,
    start: usize,
    extra: &dyn Fn(&NodeInfo) -> Option<&'static str>,
) -> Decision {
    if nodes.is_empty() {
        return Decision::Unschedulable {
            message: MSG_NO_NODES.to_string(),
            reasons: BTreeMap::new(),
        };
    }
    let ctx = PodCtx::new(pod);
    let subset: Option<Vec<usize>> = match ctx.prefilter() {
        PreFilter::AllNodes => None,
        PreFilter::Conflict => {
            return Decision::Unschedulable {
                message: format!(
                    "0/{} nodes are available: {REASON_AFFINITY_CONFLICT}.",
                    nodes.len()
                ),
                reasons: BTreeMap::from([(REASON_AFFINITY_CONFLICT.to_string(), nodes.len())]),
            };
        }
        PreFilter::Nodes(names) => Some(
            (0..nodes.len())
                .filter(|&i| names.contains(nodes[i].name()))
                .collect(),
        ),
    };
    let considered = subset.as_ref().map_or(nodes.len(), Vec::len);
    let to_find = num_feasible_nodes_to_find(cfg.percentage_of_nodes_to_score, considered);
    let first = if considered == 0 {
        0
    } else {
        start % considered
    };

    let mut candidates: Vec<Candidate> = Vec::with_capacity(to_find.min(considered));
    let mut evaluated = 0;
    for i in 0..considered {
        if candidates.len() >= to_find {
            break;
        }
        let mut pos = first + i;
        if pos >= considered {
            pos -= considered;
        }
        let idx = subset.as_ref().map_or(pos, |s| s[pos]);
        evaluated += 1;
        if run_filters(&ctx, &nodes[idx]).is_none() && extra(&nodes[idx]).is_none() {
            candidates.push(Candidate {
                node: idx,
                fit: 0,
                affinity: 0,
                taints: 0,
            });
        }
    }

    if candidates.is_empty() {
        // Every candidate was evaluated; rebuild the reasons only on this cold path.
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut count = |r: String| *reasons.entry(r).or_default() += 1;
        for pos in 0..considered {
            let idx = subset.as_ref().map_or(pos, |s| s[pos]);
            if let Some(f) = run_filters(&ctx, &nodes[idx]) {
                f.reasons(&mut count);
            } else if let Some(r) = extra(&nodes[idx]) {
                count(r.to_string());
            }
        }
        if considered < nodes.len() {
            *reasons
                .entry(REASON_PREFILTER_ABSENT.to_string())
                .or_default() += nodes.len() - considered;
        }
        return Decision::Unschedulable {
            message: fit_error_message(nodes.len(), &reasons),
            reasons,
        };
    }

    let (mut max_affinity, mut max_taints) = (0, 0);
    for c in candidates.iter_mut() {
        let ni = &nodes[c.node];
        c.fit = score_node_resources_fit(cfg.strategy, &ctx, ni);
        if !ctx.preferred.is_empty() {
            c.affinity = score_node_affinity(&ctx, ni);
            max_affinity = max_affinity.max(c.affinity);
        }
        c.taints = score_taint_toleration(&ctx, ni);
        max_taints = max_taints.max(c.taints);
    }
    let mut best: Option<(usize, i64)> = None;
    for c in &candidates {
        let total = WEIGHT_NODE_RESOURCES_FIT * c.fit
            + WEIGHT_NODE_AFFINITY * normalize(c.affinity, max_affinity, false)
            + WEIGHT_TAINT_TOLERATION * normalize(c.taints, max_taints, true);
        if best.is_none_or(|(_, s)| total > s) {
            best = Some((c.node, total));
        }
    }
    let (idx, score) = best.expect("candidates is not empty");
    Decision::Scheduled {
        node: nodes[idx].name().to_string(),
        score,
        feasible: candidates.len(),
        evaluated,
    }
}

#[cfg(test)]
mod tests;
