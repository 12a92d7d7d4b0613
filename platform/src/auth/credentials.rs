//! Credentials a service presents when it calls another service on its own behalf (saga steps
//! that no user is waiting on). Calls made for a user forward the user's token instead.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{DevIssuer, DevTokenRequest, IssuerKind};

#[derive(Clone, Default)]
pub enum ServiceCredentials {
    /// No token: calls that need one fail with UNAUTHENTICATED.
    #[default]
    None,
    /// A token file kept fresh by the platform (e.g. a projected Kubernetes service-account token
    /// exchanged for a workload-identity token); read on every use so rotation needs no restart.
    File(PathBuf),
    /// Tokens minted in-process by the embedded profile's dev issuer (see
    /// [`ServiceCredentials::dev`]).
    Dev(Arc<DevCredentials>),
}

/// A dev issuer minting one service's tokens, each used until shortly before it expires: a
/// token per call would cost a signature here and, at the callee, a verification its token
/// cache can never spare (every token would be new).
pub struct DevCredentials {
    issuer: Arc<DevIssuer>,
    service: String,
    audience: String,
    minted: Mutex<Option<(String, Instant)>>,
}

/// Lifetime of a minted service token.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(300);
/// A token is replaced this long before it expires, so none is sent about to lapse.
const DEV_TOKEN_RENEWAL: Duration = Duration::from_secs(60);

impl DevCredentials {
    fn token(&self) -> anyhow::Result<String> {
        let mut minted = self.minted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((token, renew_at)) = minted.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let token = self.issuer.mint(&DevTokenRequest {
            kind: IssuerKind::Service,
            subject: self.service.clone(),
            roles: Vec::new(),
            audience: self.audience.clone(),
            ttl: DEV_TOKEN_TTL,
        })?;
        *minted = Some((token.clone(), Instant::now() + DEV_TOKEN_TTL - DEV_TOKEN_RENEWAL));
        Ok(token)
    }
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Dev(dev) => f
                .debug_struct("Dev")
                .field("service", &dev.service)
                .finish_non_exhaustive(),
        }
    }
}

impl ServiceCredentials {
    /// Tokens of service `service` for `audience`, minted by `issuer`.
    pub fn dev(issuer: Arc<DevIssuer>, service: impl Into<String>, audience: impl Into<String>) -> Self {
        Self::Dev(Arc::new(DevCredentials {
            issuer,
            service: service.into(),
            audience: audience.into(),
            minted: Mutex::new(None),
        }))
    }

    /// The bearer token to send now, if any.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        match self {
            Self::None => Ok(None),
            Self::File(path) => Ok(Some(std::fs::read_to_string(path)?.trim().to_owned())),
            Self::Dev(dev) => Ok(Some(dev.token()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_token_is_reused_until_its_renewal_time() {
        let issuer = Arc::new(DevIssuer::generate("http://127.0.0.1:1").unwrap());
        let credentials = ServiceCredentials::dev(issuer, "order-svc", "ordermesh");
        let first = credentials.token().unwrap().unwrap();
        assert_eq!(credentials.token().unwrap().unwrap(), first);
        let ServiceCredentials::Dev(dev) = &credentials else {
            unreachable!()
        };
        // As if the renewal time had passed: a new token is minted. (Within the same second it
        // may equal the first — ES256 signatures here are deterministic — hence the marker.)
        *dev.minted.lock().unwrap() = Some(("stale".into(), Instant::now()));
        let renewed = credentials.token().unwrap().unwrap();
        assert_ne!(renewed, "stale");
        assert_eq!(credentials.token().unwrap().unwrap(), renewed);
    }
}
