use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::verified::{TokenCacheStats, Verified, VerifiedTokens};
use super::{AuthConfig, IssuerConfig, IssuerKind, Principal, Role};

/// Why a token was rejected. The message is safe to return to the caller: it names the failed
/// check, never the token or its claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not allowed (RS256, ES256 only)")]
    AlgorithmNotAllowed(String),
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    #[error("token header has no key id (kid)")]
    MissingKeyId,
    #[error("signing key {0:?} is not in the issuer's key set")]
    UnknownKeyId(String),
    #[error("token algorithm does not match its signing key")]
    AlgorithmMismatch,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token issuer does not match")]
    WrongIssuer,
    #[error("token audience does not match")]
    WrongAudience,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("required claim {0:?} is missing")]
    MissingClaim(String),
    #[error("claim {0} has an invalid format")]
    InvalidClaim(String),
    #[error("issuer keys unavailable: {0}")]
    JwksUnavailable(String),
}

const ALLOWED: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Validates bearer tokens from the configured issuers (DESIGN §5): RS256/ES256 only, the
/// algorithm taken from the issuer's key (never from the token), `exp`, `iss`, `aud` required and
/// `nbf` honoured, with leeway. Keys come from each issuer's JWKS, fetched lazily and refetched on
/// an unknown `kid` at most once per cooldown.
///
/// A token that passed is remembered (by the SHA-256 of the whole token) until it expires, so
/// its signature is checked once per validator — and, with [`JwtValidator::shared`], once per
/// process — however many layers and services a request passes; `exp` and `nbf` are checked
/// again on every use, and a change of the issuer's key set makes every token of that issuer be
/// verified again (a key that left the set no longer admits its tokens).
pub struct JwtValidator {
    issuers: Vec<IssuerState>,
    http: reqwest::Client,
    config: AuthConfig,
    verified: VerifiedTokens,
}

struct IssuerState {
    config: IssuerConfig,
    keys: RwLock<HashMap<String, (Algorithm, Arc<DecodingKey>)>>,
    /// Bumped whenever `keys` is replaced; remembered tokens carry the generation they were
    /// verified with.
    generation: AtomicU64,
    fetch: Mutex<FetchState>,
}

impl IssuerState {
    /// Key `kid` and the generation of the key set holding it, read together.
    async fn find(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>, u64)> {
        let keys = self.keys.read().await;
        let (alg, key) = keys.get(kid)?;
        Some((*alg, key.clone(), self.generation.load(Ordering::Acquire)))
    }
}

#[derive(Default)]
struct FetchState {
    loaded: bool,
    /// Last refetch caused by an unknown kid; such refetches are rate-limited by the cooldown.
    last_refetch: Option<Instant>,
    /// Last failed fetch; retried at most once per second so a down issuer is not hammered.
    last_failure: Option<Instant>,
}

#[derive(Deserialize)]
struct UnverifiedHeader {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    iss: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    /// NumericDate: seconds, possibly fractional. Required; the library reports its absence.
    exp: Option<f64>,
    nbf: Option<f64>,
}

impl JwtValidator {
    pub fn new(config: AuthConfig) -> Self {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("HTTP client for JWKS");
        let issuers = config
            .issuers
            .iter()
            .map(|issuer| IssuerState {
                config: issuer.clone(),
                keys: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                fetch: Mutex::new(FetchState::default()),
            })
            .collect();
        Self {
            issuers,
            http,
            verified: VerifiedTokens::new(config.token_cache_size),
            config,
        }
    }

    /// The process's one validator for `config`: every service and the BFF of one process (as
    /// `ordermesh up` runs them) share its key sets and its verified tokens.
    pub fn shared(config: AuthConfig) -> Arc<Self> {
        static SHARED: std::sync::Mutex<Vec<(String, Weak<JwtValidator>)>> = std::sync::Mutex::new(Vec::new());
        let fingerprint = format!("{config:?}");
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        shared.retain(|(_, validator)| validator.strong_count() > 0);
        if let Some(validator) = shared
            .iter()
            .find(|(f, _)| *f == fingerprint)
            .and_then(|(_, v)| v.upgrade())
        {
            return validator;
        }
        let validator = Arc::new(Self::new(config));
        shared.push((fingerprint, Arc::downgrade(&validator)));
        validator
    }

    /// How often tokens were answered from memory and how many are remembered.
    pub fn cache_stats(&self) -> TokenCacheStats {
        self.verified.stats()
    }

    /// Validates `token` and returns who it identifies.
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        let key = VerifiedTokens::key(token);
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let leeway = self.config.leeway.as_secs() as i64;
        let generation = |issuer: usize| self.issuers[issuer].generation.load(Ordering::Acquire);
        if let Some(remembered) = self.verified.get(&key, now, leeway, generation) {
            return remembered;
        }
        let verified = self.verify(token).await?;
        let principal = verified.principal.clone();
        self.verified.insert(key, verified, now);
        Ok(principal)
    }

    /// Every check of a token, with its signature.
    async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts".into()));
        };
        let header: UnverifiedHeader = decode_segment(header, "header")?;
        let alg = header
            .alg
            .ok_or_else(|| AuthError::Malformed("header has no alg".into()))?;
        let header_alg = ALLOWED
            .into_iter()
            .find(|allowed| format!("{allowed:?}") == alg)
            .ok_or(AuthError::AlgorithmNotAllowed(alg))?;
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;

        // The issuer is read unverified only to choose whose keys to verify with; the verified
        // `iss` must then match that same issuer.
        let claimed: UnverifiedClaims = decode_segment(payload, "payload")?;
        // Time claims must be NumericDate; the library would only call a string "missing".
        for (name, value) in [("exp", &claimed.exp), ("nbf", &claimed.nbf)] {
            if value.as_ref().is_some_and(|v| !v.is_number()) {
                return Err(AuthError::InvalidClaim(format!("{name} (must be a number of seconds)")));
            }
        }
        let (index, issuer) = match claimed.iss {
            Some(serde_json::Value::String(iss)) => self
                .issuers
                .iter()
                .enumerate()
                .find(|(_, state)| state.config.issuer == iss)
                .ok_or(AuthError::UnknownIssuer)?,
            Some(_) => return Err(AuthError::InvalidClaim("iss".into())),
            None => return Err(AuthError::MissingClaim("iss".into())),
        };

        let (key_alg, key, generation) = self.key(issuer, &kid).await?;
        if key_alg != header_alg {
            return Err(AuthError::AlgorithmMismatch);
        }
        let mut validation = Validation::new(key_alg);
        validation.algorithms = vec![key_alg];
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&[&issuer.config.audience]);

        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|error| map_error(error.into_kind()))?
            .claims;
        let principal = match issuer.config.kind {
            IssuerKind::Employee => Principal::Employee {
                subject: claims.sub,
                roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(),
            },
            IssuerKind::Client => Principal::Client {
                issuer: issuer.config.issuer.clone(),
                subject: claims.sub,
            },
            IssuerKind::Service => Principal::Service { name: claims.sub },
        };
        Ok(Verified {
            principal,
            exp: claims.exp.ok_or_else(|| AuthError::MissingClaim("exp".into()))? as i64,
            nbf: claims.nbf.map(|nbf| nbf as i64),
            issuer: index,
            generation,
        })
    }

    /// The key `kid` of `issuer`, with the generation of the key set it was found in.
    async fn key(&self, issuer: &IssuerState, kid: &str) -> Result<(Algorithm, Arc<DecodingKey>, u64), AuthError> {
        if let Some(found) = issuer.find(kid).await {
            return Ok(found);
        }
        // One fetch at a time per issuer; a burst of tokens with an unknown kid costs one request.
        let mut state = issuer.fetch.lock().await;
        if let Some(found) = issuer.find(kid).await {
            return Ok(found);
        }
        let recently_failed = state
            .last_failure
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        let may_fetch = !recently_failed
            && (!state.loaded
                || state
                    .last_refetch
                    .is_none_or(|at| at.elapsed() >= self.config.jwks_refetch_cooldown));
        if may_fetch {
            if state.loaded {
                state.last_refetch = Some(Instant::now());
            }
            match self.fetch_keys(&issuer.config).await {
                Ok(keys) => {
                    let mut current = issuer.keys.write().await;
                    *current = keys;
                    // Under the write lock: a reader sees the new keys with the new generation.
                    issuer.generation.fetch_add(1, Ordering::AcqRel);
                    state.loaded = true;
                    state.last_failure = None;
                }
                Err(error) => {
                    state.last_failure = Some(Instant::now());
                    return Err(error);
                }
            }
        }
        issuer
            .find(kid)
            .await
            .ok_or_else(|| AuthError::UnknownKeyId(kid.to_owned()))
    }

    async fn fetch_keys(
        &self,
        issuer: &IssuerConfig,
    ) -> Result<HashMap<String, (Algorithm, Arc<DecodingKey>)>, AuthError> {
        let unavailable = |e: reqwest::Error| AuthError::JwksUnavailable(e.without_url().to_string());
        let jwks_url = match &issuer.jwks_url {
            Some(url) => url.clone(),
            None => {
                #[derive(Deserialize)]
                struct Discovery {
                    jwks_uri: String,
                }
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(unavailable)?
                    .json()
                    .await
                    .map_err(unavailable)?;
                discovery.jwks_uri
            }
        };
        let set: JwkSet = self
            .http
            .get(jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        tracing::info!(issuer = %issuer.issuer, keys = set.keys.len(), "fetched JWKS");
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
                    _ => return None,
                };
                // A key that declares another algorithm is not used for this one.
                if let Some(declared) = jwk.common.key_algorithm
                    && format!("{declared:?}") != format!("{alg:?}")
                {
                    return None;
                }
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, (alg, Arc::new(key))))
            })
            .collect())
    }
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str, what: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed(format!("{what} is not valid JSON")))
}

fn map_error(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
        ErrorKind::InvalidAlgorithm => AuthError::AlgorithmMismatch,
        ErrorKind::Json(error) => AuthError::InvalidClaim(error.to_string()),
        other => AuthError::Malformed(format!("{other:?}")),
    }
}
