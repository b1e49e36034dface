//! Column definitions per kind, with upstream's names, types, descriptions and priorities.

use super::*;

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

/// A column's JSON type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ty {
    Str,
    Int,
    Bool,
}

impl Ty {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Bool => "boolean",
        }
    }
}

/// One `TableColumnDefinition`.
pub(super) struct Col {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) format: &'static str,
    pub(super) priority: u8,
    pub(super) description: &'static str,
}

impl Col {
    pub(super) fn to_json(&self) -> Value {
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
pub(super) const fn col(name: &'static str, ty: Ty, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown only with `-o wide` (priority 1).
pub(super) const fn wide(name: &'static str, ty: Ty, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority: 1,
        description,
    }
}

use Ty::{Bool, Int, Str};

pub(super) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(super) const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(super) const SELECTOR_DOC: &str = "Label query over pods that should match the replica count. It must match the pod template's labels.";

pub(super) const NAME: Col = Col {
    name: "Name",
    ty: Str,
    format: "name",
    priority: 0,
    description: NAME_DOC,
};
pub(super) const AGE: Col = col("Age", Str, AGE_DOC);
pub(super) const CONTAINERS: Col = wide(
    "Containers",
    Str,
    "Names of each container in the template.",
);
pub(super) const IMAGES: Col = wide(
    "Images",
    Str,
    "Images referenced by each container in the template.",
);
pub(super) const SELECTOR: Col = wide("Selector", Str, SELECTOR_DOC);

pub(super) const POD_COLUMNS: &[Col] = &[
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

pub(super) const DEPLOYMENT_COLUMNS: &[Col] = &[
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

pub(super) const REPLICA_SET_COLUMNS: &[Col] = &[
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

pub(super) const DAEMON_SET_COLUMNS: &[Col] = &[
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

pub(super) const STATEFUL_SET_COLUMNS: &[Col] = &[
    NAME,
    col("Ready", Str, "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub(super) const JOB_COLUMNS: &[Col] = &[
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

pub(super) const CRON_JOB_COLUMNS: &[Col] = &[
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

pub(super) const SERVICE_COLUMNS: &[Col] = &[
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

pub(super) const ENDPOINTS_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Endpoints",
        Str,
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

pub(super) const ENDPOINT_SLICE_COLUMNS: &[Col] = &[
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

pub(super) const CONFIG_MAP_COLUMNS: &[Col] = &[
    NAME,
    col("Data", Str, "Data contains the configuration data."),
    AGE,
];

pub(super) const SECRET_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Type",
        Str,
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", Str, "Data contains the secret data."),
    AGE,
];

pub(super) const SERVICE_ACCOUNT_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Secrets",
        Str,
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

pub(super) const NAMESPACE_COLUMNS: &[Col] =
    &[NAME, col("Status", Str, "The status of the namespace"), AGE];

pub(super) const NODE_ADDRESSES_DOC: &str = "List of addresses reachable to the node.";

pub(super) const NODE_COLUMNS: &[Col] = &[
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

pub(super) const EVENT_COLUMNS: &[Col] = &[
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

pub(super) const INGRESS_COLUMNS: &[Col] = &[
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

pub(super) const CONTROLLER_REVISION_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Controller",
        Str,
        "Controller of the object, with the form <resource>.<group>/<name>.",
    ),
    col(
        "Revision",
        Int,
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

pub(super) const INGRESS_CLASS_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Controller",
        Str,
        "Controller refers to the name of the controller that should handle this class.",
    ),
    col(
        "Parameters",
        Str,
        "Parameters is a link to a custom resource containing additional configuration for the controller.",
    ),
    AGE,
];

pub(super) const LEASE_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Holder",
        Str,
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

pub(super) const RUNTIME_CLASS_COLUMNS: &[Col] = &[
    NAME,
    col(
        "Handler",
        Str,
        "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
    ),
    AGE,
];

pub(super) const DEFAULT_COLUMNS: &[Col] = &[NAME, AGE];
