//! The service proxy of every node (`proxy@<node>`): Services and
//! EndpointSlices, pushed to it by store watches, become nftables rules in
//! tables of the node's own (`ip shoal-<slot>-<shard>`), which route ClusterIPs
//! and NodePorts to endpoints. [`model`] reads what a Service routes,
//! [`rules`] turns it into chains and map elements, [`nft`] into the
//! commands between two versions, and [`proxy`] keeps the committed state
//! in memory and applies only deltas.
//!
//! See docs/ARCHITECTURE.md ("Service networking").

pub mod actor;
pub mod dns;
pub mod follow;
pub mod ingress;
pub mod model;
pub mod nft;
pub mod proxy;
pub mod rules;
pub mod start;

#[cfg(test)]
mod kernel_tests;
