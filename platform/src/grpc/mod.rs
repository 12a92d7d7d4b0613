//! gRPC scaffolding shared by the six services: the server builder, the authentication layer,
//! request tracing, and the `main` of each service binary.

mod auth_layer;
mod limits;
mod server;
mod trace_layer;

pub use auth_layer::{AuthLayer, AuthService, BearerToken, caller, principal, principal_opt};
pub use limits::MessageLimits;
pub use server::{GrpcServer, RoutableService, run_main};
pub use trace_layer::{CorrelationId, GrpcTraceLayer, GrpcTraceService};
