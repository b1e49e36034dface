//! Adoption: an agent that starts again (after a crash, a `kill -9`, an
//! upgrade) finds the engine containers its previous self left running
//! and keeps them, the same containers with the same ids and restart
//! counts, instead of starting the pods again.
//!
//! A pod is adopted from two things: its record (`<root>/<uid>/pod.json`:
//! the pod as stored, never what was resolved for it, with its IP and
//! sandbox container, written once its sandbox is wired) and its engine
//! containers, found by label. Its sandbox container must still run: a
//! pod whose sandbox died is removed and starts again when the kubelet
//! asks, since containers joined to a lost network namespace break
//! silently. Each container's current instance is the one with the
//! highest attempt label; its state is inspected, and a running one is
//! waited for rather than started. What cannot be adopted (no record, a
//! record of no use, containers of no record) is removed.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum};
use k8s_openapi::api::core::v1::Container;
use serde::{Deserialize, Serialize};

use super::runtime::{labels, list_labelled, remove_labelled, Adopted, Ctr, DockerRuntime};
use crate::{ContainerState, PodConfig};

/// The record of a pod's, in its directory.
const RECORD: &str = "pod.json";

#[derive(Serialize, Deserialize)]
struct Saved {
    pod: PodConfig,
    ip: String,
    sandbox: String,
}

/// Writes pod `pod`'s record (the pod as stored, its IP and sandbox
/// container) into `dir`, atomically.
pub(super) fn save(dir: &Path, pod: &PodConfig, ip: &str, sandbox: &str) -> Result<(), String> {
    let saved = Saved {
        pod: pod.unresolved(),
        ip: ip.to_string(),
        sandbox: sandbox.to_string(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| format!("the pod's record: {e}"))?;
    let (path, tmp) = (dir.join(RECORD), dir.join("pod.json.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Adopts what a previous agent of this node left (see the module note).
pub(super) async fn adopt(rt: &DockerRuntime) {
    let node = rt.node();
    let list = match list_labelled(rt.engine(), &format!("{}={node}", labels::NODE)).await {
        Ok(list) => list,
        Err(e) => {
            // Nothing is known of what runs: nothing is removed either.
            tracing::warn!("docker runtime: listing the node's containers to adopt them: {e}");
            return;
        }
    };
    let mut by_pod: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
    for c in list {
        let uid = label(&c, labels::POD_UID).to_string();
        by_pod.entry(uid).or_default().push(c);
    }
    let dirs: Vec<_> = std::fs::read_dir(rt.root())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for dir in dirs {
        let uid = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = by_pod.remove(&uid).unwrap_or_default();
        match adoptable(rt, &dir, &found).await {
            Ok((pod, adopted)) => {
                tracing::info!(pod = %uid, ip = %adopted.ip, "docker runtime: adopted a pod from a previous agent");
                rt.adopt_pod(&pod, adopted);
            }
            Err(why) => {
                tracing::info!(pod = %uid, "docker runtime: not adopting the pod ({why}): removing it");
                remove_pod(rt, &uid, &dir).await;
            }
        }
    }
    for uid in by_pod.into_keys() {
        tracing::info!(pod = %uid, "docker runtime: removing the containers of a pod with no record");
        remove_pod(rt, &uid, &rt.root().join(&uid)).await;
    }
}

/// Removes pod `uid`'s containers (the sandbox last), network and files.
async fn remove_pod(rt: &DockerRuntime, uid: &str, dir: &Path) {
    remove_labelled(rt.engine(), &format!("{}={uid}", labels::POD_UID)).await;
    rt.sandboxes().destroy(uid).await;
    crate::process::volumes::remove_pod_dir(dir);
}

/// The pod recorded in `dir` and what its containers (`found`) are now;
/// Err says why it cannot be adopted.
async fn adoptable(
    rt: &DockerRuntime,
    dir: &Path,
    found: &[ContainerSummary],
) -> Result<(PodConfig, Adopted), String> {
    let bytes = std::fs::read(dir.join(RECORD)).map_err(|e| format!("no record: {e}"))?;
    let saved: Saved =
        serde_json::from_slice(&bytes).map_err(|e| format!("a record of no use: {e}"))?;
    let sandbox_runs = found.iter().any(|c| {
        c.id.as_deref() == Some(saved.sandbox.as_str())
            && label(c, labels::CONTAINER) == labels::SANDBOX
            && matches!(c.state, Some(ContainerSummaryStateEnum::RUNNING))
    });
    if !sandbox_runs {
        return Err("its sandbox container does not run".into());
    }
    let pod = saved.pod;
    let has_init = !pod.init_containers().is_empty();
    let mut init = Vec::new();
    for spec in pod.init_containers() {
        init.push(container(rt, spec, found, "ContainerCreating").await);
    }
    let mut containers = Vec::new();
    let waiting = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    for spec in pod.containers() {
        containers.push(container(rt, spec, found, waiting).await);
    }
    Ok((
        pod,
        Adopted {
            ip: saved.ip,
            sandbox: saved.sandbox,
            init,
            containers,
        },
    ))
}

/// Container `spec` as its engine containers show it: the current
/// instance (highest attempt) inspected, the one before it for `logs
/// --previous`; a container with none waits (`waiting`) to be created.
async fn container(
    rt: &DockerRuntime,
    spec: &Container,
    found: &[ContainerSummary],
    waiting: &str,
) -> Ctr {
    let mut instances: Vec<(u32, String)> = found
        .iter()
        .filter(|c| label(c, labels::CONTAINER) == spec.name)
        .filter_map(|c| Some((label(c, labels::ATTEMPT).parse().ok()?, c.id.clone()?)))
        .collect();
    instances.sort_unstable();
    let mut ctr = Ctr {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        state: ContainerState::Waiting {
            reason: waiting.into(),
            message: String::new(),
        },
        last: None,
        restarts: 0,
        id: None,
        previous: None,
        ready: false,
    };
    let Some((attempt, id)) = instances.pop() else {
        return ctr;
    };
    ctr.restarts = attempt;
    ctr.previous = instances.pop().map(|(_, id)| id);
    if let Some(previous) = &ctr.previous {
        ctr.last = inspected(rt, previous).await;
    }
    // An instance created but never started is made again (same name).
    if let Some(state) = inspected(rt, &id).await {
        ctr.ready = matches!(state, ContainerState::Running { .. });
        ctr.state = state;
        ctr.id = Some(id);
    }
    ctr
}

/// An engine container's state as Kubernetes tells it (None if the
/// engine does not say).
async fn inspected(rt: &DockerRuntime, id: &str) -> Option<ContainerState> {
    let state = rt
        .engine()
        .api()
        .inspect_container(id, None)
        .await
        .ok()?
        .state?;
    let time = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| t.get(..19))
            .map(|t| format!("{t}Z"))
            .unwrap_or_else(shoal_model::objects::now)
    };
    if state.running == Some(true) {
        return Some(ContainerState::Running {
            started_at: time(&state.started_at),
        });
    }
    let exited = matches!(
        state.status,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
    );
    if !exited {
        // Created but never started: it is created again.
        return None;
    }
    let (code, reason) = super::ctr::exit_of(&state);
    Some(ContainerState::Terminated {
        exit_code: code,
        reason: reason.into(),
        message: state.error.unwrap_or_default(),
        finished_at: time(&state.finished_at),
    })
}

/// Label `key` of an engine container ("" if absent).
fn label<'a>(c: &'a ContainerSummary, key: &str) -> &'a str {
    c.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}
