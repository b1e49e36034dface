//! Tests of the Deployment planning: Recreate, rollback, revision history,
//! pause, proportional scaling, progress deadlines, hash collisions,
//! adoption, malformed input.

use super::*;

#[test]
fn progressing_condition_keeps_transition_time_while_updating() {
    let mut sim = settled(4, rolling("1", "0"));
    sim.set_template("img:b");
    let mut seen = Vec::new();
    sim.settle(60, &mut |s| {
        let c = cond(&s.d, "Progressing").clone();
        if c.reason.as_deref() == Some(REASON_RS_UPDATED) {
            seen.push(c);
        }
    });
    assert!(seen.len() > 3);
    let ltt = &seen[0].last_transition_time;
    assert!(seen
        .iter()
        .all(|c| &c.last_transition_time == ltt && c.status == "True"));
    let first = seen.first().unwrap().last_update_time.clone().unwrap().0;
    let last = seen.last().unwrap().last_update_time.clone().unwrap().0;
    assert!(last > first, "lastUpdateTime advances with progress");
    assert!(seen
        .iter()
        .all(|c| c.message.as_deref().unwrap().ends_with("is progressing.")));
}

#[test]
fn recreate_never_runs_old_and_new_pods_together() {
    let mut sim = settled(3, recreate());
    sim.set_template("img:b");
    let mut overlap = Vec::new();
    sim.settle(40, &mut |s| {
        let old = s
            .rss
            .iter()
            .find(|r| image(r) == "img:a")
            .map_or(0, status_replicas);
        let new = s.rss.iter().find(|r| image(r) == "img:b");
        if old > 0 && new.is_some_and(|n| status_replicas(n) > 0 || spec_replicas(n) > 0) {
            overlap.push(s.snapshot());
        }
    });
    assert!(overlap.is_empty(), "{overlap:?}\n{}", sim.log.join("\n"));
    assert_eq!(spec_replicas(sim.rs("img:b")), 3);
    assert_eq!(spec_replicas(sim.rs("img:a")), 0);
    assert!(sim.rollout_done());
}

#[test]
fn rollback_reuses_old_replica_set_with_new_revision() {
    let mut sim = settled(3, rolling("1", "0"));
    let a_name = sim.rss[0].metadata.name.clone();
    sim.d
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("kubernetes.io/change-cause".into(), "to b".into());
    sim.set_template("img:b");
    sim.settle(60, &mut |_| {});
    assert_eq!(
        annotation(sim.rs("img:b"), "kubernetes.io/change-cause"),
        Some("to b")
    );
    assert_eq!(sim.creates, 2);
    // kubectl rollout undo: template back to A.
    sim.set_template("img:a");
    let (p, _) = sim.reconcile();
    assert!(p.create.is_none(), "rollback must reuse the old RS");
    let a = sim.rs("img:a");
    assert_eq!(a.metadata.name, a_name);
    assert_eq!(annotation(a, REVISION_ANNOTATION), Some("3"));
    assert_eq!(annotation(a, REVISION_HISTORY_ANNOTATION), Some("1"));
    assert_eq!(
        sim.d.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
        "3"
    );
    sim.settle(60, &mut |s| assert!(s.totals().0 <= 4));
    assert_eq!(sim.creates, 2);
    assert_eq!(spec_replicas(sim.rs("img:a")), 3);
    assert_eq!(spec_replicas(sim.rs("img:b")), 0);
    assert_eq!(annotation(sim.rs("img:b"), REVISION_ANNOTATION), Some("2"));
    // And forward again: B is reused with revision 4.
    sim.set_template("img:b");
    sim.settle(60, &mut |_| {});
    assert_eq!(sim.creates, 2);
    assert_eq!(annotation(sim.rs("img:b"), REVISION_ANNOTATION), Some("4"));
    assert_eq!(
        annotation(sim.rs("img:b"), REVISION_HISTORY_ANNOTATION),
        Some("2")
    );
}

#[test]
fn revision_history_limit_deletes_oldest_scaled_down_replica_sets() {
    let mut d = deployment(2, rolling("1", "0"));
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let mut sim = Sim::new(d);
    sim.settle(60, &mut |_| {});
    for v in 2..=6 {
        sim.set_template(&format!("img:v{v}"));
        sim.settle(60, &mut |_| {});
        assert!(sim.rss.len() <= 3, "{}", sim.snapshot());
    }
    let mut revs: Vec<String> = sim
        .rss
        .iter()
        .map(|r| annotation(r, REVISION_ANNOTATION).unwrap().to_string())
        .collect();
    revs.sort();
    assert_eq!(revs, ["4", "5", "6"]);
    assert_eq!(
        image(sim.rss.iter().find(|r| spec_replicas(r) == 2).unwrap()),
        "img:v6"
    );
    // Default limit (10) keeps everything here.
    let mut sim = settled(1, rolling("1", "0"));
    for v in 2..=4 {
        sim.set_template(&format!("img:v{v}"));
        sim.settle(60, &mut |_| {});
    }
    assert_eq!(sim.rss.len(), 4);
}

#[test]
fn paused_deployment_scales_but_does_not_roll() {
    let mut sim = settled(3, rolling("25%", "25%"));
    sim.spec_mut().paused = Some(true);
    sim.set_template("img:b");
    for _ in 0..5 {
        let (p, _) = sim.reconcile();
        assert!(p.create.is_none());
        sim.tick();
    }
    assert_eq!(sim.rss.len(), 1);
    let prog = cond(&sim.d, "Progressing");
    assert_eq!(
        (prog.status.as_str(), prog.reason.as_deref()),
        ("Unknown", Some(REASON_PAUSED))
    );
    assert_eq!(
        sim.d.status.as_ref().unwrap().observed_generation,
        sim.d.metadata.generation
    );
    assert_eq!(sim.d.status.as_ref().unwrap().updated_replicas, None);
    assert!(matches!(rollout_status(&sim.d), Ok((_, false))));
    // Scaling still works while paused.
    sim.spec_mut().replicas = Some(5);
    for _ in 0..8 {
        sim.reconcile();
        sim.tick();
    }
    assert_eq!(spec_replicas(sim.rs("img:a")), 5);
    assert_eq!(status_available(sim.rs("img:a")), 5);
    assert_eq!(sim.rss.len(), 1);
    // Resume: the rollout happens.
    sim.spec_mut().paused = Some(false);
    let (_, _) = sim.reconcile();
    assert_eq!(sim.creates, 2);
    sim.settle(60, &mut |s| assert!(s.totals().0 <= 5 + 2));
    assert_eq!(spec_replicas(sim.rs("img:b")), 5);
    assert_eq!(
        cond(&sim.d, "Progressing").reason.as_deref(),
        Some(REASON_NEW_RS_AVAILABLE)
    );
}

#[test]
fn scaling_a_settled_deployment_up_down_and_to_zero() {
    let mut sim = settled(3, rolling("25%", "25%"));
    sim.spec_mut().replicas = Some(5);
    let (p, _) = sim.reconcile();
    assert!(p.create.is_none());
    assert_eq!(p.update.len(), 1);
    let rs = &p.update[0];
    assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(annotation(rs, DESIRED_REPLICAS_ANNOTATION), Some("5"));
    assert_eq!(annotation(rs, MAX_REPLICAS_ANNOTATION), Some("7"));
    sim.settle(30, &mut |_| {});
    assert_eq!(sim.d.status.as_ref().unwrap().available_replicas, Some(5));
    sim.spec_mut().replicas = Some(2);
    sim.settle(30, &mut |_| {});
    assert_eq!(spec_replicas(&sim.rss[0]), 2);
    assert_eq!(sim.d.status.as_ref().unwrap().replicas, Some(2));
    sim.spec_mut().replicas = Some(0);
    sim.settle(30, &mut |_| {});
    assert_eq!(spec_replicas(&sim.rss[0]), 0);
    assert_eq!(sim.d.status.as_ref().unwrap().replicas, None);
    sim.spec_mut().replicas = Some(2);
    sim.settle(30, &mut |_| {});
    assert_eq!(
        (spec_replicas(&sim.rss[0]), sim.rss.len(), sim.creates),
        (2, 1, 1)
    );
}

#[test]
fn proportional_scaling_during_stuck_rollout() {
    // The upstream documentation example: 10 replicas, maxSurge 3,
    // maxUnavailable 2, rollout to an image that never becomes ready.
    let mut sim = settled(10, rolling("3", "2"));
    sim.broken.insert("img:b".into());
    sim.set_template("img:b");
    for _ in 0..20 {
        sim.reconcile();
        sim.tick();
    }
    assert_eq!(
        (
            spec_replicas(sim.rs("img:a")),
            spec_replicas(sim.rs("img:b"))
        ),
        (8, 5),
        "{}",
        sim.log.join("\n")
    );
    sim.spec_mut().replicas = Some(15);
    let (p, _) = sim.reconcile();
    assert!(p.create.is_none());
    assert_eq!(
        (
            spec_replicas(sim.rs("img:a")),
            spec_replicas(sim.rs("img:b"))
        ),
        (11, 7)
    );
    assert_eq!(
        annotation(sim.rs("img:a"), MAX_REPLICAS_ANNOTATION),
        Some("18")
    );
    assert_eq!(
        annotation(sim.rs("img:b"), DESIRED_REPLICAS_ANNOTATION),
        Some("15")
    );
    // Scaling back down removes proportionally too, never below zero.
    sim.spec_mut().replicas = Some(5);
    sim.reconcile();
    let (a, b) = (
        spec_replicas(sim.rs("img:a")),
        spec_replicas(sim.rs("img:b")),
    );
    assert_eq!(a + b, 8);
    assert!(a > b && b > 0, "{a} {b}");
}

#[test]
fn stuck_rollout_exceeds_progress_deadline() {
    let mut d = deployment(3, rolling("1", "0"));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(20);
    let mut sim = Sim::new(d);
    sim.settle(30, &mut |_| {});
    sim.broken.insert("img:b".into());
    sim.set_template("img:b");
    let mut requeues = Vec::new();
    for _ in 0..40 {
        let (p, _) = sim.reconcile();
        requeues.extend(p.requeue_after);
        sim.tick();
    }
    let prog = cond(&sim.d, "Progressing");
    assert_eq!(
        (prog.status.as_str(), prog.reason.as_deref()),
        ("False", Some(REASON_TIMED_OUT))
    );
    assert!(prog
        .message
        .as_deref()
        .unwrap()
        .ends_with("has timed out progressing."));
    let err = rollout_status(&sim.d).unwrap_err();
    assert_eq!(err.name, "web");
    assert_eq!(
        err.to_string(),
        "deployment \"web\" exceeded its progress deadline"
    );
    // Old pods keep serving: still available, no old pod was removed.
    assert_eq!(cond(&sim.d, "Available").status, "True");
    assert_eq!(spec_replicas(sim.rs("img:a")), 3);
    assert!(requeues
        .iter()
        .any(|r| *r > Duration::from_secs(1) && *r <= Duration::from_secs(21)));
    // Fixing the template recovers.
    sim.broken.clear();
    sim.set_template("img:c");
    sim.settle(60, &mut |_| {});
    assert_eq!(
        cond(&sim.d, "Progressing").reason.as_deref(),
        Some(REASON_NEW_RS_AVAILABLE)
    );
}

#[test]
fn hash_collision_bumps_collision_count() {
    let d = deployment(2, rolling("1", "0"));
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
    // An owned RS that took the name but has another template.
    let mut other = plan(
        &{
            let mut o = d.clone();
            o.spec.as_mut().unwrap().template = template("img:other");
            o
        },
        &[],
        t0(),
    )
    .unwrap()
    .create
    .unwrap();
    other.metadata.name = Some(format!("web-{hash}"));
    other.metadata.creation_timestamp = Some(Time(t0()));
    let p = plan(&d, &[other], t0()).unwrap();
    let created = p.create.unwrap();
    assert_eq!(p.status.collision_count, Some(1));
    let h1 = pod_template_hash(&d.spec.as_ref().unwrap().template, Some(1));
    assert_eq!(created.metadata.name, Some(format!("web-{h1}")));
    assert_eq!(annotation(&created, REVISION_ANNOTATION), Some("2"));
}

#[test]
fn deleting_deployment_only_updates_status() {
    let mut sim = settled(3, rolling("1", "0"));
    sim.d.metadata.deletion_timestamp = Some(Time(sim.now));
    sim.set_template("img:b");
    sim.spec_mut().replicas = Some(7);
    let p = plan(&sim.d, &sim.rss, sim.now).unwrap();
    assert!(p.create.is_none() && p.update.is_empty() && p.delete.is_empty());
    assert_eq!(p.status.observed_generation, sim.d.metadata.generation);
    assert_eq!(p.status.replicas, Some(3));
}

#[test]
fn foreign_replica_sets_are_ignored_and_adopted_ones_found() {
    let mut sim = settled(2, rolling("1", "0"));
    let mut foreign = sim.rss[0].clone();
    foreign.metadata.name = Some("someone-else".into());
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other-uid".into();
    foreign.spec.as_mut().unwrap().template = Some(template("img:b"));
    let mut rss = sim.rss.clone();
    rss.push(foreign);
    sim.set_template("img:b");
    let p = plan(&sim.d, &rss, sim.now).unwrap();
    assert!(p.create.is_some(), "a foreign RS is not the new RS");
    assert!(p
        .update
        .iter()
        .all(|u| u.metadata.name.as_deref() != Some("someone-else")));
    // A matching owned RS with an unparsable revision is still found as the new
    // one (no second create; upstream leaves such a revision alone).
    let mut owned = sim.rss.clone();
    let mut again = p.create.unwrap();
    again.metadata.creation_timestamp = Some(Time(sim.now));
    again
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(REVISION_ANNOTATION.into(), "not-a-number".into());
    owned.push(again);
    let p = plan(&sim.d, &owned, sim.now).unwrap();
    assert!(p.create.is_none());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let good = deployment(2, rolling("25%", "25%"));
    let mut cases: Vec<(&str, Deployment)> = Vec::new();
    let mut d = good.clone();
    d.spec = None;
    cases.push(("no spec", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    cases.push(("empty selector", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().template = PodTemplateSpec::default();
    cases.push(("empty template", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().template.spec = None;
    cases.push(("template without spec", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().template.metadata = None;
    cases.push(("selector does not match", d));
    let mut d = good.clone();
    d.metadata.name = None;
    cases.push(("no name", d));
    let mut d = good.clone();
    d.metadata.uid = None;
    cases.push(("no uid", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().replicas = Some(-1);
    cases.push(("negative replicas", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().strategy = Some(rolling("25%", "0"));
    d.spec
        .as_mut()
        .unwrap()
        .strategy
        .as_mut()
        .unwrap()
        .rolling_update
        .as_mut()
        .unwrap()
        .max_surge = Some(IntOrString::String("lots".into()));
    cases.push(("bad maxSurge", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().strategy.as_mut().unwrap().type_ = Some("BlueGreen".into());
    cases.push(("bad strategy", d));
    let mut d = good.clone();
    d.spec.as_mut().unwrap().revision_history_limit = Some(-3);
    cases.push(("negative history limit", d));
    for (what, d) in cases {
        assert!(plan(&d, &[], t0()).is_err(), "{what} should be rejected");
    }
    // Owned ReplicaSets without name or spec are rejected too.
    let rs = plan(&good, &[], t0()).unwrap().create.unwrap();
    let mut no_name = rs.clone();
    no_name.metadata.name = None;
    assert!(plan(&good, &[no_name], t0()).is_err());
    let mut no_spec = rs.clone();
    no_spec.spec = None;
    assert!(plan(&good, &[no_spec], t0()).is_err());
    // Odd but valid: no status, garbage annotations, defaults everywhere.
    let mut odd = rs.clone();
    odd.metadata.annotations = Some(
        [
            (DESIRED_REPLICAS_ANNOTATION.to_string(), "x".to_string()),
            (MAX_REPLICAS_ANNOTATION.to_string(), "-".to_string()),
        ]
        .into(),
    );
    let mut d = good.clone();
    d.spec.as_mut().unwrap().strategy = None;
    d.spec.as_mut().unwrap().replicas = None;
    let p = plan(&d, &[odd], t0()).unwrap();
    assert!(p.create.is_none());
}
