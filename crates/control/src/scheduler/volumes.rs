//! Volume binding in the scheduler (upstream's VolumeBinding plugin): what
//! a pod's PersistentVolumeClaims ask of a node, judged from the watch
//! cache before the framework's filters run.
//!
//! - A claim that is missing or being deleted makes the pod unschedulable
//!   everywhere, with upstream's message.
//! - A bound claim pins the pod to the nodes its volume's node affinity
//!   admits ("volume node affinity conflict" elsewhere).
//! - An unbound claim of an Immediate class waits for the volume
//!   controller ("pod has unbound immediate PersistentVolumeClaims").
//! - An unbound claim of a WaitForFirstConsumer class fits a node where an
//!   available matching volume lies, or where the class's provisioner can
//!   make one (the local-path provisioner: a node announcing its
//!   directory). Once the pod's node is chosen, the claim is annotated with
//!   it (`volume.kubernetes.io/selected-node`) before the pod is bound,
//!   and the volume controller provisions or binds there.

use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelectorTerm;
use serde_json::{json, Value};

use super::framework::{node_matches_terms, NodeInfo};
use crate::controllers::volume_plan as plan;
use shoal_model::cache::Cache;
use shoal_model::objects;
use shoal_model::registry::{Registry, UpdateOptions};
use shoal_model::resources::{PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, STORAGECLASSES};

pub const REASON_AFFINITY: &str = "node(s) had volume node affinity conflict";
pub const REASON_NO_PV: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_NO_STORAGE: &str = "node(s) did not have enough free storage";
pub const MSG_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// What one claim asks of a node.
enum Need {
    /// Bound: the volume's required node terms (None: any node).
    Bound(Option<Vec<NodeSelectorTerm>>),
    /// Unbound, bound when the pod's node is chosen: the node terms of each
    /// available volume it could take (None: any node), and whether the
    /// class can provision one on a node that announces a local directory.
    Later {
        claim: (String, String),
        volumes: Vec<Option<Vec<NodeSelectorTerm>>>,
        provision: bool,
    },
}

/// What a pod's claims ask, or why no node can take it.
pub struct Needs(Vec<Need>);

impl Needs {
    /// Whether `pod` names any claim (the common case pays nothing more).
    pub fn wanted(pod: &Value) -> bool {
        claim_names(pod).next().is_some()
    }

    /// The needs of `pod`'s claims, read from `cache`; `Err` is the message
    /// for a pod no node can take now.
    pub fn of(cache: &Cache, pod: &Value) -> Result<Needs, String> {
        let ns = objects::namespace_of(pod);
        let mut needs = Vec::new();
        for name in claim_names(pod) {
            let claim = cache
                .get(&PERSISTENTVOLUMECLAIMS.key(ns, name))
                .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
            if claim.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            if let Some(pv) = plan::bound_volume(&claim) {
                let terms = cache
                    .get(&PERSISTENTVOLUMES.key("", pv))
                    .and_then(|pv| plan::node_terms(&pv));
                needs.push(Need::Bound(terms));
                continue;
            }
            let class = cache.get(&STORAGECLASSES.key("", plan::class_of(&claim)));
            if !class.as_deref().is_some_and(plan::waits_for_consumer) {
                return Err(MSG_UNBOUND_IMMEDIATE.into());
            }
            let (volumes, _) = cache.list(&PERSISTENTVOLUMES.prefix(None), |pv| {
                plan::matches(&claim, pv)
            });
            needs.push(Need::Later {
                claim: (ns.to_string(), name.to_string()),
                volumes: volumes.iter().map(|pv| plan::node_terms(pv)).collect(),
                provision: class.as_deref().is_some_and(plan::provisions_locally),
            });
        }
        Ok(Needs(needs))
    }

    /// Why `ni` cannot hold the pod's volumes, or None when it can.
    pub fn fits(&self, ni: &NodeInfo) -> Option<&'static str> {
        let admits = |terms: &Option<Vec<NodeSelectorTerm>>| {
            terms.as_ref().is_none_or(|t| node_matches_terms(t, ni))
        };
        for need in &self.0 {
            match need {
                Need::Bound(terms) if !admits(terms) => return Some(REASON_AFFINITY),
                Need::Bound(_) => {}
                Need::Later {
                    volumes, provision, ..
                } => {
                    if volumes.iter().any(admits) {
                        continue;
                    }
                    if *provision && announces_local_path(ni) {
                        continue;
                    }
                    return Some(if *provision {
                        REASON_NO_STORAGE
                    } else {
                        REASON_NO_PV
                    });
                }
            }
        }
        None
    }

    /// Annotates each claim bound later with `node`, the pod's node (the
    /// volume controller binds or provisions there), before the pod is
    /// bound.
    pub async fn select(&self, reg: &Registry, node: &str) -> Result<(), String> {
        for need in &self.0 {
            let Need::Later {
                claim: (ns, name), ..
            } = need
            else {
                continue;
            };
            let opts = UpdateOptions {
                sub: None,
                precondition: None,
                dry_run: false,
            };
            reg.update(&PERSISTENTVOLUMECLAIMS, ns, name, opts, |old| {
                let mut new = old.clone();
                let meta = objects::meta_mut(&mut new);
                let notes = meta.entry("annotations").or_insert_with(|| json!({}));
                if !notes.is_object() {
                    *notes = json!({});
                }
                notes[plan::SELECTED_NODE] = json!(node);
                Ok(new)
            })
            .await
            .map_err(|e| e.message)?;
        }
        Ok(())
    }
}

/// The claim names of `pod`'s volumes.
fn claim_names(pod: &Value) -> impl Iterator<Item = &str> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName"))
        .filter_map(Value::as_str)
}

fn announces_local_path(ni: &NodeInfo) -> bool {
    ni.node()
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(objects::LOCAL_PATH_ANNOTATION))
}

/// Shared so a round's decisions can hold it across the bind task.
pub type Shared = Arc<Needs>;
