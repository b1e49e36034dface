//! The scheduler and the kubelet's cgroup code read every quantity the
//! same way: for each of upstream's quantity cases used as both request and
//! limit, the cpu the scheduler charges a node is the cpu the cgroup quota
//! allows, and the memory it charges is the cgroup's memory limit. This
//! test lives in the root crate because it is the one that sees both.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::kubelet::process::sandbox::{CgroupLimits, CPU_PERIOD_US};
use crate::model::quantity::Quantity;
use crate::scheduler::framework::pod_requests;

#[test]
fn scheduler_and_cgroups_agree_on_every_quantity() {
    let cases = [
        "1",
        "1Ki",
        "8Ki",
        "7Mi",
        "6Gi",
        "5Ti",
        "5n",
        "4u",
        "3m",
        "9",
        "8k",
        "50k",
        "7M",
        "6G",
        "5T",
        "1E-3",
        "1e3",
        "1E6",
        "1e9",
        "100.035k",
        "0.001",
        "0.0005k",
        "0.5",
        "0.5e-3",
        "10.035M",
        "1.2e3",
        "1.3E+6",
        "9.01",
        "8.1k",
        "7.123456M",
        "6.987654321G",
        "3.001n",
        "1.1E-9",
        "0.0000000001",
        "0.9n",
        "0.00000012345",
        "100.035Ki",
        "0.5Mi",
        "0.05Gi",
        "0.025Ti",
        "0.000000000001Ki",
        ".001",
        ".0001k",
        "1.",
        "1.G",
        "1.5Gi",
        "2000m",
        "123Mi",
        "129e6",
    ];
    for q in cases {
        let container = json!({"name": "c", "image": "x", "resources": {
            "requests": {"cpu": q, "memory": q},
            "limits": {"cpu": q, "memory": q},
        }});
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [container]}}))
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        let charged = pod_requests(&pod);
        let cgroup = CgroupLimits::of(&pod.spec.as_ref().unwrap().containers[0]);
        let exact = Quantity::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(charged.milli_cpu, exact.milli_value(), "{q}: scheduler cpu");
        assert_eq!(charged.memory, exact.value(), "{q}: scheduler memory");
        let quota = (charged.milli_cpu as u64)
            .saturating_mul(CPU_PERIOD_US / 1000)
            .max(1000);
        assert_eq!(cgroup.cpu_quota_us, Some(quota), "{q}: cgroup cpu");
        assert_eq!(
            cgroup.memory_bytes,
            Some(charged.memory as u64),
            "{q}: cgroup memory"
        );
    }
}
