//! The CronJob plan on a fake clock (times are passed in).

use super::*;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn cj(spec: Value) -> Value {
    let mut s = json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
        "jobTemplate": {"metadata": {"labels": {"app": "tick"}},
                        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"metadata": {"namespace": "d", "name": "tick", "uid": "cj-uid",
                        "creationTimestamp": "2026-12-07T09:58:00Z"},
           "spec": s, "status": {}})
}

fn job(name: &str, condition: Option<&str>, started: &str) -> Arc<Value> {
    let mut j = json!({"metadata": {"namespace": "d", "name": name, "uid": format!("u-{name}"),
        "creationTimestamp": started},
        "status": {"startTime": started}});
    if let Some(c) = condition {
        j["status"]["conditions"] =
            json!([{"type": c, "status": "True", "lastTransitionTime": started}]);
        j["status"]["completionTime"] = json!(started);
    }
    Arc::new(j)
}

fn with_status(mut c: Value, p: &Plan) -> Value {
    c["status"] = p.status.clone();
    c
}

#[test]
fn the_schedule_creates_one_deterministic_job_and_waits_for_the_next() {
    let c = cj(json!({}));
    // 09:59: nothing due since the creation at 09:58; the next is 10:00.
    let p = plan(&c, &[], at("2026-12-07T09:59:00Z"));
    assert!(p.create.is_none());
    assert_eq!(p.requeue_after, Some(Duration::from_millis(60_100)));
    // 10:00:00 exactly: the 10:00 run.
    let p = plan(&c, &[], at("2026-12-07T10:00:00Z"));
    let j = p.create.as_ref().expect("a run at 10:00");
    let minutes = at("2026-12-07T10:00:00Z").as_second() / 60;
    assert_eq!(j["metadata"]["name"], format!("tick-{minutes}"));
    assert_eq!(
        j["metadata"]["annotations"][SCHEDULED_AT],
        "2026-12-07T10:00:00Z"
    );
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(j["metadata"]["labels"]["app"], "tick");
    assert_eq!(p.status["lastScheduleTime"], "2026-12-07T10:00:00Z");
    // Written: 10:03 has nothing new.
    let c2 = with_status(c.clone(), &p);
    assert!(plan(&c2, &[], at("2026-12-07T10:03:00Z")).create.is_none());
    // A leader that created the Job and died before its status: the Job
    // exists, so the run is that one, not a second.
    let made = job(&format!("tick-{minutes}"), None, "2026-12-07T10:00:00Z");
    let p = plan(&c, &[made], at("2026-12-07T10:00:01Z"));
    assert!(p.create.is_none());
    assert_eq!(p.status["lastScheduleTime"], "2026-12-07T10:00:00Z");
    assert_eq!(p.status["active"][0]["name"], format!("tick-{minutes}"));
}

#[test]
fn missed_starts_run_once_and_the_starting_deadline_skips_stale_ones() {
    let mut c = cj(json!({}));
    c["status"]["lastScheduleTime"] = json!("2026-12-07T10:00:00Z");
    // Down from 10:00 to 10:32: six runs missed, the 10:30 one runs.
    let p = plan(&c, &[], at("2026-12-07T10:32:00Z"));
    assert_eq!(p.status["lastScheduleTime"], "2026-12-07T10:30:00Z");
    assert!(p.create.is_some());
    // With a 60 s starting deadline, 10:30 is too late at 10:32.
    let mut late = c.clone();
    late["spec"]["startingDeadlineSeconds"] = json!(60);
    let p = plan(&late, &[], at("2026-12-07T10:32:00Z"));
    assert!(p.create.is_none());
    assert!(p.events.iter().any(|e| e.1 == "MissSchedule"));
    // …but in time at 10:30:30.
    assert!(plan(&late, &[], at("2026-12-07T10:30:30Z"))
        .create
        .is_some());
    // More than 100 missed: a warning, still one run.
    let mut every = cj(json!({"schedule": "* * * * *"}));
    every["status"]["lastScheduleTime"] = json!("2026-12-07T00:00:00Z");
    let p = plan(&every, &[], at("2026-12-07T10:00:00Z"));
    assert!(p.events.iter().any(|e| e.0 && e.1 == "TooManyMissedTimes"));
    assert!(p.create.is_some());
}

#[test]
fn forbid_skips_and_replace_deletes_the_active_job() {
    let running = job("tick-1", None, "2026-12-07T09:55:00Z");
    let mut c = cj(json!({"concurrencyPolicy": "Forbid"}));
    c["status"]["active"] = json!([active_ref(&running)]);
    let p = plan(
        &c,
        std::slice::from_ref(&running),
        at("2026-12-07T10:00:00Z"),
    );
    assert!(p.create.is_none());
    assert!(p.events.iter().any(|e| e.1 == "JobAlreadyActive"));
    assert!(p.status.get("lastScheduleTime").is_none(), "the run waits");
    c["spec"]["concurrencyPolicy"] = json!("Replace");
    let p = plan(
        &c,
        std::slice::from_ref(&running),
        at("2026-12-07T10:00:00Z"),
    );
    assert!(p.create.is_some());
    assert_eq!(p.delete.len(), 1);
    assert!(p.delete[0].1, "deleted to be replaced");
    assert!(p.status.get("active").is_none());
    c["spec"]["concurrencyPolicy"] = json!("Allow");
    let p = plan(&c, &[running], at("2026-12-07T10:00:00Z"));
    assert!(p.create.is_some() && p.delete.is_empty());
}

#[test]
fn finished_jobs_leave_the_active_list_and_history_is_pruned() {
    let done = job("tick-a", Some("Complete"), "2026-12-07T09:00:00Z");
    let mut c = cj(json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 0}));
    c["status"]["active"] = json!([active_ref(&done)]);
    let jobs = [
        done.clone(),
        job("tick-b", Some("Complete"), "2026-12-07T09:05:00Z"),
        job("tick-c", Some("Complete"), "2026-12-07T09:10:00Z"),
        job("tick-f", Some("Failed"), "2026-12-07T09:15:00Z"),
    ];
    let p = plan(&c, &jobs, at("2026-12-07T09:59:00Z"));
    assert!(p.events.iter().any(
        |e| e.1 == "SawCompletedJob" && e.2 == "Saw completed job: tick-a, condition: Complete"
    ));
    assert_eq!(p.status["lastSuccessfulTime"], "2026-12-07T09:00:00Z");
    let mut gone: Vec<&str> = p.delete.iter().map(|(j, _)| objects::name_of(j)).collect();
    gone.sort();
    assert_eq!(gone, ["tick-a", "tick-f"]);
    assert!(p.status.get("active").is_none());
}

#[test]
fn suspended_or_unparseable_cron_jobs_create_nothing() {
    let c = cj(json!({"suspend": true}));
    assert!(plan(&c, &[], at("2026-12-07T10:00:00Z")).create.is_none());
    let bad = cj(json!({"schedule": "every tuesday"}));
    let p = plan(&bad, &[], at("2026-12-07T10:00:00Z"));
    assert!(p.create.is_none() && p.requeue_after.is_none());
    assert_eq!(p.events[0].1, "UnparseableSchedule");
    let zoned = cj(json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}));
    let p = plan(&zoned, &[], at("2026-12-08T00:00:00Z"));
    assert_eq!(
        p.create.unwrap()["metadata"]["annotations"][SCHEDULED_AT],
        "2026-12-08T09:00:00+09:00"
    );
}
