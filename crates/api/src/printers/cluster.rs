//! Printers of configuration, identity and cluster objects: ConfigMap, Secret, ServiceAccount, Namespace, Lease, RuntimeClass, Node, and Event.

use super::*;

// ---------------------------------------------------------------------------
// Configuration, identity, cluster
// ---------------------------------------------------------------------------

pub(super) fn config_map_row(ctx: &Ctx) -> Vec<Value> {
    let count = map_len(ctx.obj, "/data") + map_len(ctx.obj, "/binaryData");
    vec![ctx.name(), json!(count), ctx.age()]
}

pub(super) fn secret_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(or_placeholder(ctx.str("/type"), "Opaque")),
        json!(secret_data_count(ctx.obj)),
        ctx.age(),
    ]
}

/// Keys of `data`, plus any `stringData` key not in it (the API server merges them on write).
pub(super) fn secret_data_count(secret: &Value) -> usize {
    let data = obj_at(secret, "/data");
    let extra = obj_at(secret, "/stringData").map_or(0, |string_data| {
        string_data
            .keys()
            .filter(|k| !data.is_some_and(|d| d.contains_key(*k)))
            .count()
    });
    data.map_or(0, Map::len) + extra
}

pub(super) fn service_account_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(list_at(ctx.obj, "/secrets").len()),
        ctx.age(),
    ]
}

pub(super) fn namespace_row(ctx: &Ctx) -> Vec<Value> {
    vec![ctx.name(), json!(ctx.str("/status/phase")), ctx.age()]
}

pub(super) fn lease_row(ctx: &Ctx) -> Vec<Value> {
    vec![
        ctx.name(),
        json!(ctx.str("/spec/holderIdentity")),
        ctx.age(),
    ]
}

pub(super) fn runtime_class_row(ctx: &Ctx) -> Vec<Value> {
    vec![ctx.name(), json!(ctx.str("/handler")), ctx.age()]
}

pub(super) fn node_row(ctx: &Ctx) -> Vec<Value> {
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
pub(super) fn node_status(node: &Value) -> String {
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
pub(super) fn node_roles(node: &Value) -> Vec<&str> {
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
pub(super) fn node_address(node: &Value, kind: &str) -> String {
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

pub(super) fn event_row(ctx: &Ctx) -> Vec<Value> {
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
pub(super) fn event_times(ctx: &Ctx) -> (String, String, i64) {
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
pub(super) fn event_object(involved: &Value) -> String {
    let kind = str_at(involved, "/kind").to_lowercase();
    match str_at(involved, "/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    }
}

/// "component, host", falling back to the reporting controller and instance.
pub(super) fn event_source(event: &Value) -> String {
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
