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

/// Parses a Kubernetes Quantity ("500m", "2", "1Gi", "128974848", "129e6", "123Mi", "1.5").
///
/// With `milli` the result is in thousandths (like Go's `MilliValue`), otherwise in units
/// (`Value`); either way fractions round up (away from zero), as upstream does. Errors are
/// values, never panics: empty or malformed input, unknown suffixes, more than 36 significant
/// digits, or a result outside `i64`.
pub fn parse_quantity(q: &str, milli: bool) -> Result<i64, String> {
    let fail = |why: &str| Err(format!("invalid quantity {q:?}: {why}"));
    let b = q.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    match b.first() {
        None => return fail("empty"),
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    let mut mantissa: i128 = 0;
    let mut sig_digits = 0usize;
    let mut frac_len: i64 = 0;
    let mut saw_digit = false;
    while pos < b.len() && b[pos].is_ascii_digit() {
        saw_digit = true;
        let d = i128::from(b[pos] - b'0');
        if mantissa != 0 || d != 0 {
            sig_digits += 1;
            if sig_digits > 36 {
                return fail("too many significant digits");
            }
            mantissa = mantissa * 10 + d;
        }
        pos += 1;
    }
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let mut pending_zeros = 0i64;
        while pos < b.len() && b[pos].is_ascii_digit() {
            saw_digit = true;
            let d = i128::from(b[pos] - b'0');
            if d == 0 {
                pending_zeros += 1;
            } else {
                for _ in 0..pending_zeros {
                    if mantissa != 0 {
                        sig_digits += 1;
                    }
                    mantissa *= 10;
                }
                frac_len += pending_zeros + 1;
                pending_zeros = 0;
                sig_digits += 1;
                if sig_digits > 36 {
                    return fail("too many significant digits");
                }
                mantissa = mantissa * 10 + d;
            }
            pos += 1;
        }
    }
    if !saw_digit {
        return fail("no digits");
    }
    let (pow2, pow10): (u32, i64) = match &q[pos..] {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return fail("bad exponent");
            }
            match exp.parse::<i32>() {
                Ok(e) => (0, i64::from(e)),
                Err(_) => return fail("exponent out of range"),
            }
        }
        _ => return fail("unknown suffix"),
    };
    if mantissa == 0 {
        return Ok(0);
    }
    let overflow = || Err(format!("invalid quantity {q:?}: out of range"));
    let Some(mut v) = mantissa.checked_mul(1i128 << pow2) else {
        return overflow();
    };
    let exp = pow10 - frac_len + if milli { 3 } else { 0 };
    if exp >= 0 {
        for _ in 0..exp {
            match v.checked_mul(10) {
                Some(n) if n <= i128::from(i64::MAX) => v = n,
                _ => return overflow(),
            }
        }
    } else if exp < -38 {
        v = 1; // a positive amount far below one unit rounds up to one
    } else {
        let p = 10i128.pow((-exp) as u32);
        v = v / p + i128::from(v % p != 0);
    }
    let v = if negative { -v } else { v };
    i64::try_from(v).or_else(|_| overflow())
}

type ResourceList = BTreeMap<String, Quantity>;

/// Reads one resource from a list: `None` when absent, 0 when malformed.
fn quantity_of(list: Option<&ResourceList>, name: &str, milli: bool) -> Option<i64> {
    list?
        .get(name)
        .map(|q| parse_quantity(&q.0, milli).unwrap_or(0))
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

/// A pod's requests, computed once per scheduling call or NodeInfo update.
#[derive(Debug, Clone, Copy, Default)]
struct PodRequest {
    res: Resources,
    nz_cpu: i64,
    nz_mem: i64,
}

impl PodRequest {
    fn of(pod: &Pod) -> PodRequest {
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
        let r = PodRequest::of(pod);
        self.requested.add(&r.res);
        self.nz_cpu = self.nz_cpu.saturating_add(r.nz_cpu);
        self.nz_mem = self.nz_mem.saturating_add(r.nz_mem);
    }

    /// Forgets a pod previously passed to [`NodeInfo::add_pod`] (amounts never go below 0).
    pub fn remove_pod(&mut self, pod: &Pod) {
        let r = PodRequest::of(pod);
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

/// How NodeResourcesFit scores cpu and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
// Taints and tolerations
// ---------------------------------------------------------------------------------------

/// Upstream's `Toleration.ToleratesTaint`.
fn toleration_tolerates(t: &Toleration, taint: &Taint) -> bool {
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

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_tolerates(t, taint))
}

// ---------------------------------------------------------------------------------------
// Node selector terms
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum LabelOp<'p> {
    In(&'p [String]),
    NotIn(&'p [String]),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug)]
struct LabelReq<'p> {
    key: &'p str,
    op: LabelOp<'p>,
}

impl LabelReq<'_> {
    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
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
struct FieldReq<'p> {
    key: &'p str,
    value: &'p str,
    equal: bool,
}

/// A parsed, valid, non-empty node-selector term (requirements are ANDed).
#[derive(Debug)]
struct Term<'p> {
    labels: Vec<LabelReq<'p>>,
    fields: Vec<FieldReq<'p>>,
}

impl<'p> Term<'p> {
    /// `None` for terms that can never match: empty ones and ones that fail validation.
    fn compile(t: &'p NodeSelectorTerm) -> Option<Term<'p>> {
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

    fn compile_label(r: &'p NodeSelectorRequirement) -> Option<LabelReq<'p>> {
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

    fn compile_field(r: &'p NodeSelectorRequirement) -> Option<FieldReq<'p>> {
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

    fn matches(&self, ni: &NodeInfo) -> bool {
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
// Filter plugins
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FitFailure {
    pods: bool,
    cpu: bool,
    memory: bool,
    ephemeral_storage: bool,
}

/// Why one node was rejected: the status of the first failing filter plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure<'n> {
    Unschedulable,
    NodeName,
    Taint(&'n Taint),
    NodeAffinity,
    Fit(FitFailure),
}

impl Failure<'_> {
    fn reasons(&self, mut out: impl FnMut(String)) {
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

fn filter_node_unschedulable<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    (ni.unschedulable && !ctx.tolerates_unschedulable).then_some(Failure::Unschedulable)
}

fn filter_node_name<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
    match ctx.node_name {
        Some(want) if want != ni.name() => Some(Failure::NodeName),
        _ => None,
    }
}

fn filter_taint_toleration<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
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

fn filter_node_affinity<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
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

fn filter_node_resources_fit<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
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
fn run_filters<'n>(ctx: &PodCtx, ni: &'n NodeInfo) -> Option<Failure<'n>> {
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
fn score_node_resources_fit(strategy: ScoringStrategy, ctx: &PodCtx, ni: &NodeInfo) -> i64 {
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
fn score_node_affinity(ctx: &PodCtx, ni: &NodeInfo) -> i64 {
    ctx.preferred
        .iter()
        .filter(|(_, t)| t.matches(ni))
        .map(|(w, _)| *w)
        .sum()
}

/// TaintToleration raw score: the number of PreferNoSchedule taints the pod does not tolerate.
fn score_taint_toleration(ctx: &PodCtx, ni: &NodeInfo) -> i64 {
    if !ni.has_soft_taints {
        return 0;
    }
    ni.taints()
        .iter()
        .filter(|t| t.effect == EFFECT_PREFER_NO_SCHEDULE && !tolerated(ctx.tolerations, t))
        .count() as i64
}

/// Upstream's `DefaultNormalizeScore` for one value, given the maximum raw value.
fn normalize(raw: i64, max: i64, reverse: bool) -> i64 {
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
pub fn schedule(pod: &Pod, nodes: &[NodeInfo], cfg: &Config, start: usize) -> Decision {
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
        if run_filters(&ctx, &nodes[idx]).is_none() {
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
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node_from(v: Value) -> NodeInfo {
        NodeInfo::new(serde_json::from_value(v).expect("node json"))
    }

    fn pod_from(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod json")
    }

    fn node(name: &str, cpu: &str, mem: &str, pods: &str) -> NodeInfo {
        node_from(json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods}}
        }))
    }

    /// A node with 4 cpu, 8Gi, 110 pods plus extra spec/labels.
    fn node_with(name: &str, labels: Value, spec: Value) -> NodeInfo {
        node_from(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        }))
    }

    fn pod_req(cpu: &str, mem: &str) -> Pod {
        pod_from(json!({"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}
        ]}}))
    }

    fn pod_spec(spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c"}]);
        }
        pod_from(json!({ "spec": spec }))
    }

    fn filter_reasons(pod: &Pod, ni: &NodeInfo) -> Vec<String> {
        let ctx = PodCtx::new(pod);
        let mut out = Vec::new();
        if let Some(f) = run_filters(&ctx, ni) {
            f.reasons(|r| out.push(r));
        }
        out
    }

    fn scheduled_node(d: &Decision) -> &str {
        match d {
            Decision::Scheduled { node, .. } => node,
            other => panic!("expected Scheduled, got {other:?}"),
        }
    }

    #[test]
    fn quantity_parsing_table() {
        let cases: &[(&str, bool, i64)] = &[
            ("500m", true, 500),
            ("2", true, 2000),
            ("2", false, 2),
            ("1Gi", false, 1 << 30),
            ("128974848", false, 128_974_848),
            ("129e6", false, 129_000_000),
            ("123Mi", false, 128_974_848),
            ("1.5", true, 1500),
            ("1.5", false, 2),
            ("0.1", true, 100),
            ("100n", true, 1),
            ("1k", false, 1000),
            ("1Ki", false, 1024),
            ("1M", false, 1_000_000),
            ("1E", false, 1_000_000_000_000_000_000),
            ("2E-3", true, 2),
            ("1e3", false, 1000),
            ("5e+2", false, 500),
            (".5", true, 500),
            ("5.", false, 5),
            ("+1", false, 1),
            ("-1", true, -1000),
            ("-1.5", false, -2),
            ("0", true, 0),
            ("000", false, 0),
            ("0.000", true, 0),
            ("0.0000001", false, 1),
            ("1.000000000000000000000000000000000000000", false, 1),
            ("250u", true, 1),
            ("1.25Gi", false, 1_342_177_280),
            ("9223372036854775807", false, i64::MAX),
        ];
        for &(q, milli, want) in cases {
            assert_eq!(parse_quantity(q, milli), Ok(want), "{q} milli={milli}");
        }
    }

    #[test]
    fn quantity_parsing_errors() {
        let cases: &[(&str, bool)] = &[
            ("", false),
            ("abc", false),
            ("1K", false),
            ("1Gb", false),
            ("--1", false),
            ("1.5.5", false),
            ("m", true),
            ("1e", false),
            ("1e+", false),
            (" 1", false),
            ("1 ", false),
            ("1Gi5", false),
            ("9223372036854775808", false),
            ("9223372036854775807", true),
            ("1Ei", true),
            ("1e99999999999", false),
            ("1234567890123456789012345678901234567890", false),
        ];
        for &(q, milli) in cases {
            assert!(parse_quantity(q, milli).is_err(), "{q:?} should fail");
        }
    }

    #[test]
    fn pod_requests_sums_containers() {
        let pod = pod_from(json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "0.5", "memory": "64Mi"}}},
            {"name": "c"}
        ]}}));
        assert_eq!(
            pod_requests(&pod),
            Resources {
                milli_cpu: 750,
                memory: 128 << 20,
                pods: 1,
                ephemeral_storage: 1 << 30
            }
        );
    }

    #[test]
    fn pod_requests_init_containers_and_overhead() {
        let cases = [
            (
                // init containers raise the floor per resource
                json!({
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                    "initContainers": [
                        {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}},
                        {"name": "i2", "resources": {"requests": {"cpu": "500m", "memory": "3Gi"}}}
                    ]
                }),
                2000,
                3i64 << 30,
            ),
            (
                // overhead is added on top
                json!({
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3"}}}],
                    "overhead": {"cpu": "250m", "memory": "120Mi"}
                }),
                3250,
                (1i64 << 30) + (120 << 20),
            ),
            (
                // sidecars run beside the app and beside later init containers
                json!({
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
                    "initContainers": [
                        {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                        {"name": "i", "resources": {"requests": {"cpu": "2"}}}
                    ]
                }),
                2500,
                0,
            ),
            (
                // a sidecar alone adds to the sum
                json!({
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
                    "initContainers": [
                        {"name": "i", "resources": {"requests": {"cpu": "1200m"}}},
                        {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}}
                    ]
                }),
                1500,
                0,
            ),
        ];
        for (i, (spec, cpu, mem)) in cases.into_iter().enumerate() {
            let r = pod_requests(&pod_from(json!({ "spec": spec })));
            assert_eq!((r.milli_cpu, r.memory, r.pods), (cpu, mem, 1), "case {i}");
        }
    }

    #[test]
    fn non_zero_defaults_for_scoring() {
        let be = pod_spec(json!({}));
        let r = PodRequest::of(&be);
        assert_eq!((r.res.milli_cpu, r.res.memory), (0, 0));
        assert_eq!(
            (r.nz_cpu, r.nz_mem),
            (DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
        );
        // an explicit zero is kept (presence, not value, decides)
        let r = PodRequest::of(&pod_req("0", "1Gi"));
        assert_eq!((r.nz_cpu, r.nz_mem), (0, 1 << 30));
    }

    #[test]
    fn node_info_accounting() {
        let mut ni = node("n", "4", "8Gi", "110");
        assert_eq!(
            ni.allocatable(),
            Resources {
                milli_cpu: 4000,
                memory: 8 << 30,
                pods: 110,
                ephemeral_storage: 0
            }
        );
        let p = pod_req("1500m", "1Gi");
        ni.add_pod(&p);
        ni.add_pod(&p);
        assert_eq!(ni.requested().milli_cpu, 3000);
        assert_eq!(ni.requested().pods, 2);
        ni.remove_pod(&p);
        assert_eq!(ni.requested().memory, 1 << 30);
        ni.remove_pod(&p);
        ni.remove_pod(&p);
        assert_eq!(ni.requested(), Resources::default());
        assert_eq!((ni.nz_cpu, ni.nz_mem), (0, 0));
    }

    #[test]
    fn filter_node_name_table() {
        let ni = node("a", "4", "8Gi", "110");
        for (want, ok) in [
            (None, true),
            (Some(""), true),
            (Some("a"), true),
            (Some("b"), false),
        ] {
            let pod = pod_spec(json!({ "nodeName": want }));
            let r = filter_reasons(&pod, &ni);
            if ok {
                assert!(r.is_empty(), "{want:?}: {r:?}");
            } else {
                assert_eq!(r, vec![REASON_NODE_NAME], "{want:?}");
            }
        }
    }

    #[test]
    fn filter_node_unschedulable_table() {
        let cordoned = node_with("a", json!({}), json!({"unschedulable": true}));
        let open = node_with("b", json!({}), json!({"unschedulable": false}));
        let cases = [
            (json!([]), &cordoned, false),
            (json!([]), &open, true),
            (
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
                &cordoned,
                true,
            ),
            (json!([{"operator": "Exists"}]), &cordoned, true),
            (
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}]),
                &cordoned,
                false,
            ),
        ];
        for (i, (tols, ni, ok)) in cases.into_iter().enumerate() {
            let r = filter_reasons(&pod_spec(json!({ "tolerations": tols })), ni);
            assert_eq!(r.is_empty(), ok, "case {i}: {r:?}");
            if !ok {
                assert_eq!(r, vec![REASON_UNSCHEDULABLE]);
            }
        }
    }

    #[test]
    fn filter_resources_fit_table() {
        let mut busy = node("busy", "2", "4Gi", "3");
        busy.add_pod(&pod_req("1500m", "3Gi"));
        busy.add_pod(&pod_req("0", "0"));
        let cases: Vec<(Pod, Vec<&str>)> = vec![
            (pod_req("500m", "1Gi"), vec![]),
            (pod_req("501m", "1Gi"), vec![REASON_INSUFFICIENT_CPU]),
            (pod_req("100m", "2Gi"), vec![REASON_INSUFFICIENT_MEMORY]),
            (
                pod_req("1", "2Gi"),
                vec![REASON_INSUFFICIENT_CPU, REASON_INSUFFICIENT_MEMORY],
            ),
            // a pod requesting nothing only needs a pod slot
            (pod_spec(json!({})), vec![]),
            (
                pod_from(
                    json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "1"}}}]}}),
                ),
                vec![REASON_INSUFFICIENT_EPHEMERAL],
            ),
        ];
        for (i, (pod, want)) in cases.iter().enumerate() {
            assert_eq!(filter_reasons(pod, &busy), *want, "case {i}");
        }
        busy.add_pod(&pod_spec(json!({})));
        assert_eq!(
            filter_reasons(&pod_req("4", "0"), &busy),
            vec![REASON_TOO_MANY_PODS, REASON_INSUFFICIENT_CPU]
        );
        assert_eq!(
            filter_reasons(&pod_spec(json!({})), &busy),
            vec![REASON_TOO_MANY_PODS]
        );
    }

    #[test]
    fn toleration_matching_table() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            ..Taint::default()
        };
        let tol = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        let cases = [
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "dedicated", "value": "gpu"}), true),
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}),
                false,
            ),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false),
            (
                json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}),
                true,
            ),
            (
                json!({"key": "dedicated", "operator": "Bogus", "value": "gpu"}),
                false,
            ),
            (json!({"key": "dedicated"}), false),
        ];
        for (i, (tv, want)) in cases.into_iter().enumerate() {
            assert_eq!(toleration_tolerates(&tol(tv), &t), want, "case {i}");
        }
        let no_value = taint("node-role.kubernetes.io/control-plane", None, "NoSchedule");
        assert!(toleration_tolerates(
            &tol(json!({"key": "node-role.kubernetes.io/control-plane"})),
            &no_value
        ));
        assert!(toleration_tolerates(
            &tol(
                json!({"key": "node-role.kubernetes.io/control-plane", "operator": "Equal", "value": ""})
            ),
            &no_value
        ));
    }

    #[test]
    fn filter_taint_toleration_table() {
        let tainted = |taints: Value| node_with("n", json!({}), json!({ "taints": taints }));
        let cases = [
            (
                json!([{"key": "a", "effect": "NoSchedule"}]),
                json!([]),
                Some("node(s) had untolerated taint {a: }"),
            ),
            (
                json!([{"key": "a", "value": "v", "effect": "NoExecute"}]),
                json!([]),
                Some("node(s) had untolerated taint {a: v}"),
            ),
            (
                json!([{"key": "a", "effect": "PreferNoSchedule"}]),
                json!([]),
                None,
            ),
            (
                json!([{"key": "a", "effect": "NoSchedule"}]),
                json!([{"key": "a", "operator": "Exists"}]),
                None,
            ),
            (
                json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "x", "effect": "NoSchedule"}]),
                json!([{"key": "a", "operator": "Exists"}]),
                Some("node(s) had untolerated taint {b: x}"),
            ),
            (
                json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]),
                json!([]),
                Some("node(s) had untolerated taint {a: }"),
            ),
            (
                json!([{"key": "a", "effect": "NoExecute"}]),
                json!([{"operator": "Exists"}]),
                None,
            ),
        ];
        for (i, (taints, tols, want)) in cases.into_iter().enumerate() {
            let r = filter_reasons(&pod_spec(json!({ "tolerations": tols })), &tainted(taints));
            assert_eq!(
                r,
                want.into_iter().map(String::from).collect::<Vec<_>>(),
                "case {i}"
            );
        }
    }

    #[test]
    fn node_affinity_operators_table() {
        let ni = node_with(
            "node-1",
            json!({"zone": "a", "gen": "5", "ssd": "true"}),
            json!({}),
        );
        let expr = |key: &str, op: &str, values: Value| {
            pod_spec(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]
                }}}}),
            )
        };
        let cases = [
            ("zone", "In", json!(["a", "b"]), true),
            ("zone", "In", json!(["b"]), false),
            ("missing", "In", json!(["a"]), false),
            ("zone", "NotIn", json!(["b"]), true),
            ("zone", "NotIn", json!(["a"]), false),
            ("missing", "NotIn", json!(["a"]), true),
            ("ssd", "Exists", json!(null), true),
            ("missing", "Exists", json!([]), false),
            ("missing", "DoesNotExist", json!(null), true),
            ("ssd", "DoesNotExist", json!(null), false),
            ("gen", "Gt", json!(["4"]), true),
            ("gen", "Gt", json!(["5"]), false),
            ("gen", "Lt", json!(["6"]), true),
            ("gen", "Lt", json!(["5"]), false),
            ("zone", "Gt", json!(["1"]), false),
            ("missing", "Lt", json!(["9"]), false),
            // invalid requirements make the term match nothing
            ("gen", "Gt", json!(["x"]), false),
            ("gen", "Gt", json!(["1", "2"]), false),
            ("zone", "In", json!([]), false),
            ("ssd", "Exists", json!(["true"]), false),
            ("zone", "Like", json!(["a"]), false),
        ];
        for (key, op, values, want) in cases {
            let r = filter_reasons(&expr(key, op, values.clone()), &ni);
            assert_eq!(r.is_empty(), want, "{key} {op} {values}");
            if !want {
                assert_eq!(r, vec![REASON_NODE_AFFINITY]);
            }
        }
    }

    #[test]
    fn node_affinity_selector_terms_and_fields() {
        let ni = node_with("node-1", json!({"zone": "a", "disk": "ssd"}), json!({}));
        let req = |terms: Value| json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
        let cases = [
            (json!({"nodeSelector": {"zone": "a"}}), true),
            (json!({"nodeSelector": {"zone": "a", "disk": "hdd"}}), false),
            (json!({"nodeSelector": {"missing": ""}}), false),
            (json!({"nodeSelector": {}}), true),
            // terms are ORed
            (
                json!({"affinity": req(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
                ]))}),
                true,
            ),
            // requirements in a term are ANDed
            (
                json!({"affinity": req(json!([{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]},
                    {"key": "disk", "operator": "In", "values": ["hdd"]}
                ]}]))}),
                false,
            ),
            // an empty term or an empty term list matches nothing
            (json!({"affinity": req(json!([{}]))}), false),
            (json!({"affinity": req(json!([]))}), false),
            // nodeSelector and affinity must both hold
            (
                json!({"nodeSelector": {"zone": "b"}, "affinity": req(json!([
                    {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
                ]))}),
                false,
            ),
            // matchFields on metadata.name
            (
                json!({"affinity": req(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]))}),
                true,
            ),
            (
                json!({"affinity": req(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}]))}),
                false,
            ),
            (
                json!({"affinity": req(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1", "node-2"]}]}]))}),
                false,
            ),
            (
                json!({"affinity": req(json!([{
                    "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}],
                    "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]
                }]))}),
                false,
            ),
        ];
        for (i, (spec, want)) in cases.into_iter().enumerate() {
            let r = filter_reasons(&pod_spec(spec), &ni);
            assert_eq!(r.is_empty(), want, "case {i}: {r:?}");
        }
    }

    #[test]
    fn match_fields_prefilter_narrows_and_conflicts() {
        let nodes: Vec<NodeInfo> = (0..5)
            .map(|i| node(&format!("n{i}"), "1", "1Gi", "110"))
            .collect();
        let cfg = Config::default();
        // one term per name: the terms are ORed, so the candidates are their union
        let pinned = |names: &[&str]| {
            let terms: Vec<Value> = names
                .iter()
                .map(|n| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}))
                .collect();
            pod_spec(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": terms
                }}}}),
            )
        };
        // best effort on 1 cpu / 1Gi: fit (90 + 80) / 2 = 85, no taints 3 * 100
        assert_eq!(
            schedule(&pinned(&["n3", "gone"]), &nodes, &cfg, 4),
            Decision::Scheduled {
                node: "n3".into(),
                score: 385,
                feasible: 1,
                evaluated: 1
            }
        );
        // too big for n3: the other nodes count as filtered by PreFilter
        let mut big = pinned(&["n3"]);
        big.spec.as_mut().unwrap().containers[0].resources =
            Some(serde_json::from_value(json!({"requests": {"cpu": "2"}})).unwrap());
        match schedule(&big, &nodes, &cfg, 0) {
            Decision::Unschedulable { message, reasons } => {
                assert_eq!(
                    message,
                    "0/5 nodes are available: 1 Insufficient cpu, 4 node(s) didn't satisfy plugin(s) [NodeAffinity]."
                );
                assert_eq!(reasons.values().sum::<usize>(), 5);
            }
            d => panic!("{d:?}"),
        }
        // two fields in one term intersect to nothing
        let conflict = pod_spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n1"]},
                    {"key": "metadata.name", "operator": "In", "values": ["n2"]}
                ]}]
            }}}}),
        );
        match schedule(&conflict, &nodes, &cfg, 0) {
            Decision::Unschedulable { message, .. } => {
                assert_eq!(
                    message,
                    "0/5 nodes are available: pod affinity terms conflict."
                )
            }
            d => panic!("{d:?}"),
        }
    }

    fn place_sequence(
        strategy: ScoringStrategy,
        nodes: &mut [NodeInfo],
        pods: usize,
    ) -> Vec<String> {
        let cfg = Config {
            strategy,
            ..Config::default()
        };
        let pod = pod_req("1", "1Gi");
        let mut placed = Vec::new();
        for _ in 0..pods {
            let d = schedule(&pod, nodes, &cfg, 0);
            let name = scheduled_node(&d).to_string();
            nodes
                .iter_mut()
                .find(|n| n.name() == name)
                .unwrap()
                .add_pod(&pod);
            placed.push(name);
        }
        placed
    }

    #[test]
    fn least_allocated_spreads() {
        let mut nodes: Vec<NodeInfo> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, "4", "8Gi", "110"))
            .collect();
        let placed = place_sequence(ScoringStrategy::LeastAllocated, &mut nodes, 6);
        assert_eq!(placed, ["a", "b", "c", "a", "b", "c"]);
        // the bigger node absorbs more
        let mut nodes = vec![
            node("small", "2", "4Gi", "110"),
            node("big", "8", "16Gi", "110"),
        ];
        let placed = place_sequence(ScoringStrategy::LeastAllocated, &mut nodes, 5);
        assert_eq!(placed.iter().filter(|n| *n == "big").count(), 4);
    }

    #[test]
    fn most_allocated_bin_packs() {
        let mut nodes: Vec<NodeInfo> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, "4", "8Gi", "110"))
            .collect();
        let placed = place_sequence(ScoringStrategy::MostAllocated, &mut nodes, 6);
        assert_eq!(placed, ["a", "a", "a", "a", "b", "b"]);
        assert_eq!(nodes[2].requested().pods, 0);
        // a partially used node is preferred over an empty one
        let mut nodes = vec![
            node("empty", "4", "8Gi", "110"),
            node("used", "4", "8Gi", "110"),
        ];
        nodes[1].add_pod(&pod_req("2", "2Gi"));
        let placed = place_sequence(ScoringStrategy::MostAllocated, &mut nodes, 1);
        assert_eq!(placed, ["used"]);
    }

    #[test]
    fn resource_scores_exact() {
        let ctx_pod = pod_req("1", "2Gi");
        let ctx = PodCtx::new(&ctx_pod);
        let mut ni = node("n", "4", "8Gi", "110");
        ni.add_pod(&pod_req("1", "2Gi"));
        // cpu 2/4 used, memory 4/8 used after placement
        assert_eq!(
            score_node_resources_fit(ScoringStrategy::LeastAllocated, &ctx, &ni),
            50
        );
        assert_eq!(
            score_node_resources_fit(ScoringStrategy::MostAllocated, &ctx, &ni),
            50
        );
        // best-effort pods are scored with 100m / 200Mi defaults
        let be = pod_spec(json!({}));
        let ctx = PodCtx::new(&be);
        let empty = node("e", "1", "1000Mi", "110");
        // cpu: (1000-100)*100/1000 = 90; mem: (1000-200)*100/1000 = 80 -> 85
        assert_eq!(
            score_node_resources_fit(ScoringStrategy::LeastAllocated, &ctx, &empty),
            85
        );
        assert_eq!(
            score_node_resources_fit(ScoringStrategy::MostAllocated, &ctx, &empty),
            15
        );
        // no allocatable: nothing to score
        let bare = node_from(json!({"metadata": {"name": "x"}}));
        assert_eq!(
            score_node_resources_fit(ScoringStrategy::LeastAllocated, &ctx, &bare),
            0
        );
    }

    #[test]
    fn preferred_affinity_scoring() {
        let nodes = vec![
            node_with("plain", json!({}), json!({})),
            node_with("ssd", json!({"disk": "ssd"}), json!({})),
            node_with("ssd-fast", json!({"disk": "ssd", "net": "fast"}), json!({})),
        ];
        let pref = |terms: Value| {
            pod_spec(
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}}),
            )
        };
        let pod = pref(json!([
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "net", "operator": "Exists"}]}}
        ]));
        let d = schedule(&pod, &nodes, &Config::default(), 0);
        assert_eq!(scheduled_node(&d), "ssd-fast");
        // ssd-fast: fit 100 (nz 100m/200Mi on 4cpu/8Gi: 97,97 -> 97) + 2*100 + 3*100
        match d {
            Decision::Scheduled {
                score,
                feasible,
                evaluated,
                ..
            } => {
                assert_eq!((score, feasible, evaluated), (97 + 200 + 300, 3, 3));
            }
            _ => unreachable!(),
        }
        let ctx = PodCtx::new(&pod);
        let raw: Vec<i64> = nodes.iter().map(|n| score_node_affinity(&ctx, n)).collect();
        assert_eq!(raw, [0, 10, 40]);
        assert_eq!(normalize(10, 40, false), 25);
        // weight-0 and empty preferences are ignored
        let pod = pref(json!([
            {"weight": 0, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}},
            {"weight": 5, "preference": {}}
        ]));
        assert!(PodCtx::new(&pod).preferred.is_empty());
    }

    #[test]
    fn taint_toleration_scoring_prefers_fewer_soft_taints() {
        let soft = |k: &str| json!({"key": k, "effect": "PreferNoSchedule"});
        let nodes = vec![
            node_with("two", json!({}), json!({"taints": [soft("x"), soft("y")]})),
            node_with("one", json!({}), json!({"taints": [soft("x")]})),
            node_with("one-b", json!({}), json!({"taints": [soft("y")]})),
        ];
        let d = schedule(&pod_spec(json!({})), &nodes, &Config::default(), 0);
        assert_eq!(scheduled_node(&d), "one");
        // tolerating x makes "one" clean and "two" equal to "one-b"
        let tol = pod_spec(
            json!({"tolerations": [{"key": "x", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        assert_eq!(
            scheduled_node(&schedule(&tol, &nodes, &Config::default(), 0)),
            "one"
        );
        let ctx = PodCtx::new(&tol);
        let raw: Vec<i64> = nodes
            .iter()
            .map(|n| score_taint_toleration(&ctx, n))
            .collect();
        assert_eq!(raw, [1, 0, 1]);
        assert_eq!(normalize(1, 2, true), 50);
        assert_eq!(normalize(0, 0, true), 100);
    }

    #[test]
    fn unschedulable_message_and_counts() {
        let cp_taint = json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]});
        let mut nodes: Vec<NodeInfo> = (0..3)
            .map(|i| node(&format!("w{i}"), "1", "4Gi", "110"))
            .collect();
        for i in 0..2 {
            nodes.push(node_from(json!({
                "metadata": {"name": format!("cp{i}")},
                "spec": cp_taint,
                "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}
            })));
        }
        let d = schedule(&pod_req("2", "1Gi"), &nodes, &Config::default(), 0);
        let Decision::Unschedulable { message, reasons } = d else {
            panic!("expected unschedulable")
        };
        assert_eq!(
            message,
            // upstream sorts the "<count> <reason>" strings, so "2 node(s)" precedes "3 Insufficient"
            "0/5 nodes are available: 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu."
        );
        assert_eq!(reasons.get("Insufficient cpu"), Some(&3));
        // a node can add several reasons; counts are per reason
        let d = schedule(&pod_req("2", "5Gi"), &nodes, &Config::default(), 0);
        let Decision::Unschedulable { message, .. } = d else {
            panic!()
        };
        assert_eq!(
            message,
            "0/5 nodes are available: 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu, 3 Insufficient memory."
        );
    }

    #[test]
    fn message_sorting_is_lexicographic_like_upstream() {
        let reasons = BTreeMap::from([
            ("Insufficient cpu".to_string(), 10),
            ("node(s) were unschedulable".to_string(), 2),
            ("Insufficient memory".to_string(), 2),
        ]);
        assert_eq!(
            fit_error_message(14, &reasons),
            "0/14 nodes are available: 10 Insufficient cpu, 2 Insufficient memory, 2 node(s) were unschedulable."
        );
        assert_eq!(
            fit_error_message(3, &BTreeMap::new()),
            "0/3 nodes are available:"
        );
    }

    #[test]
    fn num_feasible_nodes_table() {
        let cases = [
            (0, 0, 0),
            (0, 50, 50),
            (0, 99, 99),
            (0, 100, 100),
            (0, 1000, 420),
            (0, 5000, 500),
            (0, 6000, 300),
            (0, 10000, 500),
            (0, 200, 100),
            (10, 5000, 500),
            (1, 5000, 100),
            (100, 5000, 5000),
            (30, 50, 50),
        ];
        for (pct, n, want) in cases {
            assert_eq!(num_feasible_nodes_to_find(pct, n), want, "pct={pct} n={n}");
        }
    }

    #[test]
    fn sampling_evaluates_fewer_nodes_on_big_cluster() {
        // every other node is tainted; 10% of 1000 = 100 feasible nodes wanted
        let nodes: Vec<NodeInfo> = (0..1000)
            .map(|i| {
                let spec = if i % 2 == 0 {
                    json!({"taints": [{"key": "t", "effect": "NoSchedule"}]})
                } else {
                    json!({})
                };
                node_with(&format!("n{i:04}"), json!({}), spec)
            })
            .collect();
        let cfg = Config {
            percentage_of_nodes_to_score: 10,
            ..Config::default()
        };
        let d = schedule(&pod_req("100m", "128Mi"), &nodes, &cfg, 0);
        match &d {
            Decision::Scheduled {
                node,
                feasible,
                evaluated,
                ..
            } => {
                assert_eq!((*feasible, *evaluated), (100, 200));
                assert_eq!(node, "n0001", "ties go to the first node from start");
            }
            _ => panic!("{d:?}"),
        }
        // adaptive default on 1000 nodes looks for 420 of the 500 feasible
        let d = schedule(&pod_req("100m", "128Mi"), &nodes, &Config::default(), 3);
        match d {
            Decision::Scheduled {
                node,
                feasible,
                evaluated,
                ..
            } => {
                assert_eq!((feasible, evaluated), (420, 839));
                assert_eq!(node, "n0003");
            }
            _ => panic!(),
        }
        // only the very last node fits: still found, whole cluster evaluated
        let mut nodes = nodes;
        for (i, n) in nodes.iter_mut().enumerate() {
            if i != 999 {
                n.add_pod(&pod_req("4", "0"));
            }
        }
        let d = schedule(&pod_req("1", "128Mi"), &nodes, &cfg, 500);
        match d {
            Decision::Scheduled {
                node,
                feasible,
                evaluated,
                ..
            } => {
                assert_eq!((node.as_str(), feasible, evaluated), ("n0999", 1, 1000));
            }
            _ => panic!(),
        }
    }

    #[test]
    fn start_rotates_tie_breaking() {
        let nodes: Vec<NodeInfo> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, "4", "8Gi", "110"))
            .collect();
        let pod = pod_req("1", "1Gi");
        let cfg = Config::default();
        let picks: Vec<String> = (0..4)
            .map(|s| scheduled_node(&schedule(&pod, &nodes, &cfg, s)).to_string())
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a"]);
    }

    #[test]
    fn no_panic_on_malformed_and_empty_input() {
        let nodes = vec![
            NodeInfo::new(Node::default()),
            node("bad", "lots", "-", "1.5.5"),
            node_from(json!({"metadata": {"name": "odd"}, "spec": {"taints": []}, "status": {}})),
        ];
        assert_eq!(nodes[1].allocatable(), Resources::default());
        let malformed = pod_from(json!({"spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "x", "memory": "1Zi"}}}],
            "overhead": {"cpu": ""}
        }}));
        assert_eq!(pod_requests(&malformed).milli_cpu, 0);
        for pod in [
            Pod::default(),
            malformed,
            pod_spec(json!({"affinity": {"nodeAffinity": {}}})),
        ] {
            for start in [0, 7, usize::MAX] {
                match schedule(&pod, &nodes, &Config::default(), start) {
                    Decision::Unschedulable { message, reasons } => {
                        assert!(
                            message.starts_with("0/3 nodes are available: 3 Too many pods"),
                            "{message}"
                        );
                        assert_eq!(reasons.get(REASON_TOO_MANY_PODS), Some(&3));
                    }
                    d => panic!("{d:?}"),
                }
            }
        }
        assert_eq!(
            schedule(&Pod::default(), &[], &Config::default(), 0),
            Decision::Unschedulable {
                message: "no nodes available to schedule pods".into(),
                reasons: BTreeMap::new()
            }
        );
        let huge = pod_req("9223372036854775807m", "9223372036854775807");
        let mut ni = node("n", "4", "8Gi", "110");
        ni.add_pod(&huge);
        ni.add_pod(&huge);
        let d = schedule(&huge, &[ni], &Config::default(), 0);
        assert!(matches!(d, Decision::Unschedulable { .. }));
    }

    #[test]
    fn filter_order_reports_first_failing_plugin() {
        // cordoned, tainted, wrong labels and full: NodeUnschedulable wins
        let mut ni = node_with(
            "n",
            json!({}),
            json!({"unschedulable": true, "taints": [{"key": "t", "effect": "NoSchedule"}]}),
        );
        ni.add_pod(&pod_req("4", "0"));
        let pod = pod_spec(json!({"nodeSelector": {"zone": "a"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
        assert_eq!(filter_reasons(&pod, &ni), vec![REASON_UNSCHEDULABLE]);
        let pod = pod_spec(json!({"nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
        assert_eq!(
            filter_reasons(&pod, &ni),
            vec!["node(s) had untolerated taint {t: }"]
        );
        let pod = pod_spec(json!({"nodeSelector": {"zone": "a"},
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
        assert_eq!(filter_reasons(&pod, &ni), vec![REASON_NODE_AFFINITY]);
    }

    /// Timing check (docs/BENCHMARKS.md).
    #[test]
    #[ignore = "a timing run: cargo test --release --lib throughput_5000_nodes -- --ignored --nocapture"]
    fn throughput_5000_nodes() {
        let mut nodes: Vec<NodeInfo> = (0..5000)
            .map(|i| {
                let spec = match i % 50 {
                    0 => json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}),
                    1..=5 => json!({"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}),
                    _ => json!({}),
                };
                node_from(json!({
                    "metadata": {"name": format!("node-{i:05}"), "labels": {
                        "kubernetes.io/hostname": format!("node-{i:05}"),
                        "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                        "kubernetes.io/os": "linux"
                    }},
                    "spec": spec,
                    "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}}
                }))
            })
            .collect();
        let pod = pod_spec(json!({
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-1"]}]}}
            ]}},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
        }));
        let index: std::collections::HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name().to_string(), i))
            .collect();
        let cfg = Config::default();
        let n = 20_000;
        let mut start = 0;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let d = schedule(&pod, &nodes, &cfg, start);
            let Decision::Scheduled {
                node, evaluated, ..
            } = d
            else {
                panic!("{d:?}")
            };
            start = (start + evaluated) % nodes.len();
            nodes[index[&node]].add_pod(&pod);
        }
        let secs = t.elapsed().as_secs_f64();
        println!("{n} decisions in {secs:.3}s = {:.0}/s", n as f64 / secs);
    }
}
