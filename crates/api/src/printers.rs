//! Server-side table printers: the `meta.k8s.io/v1` `Table` columns and row cells that
//! `kubectl get` shows for each built-in kind. They follow upstream Kubernetes'
//! printers (`pkg/printers/internalversion/printers.go`): the same column names, types,
//! formats and priorities, and the same cell values. Like the upstream API server, the
//! rows are always generated "wide" (every column, priority 1 included); kubectl hides
//! the priority-1 columns unless asked for `-o wide`. Objects are the stored JSON. A
//! field the upstream API server always defaults (a Service's `type`, a port's
//! `protocol`, `spec.replicas`, a Secret's `type`, a CronJob's `suspend`) is read with
//! that default when absent; anything else absent or of the wrong type gets the same
//! placeholder upstream prints ("<none>", "<unknown>", "", 0) and never panics.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

mod cluster;
mod columns;
mod network;
mod pod;
mod storage;
mod workloads;

use cluster::*;
use columns::*;
use network::*;
use pod::*;
use storage::*;
use workloads::*;

/// The column definitions (meta.k8s.io/v1 TableColumnDefinition as JSON: name, type, format, description, priority) for `kind`.
pub fn columns(kind: &str) -> Vec<Value> {
    printer(kind).columns.iter().map(Col::to_json).collect()
}

/// The cells of one row for `obj` (same length and order as `columns(kind)`), `now` used for ages.
pub fn cells(kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    let printer = printer(kind);
    let row = (printer.row)(&Ctx { obj, now });
    debug_assert_eq!(row.len(), printer.columns.len(), "{kind}");
    row
}

/// Kubernetes' short human duration ("5s", "3m2s", "6h", "2d3h", "4y") as kubectl and the printers show ages (duration.HumanDuration).
pub fn human_duration(d: Duration) -> String {
    human_nanos(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

// ---------------------------------------------------------------------------
// Durations and timestamps
// ---------------------------------------------------------------------------

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_MINUTE: i128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i128 = 60 * NANOS_PER_MINUTE;

/// `duration.HumanDuration` on a signed duration in nanoseconds: a little clock skew
/// (less than two seconds into the future) reads "0s", more reads "<invalid>".
fn human_nanos(nanos: i128) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = nanos / NANOS_PER_MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    human_hours(nanos / NANOS_PER_HOUR, minutes % 60)
}

/// The part of `human_nanos` from three hours on.
fn human_hours(hours: i128, minute_of_hour: i128) -> String {
    let days = hours / 24;
    match hours {
        h if h < 8 => with_remainder(h, "h", minute_of_hour, "m"),
        h if h < 48 => format!("{h}h"),
        h if h < 24 * 8 => with_remainder(days, "d", h % 24, "h"),
        h if h < 24 * 365 * 2 => format!("{days}d"),
        h if h < 24 * 365 * 8 => with_remainder(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// "3m" or "3m10s": the smaller unit only when it is not zero.
fn with_remainder(big: i128, big_unit: &str, small: i128, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

/// Human duration from `from` to `to` (negative when `to` is earlier).
fn human_between(from: Timestamp, to: Timestamp) -> String {
    human_nanos(to.as_nanosecond() - from.as_nanosecond())
}

/// `translateTimestampSince`: "<unknown>" for a missing time, else its age at `now`.
fn since(time: Option<Timestamp>, now: Timestamp) -> String {
    time.map_or_else(|| "<unknown>".to_string(), |t| human_between(t, now))
}

// ---------------------------------------------------------------------------
// Reading loosely typed JSON
// ---------------------------------------------------------------------------

/// The value at a JSON pointer, `None` when absent or null.
fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|x| !x.is_null())
}

/// The value at a JSON pointer when it is an object (a Go pointer-to-struct that is set).
fn set_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    at(v, pointer).filter(|x| x.is_object())
}

/// The object at a JSON pointer, `None` when absent or not an object.
fn obj_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    at(v, pointer).and_then(Value::as_object)
}

/// The string at a JSON pointer, "" when absent or not a string.
fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, `None` when absent or not an integer.
fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    let value = at(v, pointer)?;
    value
        .as_i64()
        .or_else(|| value.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
}

/// The integer at a JSON pointer, 0 when absent or not an integer.
fn int0(v: &Value, pointer: &str) -> i64 {
    int_at(v, pointer).unwrap_or(0)
}

/// The boolean at a JSON pointer, `None` when absent or not a boolean.
fn bool_at(v: &Value, pointer: &str) -> Option<bool> {
    at(v, pointer).and_then(Value::as_bool)
}

/// The array at a JSON pointer, empty when absent or not an array.
fn list_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    at(v, pointer)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// The number of keys of the object at a JSON pointer, 0 when absent or not an object.
fn map_len(v: &Value, pointer: &str) -> usize {
    obj_at(v, pointer).map_or(0, Map::len)
}

/// The RFC 3339 time at a JSON pointer, `None` when absent or unparsable.
fn time_at(v: &Value, pointer: &str) -> Option<Timestamp> {
    str_at(v, pointer).parse().ok()
}

/// The first of `pointers` that holds a non-empty string, else "".
fn first_str<'a>(v: &'a Value, pointers: &[&str]) -> &'a str {
    pointers
        .iter()
        .map(|p| str_at(v, p))
        .find(|s| !s.is_empty())
        .unwrap_or("")
}

/// `s`, or `placeholder` when `s` is empty.
fn or_placeholder(s: &str, placeholder: &str) -> String {
    (if s.is_empty() { placeholder } else { s }).to_string()
}

/// The status of the first condition of `kind` in the list at `pointer` is "True".
fn first_condition_true(v: &Value, pointer: &str, kind: &str) -> bool {
    list_at(v, pointer)
        .iter()
        .find(|c| str_at(c, "/type") == kind)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

/// Any condition of `kind` in the list at `pointer` has status "True".
fn any_condition_true(v: &Value, pointer: &str, kind: &str) -> bool {
    list_at(v, pointer)
        .iter()
        .any(|c| str_at(c, "/type") == kind && str_at(c, "/status") == "True")
}

/// The object has a deletion timestamp.
fn is_deleting(v: &Value) -> bool {
    at(v, "/metadata/deletionTimestamp").is_some()
}

// ---------------------------------------------------------------------------
// Shared cell formats
// ---------------------------------------------------------------------------

/// `labels.FormatLabels`: "k=v,k2=v2" sorted by key, "<none>" when empty.
fn format_labels(v: &Value, pointer: &str) -> String {
    let Some(map) = obj_at(v, pointer) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    or_placeholder(&pairs.join(","), "<none>")
}

/// One requirement of a label selector: its key and its rendering.
type Requirement = (String, String);

/// `metav1.LabelSelectorAsSelector(sel).String()`; `Err` for a selector upstream rejects.
fn selector_string(selector: Option<&Value>) -> Result<String, ()> {
    let Some(selector) = selector else {
        return Ok(String::new());
    };
    let selector = selector.as_object().ok_or(())?;
    let mut requirements = match_label_requirements(selector.get("matchLabels"))?;
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        requirements.push(expression_requirement(expression)?);
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let rendered: Vec<String> = requirements.into_iter().map(|(_, s)| s).collect();
    Ok(rendered.join(","))
}

/// The `key=value` requirements of `matchLabels`.
fn match_label_requirements(labels: Option<&Value>) -> Result<Vec<Requirement>, ()> {
    let Some(labels) = labels.filter(|l| !l.is_null()) else {
        return Ok(Vec::new());
    };
    let labels = labels.as_object().ok_or(())?;
    labels
        .iter()
        .map(|(k, v)| -> Result<Requirement, ()> {
            Ok((k.clone(), format!("{k}={}", v.as_str().ok_or(())?)))
        })
        .collect()
}

/// One `matchExpressions` entry as a requirement ("k in (a,b)", "k notin (a)", "k", "!k").
fn expression_requirement(expression: &Value) -> Result<Requirement, ()> {
    let key = str_at(expression, "/key").to_string();
    let mut values = list_at(expression, "/values")
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or(()))
        .collect::<Result<Vec<_>, _>>()?;
    values.sort();
    let rendered = match (str_at(expression, "/operator"), values.is_empty()) {
        ("In", false) => format!("{key} in ({})", values.join(",")),
        ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
        ("Exists", true) => key.clone(),
        ("DoesNotExist", true) => format!("!{key}"),
        _ => return Err(()),
    };
    Ok((key, rendered))
}

/// `metav1.FormatLabelSelector`: "<none>" when empty, "<error>" when invalid.
fn format_label_selector(v: &Value, pointer: &str) -> String {
    match selector_string(at(v, pointer)) {
        Ok(s) => or_placeholder(&s, "<none>"),
        Err(()) => "<error>".to_string(),
    }
}

/// `layoutContainerCells`: container names and images, each comma-joined.
fn container_cells(v: &Value, pointer: &str) -> [Value; 2] {
    let containers = list_at(v, pointer);
    let join = |field: &str| -> String {
        let parts: Vec<&str> = containers.iter().map(|c| str_at(c, field)).collect();
        parts.join(",")
    };
    [json!(join("/name")), json!(join("/image"))]
}

/// `host:port`, with brackets around an IPv6 host (`net.JoinHostPort`).
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// At most three items then " + N more...", `None` for an empty list
/// (upstream's `listWithMoreString` before its "<unset>" fallback).
fn list_with_more(items: &[String]) -> Option<String> {
    const MAX: usize = 3;
    match items.len() {
        0 => None,
        n if n <= MAX => Some(items.join(",")),
        n => Some(format!("{} + {} more...", items[..MAX].join(","), n - MAX)),
    }
}

/// Load-balancer ingress points (IP, else hostname), sorted and de-duplicated.
fn load_balancer_ingress(v: &Value, pointer: &str) -> String {
    let points: BTreeSet<&str> = list_at(v, pointer)
        .iter()
        .map(|i| first_str(i, &["/ip", "/hostname"]))
        .filter(|s| !s.is_empty())
        .collect();
    points.into_iter().collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------
// The printer table
// ---------------------------------------------------------------------------

/// What a row function sees: the object and the time ages are measured to.
struct Ctx<'a> {
    obj: &'a Value,
    now: Timestamp,
}

impl Ctx<'_> {
    fn str(&self, pointer: &str) -> &str {
        str_at(self.obj, pointer)
    }

    fn name(&self) -> Value {
        json!(self.str("/metadata/name"))
    }

    fn age(&self) -> Value {
        json!(self.since(time_at(self.obj, "/metadata/creationTimestamp")))
    }

    fn since(&self, time: Option<Timestamp>) -> String {
        since(time, self.now)
    }
}

/// One kind's columns and the function that fills a row for them.
struct Printer {
    kind: &'static str,
    columns: &'static [Col],
    row: fn(&Ctx) -> Vec<Value>,
}

const PRINTERS: &[Printer] = &[
    kind("Pod", POD_COLUMNS, pod_row),
    kind("Deployment", DEPLOYMENT_COLUMNS, deployment_row),
    kind("ReplicaSet", REPLICA_SET_COLUMNS, replica_set_row),
    kind("DaemonSet", DAEMON_SET_COLUMNS, daemon_set_row),
    kind(
        "ControllerRevision",
        CONTROLLER_REVISION_COLUMNS,
        controller_revision_row,
    ),
    kind("StatefulSet", STATEFUL_SET_COLUMNS, stateful_set_row),
    kind("Job", JOB_COLUMNS, job_row),
    kind("CronJob", CRON_JOB_COLUMNS, cron_job_row),
    kind("Service", SERVICE_COLUMNS, service_row),
    kind("Endpoints", ENDPOINTS_COLUMNS, endpoints_row),
    kind("EndpointSlice", ENDPOINT_SLICE_COLUMNS, endpoint_slice_row),
    kind("ConfigMap", CONFIG_MAP_COLUMNS, config_map_row),
    kind("Secret", SECRET_COLUMNS, secret_row),
    kind(
        "ServiceAccount",
        SERVICE_ACCOUNT_COLUMNS,
        service_account_row,
    ),
    kind("Namespace", NAMESPACE_COLUMNS, namespace_row),
    kind("Node", NODE_COLUMNS, node_row),
    kind("Event", EVENT_COLUMNS, event_row),
    kind("Ingress", INGRESS_COLUMNS, ingress_row),
    kind("IngressClass", INGRESS_CLASS_COLUMNS, ingress_class_row),
    kind("Lease", LEASE_COLUMNS, lease_row),
    kind("RuntimeClass", RUNTIME_CLASS_COLUMNS, runtime_class_row),
    kind(
        "PersistentVolume",
        PERSISTENT_VOLUME_COLUMNS,
        persistent_volume_row,
    ),
    kind(
        "PersistentVolumeClaim",
        PERSISTENT_VOLUME_CLAIM_COLUMNS,
        persistent_volume_claim_row,
    ),
    kind("StorageClass", STORAGE_CLASS_COLUMNS, storage_class_row),
    kind(
        "PodDisruptionBudget",
        POD_DISRUPTION_BUDGET_COLUMNS,
        pod_disruption_budget_row,
    ),
];

const DEFAULT_PRINTER: Printer = kind("", DEFAULT_COLUMNS, default_row);

/// A `PRINTERS` entry.
const fn kind(kind: &'static str, columns: &'static [Col], row: fn(&Ctx) -> Vec<Value>) -> Printer {
    Printer { kind, columns, row }
}

/// The printer for `kind` (matched ignoring ASCII case), or the NAME/AGE fallback.
fn printer(kind: &str) -> &'static Printer {
    PRINTERS
        .iter()
        .find(|p| p.kind.eq_ignore_ascii_case(kind))
        .unwrap_or(&DEFAULT_PRINTER)
}

fn default_row(ctx: &Ctx) -> Vec<Value> {
    vec![ctx.name(), ctx.age()]
}

#[cfg(test)]
mod tests;
