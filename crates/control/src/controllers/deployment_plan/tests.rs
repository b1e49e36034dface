//! Tests of the Deployment planning, with a simulated rollout.

use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};

mod strategies_and_history;

// ----- fixtures -----

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn ios(s: &str) -> IntOrString {
    if s.ends_with('%') {
        IntOrString::String(s.into())
    } else {
        IntOrString::Int(s.parse().unwrap())
    }
}

fn rolling(surge: &str, unavailable: &str) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(ios(surge)),
            max_unavailable: Some(ios(unavailable)),
        }),
    }
}

fn recreate() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    }
}

fn deployment(replicas: i32, strategy: DeploymentStrategy) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            template: template("img:a"),
            strategy: Some(strategy),
            ..Default::default()
        }),
        status: None,
    }
}

fn t0() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000).unwrap()
}

fn image(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

fn cond<'a>(d: &'a Deployment, t: &str) -> &'a DeploymentCondition {
    get_condition(d.status.as_ref().unwrap(), t).unwrap_or_else(|| panic!("no {t} condition"))
}

// ----- simulation harness: API server + fake RS controller + kubelet -----

struct Sim {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    now: jiff::Timestamp,
    next_uid: u32,
    creates: usize,
    /// Images whose pods never become available.
    broken: BTreeSet<String>,
    /// Every intermediate state, for failure messages.
    log: Vec<String>,
}

impl Sim {
    fn new(d: Deployment) -> Self {
        Sim {
            d,
            rss: vec![],
            now: t0(),
            next_uid: 0,
            creates: 0,
            broken: BTreeSet::new(),
            log: vec![],
        }
    }

    fn spec_mut(&mut self) -> &mut DeploymentSpec {
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(0) + 1);
        self.d.spec.as_mut().unwrap()
    }

    fn set_template(&mut self, img: &str) {
        self.spec_mut().template = template(img);
    }

    fn rs(&self, img: &str) -> &ReplicaSet {
        self.rss
            .iter()
            .find(|r| image(r) == img)
            .unwrap_or_else(|| panic!("no RS for {img}"))
    }

    /// Calls plan() and applies it like the API server would.
    fn reconcile(&mut self) -> (Plan, bool) {
        let p = plan(&self.d, &self.rss, self.now).expect("plan failed");
        let changed = p.has_changes(&self.d);
        if let Some(c) = &p.create {
            assert!(
                !self.rss.iter().any(|r| r.metadata.name == c.metadata.name),
                "create of existing name"
            );
            let mut c = c.clone();
            self.next_uid += 1;
            c.metadata.uid = Some(format!("rs-uid-{}", self.next_uid));
            c.metadata.creation_timestamp = Some(Time(self.now));
            c.metadata.generation = Some(1);
            self.rss.push(c);
            self.creates += 1;
        }
        for u in &p.update {
            let slot = self
                .rss
                .iter_mut()
                .find(|r| r.metadata.name == u.metadata.name)
                .expect("update of unknown RS");
            let generation = slot.metadata.generation.unwrap_or(0) + 1;
            *slot = u.clone();
            slot.metadata.generation = Some(generation);
        }
        for name in &p.delete {
            let i = self
                .rss
                .iter()
                .position(|r| r.metadata.name.as_ref() == Some(name))
                .expect("delete of unknown RS");
            assert_eq!(
                (spec_replicas(&self.rss[i]), status_replicas(&self.rss[i])),
                (0, 0),
                "deleting a live RS"
            );
            self.rss.remove(i);
        }
        if let Some(a) = &p.deployment_annotations {
            self.d.metadata.annotations = Some(a.clone());
        }
        self.d.status = Some(p.status.clone());
        self.log.push(format!("plan  {}", self.snapshot()));
        (p, changed)
    }

    /// One pod at a time per RS: the kubelet makes one pending pod
    /// available, then the RS controller creates or deletes one pod
    /// (unavailable ones first).
    fn tick(&mut self) {
        for rs in &mut self.rss {
            let spec = spec_replicas(rs);
            let (mut r, mut a) = (status_replicas(rs), status_available(rs));
            if a < r && !self.broken.contains(&image(rs)) {
                a += 1;
            }
            if r > spec {
                if a == r {
                    a -= 1;
                }
                r -= 1;
            } else if r < spec {
                r += 1;
            }
            rs.status = Some(ReplicaSetStatus {
                replicas: r as i32,
                ready_replicas: Some(a as i32),
                available_replicas: Some(a as i32),
                observed_generation: rs.metadata.generation,
                ..Default::default()
            });
        }
        self.now = self
            .now
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap();
        self.log.push(format!("tick  {}", self.snapshot()));
    }

    fn snapshot(&self) -> String {
        let rs: Vec<String> = self
            .rss
            .iter()
            .map(|r| {
                format!(
                    "{}[{}] spec={} pods={} avail={}",
                    image(r),
                    annotation(r, REVISION_ANNOTATION).unwrap_or("?"),
                    spec_replicas(r),
                    status_replicas(r),
                    status_available(r)
                )
            })
            .collect();
        format!("{} | {:?}", rs.join(", "), rollout_status(&self.d))
    }

    /// (sum spec.replicas, sum status.replicas, sum available)
    fn totals(&self) -> (i64, i64, i64) {
        let a: Vec<usize> = (0..self.rss.len()).collect();
        let f = |g: fn(&ReplicaSet) -> i64| a.iter().map(|&i| g(&self.rss[i])).sum::<i64>();
        (f(spec_replicas), f(status_replicas), f(status_available))
    }

    fn rollout_done(&self) -> bool {
        let img = image(&ReplicaSet {
            spec: Some(ReplicaSetSpec {
                template: Some(self.d.spec.as_ref().unwrap().template.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        matches!(rollout_status(&self.d), Ok((_, true)))
            && self
                .rss
                .iter()
                .filter(|r| image(r) != img)
                .all(|r| spec_replicas(r) == 0 && status_replicas(r) == 0)
    }

    /// plan/tick until the rollout is done and a plan changes nothing;
    /// `check` sees every intermediate state. Returns the number of plans.
    fn settle(&mut self, max: usize, check: &mut dyn FnMut(&Sim)) -> usize {
        for step in 1..=max {
            let (_, changed) = self.reconcile();
            check(self);
            if !changed && self.rollout_done() {
                return step;
            }
            self.tick();
            check(self);
        }
        panic!(
            "did not settle within {max} steps:\n{}",
            self.log.join("\n")
        );
    }
}

fn settled(replicas: i32, strategy: DeploymentStrategy) -> Sim {
    let mut sim = Sim::new(deployment(replicas, strategy));
    sim.settle(200, &mut |_| {});
    sim
}

// ----- tests -----

#[test]
fn hash_is_stable_and_ignores_hash_label_and_empty_values() {
    let a = template("img:a");
    let h = pod_template_hash(&a, None);
    // Golden value: must never change, or every existing ReplicaSet would be replaced.
    assert_eq!(h, "78b9477f6f"); // cross-checked with an independent FNV-1a implementation
    assert!(h.bytes().all(|b| HASH_ALPHABET.contains(&b)));
    let mut b = template("img:a");
    b.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), "xyz".into());
    b.spec.as_mut().unwrap().containers[0].env = Some(vec![]);
    b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
    assert!(equal_ignore_hash(&a, &b));
    assert_eq!(pod_template_hash(&b, None), h);
    assert!(!equal_ignore_hash(&a, &template("img:b")));
    assert_ne!(pod_template_hash(&template("img:b"), None), h);
    let c1 = pod_template_hash(&a, Some(1));
    assert_ne!(c1, h);
    assert_ne!(c1, pod_template_hash(&a, Some(2)));
    assert_eq!(c1, pod_template_hash(&template("img:a"), Some(1)));
}

#[test]
fn fenceposts_round_like_upstream() {
    let f = |s: &str, u: &str, n| resolve_fenceposts(&ios(s), &ios(u), n).unwrap();
    assert_eq!(f("25%", "25%", 10), (3, 2));
    assert_eq!(f("25%", "25%", 3), (1, 0));
    assert_eq!(f("0", "0", 5), (0, 1));
    assert_eq!(f("0%", "10%", 5), (0, 1)); // 0.5 rounds down to 0, then 1
    assert_eq!(f("50%", "0", 4), (2, 0));
    assert!(resolve_fenceposts(&ios("25%"), &IntOrString::String("abc".into()), 4).is_err());
    assert!(resolve_fenceposts(&IntOrString::Int(-1), &ios("1"), 4).is_err());
}

#[test]
fn first_plan_creates_new_replica_set() {
    let mut d = deployment(3, rolling("25%", "25%"));
    d.metadata.annotations = Some(
        [(
            "kubernetes.io/change-cause".to_string(),
            "initial".to_string(),
        )]
        .into(),
    );
    let p = plan(&d, &[], t0()).unwrap();
    let rs = p.create.expect("creates an RS");
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(rs.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    assert_eq!(spec.selector.match_labels.as_ref().unwrap()["app"], "web");
    let tl = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(tl[POD_TEMPLATE_HASH_LABEL], hash);
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Deployment", "web", "uid-web")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let ann = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[REVISION_ANNOTATION], "1");
    assert_eq!(ann[DESIRED_REPLICAS_ANNOTATION], "3");
    assert_eq!(ann[MAX_REPLICAS_ANNOTATION], "4");
    assert_eq!(ann["kubernetes.io/change-cause"], "initial");
    assert!(p.update.is_empty() && p.delete.is_empty());
    assert_eq!(p.deployment_annotations.unwrap()[REVISION_ANNOTATION], "1");
    assert_eq!(p.status.observed_generation, Some(1));
    let mut d2 = d.clone();
    d2.status = Some(p.status);
    let prog = cond(&d2, "Progressing");
    assert_eq!(
        (prog.status.as_str(), prog.reason.as_deref()),
        ("True", Some(REASON_NEW_RS_CREATED))
    );
    assert_eq!(
        prog.message.as_deref(),
        Some(format!("Created new replica set \"web-{hash}\"").as_str())
    );
    let avail = cond(&d2, "Available");
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_deref()),
        ("False", Some(REASON_MIN_UNAVAILABLE))
    );
}

#[test]
fn settled_deployment_reports_complete_status() {
    let sim = settled(3, rolling("25%", "25%"));
    let st = sim.d.status.as_ref().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(st.unavailable_replicas, None);
    let rs_name = sim.rss[0].metadata.name.clone().unwrap();
    let prog = cond(&sim.d, "Progressing");
    assert_eq!(prog.reason.as_deref(), Some(REASON_NEW_RS_AVAILABLE));
    assert_eq!(
        prog.message.as_deref(),
        Some(format!("ReplicaSet \"{rs_name}\" has successfully progressed.").as_str())
    );
    let avail = cond(&sim.d, "Available");
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_deref()),
        ("True", Some(REASON_MIN_AVAILABLE))
    );
    assert_eq!(
        rollout_status(&sim.d),
        Ok(("deployment \"web\" successfully rolled out".into(), true))
    );
    // Steady state: planning again changes nothing.
    let p = plan(&sim.d, &sim.rss, sim.now).unwrap();
    assert!(!p.has_changes(&sim.d), "{p:?}");
    assert_eq!(p.requeue_after, None);
}

#[test]
fn rolling_update_table_respects_surge_and_unavailability() {
    // (replicas, maxSurge, maxUnavailable, resolved surge, resolved unavailable)
    let table = [
        (3, "1", "0", 1, 0),
        (3, "0", "1", 0, 1),
        (10, "25%", "25%", 3, 2),
        (5, "2", "2", 2, 2),
        (1, "0", "1", 0, 1),
        (4, "50%", "0", 2, 0),
    ];
    for (r, s, u, surge, unavail) in table {
        let mut sim = settled(r, rolling(s, u));
        assert_eq!(sim.rss.len(), 1);
        sim.set_template("img:b");
        let (max_total, min_avail) = (i64::from(r) + surge, i64::from(r) - unavail);
        let mut violations = Vec::new();
        let mut states = 0;
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let bound = 3 * r as usize + 10;
        let steps = sim.settle(bound, &mut |s| {
            states += 1;
            let (spec, pods, avail) = s.totals();
            if spec > max_total || pods > max_total || avail < min_avail {
                violations.push(format!(
                    "spec={spec} pods={pods} avail={avail}: {}",
                    s.snapshot()
                ));
            }
            for rs in &s.rss {
                let (img, now) = (image(rs), spec_replicas(rs));
                let prev = last.insert(img.clone(), now).unwrap_or(if img == "img:b" {
                    0
                } else {
                    i64::from(r)
                });
                // new RS only grows, old RS only shrinks
                if (img == "img:b" && now < prev) || (img == "img:a" && now > prev) {
                    violations.push(format!("{img} went {prev} -> {now}"));
                }
            }
        });
        let ctx = format!(
            "case ({r},{s},{u}) after {steps} steps:\n{}",
            sim.log.join("\n")
        );
        assert!(violations.is_empty(), "{violations:?}\n{ctx}");
        assert!(states >= 2 * steps - 1, "{ctx}");
        assert!(steps <= bound, "{ctx}");
        assert_eq!(sim.creates, 2, "{ctx}");
        assert_eq!(spec_replicas(sim.rs("img:b")), i64::from(r), "{ctx}");
        assert_eq!(spec_replicas(sim.rs("img:a")), 0, "{ctx}");
        assert_eq!(annotation(sim.rs("img:b"), REVISION_ANNOTATION), Some("2"));
        assert_eq!(annotation(sim.rs("img:a"), REVISION_ANNOTATION), Some("1"));
        assert_eq!(
            sim.d.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            "2"
        );
        assert_eq!(
            cond(&sim.d, "Progressing").reason.as_deref(),
            Some(REASON_NEW_RS_AVAILABLE),
            "{ctx}"
        );
    }
}
