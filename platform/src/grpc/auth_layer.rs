use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

use crate::auth::{JwtValidator, Principal};

/// The raw bearer token of an authenticated call, kept so a service can forward the user's token
/// to the services it calls.
#[derive(Clone, Debug)]
pub struct BearerToken(pub String);

/// Paths anyone may call: load balancers and grpcurl must reach health and reflection unauthenticated.
fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Authenticates the `authorization: Bearer …` metadata of each call and puts the [`Principal`]
/// (and the [`BearerToken`]) in the request extensions. A call with an invalid token is
/// rejected here with UNAUTHENTICATED and the reason; a call with no token passes through
/// without a principal, and handlers that need one answer UNAUTHENTICATED via [`principal`].
#[derive(Clone)]
pub struct AuthLayer {
    validator: Option<Arc<JwtValidator>>,
}

impl AuthLayer {
    pub fn new(validator: Option<Arc<JwtValidator>>) -> Self {
        Self { validator }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            validator: self.validator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    validator: Option<Arc<JwtValidator>>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The ready service is the one that must be called; keep a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let validator = self.validator.clone();
        Box::pin(async move {
            if !is_public(request.uri().path())
                && let Some(token) = bearer_token(request.headers())
            {
                let token = match token {
                    Ok(token) => token,
                    Err(reason) => return Ok(reject(reason)),
                };
                let Some(validator) = validator else {
                    return Ok(reject("this service accepts no tokens: no issuer is configured".into()));
                };
                match validator.validate(&token).await {
                    Ok(principal) => {
                        request.extensions_mut().insert(principal);
                        request.extensions_mut().insert(BearerToken(token));
                    }
                    Err(error) => {
                        tracing::info!(reason = %error, "rejected bearer token");
                        return Ok(reject(error.to_string()));
                    }
                }
            }
            inner.call(request).await
        })
    }
}

fn reject(reason: String) -> http::Response<tonic::body::Body> {
    Status::unauthenticated(format!("invalid bearer token: {reason}")).into_http()
}

/// `Some(Ok(token))` for a well-formed `Bearer` header, `Some(Err(_))` for a malformed one.
fn bearer_token(headers: &http::HeaderMap) -> Option<Result<String, String>> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let Ok(value) = value.to_str() else {
        return Some(Err("authorization header is not ASCII".into()));
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Some(Err("authorization header must be `Bearer <token>`".into()));
    };
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Some(Err("authorization header must be `Bearer <token>`".into()));
    }
    Some(Ok(token.trim().to_owned()))
}

/// The authenticated caller, or UNAUTHENTICATED when the call carried no token.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, Status> {
    principal_opt(request).ok_or_else(|| Status::unauthenticated("this call requires a bearer token"))
}

/// The authenticated caller, owned (so a handler's future stays `Send` across its awaits), as
/// the service layer's error.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Principal, crate::ServiceError> {
    principal(request)
        .cloned()
        .map_err(|status| crate::ServiceError::Unauthenticated(status.message().to_owned()))
}

/// The authenticated caller, if the call carried a token.
pub fn principal_opt<T>(request: &tonic::Request<T>) -> Option<&Principal> {
    request.extensions().get::<Principal>()
}
