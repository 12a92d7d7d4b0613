//! Credentials a service presents when it calls another service on its own behalf (saga steps
//! that no user is waiting on). Calls made for a user forward the user's token instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{DevIssuer, DevTokenRequest, IssuerKind};

#[derive(Clone, Default)]
pub enum ServiceCredentials {
    /// No token: calls that need one fail with UNAUTHENTICATED.
    #[default]
    None,
    /// A token file kept fresh by the platform (e.g. a projected Kubernetes service-account token
    /// exchanged for a workload-identity token); read on every use so rotation needs no restart.
    File(PathBuf),
    /// Tokens minted in-process by the embedded profile's dev issuer.
    Dev {
        issuer: Arc<DevIssuer>,
        service: String,
        audience: String,
    },
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Dev { service, .. } => f.debug_struct("Dev").field("service", service).finish_non_exhaustive(),
        }
    }
}

impl ServiceCredentials {
    /// The bearer token to send now, if any.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        match self {
            Self::None => Ok(None),
            Self::File(path) => Ok(Some(std::fs::read_to_string(path)?.trim().to_owned())),
            Self::Dev {
                issuer,
                service,
                audience,
            } => Ok(Some(issuer.mint(&DevTokenRequest {
                kind: IssuerKind::Service,
                subject: service.clone(),
                roles: Vec::new(),
                audience: audience.clone(),
                ttl: Duration::from_secs(300),
            })?)),
        }
    }
}
