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
// Column definitions
// ---------------------------------------------------------------------------

/// A column's JSON type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    Str,
    Int,
    Bool,
}

impl Ty {
    fn as_str(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Bool => "boolean",
        }
    }
}

/// One `TableColumnDefinition`.
struct Col {
    name: &'static str,
    ty: Ty,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

impl Col {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by default.
const fn col(name: &'static str, ty: Ty, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown only with `-o wide` (priority 1).
const fn wide(name: &'static str, ty: Ty, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 1,
        description,
    }
}

use Ty::{Bool, Int, Str};

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const SELECTOR_DOC: &str = "Label query over pods that should match the replica count. It must match the pod template's labels.";

const NAME: Col = Col {
    name: "Name",
    ty: Str,
    format: "name",
    priority: 0,
    description: NAME_DOC,
};
const AGE: Col = col("Age", Str, AGE_DOC);
const CONTAINERS: Col = wide(
    "Containers",
    Str,
    "Names of each container in the template.",
);
const IMAGES: Col = wide(
    "Images",
    Str,
    "Images referenced by each container in the template.",
);
const SELECTOR: Col = wide("Selector", Str, SELECTOR_DOC);

const POD_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Ready",
        Str,
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        Str,
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        Str,
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        Str,
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        Str,
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        Str,
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        Str,
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

const DEPLOYMENT_COLUMNS: &[Col] = &[
    NAME,
    col("Ready", Str, "Number of the pod with ready state"),
    col(
        "Up-to-date",
        Str,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        Str,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const REPLICA_SET_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Desired",
        Int,
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        Int,
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        Int,
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const DAEMON_SET_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Desired",
        Int,
        "The total number of nodes that should be running the daemon pod.",
    ),
    col(
        "Current",
        Int,
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        Int,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        Int,
        "The total number of nodes that are running updated daemon pod.",
    ),
    col(
        "Available",
        Int,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col(
        "Node Selector",
        Str,
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const STATEFUL_SET_COLUMNS: &[Col] = &[
    NAME,
    col("Ready", Str, "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const JOB_COLUMNS: &[Col] = &[
    NAME,
    col("Status", Str, "Status of the job."),
    col(
        "Completions",
        Str,
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", Str, "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRON_JOB_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Schedule",
        Str,
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        Str,
        "The time zone name for the given schedule.",
    ),
    col(
        "Suspend",
        Bool,
        "This flag tells the controller to suspend subsequent executions.",
    ),
    col(
        "Active",
        Int,
        "A list of pointers to currently running jobs.",
    ),
    col(
        "Last Schedule",
        Str,
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICE_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Type",
        Str,
        "type determines how the Service is exposed. Defaults to ClusterIP.",
    ),
    col(
        "Cluster-IP",
        Str,
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        Str,
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        Str,
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        Str,
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

const ENDPOINTS_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Endpoints",
        Str,
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

const ENDPOINT_SLICE_COLUMNS: &[Col] = &[
    NAME,
    col(
        "AddressType",
        Str,
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        Str,
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        Str,
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Col] = &[
    NAME,
    col("Data", Str, "Data contains the configuration data."),
    AGE,
];

const SECRET_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Type",
        Str,
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", Str, "Data contains the secret data."),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Secrets",
        Str,
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const NAMESPACE_COLUMNS: &[Col] = &[NAME, col("Status", Str, "The status of the namespace"), AGE];

const NODE_ADDRESSES_DOC: &str = "List of addresses reachable to the node.";

const NODE_COLUMNS: &[Col] = &[
    NAME,
    col("Status", Str, "The status of the node"),
    col("Roles", Str, "The roles of the node"),
    AGE,
    col("Version", Str, "Kubelet Version reported by the node."),
    wide("Internal-IP", Str, NODE_ADDRESSES_DOC),
    wide("External-IP", Str, NODE_ADDRESSES_DOC),
    wide(
        "OS-Image",
        Str,
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        Str,
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        Str,
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const EVENT_COLUMNS: &[Col] = &[
    col(
        "Last Seen",
        Str,
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        Str,
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        Str,
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", Str, "The object that this event is about."),
    wide(
        "Subobject",
        Str,
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        Str,
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        Str,
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        Str,
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", Str, "The number of times this event has occurred."),
    Col {
        name: "Name",
        ty: Str,
        format: "name",
        priority: 1,
        description: NAME_DOC,
    },
];

const INGRESS_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Class",
        Str,
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        Str,
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        Str,
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", Str, "Ports of TLS configurations that open"),
    AGE,
];

const LEASE_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Holder",
        Str,
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const DEFAULT_COLUMNS: &[Col] = &[NAME, AGE];

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
    kind("Lease", LEASE_COLUMNS, lease_row),
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

// ---------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------

/// Restart count and the latest restart time over a set of container statuses.
#[derive(Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count = self.count.saturating_add(int0(status, "/restartCount"));
        let finished = time_at(status, "/lastState/terminated/finishedAt");
        self.last = self.last.max(finished);
    }
}

/// The aggregate a pod row shows.
struct PodSummary {
    reason: String,
    ready: usize,
    total: usize,
    restarts: Restarts,
}

/// What one init container status means for the pod's status.
enum InitStep {
    /// Finished successfully: look at the next one.
    Done,
    /// A started sidecar (restartable init container), ready or not: look at the next one.
    Sidecar { ready: bool },
    /// Still initializing here: the pod's status is this reason.
    Blocked(String),
}

fn pod_row(ctx: &Ctx) -> Vec<Value> {
    let pod = ctx.obj;
    let summary = summarize_pod(pod);
    let restarts = match summary.restarts {
        Restarts {
            count,
            last: Some(last),
        } if count != 0 => {
            format!("{count} ({} ago)", ctx.since(Some(last)))
        }
        Restarts { count, .. } => count.to_string(),
    };
    vec![
        ctx.name(),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(restarts),
        ctx.age(),
        json!(or_placeholder(pod_ip(pod), "<none>")),
        json!(or_placeholder(ctx.str("/spec/nodeName"), "<none>")),
        json!(or_placeholder(
            ctx.str("/status/nominatedNodeName"),
            "<none>"
        )),
        json!(readiness_gates(pod)),
    ]
}

/// Ready/total containers, status reason and restarts, as upstream's `printPod`.
fn summarize_pod(pod: &Value) -> PodSummary {
    let init_specs = list_at(pod, "/spec/initContainers");
    let sidecars: BTreeSet<&str> = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .map(|c| str_at(c, "/name"))
        .collect();
    let sidecar_specs = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .count();
    let mut summary = PodSummary {
        reason: initial_pod_reason(pod),
        ready: 0,
        total: list_at(pod, "/spec/containers").len() + sidecar_specs,
        restarts: Restarts::default(),
    };
    let mut all = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (index, status) in list_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        all.add(status);
        let is_sidecar = sidecars.contains(str_at(status, "/name"));
        if is_sidecar {
            sidecar_restarts.add(status);
        }
        match init_step(status, is_sidecar, index, init_specs.len()) {
            InitStep::Done => {}
            InitStep::Sidecar { ready } => summary.ready += usize::from(ready),
            InitStep::Blocked(reason) => {
                summary.reason = reason;
                initializing = true;
                break;
            }
        }
    }
    summary.restarts = all;
    if !initializing || first_condition_true(pod, "/status/conditions", "Initialized") {
        summary.restarts = sidecar_restarts;
        apply_container_statuses(pod, &mut summary);
    }
    apply_deletion(pod, &mut summary.reason);
    summary
}

/// The pod's phase, or its status reason, or "SchedulingGated".
fn initial_pod_reason(pod: &Value) -> String {
    let gated = list_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated");
    if gated {
        return "SchedulingGated".to_string();
    }
    first_str(pod, &["/status/reason", "/status/phase"]).to_string()
}

/// Classifies the init container status at `index` of `total` init containers.
fn init_step(status: &Value, is_sidecar: bool, index: usize, total: usize) -> InitStep {
    let terminated = set_at(status, "/state/terminated");
    if terminated.is_some_and(|t| int0(t, "/exitCode") == 0) {
        return InitStep::Done;
    }
    if is_sidecar && bool_at(status, "/started") == Some(true) {
        return InitStep::Sidecar {
            ready: bool_at(status, "/ready") == Some(true),
        };
    }
    if let Some(terminated) = terminated {
        return InitStep::Blocked(format!("Init:{}", terminated_reason(terminated)));
    }
    let waiting = str_at(status, "/state/waiting/reason");
    if !waiting.is_empty() && waiting != "PodInitializing" {
        return InitStep::Blocked(format!("Init:{waiting}"));
    }
    InitStep::Blocked(format!("Init:{index}/{total}"))
}

/// A terminated state's reason, else "Signal:N", else "ExitCode:N".
fn terminated_reason(terminated: &Value) -> String {
    let reason = str_at(terminated, "/reason");
    if !reason.is_empty() {
        return reason.to_string();
    }
    match int0(terminated, "/signal") {
        0 => format!("ExitCode:{}", int0(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

/// Folds the regular container statuses (last to first, as upstream) into the summary.
fn apply_container_statuses(pod: &Value, summary: &mut PodSummary) {
    let mut has_running = false;
    for status in list_at(pod, "/status/containerStatuses").iter().rev() {
        summary.restarts.add(status);
        if let Some(reason) = container_reason(status) {
            summary.reason = reason;
        } else if bool_at(status, "/ready") == Some(true)
            && set_at(status, "/state/running").is_some()
        {
            has_running = true;
            summary.ready += 1;
        }
    }
    if summary.reason == "Completed" && has_running {
        let ready = any_condition_true(pod, "/status/conditions", "Ready");
        summary.reason = if ready { "Running" } else { "NotReady" }.to_string();
    }
}

/// A container's waiting or terminated reason, `None` when it has neither.
fn container_reason(status: &Value) -> Option<String> {
    let waiting = str_at(status, "/state/waiting/reason");
    if !waiting.is_empty() {
        return Some(waiting.to_string());
    }
    set_at(status, "/state/terminated").map(terminated_reason)
}

/// "Terminating" (or "Unknown" on a lost node) once the pod is being deleted.
fn apply_deletion(pod: &Value, reason: &mut String) {
    if !is_deleting(pod) {
        return;
    }
    if str_at(pod, "/status/reason") == "NodeLost" {
        *reason = "Unknown".to_string();
    } else if !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        *reason = "Terminating".to_string();
    }
}

/// The pod's first IP (`podIPs[0]`, else `podIP`), "" when none.
fn pod_ip(pod: &Value) -> &str {
    match list_at(pod, "/status/podIPs").first() {
        Some(first) => str_at(first, "/ip"),
        None => str_at(pod, "/status/podIP"),
    }
}

/// "true/total" readiness gates, "<none>" without any.
fn readiness_gates(pod: &Value) -> String {
    let gates = list_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list_at(pod, "/status/conditions");
    let passing = gates
        .iter()
        .filter(|gate| {
            let kind = str_at(gate, "/conditionType");
            conditions
                .iter()
                .find(|c| str_at(c, "/type") == kind)
                .is_some_and(|c| str_at(c, "/status") == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// `spec.replicas`, defaulted to 1 as the API server does.
fn desired_replicas(obj: &Value) -> i64 {
    int_at(obj, "/spec/replicas").unwrap_or(1)
}

fn deployment_row(ctx: &Ctx) -> Vec<Value> {
    let d = ctx.obj;
    let selector = selector_string(at(d, "/spec/selector")).unwrap_or_else(|()| "<invalid>".into());
    let [names, images] = container_cells(d, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(format!(
            "{}/{}",
            int0(d, "/status/readyReplicas"),
            desired_replicas(d)
        )),
        json!(int0(d, "/status/updatedReplicas")),
        json!(int0(d, "/status/availableReplicas")),
        ctx.age(),
        names,
        images,
        json!(selector),
    ]
}

fn replica_set_row(ctx: &Ctx) -> Vec<Value> {
    let rs = ctx.obj;
    let [names, images] = container_cells(rs, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(desired_replicas(rs)),
        json!(int0(rs, "/status/replicas")),
        json!(int0(rs, "/status/readyReplicas")),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(rs, "/spec/selector")),
    ]
}

fn daemon_set_row(ctx: &Ctx) -> Vec<Value> {
    let ds = ctx.obj;
    let [names, images] = container_cells(ds, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(int0(ds, "/status/desiredNumberScheduled")),
        json!(int0(ds, "/status/currentNumberScheduled")),
        json!(int0(ds, "/status/numberReady")),
        json!(int0(ds, "/status/updatedNumberScheduled")),
        json!(int0(ds, "/status/numberAvailable")),
        json!(format_labels(ds, "/spec/template/spec/nodeSelector")),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(ds, "/spec/selector")),
    ]
}

fn stateful_set_row(ctx: &Ctx) -> Vec<Value> {
    let sts = ctx.obj;
    let [names, images] = container_cells(sts, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(format!(
            "{}/{}",
            int0(sts, "/status/readyReplicas"),
            desired_replicas(sts)
        )),
        ctx.age(),
        names,
        images,
    ]
}

fn job_row(ctx: &Ctx) -> Vec<Value> {
    let job = ctx.obj;
    let [names, images] = container_cells(job, "/spec/template/spec/containers");
    vec![
        ctx.name(),
        json!(job_status(job)),
        json!(job_completions(job)),
        json!(job_duration(job, ctx.now)),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(job, "/spec/selector")),
    ]
}

/// "Complete", "Failed", "Terminating", "Suspended", "FailureTarget" or "Running".
fn job_status(job: &Value) -> &'static str {
    let has = |kind: &str| first_condition_true(job, "/status/conditions", kind);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// "succeeded/completions", or "succeeded/1 of parallelism" for a work queue.
fn job_completions(job: &Value) -> String {
    let succeeded = int0(job, "/status/succeeded");
    if let Some(completions) = int_at(job, "/spec/completions") {
        return format!("{succeeded}/{completions}");
    }
    match int0(job, "/spec/parallelism") {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

/// Time from start to completion (or to now while running), "" before it starts.
fn job_duration(job: &Value, now: Timestamp) -> String {
    let Some(start) = time_at(job, "/status/startTime") else {
        return String::new();
    };
    let end = time_at(job, "/status/completionTime").unwrap_or(now);
    human_between(start, end)
}

fn cron_job_row(ctx: &Ctx) -> Vec<Value> {
    let cj = ctx.obj;
    let last_schedule = match at(cj, "/status/lastScheduleTime") {
        None => "<none>".to_string(),
        Some(_) => ctx.since(time_at(cj, "/status/lastScheduleTime")),
    };
    let suspend = if bool_at(cj, "/spec/suspend").unwrap_or(false) {
        "True"
    } else {
        "False"
    };
    let template = "/spec/jobTemplate/spec";
    let [names, images] = container_cells(cj, &format!("{template}/template/spec/containers"));
    vec![
        ctx.name(),
        json!(ctx.str("/spec/schedule")),
        json!(or_placeholder(ctx.str("/spec/timeZone"), "<none>")),
        json!(suspend),
        json!(list_at(cj, "/status/active").len()),
        json!(last_schedule),
        ctx.age(),
        names,
        images,
        json!(format_label_selector(cj, &format!("{template}/selector"))),
    ]
}

// ---------------------------------------------------------------------------
// Services and networking
// ---------------------------------------------------------------------------

fn service_row(ctx: &Ctx) -> Vec<Value> {
    let svc = ctx.obj;
    let service_type = or_placeholder(ctx.str("/spec/type"), "ClusterIP");
    vec![
        ctx.name(),
        json!(service_type),
        json!(cluster_ip(svc)),
        json!(external_ip(svc, &service_type)),
        json!(or_placeholder(&service_ports(svc), "<none>")),
        ctx.age(),
        json!(format_labels(svc, "/spec/selector")),
    ]
}

/// `clusterIPs[0]`, else `clusterIP`, else "<none>".
fn cluster_ip(svc: &Value) -> String {
    match list_at(svc, "/spec/clusterIPs").first() {
        Some(first) => first.as_str().unwrap_or("").to_string(),
        None => or_placeholder(str_at(svc, "/spec/clusterIP"), "<none>"),
    }
}

/// The EXTERNAL-IP cell: external IPs, load-balancer ingress, "<pending>" or "<none>".
fn external_ip(svc: &Value, service_type: &str) -> String {
    let external: Vec<&str> = list_at(svc, "/spec/externalIPs")
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match service_type {
        "ClusterIP" | "NodePort" => or_placeholder(&external.join(","), "<none>"),
        "LoadBalancer" => {
            let ingress = load_balancer_ingress(svc, "/status/loadBalancer/ingress");
            let all: Vec<&str> = ingress
                .split(',')
                .filter(|s| !s.is_empty())
                .chain(external)
                .collect();
            or_placeholder(&all.join(","), "<pending>")
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// "80/TCP,443:30443/TCP".
fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = list_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = or_placeholder(str_at(p, "/protocol"), "TCP");
            let port = int0(p, "/port");
            match int0(p, "/nodePort") {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

fn endpoints_row(ctx: &Ctx) -> Vec<Value> {
    vec![ctx.name(), json!(format_endpoints(ctx.obj)), ctx.age()]
}

/// Every "ip:port" (or bare ip for a subset without ports), three at most then "+ N more...".
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = list_at(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut all = Vec::new();
    for subset in subsets {
        let ips: Vec<&str> = list_at(subset, "/addresses")
            .iter()
            .map(|a| str_at(a, "/ip"))
            .collect();
        let ports = list_at(subset, "/ports");
        if ports.is_empty() {
            all.extend(ips.iter().map(|ip| ip.to_string()));
        }
        for port in ports {
            let number = int0(port, "/port");
            all.extend(ips.iter().map(|ip| join_host_port(ip, number)));
        }
    }
    list_with_more(&all).unwrap_or_default()
}

fn endpoint_slice_row(ctx: &Ctx) -> Vec<Value> {
    let slice = ctx.obj;
    let ports: Vec<String> = list_at(slice, "/ports")
        .iter()
        .map(|p| match (int_at(p, "/port"), at(p, "/name")) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.as_str().unwrap_or("").to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = list_at(slice, "/endpoints")
        .iter()
        .flat_map(|e| list_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        ctx.name(),
        json!(ctx.str("/addressType")),
        json!(list_with_more(&ports).unwrap_or_else(|| "<unset>".into())),
        json!(list_with_more(&addresses).unwrap_or_else(|| "<unset>".into())),
        ctx.age(),
    ]
}

fn ingress_row(ctx: &Ctx) -> Vec<Value> {
    let ingress = ctx.obj;
    let ports = if list_at(ingress, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        ctx.name(),
        json!(or_placeholder(ctx.str("/spec/ingressClassName"), "<none>")),
        json!(ingress_hosts(ingress)),
        json!(load_balancer_ingress(
            ingress,
            "/status/loadBalancer/ingress"
        )),
        json!(ports),
        ctx.age(),
    ]
}

/// The rules' hosts, three at most then "+ N more..." (N counts every further rule,
/// as upstream), "*" when no rule names a host.
fn ingress_hosts(ingress: &Value) -> String {
    const MAX: usize = 3;
    let rules = list_at(ingress, "/spec/rules");
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= hosts.len() == MAX;
        let host = str_at(rule, "/host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    match (hosts.is_empty(), more) {
        (true, _) => "*".to_string(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - MAX),
        (false, false) => hosts.join(","),
    }
}

// ---------------------------------------------------------------------------
// Configuration, identity, cluster
// ---------------------------------------------------------------------------

fn config_map_row(ctx: &Ctx) -> Vec<Value> {
    let count = map_len(ctx.obj, "/data") + map_len(ctx.obj, "/binaryData");
    vec![ctx.name(), json!(count), ctx.age()]
}

fn secret_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(or_placeholder(ctx.str("/type"), "Opaque")),
        json!(secret_data_count(ctx.obj)),
        ctx.age(),
    ]
}

/// Keys of `data`, plus any `stringData` key not in it (the API server merges them on write).
fn secret_data_count(secret: &Value) -> usize {
    let data = obj_at(secret, "/data");
    let extra = obj_at(secret, "/stringData").map_or(0, |string_data| {
        string_data
            .keys()
            .filter(|k| !data.is_some_and(|d| d.contains_key(*k)))
            .count()
    });
    data.map_or(0, Map::len) + extra
}

fn service_account_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(list_at(ctx.obj, "/secrets").len()),
        ctx.age(),
    ]
}

fn namespace_row(ctx: &Ctx) -> Vec<Value> {
    vec![ctx.name(), json!(ctx.str("/status/phase")), ctx.age()]
}

fn lease_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(ctx.str("/spec/holderIdentity")),
        ctx.age(),
    ]
}

fn node_row(ctx: &Ctx) -> Vec<Value> {
    let node = ctx.obj;
    let info = |field: &str| {
        or_placeholder(
            str_at(node, &format!("/status/nodeInfo/{field}")),
            "<unknown>",
        )
    };
    vec![
        ctx.name(),
        json!(node_status(node)),
        json!(or_placeholder(&node_roles(node).join(","), "<none>")),
        ctx.age(),
        json!(ctx.str("/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// "Ready", "NotReady" or "Unknown", then ",SchedulingDisabled" when cordoned.
fn node_status(node: &Value) -> String {
    let ready = list_at(node, "/status/conditions")
        .iter()
        .rfind(|c| str_at(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if bool_at(node, "/spec/unschedulable") == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Sorted roles from `node-role.kubernetes.io/<role>` keys and the `kubernetes.io/role` value.
fn node_roles(node: &Value) -> Vec<&str> {
    let Some(labels) = obj_at(node, "/metadata/labels") else {
        return Vec::new();
    };
    let roles: BTreeSet<&str> = labels
        .iter()
        .filter_map(
            |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) => Some(role),
                None if key == "kubernetes.io/role" => value.as_str(),
                None => None,
            },
        )
        .filter(|role| !role.is_empty())
        .collect();
    roles.into_iter().collect()
}

/// The node's first address of `kind`, "<none>" without one.
fn node_address(node: &Value, kind: &str) -> String {
    list_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == kind)
        .map_or_else(
            || "<none>".to_string(),
            |a| str_at(a, "/address").to_string(),
        )
}

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

fn event_row(ctx: &Ctx) -> Vec<Value> {
    let event = ctx.obj;
    let (last_seen, first_seen, count) = event_times(ctx);
    let involved = set_at(event, "/involvedObject")
        .or_else(|| set_at(event, "/regarding"))
        .unwrap_or(&Value::Null);
    vec![
        json!(last_seen),
        json!(ctx.str("/type")),
        json!(ctx.str("/reason")),
        json!(event_object(involved)),
        json!(str_at(involved, "/fieldPath")),
        json!(event_source(event)),
        json!(first_str(event, &["/message", "/note"]).trim()),
        json!(first_seen),
        json!(count),
        ctx.name(),
    ]
}

/// Last seen, first seen and count, with upstream's fallbacks: `eventTime` for a missing
/// first timestamp, first for a missing last, and the series when there is one.
fn event_times(ctx: &Ctx) -> (String, String, i64) {
    let event = ctx.obj;
    let time = |pointers: &[&str]| pointers.iter().find_map(|p| time_at(event, p));
    let first_seen = match time(&["/firstTimestamp", "/deprecatedFirstTimestamp"]) {
        Some(first) => ctx.since(Some(first)),
        None => ctx.since(time(&["/eventTime"])),
    };
    let mut last_seen = match time(&["/lastTimestamp", "/deprecatedLastTimestamp"]) {
        Some(last) => ctx.since(Some(last)),
        None => first_seen.clone(),
    };
    let mut count = int_at(event, "/count")
        .or_else(|| int_at(event, "/deprecatedCount"))
        .unwrap_or(0);
    if let Some(series) = set_at(event, "/series") {
        last_seen = ctx.since(time_at(series, "/lastObservedTime"));
        count = int0(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    (last_seen, first_seen, count)
}

/// "kind/name" with the kind lower-cased, or the kind alone without a name.
fn event_object(involved: &Value) -> String {
    let kind = str_at(involved, "/kind").to_lowercase();
    match str_at(involved, "/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    }
}

/// "component, host", falling back to the reporting controller and instance.
fn event_source(event: &Value) -> String {
    let component = first_str(
        event,
        &[
            "/source/component",
            "/deprecatedSource/component",
            "/reportingController",
        ],
    );
    let host = first_str(
        event,
        &[
            "/source/host",
            "/deprecatedSource/host",
            "/reportingInstance",
        ],
    );
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed "now" of the tests.
    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("valid test time")
    }

    /// `now` minus `seconds`, as an RFC 3339 string.
    fn ago(seconds: i64) -> String {
        let t = Timestamp::from_second(now().as_second() - seconds).expect("valid test time");
        t.to_string()
    }

    /// The cells of `kind` for `obj` keyed by column name.
    fn row(kind: &str, obj: &Value) -> std::collections::BTreeMap<String, Value> {
        let names: Vec<String> = columns(kind)
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        let values = cells(kind, obj, now());
        assert_eq!(names.len(), values.len(), "{kind}");
        names.into_iter().zip(values).collect()
    }

    fn cell(kind: &str, obj: &Value, column: &str) -> Value {
        row(kind, obj)
            .remove(column)
            .unwrap_or_else(|| panic!("{kind} has no column {column}"))
    }

    const KINDS: &[&str] = &[
        "Pod",
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "CronJob",
        "Service",
        "Endpoints",
        "EndpointSlice",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Namespace",
        "Node",
        "Event",
        "Ingress",
        "Lease",
        "Widget",
    ];

    #[test]
    fn human_duration_matches_upstream_examples() {
        let (s, m, h, d) = (1u64, 60u64, 3600u64, 86400u64);
        let cases = [
            (s, "1s"),
            (70 * s, "70s"),
            (190 * s, "3m10s"),
            (70 * m, "70m"),
            (47 * h, "47h"),
            (49 * h, "2d1h"),
            ((8 * 24 + 2) * h, "8d"),
            (367 * d, "367d"),
            ((365 * 2 * 24 + 25) * h, "2y1d"),
            ((365 * 8 * 24 + 2) * h, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn human_duration_matches_upstream_boundaries() {
        let ms = Duration::from_millis(1);
        let secs = Duration::from_secs;
        let (m, h, d, y) = (60, 3600, 86400, 365 * 86400);
        let cases = [
            (secs(0), "0s"),
            (secs(1) - ms, "0s"),
            (secs(59), "59s"),
            (secs(90), "90s"),
            (secs(2 * m) - ms, "119s"),
            (secs(2 * m), "2m"),
            (secs(2 * m + 1), "2m1s"),
            (secs(10 * m) - ms, "9m59s"),
            (secs(10 * m), "10m"),
            (secs(10 * m + 1), "10m"),
            (secs(3 * h) - ms, "179m"),
            (secs(3 * h), "3h"),
            (secs(3 * h + m), "3h1m"),
            (secs(8 * h) - ms, "7h59m"),
            (secs(8 * h), "8h"),
            (secs(8 * h + 59 * m), "8h"),
            (secs(2 * d) - ms, "47h"),
            (secs(2 * d), "2d"),
            (secs(2 * d + h), "2d1h"),
            (secs(8 * d) - ms, "7d23h"),
            (secs(8 * d), "8d"),
            (secs(8 * d + 23 * h), "8d"),
            (secs(2 * y) - ms, "729d"),
            (secs(2 * y), "2y"),
            (secs(2 * y + 23 * h + 59 * m), "2y"),
            (secs(2 * y + d) - ms, "2y"),
            (secs(2 * y + d), "2y1d"),
            (secs(4 * y), "4y"),
            (secs(8 * y) - ms, "7y364d"),
            (secs(8 * y), "8y"),
            (secs(8 * y + 364 * d), "8y"),
            (secs(9 * y), "9y"),
        ];
        for (duration, want) in cases {
            assert_eq!(human_duration(duration), want, "{duration:?}");
        }
    }

    #[test]
    fn ages_tolerate_small_clock_skew_only() {
        let nanos = |secs: i128| secs * NANOS_PER_SECOND;
        assert_eq!(human_nanos(nanos(-2)), "<invalid>");
        assert_eq!(human_nanos(nanos(-2) + 1), "0s");
        let future = json!({"metadata": {"name": "x", "creationTimestamp": ago(-1)}});
        assert_eq!(cell("ConfigMap", &future, "Age"), "0s");
        let far_future = json!({"metadata": {"name": "x", "creationTimestamp": ago(-60)}});
        assert_eq!(cell("ConfigMap", &far_future, "Age"), "<invalid>");
        let unknown = json!({"metadata": {"name": "x"}});
        assert_eq!(cell("ConfigMap", &unknown, "Age"), "<unknown>");
    }

    fn running_pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(3 * 3600)},
            "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.1.0.7",
                "podIPs": [{"ip": "10.1.0.7"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "web", "ready": true, "restartCount": 2,
                    "state": {"running": {"startedAt": ago(300)}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}
                }]
            }
        })
    }

    #[test]
    fn running_pod_with_restarts() {
        let r = row("Pod", &running_pod());
        assert_eq!(r["Name"], "web-1");
        assert_eq!(r["Ready"], "1/1");
        assert_eq!(r["Status"], "Running");
        assert_eq!(r["Restarts"], "2 (5m ago)");
        assert_eq!(r["Age"], "3h");
        assert_eq!(r["IP"], "10.1.0.7");
        assert_eq!(r["Node"], "node-a");
        assert_eq!(r["Nominated Node"], "<none>");
        assert_eq!(r["Readiness Gates"], "<none>");
    }

    #[test]
    fn pending_pods() {
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
                          "status": {"phase": "Pending"}});
        let r = row("Pod", &bare);
        assert_eq!(
            (
                &r["Ready"],
                &r["Status"],
                &r["Restarts"],
                &r["IP"],
                &r["Node"]
            ),
            (
                &json!("0/1"),
                &json!("Pending"),
                &json!("0"),
                &json!("<none>"),
                &json!("<none>")
            )
        );
        let creating = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "b", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]}
        });
        assert_eq!(cell("Pod", &creating, "Status"), "ContainerCreating");
        assert_eq!(cell("Pod", &creating, "Ready"), "0/2");
        let gated = json!({"status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(cell("Pod", &gated, "Status"), "SchedulingGated");
    }

    #[test]
    fn terminating_pods() {
        let mut pod = running_pod();
        pod["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(cell("Pod", &pod, "Status"), "Terminating");
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cell("Pod", &pod, "Status"), "Unknown");
        let done = json!({"metadata": {"deletionTimestamp": ago(5)},
                          "status": {"phase": "Succeeded"}});
        assert_eq!(cell("Pod", &done, "Status"), "Succeeded");
    }

    #[test]
    fn crash_looping_and_terminated_containers() {
        let mut pod = running_pod();
        pod["status"]["containerStatuses"][0]["ready"] = json!(false);
        pod["status"]["containerStatuses"][0]["restartCount"] = json!(7);
        pod["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        let r = row("Pod", &pod);
        assert_eq!(r["Status"], "CrashLoopBackOff");
        assert_eq!(r["Ready"], "0/1");
        assert_eq!(r["Restarts"], "7 (5m ago)");

        let state = |s: Value| {
            json!({"spec": {"containers": [{"name": "a"}]},
                   "status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": s}]}})
        };
        let cases = [
            (
                json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
                "Completed",
            ),
            (
                json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
                "Error",
            ),
            (json!({"terminated": {"exitCode": 3}}), "ExitCode:3"),
            (
                json!({"terminated": {"exitCode": 137, "signal": 9}}),
                "Signal:9",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(cell("Pod", &state(s), "Status"), want);
        }
    }

    #[test]
    fn completed_container_next_to_running_one() {
        let pod = |ready_condition: &str| {
            json!({
                "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": ready_condition}],
                    "containerStatuses": [
                        {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "b", "ready": true, "state": {"running": {}}}
                    ]}
            })
        };
        assert_eq!(cell("Pod", &pod("True"), "Status"), "Running");
        assert_eq!(cell("Pod", &pod("False"), "Status"), "NotReady");
        assert_eq!(cell("Pod", &pod("False"), "Ready"), "1/2");
    }

    #[test]
    fn init_containers() {
        let pod = |statuses: Value| {
            json!({
                "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}],
                         "containers": [{"name": "app"}]},
                "status": {"phase": "Pending", "initContainerStatuses": statuses,
                           "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}
            })
        };
        let running = pod(
            json!([{"name": "i1", "state": {"running": {}}}, {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}]),
        );
        assert_eq!(cell("Pod", &running, "Status"), "Init:0/2");
        let second = pod(
            json!([{"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"running": {}}}]),
        );
        assert_eq!(cell("Pod", &second, "Status"), "Init:1/2");
        let crash = pod(
            json!([{"name": "i1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
        );
        assert_eq!(cell("Pod", &crash, "Status"), "Init:CrashLoopBackOff");
        assert_eq!(cell("Pod", &crash, "Restarts"), "4");
        let failed = pod(json!([{"name": "i1", "state": {"terminated": {"exitCode": 2}}}]));
        assert_eq!(cell("Pod", &failed, "Status"), "Init:ExitCode:2");
        let done = pod(
            json!([{"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"terminated": {"exitCode": 0}}}]),
        );
        assert_eq!(cell("Pod", &done, "Status"), "PodInitializing");
    }

    #[test]
    fn sidecar_init_containers_count_as_containers() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "app"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        });
        let r = row("Pod", &pod);
        assert_eq!(r["Ready"], "2/2");
        assert_eq!(r["Status"], "Running");
        assert_eq!(r["Restarts"], "1");
    }

    #[test]
    fn pod_wide_columns() {
        let mut pod = running_pod();
        pod["status"]["nominatedNodeName"] = json!("node-b");
        pod["spec"]["readinessGates"] =
            json!([{"conditionType": "lb/ready"}, {"conditionType": "x/y"}]);
        pod["status"]["conditions"] = json!([{"type": "lb/ready", "status": "True"}]);
        let r = row("Pod", &pod);
        assert_eq!(r["Nominated Node"], "node-b");
        assert_eq!(r["Readiness Gates"], "1/2");
        pod["status"]["podIPs"] = json!([]);
        assert_eq!(cell("Pod", &pod, "IP"), "10.1.0.7");
    }

    #[test]
    fn deployment_ready_and_wide() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(600)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                     "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                     "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells("Deployment", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("10m"),
                json!("web,log"),
                json!("nginx:1,busybox"),
                json!("app=web,env in (dev,prod),tier=fe"),
            ]
        );
        let empty = json!({"metadata": {"name": "x"}});
        assert_eq!(cell("Deployment", &empty, "Ready"), "0/1");
        assert_eq!(cell("Deployment", &empty, "Selector"), "");
        let bad =
            json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
        assert_eq!(cell("Deployment", &bad, "Selector"), "<invalid>");
    }

    #[test]
    fn replica_daemon_and_stateful_sets() {
        let rs = json!({"metadata": {"name": "web-abc"},
            "spec": {"replicas": 3, "selector": {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}, {"key": "app", "operator": "Exists"}]}},
            "status": {"replicas": 3, "readyReplicas": 1}});
        let r = row("ReplicaSet", &rs);
        assert_eq!(
            (&r["Desired"], &r["Current"], &r["Ready"]),
            (&json!(3), &json!(3), &json!(1))
        );
        assert_eq!(r["Selector"], "app,!canary");
        assert_eq!(cell("ReplicaSet", &json!({}), "Selector"), "<none>");

        let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                       "updatedNumberScheduled": 2, "numberAvailable": 1}});
        let r = row("DaemonSet", &ds);
        assert_eq!(r["Desired"], 2);
        assert_eq!(r["Available"], 1);
        assert_eq!(r["Node Selector"], "kubernetes.io/os=linux");
        assert_eq!(cell("DaemonSet", &json!({}), "Node Selector"), "<none>");

        let sts = json!({"spec": {"replicas": 2}, "status": {"readyReplicas": 2}});
        assert_eq!(cell("StatefulSet", &sts, "Ready"), "2/2");
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let job = json!({"metadata": {"name": "pi"},
            "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": ago(200), "completionTime": ago(100),
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        let r = row("Job", &job);
        assert_eq!(
            (&r["Status"], &r["Completions"], &r["Duration"]),
            (&json!("Complete"), &json!("1/1"), &json!("100s"))
        );
        let queue = json!({"spec": {"parallelism": 3}, "status": {"startTime": ago(30)}});
        let r = row("Job", &queue);
        assert_eq!(
            (&r["Status"], &r["Completions"], &r["Duration"]),
            (&json!("Running"), &json!("0/1 of 3"), &json!("30s"))
        );
        let suspended =
            json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(cell("Job", &suspended, "Status"), "Suspended");
        assert_eq!(cell("Job", &suspended, "Duration"), "");

        let cj = json!({"metadata": {"name": "tick"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": ago(120)}});
        let r = row("CronJob", &cj);
        assert_eq!(
            (
                &r["Schedule"],
                &r["Timezone"],
                &r["Suspend"],
                &r["Active"],
                &r["Last Schedule"]
            ),
            (
                &json!("*/5 * * * *"),
                &json!("<none>"),
                &json!("False"),
                &json!(1),
                &json!("2m")
            )
        );
        assert_eq!(r["Images"], "busybox");
        assert_eq!(r["Selector"], "<none>");
        assert_eq!(cell("CronJob", &json!({}), "Last Schedule"), "<none>");
    }

    #[test]
    fn services() {
        let cluster_ip = json!({"metadata": {"name": "web"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web"}}});
        let r = row("Service", &cluster_ip);
        assert_eq!(
            (
                &r["Type"],
                &r["Cluster-IP"],
                &r["External-IP"],
                &r["Port(s)"],
                &r["Selector"]
            ),
            (
                &json!("ClusterIP"),
                &json!("10.96.0.10"),
                &json!("<none>"),
                &json!("80/TCP,53/UDP"),
                &json!("app=web")
            )
        );

        let node_port = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.1.1",
            "externalIPs": ["1.2.3.4"], "ports": [{"port": 80, "nodePort": 30080}]}});
        let r = row("Service", &node_port);
        assert_eq!(
            (&r["Cluster-IP"], &r["External-IP"], &r["Port(s)"]),
            (
                &json!("10.96.1.1"),
                &json!("1.2.3.4"),
                &json!("80:30080/TCP")
            )
        );

        let pending = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}});
        assert_eq!(cell("Service", &pending, "External-IP"), "<pending>");
        assert_eq!(cell("Service", &pending, "Cluster-IP"), "<none>");
        let assigned = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}}});
        assert_eq!(
            cell("Service", &assigned, "External-IP"),
            "5.6.7.8,lb.example.com,9.9.9.9"
        );

        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let r = row("Service", &external);
        assert_eq!(
            (&r["External-IP"], &r["Port(s)"], &r["Selector"]),
            (&json!("db.example.com"), &json!("<none>"), &json!("<none>"))
        );
        let headless = json!({"spec": {"clusterIP": "None"}});
        assert_eq!(cell("Service", &headless, "Cluster-IP"), "None");
        assert_eq!(cell("Service", &headless, "Type"), "ClusterIP");
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]}
        ]});
        assert_eq!(
            cell("Endpoints", &ep, "Endpoints"),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
        );
        let small = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
                                       {"addresses": [{"ip": "10.0.0.9"}]}]});
        assert_eq!(
            cell("Endpoints", &small, "Endpoints"),
            "[fd00::1]:8080,10.0.0.9"
        );
        assert_eq!(cell("Endpoints", &json!({}), "Endpoints"), "<none>");

        let slice = json!({"addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "metrics"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]});
        let r = row("EndpointSlice", &slice);
        assert_eq!(
            (&r["AddressType"], &r["Ports"], &r["Endpoints"]),
            (
                &json!("IPv4"),
                &json!("80,metrics,*"),
                &json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            )
        );
        let empty = row("EndpointSlice", &json!({}));
        assert_eq!(
            (&empty["Ports"], &empty["Endpoints"]),
            (&json!("<unset>"), &json!("<unset>"))
        );
    }

    #[test]
    fn nodes() {
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(49 * 3600),
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
                           "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.5"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "shoal://0.1"}}});
        assert_eq!(
            cells("Node", &node, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,worker"),
                json!("2d1h"),
                json!("v1.33.0"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("shoal://0.1"),
            ]
        );
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cell("Node", &not_ready, "Status"), "NotReady");
        let bare = row("Node", &json!({"metadata": {"name": "n2"}}));
        assert_eq!(
            (
                &bare["Status"],
                &bare["Roles"],
                &bare["Version"],
                &bare["OS-Image"]
            ),
            (
                &json!("Unknown"),
                &json!("<none>"),
                &json!(""),
                &json!("<unknown>")
            )
        );
    }

    #[test]
    fn config_secrets_accounts_namespaces_leases() {
        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "", "tls.key": ""}});
        let r = row("Secret", &secret);
        assert_eq!(
            (&r["Type"], &r["Data"]),
            (&json!("kubernetes.io/tls"), &json!(2))
        );
        let opaque = json!({"data": {"a": ""}, "stringData": {"a": "x", "b": "y"}});
        assert_eq!(
            (
                cell("Secret", &opaque, "Type"),
                cell("Secret", &opaque, "Data")
            ),
            (json!("Opaque"), json!(2))
        );

        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(cell("ConfigMap", &cm, "Data"), 3);
        let sa = json!({"secrets": [{"name": "t"}]});
        assert_eq!(cell("ServiceAccount", &sa, "Secrets"), 1);
        let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert_eq!(cell("Namespace", &ns, "Status"), "Active");
        let lease = json!({"spec": {"holderIdentity": "node-a"}});
        assert_eq!(cell("Lease", &lease, "Holder"), "node-a");
        assert_eq!(cell("Lease", &json!({}), "Holder"), "");
    }

    #[test]
    fn events() {
        let event = json!({"metadata": {"name": "web-1.17a"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
            "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "count": 5, "firstTimestamp": ago(3600), "lastTimestamp": ago(30)});
        assert_eq!(
            cells("Event", &event, now()),
            vec![
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{web}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(5),
                json!("web-1.17a"),
            ]
        );
        let new_style = json!({"eventTime": "2024-06-01T11:59:50.123456Z", "reportingController": "shoal-scheduler",
            "involvedObject": {"kind": "Node"}, "reason": "Scheduled"});
        let r = row("Event", &new_style);
        assert_eq!(
            (
                &r["Last Seen"],
                &r["First Seen"],
                &r["Count"],
                &r["Object"],
                &r["Source"]
            ),
            (
                &json!("9s"),
                &json!("9s"),
                &json!(1),
                &json!("node"),
                &json!("shoal-scheduler")
            )
        );
        let series =
            json!({"eventTime": ago(600), "series": {"count": 4, "lastObservedTime": ago(60)}});
        let r = row("Event", &series);
        assert_eq!((&r["Last Seen"], &r["Count"]), (&json!("60s"), &json!(4)));
        assert_eq!(cell("Event", &json!({}), "Last Seen"), "<unknown>");
    }

    #[test]
    fn ingresses() {
        let ing = json!({"spec": {"ingressClassName": "nginx",
                "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}],
                "tls": [{"hosts": ["a.example"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"ip": "1.2.3.4"}]}}});
        let r = row("Ingress", &ing);
        assert_eq!(
            (&r["Class"], &r["Hosts"], &r["Address"], &r["Ports"]),
            (
                &json!("nginx"),
                &json!("a.example,b.example,c.example + 2 more..."),
                &json!("1.2.3.4,5.6.7.8"),
                &json!("80, 443")
            )
        );
        let bare = row("Ingress", &json!({"spec": {"rules": [{}]}}));
        assert_eq!(
            (
                &bare["Class"],
                &bare["Hosts"],
                &bare["Address"],
                &bare["Ports"]
            ),
            (&json!("<none>"), &json!("*"), &json!(""), &json!("80"))
        );
    }

    #[test]
    fn wide_columns_have_priority_one() {
        let wide_names = |kind: &str| -> Vec<String> {
            columns(kind)
                .iter()
                .filter(|c| c["priority"] == 1)
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(
            wide_names("Pod"),
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        assert_eq!(
            wide_names("Deployment"),
            ["Containers", "Images", "Selector"]
        );
        assert_eq!(wide_names("StatefulSet"), ["Containers", "Images"]);
        assert_eq!(wide_names("Service"), ["Selector"]);
        assert_eq!(
            wide_names("Node"),
            [
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        assert_eq!(
            wide_names("Event"),
            ["Subobject", "Source", "First Seen", "Count", "Name"]
        );
        assert!(wide_names("Secret").is_empty());
    }

    #[test]
    fn column_definitions_are_well_formed() {
        for kind in KINDS {
            let cols = columns(kind);
            assert!(!cols.is_empty());
            for c in &cols {
                let obj = c.as_object().expect("object");
                let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                assert_eq!(keys.len(), 5, "{kind}: {keys:?}");
                assert!(
                    ["string", "integer", "boolean"].contains(&c["type"].as_str().unwrap_or(""))
                );
                assert!(c["description"].as_str().is_some_and(|d| !d.is_empty()));
                assert_eq!(c["format"] == "name", c["name"] == "Name", "{kind} {c}");
            }
        }
        let pod: Vec<&str> = POD_COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(pod[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    }

    #[test]
    fn unknown_kind_prints_name_and_age() {
        let names: Vec<Value> = columns("Widget")
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, [json!("Name"), json!("Age")]);
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": ago(45)}});
        assert_eq!(cells("Widget", &obj, now()), [json!("w"), json!("45s")]);
        assert_eq!(cells("pod", &running_pod(), now())[1], "1/1");
    }

    /// Objects with wrong types in every place a printer looks.
    fn malformed_objects() -> Vec<Value> {
        let mut objects = vec![
            Value::Null,
            json!(7),
            json!("pod"),
            json!([1, 2]),
            json!({}),
            json!({"metadata": 1, "spec": "x", "status": [1]}),
            json!({"metadata": {"name": 5, "creationTimestamp": "yesterday", "deletionTimestamp": 3, "labels": [1]}}),
        ];
        let wrong = [
            json!(null),
            json!(-1),
            json!("x"),
            json!([null, 1, "a", {}]),
            json!({"a": [1]}),
            json!(true),
        ];
        for w in &wrong {
            objects.push(json!({
                "metadata": {"name": w, "creationTimestamp": w, "labels": w},
                "spec": {"containers": w, "initContainers": w, "replicas": w, "selector": w, "ports": w,
                         "type": w, "clusterIPs": w, "externalIPs": w, "rules": w, "tls": w, "template": w,
                         "jobTemplate": w, "completions": w, "readinessGates": w, "suspend": w, "unschedulable": w},
                "status": {"conditions": w, "containerStatuses": [w, {"state": w, "lastState": {"terminated": w}}],
                           "initContainerStatuses": [w, {"state": {"terminated": w, "waiting": w}}],
                           "podIPs": w, "loadBalancer": {"ingress": w}, "addresses": w, "nodeInfo": w,
                           "active": w, "startTime": w, "series": w},
                "subsets": [w, {"addresses": w, "ports": w}], "endpoints": [w, {"addresses": w}], "ports": [w],
                "data": w, "stringData": w, "binaryData": w, "secrets": w, "type": w,
                "involvedObject": w, "source": w, "series": w, "count": w, "eventTime": w
            }));
            objects.push(json!({"spec": {"selector": {"matchLabels": w, "matchExpressions": [w, {"key": w, "operator": w, "values": w}]}}}));
        }
        objects
    }

    #[test]
    fn malformed_objects_never_panic() {
        for kind in KINDS {
            for obj in malformed_objects() {
                let row = cells(kind, &obj, now());
                assert_eq!(row.len(), columns(kind).len(), "{kind} {obj}");
            }
        }
    }

    #[test]
    fn cells_match_columns_for_every_kind() {
        let samples = [json!({}), running_pod(), json!({"metadata": {"name": "n"}})];
        for kind in KINDS {
            let cols = columns(kind);
            for obj in &samples {
                let row = cells(kind, obj, now());
                assert_eq!(row.len(), cols.len(), "{kind}");
                for (c, v) in cols.iter().zip(&row) {
                    match c["type"].as_str() {
                        Some("integer") => assert!(v.is_i64() || v.is_u64(), "{kind} {c} {v}"),
                        _ => assert!(v.is_string() || v.is_number(), "{kind} {c} {v}"),
                    }
                    if c["format"] == "name" {
                        assert!(v.is_string());
                    }
                }
            }
        }
    }

    #[test]
    fn label_selector_formats() {
        let sel = json!({"matchLabels": {"b": "2"}, "matchExpressions": [
            {"key": "a", "operator": "NotIn", "values": ["y", "x"]},
            {"key": "c", "operator": "Exists"}]});
        assert_eq!(
            selector_string(Some(&sel)),
            Ok("a notin (x,y),b=2,c".to_string())
        );
        assert_eq!(selector_string(None), Ok(String::new()));
        let bad =
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
        assert_eq!(selector_string(Some(&bad)), Err(()));
        let wrapper = json!({"s": bad});
        assert_eq!(format_label_selector(&wrapper, "/s"), "<error>");
    }
}
