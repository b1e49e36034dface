//! shoal-control: the control plane, run as leader-follow singletons on
//! the node that leads the store's Raft group. The scheduler
//! (`scheduler`: kube-scheduler's filter and score plugins, bindings in
//! batches) and the controllers (`controllers`: ReplicaSet, Deployment,
//! garbage collection, node lifecycle) read the watch cache and write
//! through the store with the leader's fencing token.

pub mod config;
pub mod controllers;
pub mod errors;
pub mod fenced;
pub mod scheduler;
