//! Strategic merge patch (`Content-Type: application/strategic-merge-patch+json`), the patch
//! format `kubectl apply` and `kubectl patch` send, applied the way Kubernetes apimachinery's
//! `strategicpatch` package applies it: maps merge recursively, `null` deletes a key, lists
//! annotated with the `merge` patch strategy are merged element by element (by their merge key,
//! or as a set for lists of scalars), every other list is replaced wholesale, and the
//! `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`
//! directives are honoured and never left in the result.
//!
//! Upstream reads the strategies from Go struct tags; here they are the `SCHEMA` data table, a
//! transcription of the `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`
//! annotations of the Kubernetes OpenAPI spec (the `patchStrategy` / `patchMergeKey` tags of
//! `k8s.io/api`) for the kinds the API server serves. The table is a small type graph: each row
//! names an owner type, a field, its strategy and merge key, and the type of the field's value
//! (or list element), so shared types such as `PodSpec` and `ObjectMeta` are described once and
//! reached from every kind that embeds them. A kind without rows (custom resources) has no
//! annotations, which degrades to JSON-merge-patch semantics: lists are replaced.

use serde_json::{Map, Value};
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::time::Instant;

/// Applies a strategic merge patch to `original` (an object of `kind`, e.g. "Deployment").
/// Lists merge through an index of their elements' keys, so the work is linear in the sizes of
/// the object and the patch.
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, SmpError> {
    apply(kind, original, patch)
}

/// As [`strategic_merge_patch`], giving up with an error once `deadline` passes (checked as
/// list elements are merged).
pub fn strategic_merge_patch_until(
    kind: &str,
    original: &Value,
    patch: &Value,
    deadline: Instant,
) -> Result<Value, SmpError> {
    DEADLINE.with(|d| d.set(Some(deadline)));
    let out = apply(kind, original, patch);
    DEADLINE.with(|d| d.set(None));
    out
}

thread_local! {
    /// The deadline of the patch being applied on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Fails once this thread's patch deadline has passed (every 1,024 elements).
fn check_deadline(n: usize) -> SmpResult<()> {
    if !n.is_multiple_of(1024) {
        return Ok(());
    }
    match DEADLINE.with(Cell::get) {
        Some(d) if Instant::now() > d => err("the strategic merge patch took too long to apply"),
        _ => Ok(()),
    }
}

fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, SmpError> {
    let Value::Object(patch) = patch else {
        return err("a strategic merge patch must be a JSON object");
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => JsonMap::new(),
        _ => return err("the object being patched is not a JSON object"),
    };
    merge_map(original, patch, root_type(kind)).map(Value::Object)
}

/// A patch that cannot be applied; the message is meant for the API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmpError(pub String);

impl fmt::Display for SmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SmpError {}

type JsonMap = Map<String, Value>;
type SmpResult<T> = Result<T, SmpError>;

fn err<T>(message: impl Into<String>) -> SmpResult<T> {
    Err(SmpError(message.into()))
}

// ---------------------------------------------------------------------------------------------
// The data table
// ---------------------------------------------------------------------------------------------

/// One row per field: (owner type, field, `x-kubernetes-patch-strategy`,
/// `x-kubernetes-patch-merge-key`, type of the value or list element).
///
/// Owner types are either a kind (the root of an object) or an internal type name containing a
/// dot, so no kind can collide with them. Rows with an empty strategy and type only document
/// that upstream gives the list no strategy (it is replaced); they change nothing.
/// Verified against `k8s.io/api` tags where noted "checked"; "unsure" marks the rest.
const SCHEMA: &[(&str, &str, &str, &str, &str)] = &[
    // --- io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta (every kind) ---
    ("meta.ObjectMeta", "finalizers", "merge", "", ""),
    ("meta.ObjectMeta", "ownerReferences", "merge", "uid", ""),
    // --- shared status shape: a `conditions` list keyed by `type`. Used for DeploymentStatus,
    // ReplicaSetStatus, DaemonSetStatus, StatefulSetStatus, JobStatus (checked), ServiceStatus
    // (metav1.Condition) and NamespaceStatus, which all carry the same annotation.
    ("status.WithConditions", "conditions", "merge", "type", ""),
    // --- core/v1 PodTemplateSpec: where the pod spec is mounted under workloads ---
    (
        "core.PodTemplateSpec",
        "metadata",
        "",
        "",
        "meta.ObjectMeta",
    ),
    ("core.PodTemplateSpec", "spec", "", "", "core.PodSpec"),
    // --- core/v1 PodSpec (defined once, reached from every root below) ---
    ("core.PodSpec", "volumes", "merge,retainKeys", "name", ""),
    (
        "core.PodSpec",
        "initContainers",
        "merge",
        "name",
        "core.Container",
    ),
    (
        "core.PodSpec",
        "containers",
        "merge",
        "name",
        "core.Container",
    ),
    // EphemeralContainerCommon carries the same annotations as Container.
    (
        "core.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
        "core.Container",
    ),
    ("core.PodSpec", "imagePullSecrets", "merge", "name", ""),
    ("core.PodSpec", "hostAliases", "merge", "ip", ""),
    // Checked: merge key is topologyKey alone, although the list-map keys are
    // topologyKey + whenUnsatisfiable (a known upstream limitation).
    (
        "core.PodSpec",
        "topologySpreadConstraints",
        "merge",
        "topologyKey",
        "",
    ),
    ("core.PodSpec", "schedulingGates", "merge", "name", ""),
    (
        "core.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        "name",
        "",
    ),
    ("core.PodSpec", "tolerations", "", "", ""),
    ("core.PodSpec", "readinessGates", "", "", ""),
    // --- core/v1 Container ---
    ("core.Container", "ports", "merge", "containerPort", ""),
    ("core.Container", "env", "merge", "name", ""),
    ("core.Container", "volumeMounts", "merge", "mountPath", ""),
    ("core.Container", "volumeDevices", "merge", "devicePath", ""),
    ("core.Container", "resizePolicy", "", "", ""), // checked: listType=atomic
    ("core.Container", "envFrom", "", "", ""),
    // --- core/v1 PodStatus ---
    ("core.PodStatus", "conditions", "merge", "type", ""),
    ("core.PodStatus", "podIPs", "merge", "ip", ""),
    ("core.PodStatus", "hostIPs", "merge", "ip", ""),
    (
        "core.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        "name",
        "",
    ),
    // --- Pod, PodTemplate ---
    ("Pod", "metadata", "", "", "meta.ObjectMeta"),
    ("Pod", "spec", "", "", "core.PodSpec"),
    ("Pod", "status", "", "", "core.PodStatus"),
    ("PodTemplate", "metadata", "", "", "meta.ObjectMeta"),
    ("PodTemplate", "template", "", "", "core.PodTemplateSpec"),
    // --- apps/v1 ---
    ("Deployment", "metadata", "", "", "meta.ObjectMeta"),
    ("Deployment", "spec", "", "", "apps.DeploymentSpec"),
    ("Deployment", "status", "", "", "status.WithConditions"),
    (
        "apps.DeploymentSpec",
        "template",
        "",
        "",
        "core.PodTemplateSpec",
    ),
    ("apps.DeploymentSpec", "strategy", "retainKeys", "", ""),
    ("ReplicaSet", "metadata", "", "", "meta.ObjectMeta"),
    ("ReplicaSet", "spec", "", "", "apps.ReplicaSetSpec"),
    ("ReplicaSet", "status", "", "", "status.WithConditions"),
    (
        "apps.ReplicaSetSpec",
        "template",
        "",
        "",
        "core.PodTemplateSpec",
    ),
    ("DaemonSet", "metadata", "", "", "meta.ObjectMeta"),
    ("DaemonSet", "spec", "", "", "apps.DaemonSetSpec"),
    ("DaemonSet", "status", "", "", "status.WithConditions"),
    (
        "apps.DaemonSetSpec",
        "template",
        "",
        "",
        "core.PodTemplateSpec",
    ),
    ("StatefulSet", "metadata", "", "", "meta.ObjectMeta"),
    ("StatefulSet", "spec", "", "", "apps.StatefulSetSpec"),
    ("StatefulSet", "status", "", "", "status.WithConditions"),
    (
        "apps.StatefulSetSpec",
        "template",
        "",
        "",
        "core.PodTemplateSpec",
    ),
    ("apps.StatefulSetSpec", "volumeClaimTemplates", "", "", ""), // listType=atomic
    // --- batch/v1 ---
    ("Job", "metadata", "", "", "meta.ObjectMeta"),
    ("Job", "spec", "", "", "batch.JobSpec"),
    ("Job", "status", "", "", "status.WithConditions"),
    ("batch.JobSpec", "template", "", "", "core.PodTemplateSpec"),
    ("CronJob", "metadata", "", "", "meta.ObjectMeta"),
    ("CronJob", "spec", "", "", "batch.CronJobSpec"),
    (
        "batch.CronJobSpec",
        "jobTemplate",
        "",
        "",
        "batch.JobTemplateSpec",
    ),
    (
        "batch.JobTemplateSpec",
        "metadata",
        "",
        "",
        "meta.ObjectMeta",
    ),
    ("batch.JobTemplateSpec", "spec", "", "", "batch.JobSpec"),
    // --- core/v1 Service, Endpoints; discovery/v1 EndpointSlice ---
    ("Service", "metadata", "", "", "meta.ObjectMeta"),
    ("Service", "spec", "", "", "core.ServiceSpec"),
    ("Service", "status", "", "", "status.WithConditions"),
    // Checked: merge key is port alone, although the list-map keys are port + protocol.
    ("core.ServiceSpec", "ports", "merge", "port", ""),
    ("Endpoints", "metadata", "", "", "meta.ObjectMeta"),
    ("Endpoints", "subsets", "", "", ""), // checked: no strategy
    ("EndpointSlice", "metadata", "", "", "meta.ObjectMeta"),
    ("EndpointSlice", "endpoints", "", "", ""), // listType=atomic
    ("EndpointSlice", "ports", "", "", ""),     // listType=atomic
    // --- core/v1 ServiceAccount, Namespace, Node, ConfigMap, Secret, Event ---
    ("ServiceAccount", "metadata", "", "", "meta.ObjectMeta"),
    ("ServiceAccount", "secrets", "merge", "name", ""), // checked
    ("ServiceAccount", "imagePullSecrets", "", "", ""), // unsure: believed atomic
    ("Namespace", "metadata", "", "", "meta.ObjectMeta"),
    ("Namespace", "spec", "", "", "core.NamespaceSpec"),
    ("Namespace", "status", "", "", "status.WithConditions"),
    ("core.NamespaceSpec", "finalizers", "", "", ""), // checked: no strategy (atomic)
    ("Node", "metadata", "", "", "meta.ObjectMeta"),
    ("Node", "spec", "", "", "core.NodeSpec"),
    ("Node", "status", "", "", "core.NodeStatus"),
    ("core.NodeSpec", "podCIDRs", "merge", "", ""), // checked: merge, list of strings
    ("core.NodeSpec", "taints", "", "", ""),        // checked: no strategy
    ("core.NodeStatus", "conditions", "merge", "type", ""),
    ("core.NodeStatus", "addresses", "merge", "type", ""),
    ("ConfigMap", "metadata", "", "", "meta.ObjectMeta"),
    ("Secret", "metadata", "", "", "meta.ObjectMeta"),
    ("Event", "metadata", "", "", "meta.ObjectMeta"),
    // --- networking/v1 Ingress, coordination/v1 Lease: no annotated lists ---
    ("Ingress", "metadata", "", "", "meta.ObjectMeta"),
    ("Lease", "metadata", "", "", "meta.ObjectMeta"),
];

/// What the table says about one field.
#[derive(Debug, Clone, Copy, Default)]
struct FieldMeta {
    /// The list is merged rather than replaced.
    merge: bool,
    /// Merge key for lists of objects; empty for lists of scalars.
    merge_key: &'static str,
    /// Schema type of the value or list element; empty when nothing below is annotated.
    ty: &'static str,
}

fn root_type(kind: &str) -> &str {
    // Internal type names contain a dot; a kind never does.
    if kind.contains('.') {
        ""
    } else {
        kind
    }
}

fn lookup(ty: &str, field: &str) -> FieldMeta {
    if ty.is_empty() {
        return FieldMeta::default();
    }
    SCHEMA
        .iter()
        .find(|row| row.0 == ty && row.1 == field)
        .map(|&(_, _, strategy, merge_key, ty)| FieldMeta {
            merge: strategy.split(',').any(|s| s == "merge"),
            merge_key,
            ty,
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Directives
// ---------------------------------------------------------------------------------------------

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Replace,
    Delete,
    Merge,
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn parse_directive(value: &Value) -> SmpResult<Directive> {
    match value.as_str() {
        Some("replace") => Ok(Directive::Replace),
        Some("delete") => Ok(Directive::Delete),
        Some("merge") => Ok(Directive::Merge),
        _ => err(format!(
            "invalid $patch directive {value}: expected \"replace\", \"delete\" or \"merge\""
        )),
    }
}

fn has_patch_directive(value: &Value) -> bool {
    value.as_object().is_some_and(|m| m.contains_key(PATCH))
}

// ---------------------------------------------------------------------------------------------
// Maps
// ---------------------------------------------------------------------------------------------

/// Merges `patch` into `original`, honouring a `$patch` directive on the map itself.
/// `$patch: merge` is the default behaviour made explicit (upstream rejects it on maps).
fn merge_map(original: JsonMap, patch: &JsonMap, ty: &str) -> SmpResult<JsonMap> {
    let directive = patch.get(PATCH).map(parse_directive).transpose()?;
    match directive {
        Some(Directive::Delete) => Ok(JsonMap::new()),
        Some(Directive::Replace) => merge_fields(JsonMap::new(), patch, ty),
        Some(Directive::Merge) | None => merge_fields(original, patch, ty),
    }
}

fn merge_fields(mut original: JsonMap, patch: &JsonMap, ty: &str) -> SmpResult<JsonMap> {
    apply_retain_keys(&mut original, patch)?;
    let ordered = apply_set_element_order(&mut original, patch, ty)?;
    for (key, value) in patch {
        if !is_directive(key) && !ordered.contains(&key.as_str()) {
            merge_field(&mut original, key, value, ty)?;
        }
    }
    apply_primitive_deletions(&mut original, patch)?;
    Ok(original)
}

fn merge_field(original: &mut JsonMap, key: &str, value: &Value, ty: &str) -> SmpResult<()> {
    if value.is_null() {
        // `retain` rather than `remove`: it keeps key order if `preserve_order` is enabled.
        original.retain(|k, _| k != key);
        return Ok(());
    }
    let meta = lookup(ty, key);
    let merged = match original.get_mut(key) {
        Some(slot) => merge_value(std::mem::take(slot), value, key, meta)?,
        None => clean_value(value, key, meta)?,
    };
    original.insert(key.to_owned(), merged);
    Ok(())
}

fn merge_value(current: Value, patch: &Value, field: &str, meta: FieldMeta) -> SmpResult<Value> {
    match (current, patch) {
        (Value::Object(current), Value::Object(patch)) => {
            merge_map(current, patch, meta.ty).map(Value::Object)
        }
        (Value::Array(current), Value::Array(patch)) => {
            merge_list(current, patch, field, meta).map(Value::Array)
        }
        (_, patch) => clean_value(patch, field, meta),
    }
}

/// A patch value with nothing to merge into: applied to an empty value so that directives are
/// processed (and dropped) and nested nulls discarded.
fn clean_value(patch: &Value, field: &str, meta: FieldMeta) -> SmpResult<Value> {
    match patch {
        Value::Object(map) => merge_map(JsonMap::new(), map, meta.ty).map(Value::Object),
        Value::Array(items) => merge_list(Vec::new(), items, field, meta).map(Value::Array),
        scalar => Ok(scalar.clone()),
    }
}

/// `$retainKeys`: drop every original field not listed; the patch may only set listed fields.
fn apply_retain_keys(original: &mut JsonMap, patch: &JsonMap) -> SmpResult<()> {
    let Some(list) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let keep: Option<Vec<&str>> = list
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect());
    let Some(keep) = keep else {
        return err("$retainKeys must be a list of field names");
    };
    for (key, value) in patch {
        if !value.is_null() && !is_directive(key) && !keep.contains(&key.as_str()) {
            return err(format!(
                "field {key:?} is set in the patch but not listed in $retainKeys"
            ));
        }
    }
    original.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: remove the listed values from a list of scalars.
fn apply_primitive_deletions(original: &mut JsonMap, patch: &JsonMap) -> SmpResult<()> {
    for (directive, values) in patch {
        let Some(field) = directive.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
            continue;
        };
        let Some(values) = values.as_array() else {
            return err(format!("{directive} must be a list"));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            let gone: HashSet<String> = values.iter().map(id_key).collect();
            list.retain(|item| !gone.contains(&id_key(item)));
        }
    }
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list (if the patch has one) and orders the
/// result. Returns the fields it handled, which the caller must not merge again.
fn apply_set_element_order<'p>(
    original: &mut JsonMap,
    patch: &'p JsonMap,
    ty: &str,
) -> SmpResult<Vec<&'p str>> {
    let mut handled = Vec::new();
    for (directive, order) in patch {
        let Some(field) = directive.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let Some(order) = order.as_array() else {
            return err(format!("{directive} must be a list"));
        };
        let meta = lookup(ty, field);
        if !meta.merge {
            continue; // the list is replaced wholesale; its order is the patch's own
        }
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(items)) => Some(items.as_slice()),
            Some(Value::Null) => continue,
            Some(_) => return err(format!("{field:?} must be a list to use {directive}")),
        };
        let original_list = match original.get_mut(field) {
            Some(Value::Array(items)) => Some(std::mem::take(items)),
            _ => None,
        };
        let list = OrderedList { field, meta, order };
        if let Some(merged) = list.merge_and_order(original_list, patch_list)? {
            original.insert(field.to_owned(), Value::Array(merged));
            handled.push(field);
        }
    }
    Ok(handled)
}

/// One `$setElementOrder` directive and the list field it applies to.
struct OrderedList<'a> {
    field: &'a str,
    meta: FieldMeta,
    order: &'a [Value],
}

impl OrderedList<'_> {
    fn merge_and_order(
        &self,
        original: Option<Vec<Value>>,
        patch: Option<&[Value]>,
    ) -> SmpResult<Option<Vec<Value>>> {
        let original_items = original.as_deref().unwrap_or_default();
        let key = self.identity_key(original_items, patch.unwrap_or_default())?;
        let order_ids = self.order_ids(key)?;
        if let Some(patch) = patch {
            check_patch_order(patch, &order_ids, key, self.field)?;
        }
        let server_ids = ids(original_items, key);
        let merged = match (original, patch) {
            (Some(original), Some(patch)) => merge_list(original, patch, self.field, self.meta)?,
            (Some(original), None) => original,
            (None, Some(patch)) => merge_list(Vec::new(), patch, self.field, self.meta)?,
            (None, None) => return Ok(None),
        };
        Ok(Some(order_items(merged, &order_ids, &server_ids, key)))
    }

    /// The merge key for lists of objects, "" (the element itself) for lists of scalars.
    fn identity_key(&self, original: &[Value], patch: &[Value]) -> SmpResult<&'static str> {
        let maps = match element_kind(original, patch, self.field)? {
            ElementKind::Maps => true,
            ElementKind::Scalars => false,
            ElementKind::Empty => self.order.first().is_some_and(Value::is_object),
        };
        Ok(if maps { self.meta.merge_key } else { "" })
    }

    fn order_ids(&self, key: &str) -> SmpResult<Vec<Value>> {
        self.order
            .iter()
            .map(|item| {
                identity(item, key)
                    .cloned()
                    .ok_or_else(|| missing_key(self.field, key))
            })
            .collect()
    }
}

/// Upstream's consistency check: the patch list's items must appear in the order list, in the
/// same relative order (items carrying a `$patch` directive are exempt).
fn check_patch_order(
    patch: &[Value],
    order_ids: &[Value],
    key: &str,
    field: &str,
) -> SmpResult<()> {
    let mut remaining = order_ids.iter();
    for item in patch.iter().filter(|item| !has_patch_directive(item)) {
        let id = identity(item, key).ok_or_else(|| missing_key(field, key))?;
        if !remaining.any(|o| json_eq(o, id)) {
            return err(format!(
                "the order of {field:?} in the patch does not match $setElementOrder/{field}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Empty,
    Scalars,
    Maps,
}

/// All elements of both lists must be objects, or all scalars; lists of lists are unsupported.
fn element_kind(original: &[Value], patch: &[Value], field: &str) -> SmpResult<ElementKind> {
    let mut kind = ElementKind::Empty;
    for item in original.iter().chain(patch) {
        let this = match item {
            Value::Array(_) => return err(format!("lists of lists are not supported ({field:?})")),
            Value::Object(_) => ElementKind::Maps,
            _ => ElementKind::Scalars,
        };
        if kind == ElementKind::Empty {
            kind = this;
        } else if kind != this {
            return err(format!(
                "the elements of list {field:?} are not all of the same type"
            ));
        }
    }
    Ok(kind)
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: &str,
    meta: FieldMeta,
) -> SmpResult<Vec<Value>> {
    if !meta.merge {
        return patch
            .iter()
            .map(|item| clean_value(item, field, meta))
            .collect();
    }
    match element_kind(&original, patch, field)? {
        ElementKind::Empty => Ok(original),
        ElementKind::Scalars => merge_scalar_list(original, patch),
        ElementKind::Maps => merge_keyed_list(original, patch, field, meta),
    }
}

/// Set union; order as upstream: patch items in patch order, interleaved with the rest.
fn merge_scalar_list(original: Vec<Value>, patch: &[Value]) -> SmpResult<Vec<Value>> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    let mut seen = HashSet::new();
    for (n, item) in original.iter().chain(patch).enumerate() {
        check_deadline(n)?;
        if seen.insert(id_key(item)) {
            merged.push(item.clone());
        }
    }
    Ok(order_items(merged, patch, &original, ""))
}

fn merge_keyed_list(
    original: Vec<Value>,
    patch: &[Value],
    field: &str,
    meta: FieldMeta,
) -> SmpResult<Vec<Value>> {
    let key = meta.merge_key;
    if key.is_empty() {
        return err(format!(
            "list {field:?} has no merge key, its objects cannot be merged"
        ));
    }
    let mut current = original;
    let mut entries: Vec<&JsonMap> = Vec::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut replace = false;
    for (n, item) in patch.iter().enumerate() {
        check_deadline(n)?;
        let Some(entry) = item.as_object() else {
            return err(format!(
                "the elements of list {field:?} are not all objects"
            ));
        };
        match entry.get(PATCH).map(parse_directive).transpose()? {
            None => entries.push(entry),
            Some(Directive::Delete) => {
                let id = entry.get(key).ok_or_else(|| missing_key(field, key))?;
                deleted.insert(id_key(id));
            }
            Some(Directive::Replace) => replace = true,
            // Upstream rejects this; a keyed element is merged as usual, a bare marker ignored.
            Some(Directive::Merge) if entry.contains_key(key) => entries.push(entry),
            Some(Directive::Merge) => {}
        }
    }
    if replace {
        return entries
            .into_iter()
            .map(|entry| merge_map(JsonMap::new(), entry, meta.ty).map(Value::Object))
            .collect();
    }
    if !deleted.is_empty() {
        current.retain(|item| !identity(item, key).is_some_and(|v| deleted.contains(&id_key(v))));
    }
    let server_ids = ids(&current, key);
    let mut at = Positions::of(&server_ids);
    let mut patch_ids = Vec::with_capacity(entries.len());
    for (n, entry) in entries.into_iter().enumerate() {
        check_deadline(n)?;
        let id = entry.get(key).ok_or_else(|| missing_key(field, key))?;
        match at.get(id) {
            Some(i) => {
                let existing = match std::mem::take(&mut current[i]) {
                    Value::Object(map) => map,
                    _ => JsonMap::new(),
                };
                current[i] = Value::Object(merge_map(existing, entry, meta.ty)?);
            }
            None => {
                at.insert(id, current.len());
                current.push(Value::Object(merge_map(JsonMap::new(), entry, meta.ty)?));
            }
        }
        patch_ids.push(id.clone());
    }
    Ok(order_items(current, &patch_ids, &server_ids, key))
}

fn missing_key(field: &str, key: &str) -> SmpError {
    SmpError(format!(
        "an element of list {field:?} does not contain its merge key {key:?}"
    ))
}

mod order;
use order::{id_key, identity, ids, json_eq, order_items, Positions};

#[cfg(test)]
mod tests;
