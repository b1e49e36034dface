//! Patches under limits, as kube-apiserver applies them: a JSON patch has
//! at most [`MAX_JSON_PATCH_OPS`] operations, and its `copy` operations may
//! copy at most [`MAX_BODY`] bytes in all (so forty copies that each
//! double the object cannot grow it to 2^40 times its size); a strategic
//! merge patch runs off the runtime's threads (`block_in_place`, so Raft
//! heartbeats and gossip on the same runtime keep running) and within
//! [`SMP_DEADLINE`].

use std::time::{Duration, Instant};

use serde_json::Value;

use super::MAX_BODY;
use shoal_model::errors::{ApiError, ApiResult};

/// Upstream's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// How long one strategic merge patch may take.
pub const SMP_DEADLINE: Duration = Duration::from_secs(10);

/// Applies a JSON patch to a copy of `base`, one operation at a time,
/// counting the bytes its `copy` operations copy.
pub fn json_patch(base: &Value, p: &json_patch::Patch) -> ApiResult<Value> {
    if p.0.len() > MAX_JSON_PATCH_OPS {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "The allowed number of operations in a JSON patch is {MAX_JSON_PATCH_OPS}, got {}",
                p.0.len()
            ),
        ));
    }
    let mut out = base.clone();
    let mut copied = 0usize;
    for op in &p.0 {
        if let json_patch::PatchOperation::Copy(c) = op {
            let size = out
                .pointer(c.from.as_str())
                .map_or(0, |v| serde_json::to_vec(v).map_or(0, |b| b.len()));
            copied = copied.saturating_add(size);
            if copied > MAX_BODY {
                return Err(ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!(
                        "the JSON patch's copy operations would copy more than {MAX_BODY} bytes"
                    ),
                ));
            }
        }
        json_patch::patch(&mut out, std::slice::from_ref(op)).map_err(|e| {
            if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) {
                ApiError::new(422, "Invalid", format!("the JSON patch test failed: {e}"))
            } else {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the JSON patch could not be applied: {e}"),
                )
            }
        })?;
    }
    Ok(out)
}

/// Applies a strategic merge patch off the runtime's threads, within
/// [`SMP_DEADLINE`].
pub fn strategic(kind: &str, base: &Value, p: &Value) -> ApiResult<Value> {
    let run = || {
        let deadline = Instant::now() + SMP_DEADLINE;
        shoal_model::smp::strategic_merge_patch_until(kind, base, p, deadline)
            .map_err(|e| ApiError::bad_request(e.0))
    };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(run)
    } else {
        run()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patch(ops: Value) -> json_patch::Patch {
        serde_json::from_value(ops).unwrap()
    }

    /// Forty copies that each double the object: refused once the copies
    /// pass the body limit, long before memory runs out.
    #[test]
    fn a_doubling_copy_chain_is_refused() {
        let base = json!({"metadata": {"annotations": {"a0": "x".repeat(1000)}}});
        let mut ops = vec![json!({"op": "add", "path": "/d0", "value": {"x": "y".repeat(1000)}})];
        for i in 1..=40 {
            ops.push(json!({"op": "add", "path": format!("/d{i}"), "value": {}}));
            ops.push(
                json!({"op": "copy", "from": format!("/d{}", i - 1), "path": format!("/d{i}/a")}),
            );
            ops.push(
                json!({"op": "copy", "from": format!("/d{}", i - 1), "path": format!("/d{i}/b")}),
            );
        }
        let t = Instant::now();
        let e = json_patch(&base, &patch(json!(ops))).unwrap_err();
        assert_eq!(
            (e.code, e.reason),
            (413, "RequestEntityTooLarge"),
            "{}",
            e.message
        );
        assert!(e.message.contains("copy"), "{}", e.message);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // An ordinary copy still works, and a failed test is a 422.
        let out = json_patch(
            &base,
            &patch(json!([{"op": "copy", "from": "/metadata/annotations/a0", "path": "/metadata/annotations/a1"}])),
        )
        .unwrap();
        assert_eq!(
            out["metadata"]["annotations"]["a1"],
            base["metadata"]["annotations"]["a0"]
        );
        let e = json_patch(
            &base,
            &patch(json!([{"op": "test", "path": "/metadata", "value": 1}])),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
    }

    #[test]
    fn more_operations_than_upstream_allows_are_refused() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPS)
            .map(|i| json!({"op": "add", "path": format!("/k{i}"), "value": 1}))
            .collect();
        let e = json_patch(&json!({}), &patch(json!(ops))).unwrap_err();
        assert_eq!(e.code, 413);
        assert!(e.message.contains("10000, got 10001"), "{}", e.message);
    }

    /// 200,000 list items (a body under the 3 MiB limit) merge into a list
    /// of 200,000 in linear time, within the deadline; the old quadratic
    /// merge needed about 4·10^10 comparisons.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_strategic_merge_patch_of_200000_items_is_linear() {
        let n = 200_000;
        let base_list: Vec<Value> = (0..n).map(|i| json!(format!("a{i}"))).collect();
        let base = json!({"metadata": {"name": "p", "finalizers": base_list}});
        let patch_list: Vec<Value> = (0..n).map(|i| json!(format!("b{i}"))).collect();
        let p = json!({"metadata": {"finalizers": patch_list}});
        assert!(serde_json::to_vec(&p).unwrap().len() < MAX_BODY);
        let t = Instant::now();
        let out = strategic("Pod", &base, &p).unwrap();
        eprintln!("200,000 + 200,000 finalizers merged in {:?}", t.elapsed());
        assert_eq!(
            out["metadata"]["finalizers"].as_array().unwrap().len(),
            2 * n
        );
        assert!(t.elapsed() < SMP_DEADLINE, "{:?}", t.elapsed());
        // Keyed: 200,000 containers by name, half of them existing.
        let cs = |from: usize, to: usize| -> Vec<Value> {
            (from..to)
                .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
                .collect()
        };
        let base = json!({"spec": {"containers": cs(0, n)}});
        let p = json!({"spec": {"containers": cs(n / 2, n + n / 2)}});
        let t = Instant::now();
        let out = strategic("Pod", &base, &p).unwrap();
        eprintln!(
            "200,000 containers merged into 200,000 in {:?}",
            t.elapsed()
        );
        let merged = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(merged.len(), n + n / 2);
        assert!(t.elapsed() < SMP_DEADLINE, "{:?}", t.elapsed());
    }

    #[test]
    fn a_patch_past_its_deadline_is_an_error() {
        let base = json!({"metadata": {"finalizers": ["a"]}});
        let list: Vec<Value> = (0..5000).map(|i| json!(format!("f{i}"))).collect();
        let p = json!({"metadata": {"finalizers": list}});
        let past = Instant::now() - Duration::from_secs(1);
        let e = shoal_model::smp::strategic_merge_patch_until("Pod", &base, &p, past).unwrap_err();
        assert!(e.0.contains("too long"), "{}", e.0);
        // The deadline does not outlive its patch.
        assert!(shoal_model::smp::strategic_merge_patch("Pod", &base, &p).is_ok());
    }
}
