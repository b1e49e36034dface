//! The control plane: the scheduler and the controllers, run as one
//! leader-follow singleton. They read the node's watch cache,
//! are pushed its events (nothing polls), and write under the fence token
//! of the leadership they run under.
//!
//! ```text
//! SingletonHost (leader only) ─► ControlPlane::run
//!                                  ├─ deployment         (ReplicaSets of each Deployment: rollouts)
//!                                  ├─ replicaset         (pods of each ReplicaSet)
//!                                  ├─ scheduler          (binds pending pods)
//!                                  ├─ garbage-collector  (dependents follow their owners)
//!                                  ├─ node-lifecycle     (unreachable nodes: taint, evict)
//!                                  ├─ endpoints          (Endpoints and EndpointSlices of Services)
//!                                  ├─ job                (pods of each Job, to completion)
//!                                  ├─ cronjob            (Jobs on a schedule, on the injectable clock)
//!                                  ├─ daemonset          (a pod on each eligible node; rollouts)
//!                                  ├─ namespace          (a deleted namespace's content, then itself)
//!                                  ├─ event-ttl          (Events expire after the TTL)
//!                                  ├─ disruption         (status of each PodDisruptionBudget)
//!                                  └─ …                  (each: runtime::run with its work queue)
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use shoal_model::cache::Cache;
use shoal_store::singleton::{Singleton, SingletonCtx};

pub mod claim;
pub mod cronjob;
pub mod cronjob_plan;
pub mod daemonset;
pub mod daemonset_plan;
pub mod deployment;
pub mod deployment_plan;
pub mod disruption;
pub mod disruption_plan;
pub mod endpoints;
pub mod event_ttl;
pub mod gc;
pub mod ingress;
pub mod job;
pub mod job_plan;
pub mod loadbalancer;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod revisions;
pub mod runtime;
pub mod slow_start;
pub mod statefulset;
pub mod statefulset_plan;
pub mod system_endpoints;
pub mod volume_plan;
pub mod volumes;

pub use crate::fenced::{
    create_object, delete_object, delete_pod, update_object, update_object_and_status,
    update_status, Fenced,
};

/// A pod that counts toward its owner: not terminating, not finished.
pub fn is_active(p: &Value) -> bool {
    // Field by field (no JSON pointer parsing): run over every pod of an
    // owner on each reconcile.
    let phase = p
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let deleting = p
        .get("metadata")
        .is_some_and(|m| m.get("deletionTimestamp").is_some());
    !deleting && phase != "Succeeded" && phase != "Failed"
}

/// A pod whose Ready condition is True.
pub fn is_ready(p: &Value) -> bool {
    p.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The scheduler and controllers, as one singleton.
pub struct ControlPlane {
    pub cache: Cache,
    pub membership: shoal_fabric::membership::Membership,
    pub actors: shoal_fabric::actor::ActorSystem,
    pub config: crate::config::ControlPlaneConfig,
    /// The address ranges the registry allocates from (a Service a
    /// controller creates gets its cluster IP as one created through the API).
    pub allocators: Arc<shoal_model::registry::Allocators>,
    /// The time of the time-driven controllers (CronJob schedules).
    pub clock: crate::clock::Clock,
}

impl Singleton for ControlPlane {
    fn name(&self) -> &str {
        "control-plane"
    }

    fn run(&self, ctx: SingletonCtx) -> BoxFuture<'static, ()> {
        let cache = self.cache.clone();
        let workers = self.config.workers;
        let (membership, actors, config, allocators) = (
            self.membership.clone(),
            self.actors.clone(),
            self.config.clone(),
            self.allocators.clone(),
        );
        let clock = self.clock.clone();
        Box::pin(async move {
            let fenced = Fenced {
                store: ctx.store.clone(),
                token: ctx.token,
            };
            // Every write of the control plane goes through the registry
            // over the fenced writer.
            let registry = shoal_model::registry::Registry::new(
                Arc::new(fenced.clone()),
                Some(cache.clone()),
                allocators.clone(),
            );
            // The cache must have caught up with this leader's log first,
            // or controllers would act on an old view (a ReplicaSet counting
            // pods the previous leader made as missing creates them again).
            // A read index can fail right after an election: try until it
            // works (the host aborts this task if leadership goes).
            let mut pause = std::time::Duration::from_millis(50);
            while let Err(e) = cache
                .sync(&ctx.store, std::time::Duration::from_secs(30))
                .await
            {
                tracing::warn!("control plane: the watch cache did not catch up yet: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            tracing::info!(node = %ctx.store.node(), "control plane running");
            // The Events of the controllers, fenced like their writes.
            let events = shoal_model::events::EventRecorder::new(
                Arc::new(fenced.clone()),
                "controller-manager",
                ctx.store.node(),
            )
            .enabled(config.events);
            let rs = Arc::new(replicaset::ReplicaSetController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: events.clone(),
            });
            let gc = Arc::new(gc::GarbageCollector {
                cache: cache.clone(),
                registry: registry.clone(),
            });
            let deploy = Arc::new(deployment::DeploymentController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: events.clone(),
            });
            let workers_ctx = runtime::Context {
                events,
                catch_up: Some((cache.clone(), ctx.store.clone())),
            };
            let mut tasks = tokio::task::JoinSet::new();
            tasks.spawn(runtime::run(
                rs,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            tasks.spawn(runtime::run(
                deploy,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let jobs = Arc::new(job::JobController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: workers_ctx.events.clone(),
            });
            tasks.spawn(runtime::run(
                jobs,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let disruption = Arc::new(disruption::DisruptionController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: workers_ctx.events.clone(),
                clock: clock.clone(),
            });
            tasks.spawn(runtime::run(
                disruption,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let cron = Arc::new(cronjob::CronJobController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: workers_ctx.events.clone(),
                clock,
            });
            tasks.spawn(runtime::run(
                cron,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let daemons = Arc::new(daemonset::DaemonSetController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: workers_ctx.events.clone(),
            });
            tasks.spawn(runtime::run(
                daemons,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let sets = Arc::new(statefulset::StatefulSetController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: workers_ctx.events.clone(),
            });
            tasks.spawn(runtime::run(
                sets,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let volumes = Arc::new(volumes::VolumeController {
                cache: cache.clone(),
                registry: registry.clone(),
                events: workers_ctx.events.clone(),
            });
            // Provisioning is a few writes per claim, each a round trip:
            // more at once, as an external provisioner's many workers.
            tasks.spawn(runtime::run(
                volumes,
                cache.clone(),
                workers * 4,
                workers_ctx.clone(),
            ));
            let namespaces = Arc::new(namespace::NamespaceController {
                cache: cache.clone(),
                registry: registry.clone(),
            });
            tasks.spawn(runtime::run(
                namespaces,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            tasks.spawn(
                event_ttl::EventTtl {
                    cache: cache.clone(),
                    registry: registry.clone(),
                    ttl: std::time::Duration::from_secs(config.event_ttl_secs.max(1)),
                }
                .run(),
            );
            let endpoints = Arc::new(endpoints::EndpointsController {
                cache: cache.clone(),
                registry: registry.clone(),
            });
            tasks.spawn(runtime::run(
                endpoints,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let lb = Arc::new(loadbalancer::LoadBalancerController {
                cache: cache.clone(),
                registry: registry.clone(),
            });
            tasks.spawn(runtime::run(
                lb,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let ingress = Arc::new(ingress::IngressController {
                cache: cache.clone(),
                registry: registry.clone(),
            });
            tasks.spawn(runtime::run(
                ingress,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            for system in [
                system_endpoints::SystemEndpoints::kube_dns(cache.clone(), registry.clone()),
                system_endpoints::SystemEndpoints::kubernetes(cache.clone(), registry.clone()),
            ] {
                tasks.spawn(runtime::run(
                    Arc::new(system),
                    cache.clone(),
                    1,
                    workers_ctx.clone(),
                ));
            }
            tasks.spawn(runtime::run(
                gc,
                cache.clone(),
                workers,
                workers_ctx.clone(),
            ));
            let lifecycle = nodelifecycle::NodeLifecycle {
                cache: cache.clone(),
                registry: registry.clone(),
                membership,
                actors,
                default_toleration: std::time::Duration::from_millis(config.eviction_toleration_ms),
                evictions_per_second: config.evictions_per_second,
                events: workers_ctx.events.clone(),
            };
            tasks.spawn(lifecycle.run());
            let scheduler = crate::scheduler::Scheduler {
                cache: cache.clone(),
                registry: registry.clone(),
                config: crate::scheduler::framework::Config {
                    strategy: config.scoring,
                    percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
                },
                // Fenced like every other write of the control plane.
                events: shoal_model::events::EventRecorder::new(
                    Arc::new(fenced.clone()),
                    crate::scheduler::NAME,
                    ctx.store.node(),
                )
                .enabled(config.events),
            };
            tasks.spawn(scheduler.run());
            while tasks.join_next().await.is_some() {}
        })
    }
}
