//! The callee's half of mTLS without a mesh: who is calling (the SPIFFE id in the client
//! certificate the TLS handshake verified), and whether the call graph lets them make this call.

use std::collections::HashMap;
use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic_types::{ErrorDetails, StatusExt};

use super::{SpiffeId, Workload, graph, tls};
use crate::error::ERROR_DOMAIN;

/// The calling workload of a request, once [`WorkloadAuthzLayer`] has let it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerWorkload(pub Workload);

/// Refuses with PERMISSION_DENIED every call whose client certificate names no workload of this
/// trust domain and namespace, or one the call graph does not allow to make it.
#[derive(Debug, Clone)]
pub struct WorkloadAuthzLayer {
    callee: Workload,
    trust_domain: String,
    namespace: String,
}

impl WorkloadAuthzLayer {
    pub fn new(callee: Workload, trust_domain: &str, namespace: &str) -> Self {
        Self {
            callee,
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    fn caller<B>(&self, request: &http::Request<B>) -> Result<Workload, String> {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
            .ok_or("the call came without a client certificate")?;
        let leaf = certs.first().ok_or("the call came without a client certificate")?;
        let id: SpiffeId = tls::spiffe_id(leaf)?;
        if id.trust_domain != self.trust_domain || id.namespace != self.namespace {
            return Err(format!(
                "{id} is not of trust domain {} namespace {}",
                self.trust_domain, self.namespace
            ));
        }
        id.service_account
            .parse()
            .map_err(|_| format!("{id} names no workload of this platform"))
    }
}

impl<S> tower::Layer<S> for WorkloadAuthzLayer {
    type Service = WorkloadAuthz<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WorkloadAuthz {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkloadAuthz<S> {
    inner: S,
    layer: WorkloadAuthzLayer,
}

impl<S, B> tower::Service<http::Request<B>> for WorkloadAuthz<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let refusal = match self.layer.caller(&request) {
            Ok(caller) if graph::allows(caller, self.layer.callee, path) => {
                request.extensions_mut().insert(CallerWorkload(caller));
                return Either::Left(self.inner.call(request));
            }
            Ok(caller) => refuse(
                "CALLER_NOT_ALLOWED",
                format!("{caller} may not call {path} on {}", self.layer.callee),
                Some(caller),
                path,
            ),
            Err(reason) => refuse("CALLER_UNKNOWN", reason, None, path),
        };
        Either::Right(futures::future::ready(Ok(refusal)))
    }
}

fn refuse(reason: &str, message: String, caller: Option<Workload>, path: &str) -> http::Response<tonic::body::Body> {
    tracing::warn!(
        reason,
        caller = caller.map(Workload::name),
        path,
        "call refused by the call graph"
    );
    let mut metadata = HashMap::from([("method".to_owned(), path.to_owned())]);
    if let Some(caller) = caller {
        metadata.insert("caller".to_owned(), caller.name().to_owned());
    }
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(tonic::Code::PermissionDenied, message, details).into_http()
}
