//! shoal-control: the control plane, run as leader-follow singletons on
//! the node that leads the store's Raft group. The scheduler
//! (`scheduler`: kube-scheduler's filter and score plugins, bindings in
//! batches) and the controllers (`controllers`: ReplicaSet, Deployment,
//! Job, CronJob, DaemonSet, namespaces, Events, garbage collection, node
//! lifecycle, Services) read the watch cache and write through the store
//! with the leader's fencing token. Time-driven controllers read `clock`.

pub mod clock;
pub mod config;
pub mod controllers;
pub mod errors;
pub mod fenced;
pub mod scheduler;
