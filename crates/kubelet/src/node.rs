//! The kubelet's own Node object: what it knows of its node
//! ([`NodeSpec`]), the object built from it, and its registration (create,
//! or refresh status and labels while keeping what others set).

use serde_json::{json, Value};

use shoal_model::errors::{ApiError, ApiResult};
use shoal_model::objects;
use shoal_model::podcidr::{PodCidrs, PodSlot};
use shoal_model::quantity::Quantity;
use shoal_store::command::{Op, Txn};
use shoal_store::{ReadRequest, Store};

use crate::{nodes, Handler, NodeImage};

/// What the kubelet knows of its node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub address: String,
    pub region: String,
    pub zone: String,
    pub milli_cpu: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The Node object of `spec` (labels, capacity, addresses, conditions),
/// whose runtime is `runtime` offering `handlers`: each handler able to
/// start pods now is a label (`runtime.shoal.io/<handler>=true`, what the
/// built-in RuntimeClasses select), and the `ContainerRuntimeUnhealthy`
/// condition (node-problem-detector's name) says which is not and why.
pub fn node_object(
    spec: &NodeSpec,
    runtime: &str,
    handlers: &[Handler],
    images: &[NodeImage],
) -> Value {
    let now = objects::now();
    let capacity = json!({
        "cpu": Quantity::from_milli(saturating(spec.milli_cpu)).to_string(),
        "memory": Quantity::from_bytes(saturating(spec.memory_bytes)).to_string(),
        "pods": Quantity::from_int(saturating(spec.pods)).to_string(),
        "ephemeral-storage": "100Gi",
    });
    let condition = |ty: &str, status: &str, reason: &str, message: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let mut labels = json!({
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "topology.kubernetes.io/region": spec.region,
        "topology.kubernetes.io/zone": spec.zone,
    });
    for h in handlers.iter().filter(|h| h.problem.is_none()) {
        labels[format!("{}{}", objects::RUNTIME_LABEL_PREFIX, h.name)] = json!("true");
    }
    let problems: Vec<String> = handlers
        .iter()
        .filter_map(|h| Some(format!("{}: {}", h.name, h.problem.as_ref()?)))
        .collect();
    let runtime_health = if problems.is_empty() {
        condition(
            "ContainerRuntimeUnhealthy",
            "False",
            "ContainerRuntimeIsHealthy",
            "every container runtime of the node answers",
        )
    } else {
        condition(
            "ContainerRuntimeUnhealthy",
            "True",
            "ContainerRuntimeIsUnhealthy",
            &problems.join("; "),
        )
    };
    let runtime_handlers: Vec<Value> = handlers
        .iter()
        .map(|h| json!({"name": h.name, "features": {"recursiveReadOnlyMounts": false, "userNamespaces": false}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": spec.address},
                {"type": "Hostname", "address": spec.name},
            ],
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                runtime_health,
            ],
            "runtimeHandlers": runtime_handlers,
            "images": images.iter().map(|i| json!({"names": i.names, "sizeBytes": i.size_bytes})).collect::<Vec<_>>(),
            "nodeInfo": {
                "kubeletVersion": format!("v1.33.0-shoal-{}", shoal_fabric::VERSION),
                "kubeProxyVersion": "",
                "containerRuntimeVersion": format!("{runtime}://{}", shoal_fabric::VERSION),
                "operatingSystem": "linux",
                "architecture": arch(),
                "osImage": "shoal",
                "kernelVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The taint a node carries while its default runtime cannot start pods:
/// the pods that name no RuntimeClass would land on it and wait.
pub const RUNTIME_UNAVAILABLE_TAINT: &str = "node.shoal.io/runtime-unavailable";

/// Adds the runtime-unavailable taint to `node` (NoSchedule) while its
/// default handler has a problem, and removes it otherwise; other taints
/// (users', controllers') stay as they are.
pub fn set_runtime_taint(node: &mut Value, handlers: &[Handler]) {
    let down = handlers.iter().any(|h| h.default && h.problem.is_some());
    if !node.get("spec").is_some_and(Value::is_object) {
        node["spec"] = json!({});
    }
    let taints = node["spec"]
        .as_object_mut()
        .map(|s| s.entry("taints").or_insert_with(|| json!([])));
    let Some(list) = taints.and_then(Value::as_array_mut) else {
        return;
    };
    list.retain(|t| t["key"] != RUNTIME_UNAVAILABLE_TAINT);
    if down {
        list.push(json!({"key": RUNTIME_UNAVAILABLE_TAINT, "effect": "NoSchedule"}));
    }
    if list.is_empty() {
        if let Some(spec) = node["spec"].as_object_mut() {
            spec.remove("taints");
        }
    }
}

/// Creates the Node with its pod CIDR from `range` (claimed in the same
/// transaction), or refreshes its status and labels (keeping what users
/// and controllers set: spec, taints, other labels, and the pod CIDR it
/// holds). Returns the node's slot of the pod range.
pub(crate) async fn register(
    store: &Store,
    spec: &NodeSpec,
    runtime: &str,
    handlers: &[Handler],
    images: &[NodeImage],
    range: &PodCidrs,
) -> ApiResult<PodSlot> {
    let key = nodes().key("", &spec.name);
    let fresh = node_object(spec, runtime, handlers, images);
    loop {
        let current = store.read(ReadRequest::key(key.clone())).await?;
        let (mut obj, mut txn) = match current.kvs.first() {
            None => {
                let mut obj = objects::prepare_create(nodes(), "", fresh.clone())?;
                set_runtime_taint(&mut obj, handlers);
                (obj, Txn::create(key.clone(), Vec::new()))
            }
            Some(kv) => {
                let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
                    ApiError::new(
                        500,
                        "InternalError",
                        format!("stored Node is not JSON: {e}"),
                    )
                })?;
                obj["status"] = fresh["status"].clone();
                if let (Some(have), Some(want)) = (
                    obj.pointer_mut("/metadata/labels")
                        .and_then(Value::as_object_mut),
                    fresh.pointer("/metadata/labels").and_then(Value::as_object),
                ) {
                    // The runtime labels are the kubelet's: those of
                    // handlers unable now go.
                    have.retain(|k, _| {
                        !k.starts_with(objects::RUNTIME_LABEL_PREFIX) || want.contains_key(k)
                    });
                    for (k, v) in want {
                        have.insert(k.clone(), v.clone());
                    }
                }
                set_runtime_taint(&mut obj, handlers);
                (obj, Txn::update(key.clone(), Vec::new(), kv.mod_rev))
            }
        };
        let slot = range.assign(store, &mut obj, &mut txn).await?;
        if let Some(Op::Put { value, .. }) = txn.success.first_mut() {
            *value = objects::stored_bytes(&obj);
        }
        if store.write(txn).await?.succeeded {
            return Ok(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(name: &str, default: bool, problem: Option<&str>) -> Handler {
        Handler {
            name: name.into(),
            default,
            problem: problem.map(str::to_string),
        }
    }

    #[test]
    fn the_default_runtime_down_taints_the_node_and_nothing_else_does() {
        let user = json!({"key": "dedicated", "value": "x", "effect": "NoSchedule"});
        let mut node = json!({"spec": {"taints": [user.clone()]}});
        // The other runtime down: no taint (its label goes instead).
        set_runtime_taint(
            &mut node,
            &[
                handler("process", true, None),
                handler("docker", false, Some("down")),
            ],
        );
        assert_eq!(node["spec"]["taints"], json!([user.clone()]));
        // The default down: tainted, the user's taint kept.
        set_runtime_taint(&mut node, &[handler("docker", true, Some("down"))]);
        assert_eq!(
            node["spec"]["taints"],
            json!([user.clone(), {"key": RUNTIME_UNAVAILABLE_TAINT, "effect": "NoSchedule"}])
        );
        // Up again: only ours goes; a node with no taints left has none.
        set_runtime_taint(&mut node, &[handler("docker", true, None)]);
        assert_eq!(node["spec"]["taints"], json!([user]));
        let mut bare = json!({"spec": {}});
        set_runtime_taint(&mut bare, &[handler("docker", true, None)]);
        assert!(bare["spec"].get("taints").is_none());
    }
}
