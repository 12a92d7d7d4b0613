//! Who may call whom: the platform's call graph as data, and the two places it is enforced.
//!
//! - [`graph`]: every workload's declared calls (callee and RPC path). Istio's
//!   AuthorizationPolicies in `istio/` are rendered from it and a test compares the two;
//!   another test records the calls the end-to-end suite really makes ([`observe`]) and fails on
//!   any the graph does not declare.
//! - Without a mesh, services talk mutual TLS themselves ([`tls`]): each presents a certificate
//!   naming its workload as a SPIFFE id ([`SpiffeId`]), and the server's [`WorkloadAuthzLayer`]
//!   refuses a caller the graph does not allow with PERMISSION_DENIED.
//!
//! The graph lives here rather than in each service's crate because both ends need it: the
//! caller to say what it calls, the callee to know whom to let in.

mod authz;
pub mod contracts;
pub mod dev_ca;
pub mod graph;
mod identity;
pub mod observe;
pub mod tls;

pub use authz::WorkloadAuthzLayer;
pub use graph::{Call, allows, declared};
pub use identity::{SpiffeId, Workload};
