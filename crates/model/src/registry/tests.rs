//! The registry's rules: those that need no store, and those that need a
//! store answering in a chosen way (a fake writer whose first creates find
//! their key taken).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use shoal_store::command::{KeyValue, Op, Txn, TxnResult};
use shoal_store::{ClientError, ReadRequest, ReadResult};

use super::*;
use crate::alloc::Ranges;
use crate::podcidr::PodCidrs;
use crate::resources::{NAMESPACES, PODS};
use crate::writer::Writer;

/// A store where the namespace `default` exists and the first `collide`
/// creates find their key taken (as if another object had the name).
struct Colliding {
    collide: usize,
    writes: AtomicUsize,
    /// The keys every create tried, in order.
    tried: Mutex<Vec<Vec<u8>>>,
}

fn kv(key: Vec<u8>, value: Vec<u8>) -> KeyValue {
    KeyValue {
        key,
        value,
        create_rev: 1,
        mod_rev: 1,
        version: 1,
    }
}

impl Writer for Colliding {
    fn read(&self, req: ReadRequest) -> BoxFuture<'_, Result<ReadResult, ClientError>> {
        let key = req.key.clone();
        let ns = NAMESPACES.key("", "default");
        let kvs = if key == ns {
            vec![kv(
                key,
                serde_json::to_vec(&json!({"metadata": {"name": "default"}})).unwrap(),
            )]
        } else if self.writes.load(Ordering::SeqCst) <= self.collide {
            // Every key asked about while collisions last is held.
            vec![kv(key, b"{}".to_vec())]
        } else {
            vec![]
        };
        Box::pin(async move {
            Ok(ReadResult {
                kvs,
                revision: 1,
                stale: false,
            })
        })
    }

    fn write(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult, ClientError>> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(Op::Put { key, .. }) = txn.success.first() {
            self.tried.lock().unwrap().push(key.clone());
        }
        Box::pin(async move {
            Ok(TxnResult {
                succeeded: n > self.collide,
                revision: n as u64 + 1,
                prev: vec![],
            })
        })
    }
}

fn registry(collide: usize) -> (Registry, Arc<Colliding>) {
    let w = Arc::new(Colliding {
        collide,
        writes: AtomicUsize::new(0),
        tried: Mutex::new(vec![]),
    });
    let alloc = Allocators {
        services: Ranges::new("10.96.0.0/16", "30000-32767").unwrap(),
        pod_cidrs: PodCidrs::new("10.112.0.0/12").unwrap(),
    };
    (Registry::new(w.clone(), None, Arc::new(alloc)), w)
}

fn pod(meta: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": {"containers": [{"name": "c", "image": "x"}]}})
}

#[tokio::test]
async fn a_generated_name_that_is_taken_is_generated_again() {
    let (reg, w) = registry(3);
    let made = reg
        .create(
            &PODS,
            "default",
            pod(json!({"generateName": "web-"})),
            false,
        )
        .await
        .expect("a fresh name after three collisions");
    let name = made["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    let tried = w.tried.lock().unwrap().clone();
    assert_eq!(tried.len(), 4, "three taken names, then a free one");
    // Each attempt drew its own suffix (27^5 names: equal draws are
    // a one-in-14-million event per pair).
    let distinct: std::collections::BTreeSet<_> = tried.iter().collect();
    assert_eq!(distinct.len(), 4);
    assert_eq!(tried.last().unwrap(), &PODS.key("default", name));
}

#[tokio::test]
async fn a_name_given_by_the_client_that_is_taken_is_already_exists_at_once() {
    let (reg, w) = registry(3);
    let err = reg
        .create(&PODS, "default", pod(json!({"name": "web-0"})), false)
        .await
        .expect_err("the name is taken");
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "AlreadyExists");
    assert_eq!(w.tried.lock().unwrap().len(), 1, "no second try");
}

// Rules that need no store.

#[test]
fn delete_options_read_as_upstream() {
    let o = DeleteOptions::from_json(&json!({
        "preconditions": {"uid": "u", "resourceVersion": "7"},
        "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]}))
    .unwrap();
    assert_eq!(o.uid.as_deref(), Some("u"));
    assert_eq!(o.resource_version.as_deref(), Some("7"));
    assert_eq!(o.grace_period_seconds, Some(0));
    assert_eq!(o.propagation, Some(Propagation::Foreground));
    assert!(o.dry_run);
    let orphan = DeleteOptions::from_json(&json!({"orphanDependents": true})).unwrap();
    assert_eq!(orphan.propagation, Some(Propagation::Orphan));
    assert_eq!(
        DeleteOptions::from_json(&json!({})).unwrap(),
        DeleteOptions::default()
    );
    let bad = DeleteOptions::from_json(&json!({"propagationPolicy": "Sideways"}));
    assert_eq!(bad.unwrap_err().code, 400);
}

#[test]
fn only_bound_pods_are_deleted_gracefully() {
    let pods = &crate::resources::PODS;
    let cms = &crate::resources::CONFIGMAPS;
    let bound = json!({"spec": {"nodeName": "a", "terminationGracePeriodSeconds": 5}});
    assert_eq!(graceful_seconds(pods, &bound, None), 5);
    assert_eq!(graceful_seconds(pods, &bound, Some(0)), 0);
    assert_eq!(graceful_seconds(pods, &json!({"spec": {}}), Some(9)), 0);
    assert_eq!(graceful_seconds(cms, &bound, Some(9)), 0);
    assert_eq!(
        graceful_seconds(pods, &json!({"spec": {"nodeName": "a"}}), None),
        30
    );
}

#[test]
fn status_writes_follow_the_status_rules() {
    let pods = &crate::resources::PODS;
    let pod = json!({"metadata": {"name": "p", "namespace": "d"},
           "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "x"}]},
           "status": {"phase": "Pending"}});
    assert!(
        Registry::status_txn(pods, &pod, 4, json!({"phase": "Pending"}))
            .unwrap()
            .is_none()
    );
    let txn = Registry::status_txn(pods, &pod, 4, json!({"phase": "Running"}))
        .unwrap()
        .unwrap();
    assert_eq!(txn.compare[0].mod_rev, 4);
    let Op::Put { value, .. } = &txn.success[0] else {
        panic!("{txn:?}")
    };
    let stored: Value = serde_json::from_slice(value).unwrap();
    assert_eq!(stored["status"]["phase"], "Running");
    assert_eq!(stored["spec"]["nodeName"], "a");
    assert_eq!(
        Registry::status_txn(pods, &pod, 0, json!({}))
            .unwrap_err()
            .code,
        400
    );
    // The kubelet removes only pods that are being deleted.
    assert_eq!(Registry::finish_pod_txn(&pod, 4).unwrap_err().code, 400);
    let mut deleting = pod.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let txn = Registry::finish_pod_txn(&deleting, 4).unwrap().unwrap();
    // A pod with a finalizer stays until it is gone.
    let mut held = deleting.clone();
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert!(Registry::finish_pod_txn(&held, 4).unwrap().is_none());
    assert_eq!(
        txn.success,
        vec![Op::Delete {
            key: b"/registry/pods/d/p".to_vec()
        }]
    );
}
