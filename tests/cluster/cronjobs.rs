//! A CronJob across leader failovers, on a fake clock every node shares:
//! the leader dies right after it made a scheduled run, and the next one
//! makes no second; the leader dies at the scheduled instant before it
//! made the run, and the next one makes it. Each scheduled minute gets
//! exactly one Job.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use shoal::clock::Clock;
use shoal::node::NodeOptions;
use shoal_harness::{wait_until, TestCluster};

use crate::kube_api::api_ready;

/// The Jobs of the CronJob, by name.
async fn runs(jobs: &Api<Job>) -> Vec<String> {
    let mut names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|j| j.metadata.name)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits until node `ask` knows a leader other than `gone`.
async fn new_leader(c: &TestCluster, ask: usize, gone: usize) -> usize {
    let found = std::sync::Mutex::new(0);
    wait_until(Duration::from_secs(30), || async {
        let status = c.on(ask, |h| async move { h.store.status() }).await;
        match status.leader.as_deref().and_then(|l| c.index_of(l)) {
            Some(i) if i != gone => {
                *found.lock().unwrap() = i;
                Ok(())
            }
            other => Err(format!("node {ask} sees leader {other:?}")),
        }
    })
    .await
    .unwrap();
    let i = *found.lock().unwrap();
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_failover_at_the_scheduled_minute_gives_exactly_one_job() {
    // The next whole minute after now is the first scheduled time S; the
    // clock shows S - 2 s until the test moves it.
    let real = jiff::Timestamp::now().as_second();
    let s = (real / 60 + 1) * 60;
    let at = |secs: i64| jiff::Timestamp::from_second(secs).unwrap();
    let clock = Clock::fake(at(s - 2));
    let shared = clock.clone();
    let mut c = TestCluster::start_with_options(
        3,
        |_| {},
        move |_| NodeOptions {
            clock: Some(shared.clone()),
            ..NodeOptions::default()
        },
    )
    .unwrap();
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    let leader = c.wait_leader(1).await;
    let ask = if leader == 1 { 2 } else { 1 };
    let k = api_ready(&c, ask).await;
    let cjs: Api<CronJob> = Api::default_namespaced(k.clone());
    let jobs: Api<Job> = Api::default_namespaced(k.clone());
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {"schedule": "*/1 * * * *",
                 "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "x"}]}}}}}
    }))
    .unwrap();
    cjs.create(&PostParams::default(), &cj).await.unwrap();
    let first = format!("tick-{}", s / 60);
    let second = format!("tick-{}", s / 60 + 1);

    // S: the leader makes the run (when its timer for S fires); it dies
    // as soon as the Job exists, before or after its status write.
    clock.set(at(s));
    wait_until(Duration::from_secs(20), || async {
        let r = runs(&jobs).await;
        (r == [first.clone()]).then_some(()).ok_or(format!("{r:?}"))
    })
    .await
    .unwrap();
    c.kill(leader);
    let next = new_leader(&c, ask, leader).await;
    // A change makes the new leader look at the CronJob at S again.
    let poke = json!({"metadata": {"labels": {"poked": "1"}}});
    cjs.patch("tick", &PatchParams::default(), &Patch::Merge(poke))
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), || async {
        let st = cjs.get("tick").await.map_err(|e| e.to_string())?.status;
        let last = st.as_ref().and_then(|s| s.last_schedule_time.clone());
        let want = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(s));
        (last == Some(want)).then_some(()).ok_or(format!("{st:?}"))
    })
    .await
    .unwrap();
    assert_eq!(
        runs(&jobs).await,
        std::slice::from_ref(&first),
        "no second run for S"
    );

    // The killed node comes back; then the leader dies at S + 60, before
    // its timer (60 s away in real time) made the run: the next leader
    // makes it, once.
    c.restart(leader).unwrap();
    c.wait_mesh(shoal_harness::MESH).await.unwrap();
    // The client talks to a node that stays.
    let stays = (1..=3).find(|i| *i != next).unwrap();
    let k = api_ready(&c, stays).await;
    let (cjs, jobs): (Api<CronJob>, Api<Job>) = (
        Api::default_namespaced(k.clone()),
        Api::default_namespaced(k),
    );
    clock.set(at(s + 60));
    c.kill(next);
    new_leader(&c, stays, next).await;
    wait_until(Duration::from_secs(30), || async {
        let r = runs(&jobs).await;
        (r == [first.clone(), second.clone()])
            .then_some(())
            .ok_or(format!("{r:?}"))
    })
    .await
    .unwrap();
    // And it stays one: another look at S + 60 makes nothing more.
    let poke = json!({"metadata": {"labels": {"poked": "2"}}});
    cjs.patch("tick", &PatchParams::default(), &Patch::Merge(poke))
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), || async {
        let st = cjs.get("tick").await.map_err(|e| e.to_string())?.status;
        let active = st
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default();
        (active.len() == 2).then_some(()).ok_or(format!("{st:?}"))
    })
    .await
    .unwrap();
    assert_eq!(runs(&jobs).await, [first, second]);
}
