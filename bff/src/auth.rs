//! Authentication and authorization of every `/api/v1` route, in one middleware ([`guard`]):
//! the bearer token is validated (RS256/ES256 from the issuers' JWKS; 401 problem otherwise),
//! the principal's request budget is counted (429), and the role matrix of [`crate::policy`]
//! is applied (403). Handlers then take the [`Caller`].
//!
//! A client token identifies a person of the client portal, not yet a customer: handlers that
//! need the customer call [`own_customer`], which asks customer-svc (GetCustomerByIdentity,
//! with the client's own token). On the first call after sign-up no customer is linked yet:
//! `GET /api/v1/customers/me` (and every other route needing the customer) answers 404 with
//! type `https://ordermesh.dev/problems/customer-profile-missing`, and the portal creates the
//! profile with `POST /api/v1/customers/me`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ordermesh_platform::auth::{AuthError, Principal};
use ordermesh_platform::client::CallContext;
use ordermesh_proto::customer::GetCustomerByIdentityRequest;
use sha2::Digest;

use crate::AppState;
use crate::problem::Problem;

/// The correlation id of the request (from `X-Correlation-Id` or new), set for every request.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Who is calling, established by [`guard`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub token: String,
    pub correlation_id: String,
}

impl Caller {
    /// Context for calls made with the caller's own token.
    pub fn ctx(&self) -> CallContext {
        CallContext {
            bearer_token: Some(self.token.clone()),
            correlation_id: Some(self.correlation_id.clone()),
        }
    }

    pub fn is_client(&self) -> bool {
        matches!(self.principal, Principal::Client { .. })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "route without the auth guard");
            Problem::internal()
        })
    }
}

/// The bearer token of a request, if it has a well-formed `Authorization: Bearer` header.
fn bearer(request: &Request) -> Result<String, Problem> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("missing bearer token"))?
        .to_str()
        .map_err(|_| Problem::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| Problem::unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::unauthorized("expected a Bearer token"));
    }
    Ok(token.trim().to_owned())
}

/// The `ticket` query parameter of a `GET` of the notification stream without an
/// `Authorization` header.
fn stream_ticket(request: &Request, path: Option<&str>) -> Option<String> {
    if request.method() != axum::http::Method::GET
        || path != Some(crate::stream::STREAM_PATH)
        || request.headers().contains_key(header::AUTHORIZATION)
    {
        return None;
    }
    let query = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri()).ok()?;
    query.0.get("ticket").cloned()
}

/// Authenticates, rate-limits and authorizes one request of an `/api/v1` route.
pub async fn guard(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let unauthorized = |problem: Problem| {
        let mut response = problem.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        response
    };
    let path = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let token = match bearer(&request) {
        Ok(token) => token,
        // Browsers' EventSource cannot send headers: the stream also takes a stream ticket,
        // which carries the token it was issued for (see `crate::stream`).
        Err(problem) => match stream_ticket(&request, path.as_deref()) {
            Some(ticket) => match crate::stream::redeem_ticket(&state.cache, &ticket).await {
                Some(token) => token,
                None => return unauthorized(Problem::unauthorized("unknown, used or expired stream ticket")),
            },
            None => return unauthorized(problem),
        },
    };
    let principal = match state.validator.validate(&token).await {
        Ok(principal) => principal,
        Err(AuthError::JwksUnavailable(reason)) => {
            tracing::warn!(reason, "token issuer keys unavailable");
            return Problem::unavailable("the token issuer's keys are unavailable").into_response();
        }
        Err(error) => return unauthorized(Problem::unauthorized(error.to_string())),
    };

    crate::trace::record_caller(state.config.surface, &principal);
    crate::metrics::note_principal(&request, &principal);
    let decision = state.limiter.check(&principal).await;
    if !decision.allowed {
        let mut response = Problem::too_many_requests(decision.reset).into_response();
        decision.apply(response.headers_mut());
        return response;
    }

    let Some(path) = path else {
        return Problem::internal().into_response();
    };
    let Some(rule) = crate::policy::rule_for(request.method(), &path) else {
        // A method this path does not route (every routed operation has a rule; the
        // `every_route_has_a_rule` test keeps it so): the router answers 405 (404 externally).
        let mut response = next.run(request).await;
        decision.apply(response.headers_mut());
        return response;
    };
    if !rule.clients && !state.config.surface.serves_employee_routes() {
        // Not routed on this surface: the router answers 405 where another method of the path
        // serves clients; a path only employees use is unknown here.
        if crate::policy::path_serves_clients(&path) {
            return next.run(request).await;
        }
        return Problem::not_found("no such resource").into_response();
    }
    if let Err(problem) = crate::policy::authorize(rule, &principal) {
        let mut response = problem.into_response();
        decision.apply(response.headers_mut());
        return response;
    }

    let correlation_id = request
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    request.extensions_mut().insert(Caller {
        principal,
        token,
        correlation_id,
    });
    let mut response = next.run(request).await;
    decision.apply(response.headers_mut());
    response
}

/// How long a client's customer id is remembered.
const CUSTOMER_TTL: Duration = Duration::from_secs(60);

/// The customer linked to a client caller; 404 `customer-profile-missing` if none yet, 403 for
/// employees (whose routes never need this).
pub async fn own_customer(state: &AppState, caller: &Caller) -> Result<String, Problem> {
    let Principal::Client { issuer, subject } = &caller.principal else {
        return Err(Problem::forbidden("only clients have an own customer profile"));
    };
    let key = customer_key(issuer, subject);
    if let Some(id) = state.cache.get(&key).await.and_then(|v| String::from_utf8(v).ok()) {
        return Ok(id);
    }
    let request = caller.ctx().request(GetCustomerByIdentityRequest {
        issuer: issuer.clone(),
        subject: subject.clone(),
    });
    match state
        .clients
        .customer
        .read
        .clone()
        .get_customer_by_identity(request)
        .await
    {
        Ok(response) => {
            let id = response
                .into_inner()
                .customer
                .map(|c| c.id)
                .ok_or_else(Problem::internal)?;
            state.cache.set_with_ttl(&key, id.as_bytes(), CUSTOMER_TTL).await;
            Ok(id)
        }
        Err(status) if status.code() == tonic::Code::NotFound => Err(Problem::customer_profile_missing()),
        Err(status) => Err(Problem::from_status(&status)),
    }
}

/// Forgets the cached customer of a client (after it created or erased its profile).
pub async fn forget_customer(state: &AppState, caller: &Caller) {
    if let Principal::Client { issuer, subject } = &caller.principal {
        let key = customer_key(issuer, subject);
        state.cache.delete(&key).await;
    }
}

fn customer_key(issuer: &str, subject: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{issuer}\0{subject}").as_bytes());
    format!(
        "customer-of:{}",
        digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}
