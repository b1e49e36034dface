//! shoal-model: the Kubernetes object model, between the store and every
//! component that reads or writes Kubernetes objects. The resource table
//! (`resources`), JSON objects with their metadata rules (`objects`),
//! defaulting (`defaults`) and validation (`objects::validation`),
//! selectors, strategic merge patch (`smp`), Events (`events`), Service IP
//! and NodePort allocation (`alloc`), the errors of the Kubernetes surface
//! (`errors`), and the watch cache (`cache`) that the API, the scheduler,
//! the controllers, the kubelet fleet and `shoal sim` read from.
//!
//! ```text
//!   store events (pushed) ──► cache (per resource, a window of history)
//!                               │ lists, watches, owner index
//!            api · scheduler · controllers · kubelet fleet
//! ```

pub mod alloc;
pub mod announce;
pub mod cache;
pub mod cron;
pub mod defaults;
pub mod disruption;
pub mod errors;
pub mod events;
pub mod node_authorizer;
pub mod objects;
pub mod podcidr;
pub mod quantity;
pub mod registry;
pub mod resources;
pub mod selectors;
pub mod smp;
pub mod writer;
