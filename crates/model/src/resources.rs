//! The resources the Kubernetes API serves, as one table: group, version,
//! kind, plural, short names, scope, categories and subresources. Discovery
//! (`/api/v1`, `/apis/{group}/{version}`), routing and the store layout are
//! all read from it, so adding a resource is adding a row.
//!
//! Store keys follow Kubernetes' etcd layout: `/registry/{plural}/{ns}/{name}`
//! for namespaced objects and `/registry/{plural}/{name}` for cluster-scoped
//! ones (so secrets land under `/registry/secrets/`, which the store seals).

use serde_json::{json, Value};

/// The verbs of a resource with every operation.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub categories: &'static [&'static str],
    /// Subresources: "status", "scale", "log".
    pub subresources: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)] // one table row, named by position
const fn r(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        categories,
        subresources,
    }
}

/// The served resources, one handle each: `&PODS` instead of a lookup by
/// name (the categories are upstream's: `all` where Kubernetes has it).
/// `Namespace`.
pub const NAMESPACES: Resource = r(
    "",
    "Namespace",
    "namespaces",
    "namespace",
    &["ns"],
    false,
    &[],
    &["status"],
);

/// `Node`.
pub const NODES: Resource = r(
    "",
    "Node",
    "nodes",
    "node",
    &["no"],
    false,
    &[],
    &["status"],
);

/// `Pod`.
pub const PODS: Resource = r(
    "",
    "Pod",
    "pods",
    "pod",
    &["po"],
    true,
    &["all"],
    &["status", "log", "exec", "attach", "portforward", "eviction"],
);

/// `Service`.
pub const SERVICES: Resource = r(
    "",
    "Service",
    "services",
    "service",
    &["svc"],
    true,
    &["all"],
    &["status"],
);

/// `Endpoints`.
pub const ENDPOINTS: Resource = r(
    "",
    "Endpoints",
    "endpoints",
    "endpoints",
    &["ep"],
    true,
    &[],
    &[],
);

/// `ConfigMap`.
pub const CONFIGMAPS: Resource = r(
    "",
    "ConfigMap",
    "configmaps",
    "configmap",
    &["cm"],
    true,
    &[],
    &[],
);

/// `Secret`.
pub const SECRETS: Resource = r("", "Secret", "secrets", "secret", &[], true, &[], &[]);

/// `ServiceAccount`.
pub const SERVICEACCOUNTS: Resource = r(
    "",
    "ServiceAccount",
    "serviceaccounts",
    "serviceaccount",
    &["sa"],
    true,
    &[],
    &[],
);

/// `Event`.
pub const EVENTS: Resource = r("", "Event", "events", "event", &["ev"], true, &[], &[]);

/// `Deployment`.
pub const DEPLOYMENTS: Resource = r(
    "apps",
    "Deployment",
    "deployments",
    "deployment",
    &["deploy"],
    true,
    &["all"],
    &["status", "scale"],
);

/// `ReplicaSet`.
pub const REPLICASETS: Resource = r(
    "apps",
    "ReplicaSet",
    "replicasets",
    "replicaset",
    &["rs"],
    true,
    &["all"],
    &["status", "scale"],
);

/// `DaemonSet`.
pub const DAEMONSETS: Resource = r(
    "apps",
    "DaemonSet",
    "daemonsets",
    "daemonset",
    &["ds"],
    true,
    &["all"],
    &["status"],
);

/// `ControllerRevision`: a DaemonSet's template history (the controller
/// writes one per template; `kubectl rollout history|undo daemonset`
/// reads them).
pub const CONTROLLERREVISIONS: Resource = r(
    "apps",
    "ControllerRevision",
    "controllerrevisions",
    "controllerrevision",
    &[],
    true,
    &[],
    &[],
);

/// `StatefulSet`.
pub const STATEFULSETS: Resource = r(
    "apps",
    "StatefulSet",
    "statefulsets",
    "statefulset",
    &["sts"],
    true,
    &["all"],
    &["status", "scale"],
);

/// `Job`.
pub const JOBS: Resource = r(
    "batch",
    "Job",
    "jobs",
    "job",
    &[],
    true,
    &["all"],
    &["status"],
);

/// `CronJob`: Jobs on a schedule.
pub const CRONJOBS: Resource = r(
    "batch",
    "CronJob",
    "cronjobs",
    "cronjob",
    &["cj"],
    true,
    &["all"],
    &["status"],
);

/// `Ingress`.
pub const INGRESSES: Resource = r(
    "networking.k8s.io",
    "Ingress",
    "ingresses",
    "ingress",
    &["ing"],
    true,
    &[],
    &["status"],
);

/// `IngressClass` (`shoal` is the built-in one, made at bootstrap).
pub const INGRESSCLASSES: Resource = r(
    "networking.k8s.io",
    "IngressClass",
    "ingressclasses",
    "ingressclass",
    &[],
    false,
    &[],
    &[],
);

/// `RuntimeClass` (`process` and `docker` are made at bootstrap; the
/// kubelet runs a pod with the handler its class names).
pub const RUNTIMECLASSES: Resource = r(
    "node.k8s.io",
    "RuntimeClass",
    "runtimeclasses",
    "runtimeclass",
    &[],
    false,
    &[],
    &[],
);

/// `EndpointSlice`.
pub const ENDPOINTSLICES: Resource = r(
    "discovery.k8s.io",
    "EndpointSlice",
    "endpointslices",
    "endpointslice",
    &[],
    true,
    &[],
    &[],
);

/// `Lease`.
pub const LEASES: Resource = r(
    "coordination.k8s.io",
    "Lease",
    "leases",
    "lease",
    &[],
    true,
    &[],
    &[],
);

/// `PersistentVolume`: a piece of storage (a directory on one node, for
/// the built-in local-path provisioner and for users' hostPath volumes),
/// bound to one claim by the volume controller.
pub const PERSISTENTVOLUMES: Resource = r(
    "",
    "PersistentVolume",
    "persistentvolumes",
    "persistentvolume",
    &["pv"],
    false,
    &[],
    &["status"],
);

/// `PersistentVolumeClaim`: a pod's request for storage.
pub const PERSISTENTVOLUMECLAIMS: Resource = r(
    "",
    "PersistentVolumeClaim",
    "persistentvolumeclaims",
    "persistentvolumeclaim",
    &["pvc"],
    true,
    &[],
    &["status"],
);

/// `StorageClass` (storage.k8s.io): how claims of a class are provisioned
/// and when they bind (`shoal-local`, the default, is built in).
pub const STORAGECLASSES: Resource = r(
    "storage.k8s.io",
    "StorageClass",
    "storageclasses",
    "storageclass",
    &["sc"],
    false,
    &[],
    &[],
);

/// `PodDisruptionBudget` (policy): how many of an application's pods may
/// be down at once by voluntary disruption (evictions through
/// `pods/eviction`, so `kubectl drain`).
pub const PODDISRUPTIONBUDGETS: Resource = r(
    "policy",
    "PodDisruptionBudget",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    &["pdb"],
    true,
    &[],
    &["status"],
);

/// Every served resource, in discovery order.
pub const RESOURCES: &[Resource] = &[
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    ENDPOINTS,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    EVENTS,
    DEPLOYMENTS,
    REPLICASETS,
    DAEMONSETS,
    CONTROLLERREVISIONS,
    STATEFULSETS,
    JOBS,
    CRONJOBS,
    INGRESSES,
    INGRESSCLASSES,
    ENDPOINTSLICES,
    LEASES,
    RUNTIMECLASSES,
    PERSISTENTVOLUMES,
    PERSISTENTVOLUMECLAIMS,
    STORAGECLASSES,
    PODDISRUPTIONBUDGETS,
];

/// The named groups, in the order `/apis` lists them.
pub const GROUPS: &[&str] = &[
    "apps",
    "batch",
    "networking.k8s.io",
    "discovery.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "storage.k8s.io",
    "policy",
];

/// The store prefix of every Kubernetes object.
pub const REGISTRY: &str = "/registry/";

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, `pods`: how Kubernetes names a resource in
    /// messages ("deployments.apps \"web\" not found").
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, `Pod`: the kind as Invalid messages name it.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn has(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// The store key of one object (`ns` is ignored for cluster scope).
    pub fn key(&self, ns: &str, name: &str) -> Vec<u8> {
        if self.namespaced {
            format!("{REGISTRY}{}/{ns}/{name}", self.plural).into_bytes()
        } else {
            format!("{REGISTRY}{}/{name}", self.plural).into_bytes()
        }
    }

    /// The store prefix of a list: one namespace, or all of them (`None`).
    pub fn prefix(&self, ns: Option<&str>) -> Vec<u8> {
        match ns {
            Some(ns) if self.namespaced => format!("{REGISTRY}{}/{ns}/", self.plural),
            _ => format!("{REGISTRY}{}/", self.plural),
        }
        .into_bytes()
    }

    /// The APIResource entries (the resource, then its subresources) of
    /// an APIResourceList.
    pub fn discovery(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ALL_VERBS,
            "shortNames": self.short_names,
            "categories": self.categories,
            "storageVersionHash": "",
        })];
        for sub in self.subresources {
            let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match *sub {
                "scale" => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
                "log" => ("Pod", "", "", &["get"]),
                "exec" => ("PodExecOptions", "", "", &["create", "get"]),
                "attach" => ("PodAttachOptions", "", "", &["create", "get"]),
                "portforward" => ("PodPortForwardOptions", "", "", &["create", "get"]),
                "eviction" => ("Eviction", "policy", "v1", &["create"]),
                _ => (self.kind, "", "", &["get", "patch", "update"]),
            };
            let mut entry = json!({
                "name": format!("{}/{sub}", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !group.is_empty() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            out.push(entry);
        }
        out
    }
}

/// The resource `plural` of `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The resource a store key belongs to, with the object's namespace and
/// name.
pub fn of_key(key: &[u8]) -> Option<(&'static Resource, &str, &str)> {
    let key = std::str::from_utf8(key).ok()?.strip_prefix(REGISTRY)?;
    let (plural, rest) = key.split_once('/')?;
    let res = RESOURCES.iter().find(|r| r.plural == plural)?;
    if res.namespaced {
        let (ns, name) = rest.split_once('/')?;
        Some((res, ns, name))
    } else {
        Some((res, "", rest))
    }
}

/// The APIResourceList of one group version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| r.discovery())
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// The APIGroup of one named group.
pub fn group(name: &str) -> Option<Value> {
    GROUPS.contains(&name).then(|| {
        let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
        json!({
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": [gv.clone()],
            "preferredVersion": gv,
        })
    })
}

/// The APIGroupList (`/apis`).
pub fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .filter_map(|g| group(g))
        .map(|mut g| {
            if let Some(o) = g.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            g
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_etcd_layout_and_parse_back() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key("default", "web-1"),
            b"/registry/pods/default/web-1"
        );
        assert_eq!(pods.prefix(Some("default")), b"/registry/pods/default/");
        assert_eq!(pods.prefix(None), b"/registry/pods/");
        let (r, ns, name) = of_key(b"/registry/pods/default/web-1").unwrap();
        assert_eq!((r.kind, ns, name), ("Pod", "default", "web-1"));
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key("ignored", "n1"), b"/registry/nodes/n1");
        let (r, ns, name) = of_key(b"/registry/nodes/n1").unwrap();
        assert_eq!((r.kind, ns, name), ("Node", "", "n1"));
        assert!(of_key(b"/user/x").is_none());
        assert!(of_key(b"/registry/widgets/a/b").is_none());
        // Secrets land where the store seals them.
        let secrets = find("", "v1", "secrets").unwrap();
        assert!(shoal_store::secrets::is_secret(
            &secrets.key("default", "s")
        ));
    }

    #[test]
    fn discovery_lists_short_names_categories_and_subresources() {
        let list = resource_list("apps", "v1").unwrap();
        assert_eq!(list["groupVersion"], "apps/v1");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        assert!(names.contains(&"deployments/status"));
        let deploy = &list["resources"][0];
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        let scale = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        assert!(resource_list("nope", "v1").is_none());
        // Every named group with resources is listed, and only those.
        for g in GROUPS {
            assert!(resource_list(g, "v1").is_some(), "{g}");
        }
        assert_eq!(
            group_list()["groups"].as_array().unwrap().len(),
            GROUPS.len()
        );
    }

    #[test]
    fn kinds_and_plurals_are_unique() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert_ne!(a.plural, b.plural);
                assert_ne!(a.kind, b.kind);
            }
        }
        assert_eq!(
            by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert!(by_kind("v1", "Deployment").is_none());
    }
}
