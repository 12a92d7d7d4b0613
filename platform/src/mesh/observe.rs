//! The calls workloads really make, recorded by a layer on every client channel while
//! recording is on (the end-to-end tests turn it on), so the tests can hold the declared call
//! graph to the truth: a call the code makes and the graph does not declare fails them.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use super::{Workload, graph};

static RECORDING: AtomicBool = AtomicBool::new(false);
static OBSERVED: Mutex<BTreeSet<Observed>> = Mutex::new(BTreeSet::new());

/// One (caller, callee, RPC path) seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Observed {
    pub caller: Workload,
    pub callee: Workload,
    pub path: String,
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {} {}", self.caller, self.callee, self.path)
    }
}

/// Turns recording on for the rest of the process.
pub fn start_recording() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// Everything recorded so far.
pub fn observed() -> Vec<Observed> {
    OBSERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

/// The recorded calls the graph does not allow.
pub fn undeclared() -> Vec<Observed> {
    observed()
        .into_iter()
        .filter(|o| !graph::allows(o.caller, o.callee, &o.path))
        .collect()
}

fn record(caller: Workload, callee: Workload, path: &str) {
    let mut observed = OBSERVED.lock().unwrap_or_else(|e| e.into_inner());
    // Look before inserting: after the first few calls every call is already known.
    let known = observed
        .iter()
        .any(|o| o.caller == caller && o.callee == callee && o.path == path);
    if !known {
        observed.insert(Observed {
            caller,
            callee,
            path: path.to_owned(),
        });
    }
}

/// Records each request's path under (`caller`, `callee`) while recording is on; a relaxed
/// load otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RecordCallsLayer {
    caller: Workload,
    callee: Workload,
}

impl RecordCallsLayer {
    pub fn new(caller: Workload, callee: Workload) -> Self {
        Self { caller, callee }
    }
}

impl<S> tower::Layer<S> for RecordCallsLayer {
    type Service = RecordCalls<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordCalls { inner, layer: *self }
    }
}

#[derive(Debug, Clone)]
pub struct RecordCalls<S> {
    inner: S,
    layer: RecordCallsLayer,
}

impl<S, B> tower::Service<http::Request<B>> for RecordCalls<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if RECORDING.load(Ordering::Relaxed) {
            record(self.layer.caller, self.layer.callee, request.uri().path());
        }
        self.inner.call(request)
    }
}
