//! The BFF's metrics (DESIGN §7), on the process's meter provider (see
//! `ordermesh_platform::metrics`): RED per route and the open SSE streams, plus the one security
//! signal that a per-route count cannot give.
//!
//! - `http.server.request.duration` (s) per route template (`/api/v1/orders/{id}`, never the
//!   path), method, status, surface and principal kind (`client`, `employee`, `service`,
//!   `anonymous` before or without authentication): rate, errors, duration. Bursts of 401/403,
//!   admin actions and GDPR erasures (`DELETE /api/v1/customers/{id}`) are read from it.
//! - `sse.streams.open` per surface: notification streams currently open.
//! - `bff.security.foreign_id_bursts`: a client principal that met [`FOREIGN_BURST`] 404s on
//!   routes naming an id within [`FOREIGN_WINDOW`] (looking for other customers' resources,
//!   which answer 404). Who it was is in the warning logged (the subject is a pseudonymous id);
//!   the metric carries no identity, so alerting needs no personal data in labels.
//!
//! Every series has `service="bff"`: in the embedded profile the services share the endpoint.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use ordermesh_platform::auth::Principal;

use crate::AppState;

/// 404s on id routes from one client principal that make a burst...
pub const FOREIGN_BURST: u32 = 20;
/// ...within this window.
pub const FOREIGN_WINDOW: Duration = Duration::from_secs(60);
/// Principals tracked at most (oldest windows are dropped first when full).
const TRACKED_PRINCIPALS: usize = 10_000;

struct Instruments {
    duration: Histogram<f64>,
    streams_open: UpDownCounter<i64>,
    foreign_bursts: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("ordermesh");
        Instruments {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description(
                    "Duration of HTTP requests served, by route template, method, status, surface and principal kind",
                )
                .with_boundaries(ordermesh_platform::metrics::DURATION_BUCKETS.to_vec())
                .build(),
            streams_open: meter
                .i64_up_down_counter("sse.streams.open")
                .with_description("Server-sent event streams open")
                .build(),
            foreign_bursts: meter
                .u64_counter("bff.security.foreign_id_bursts")
                .with_description("Client principals meeting a burst of 404s on routes naming an id")
                .build(),
        }
    })
}

/// Who the request turned out to be from, filled in by the auth guard (which runs inside
/// [`record`]): the kind for the label, and a hash of the identity for burst detection only.
#[derive(Clone, Default)]
pub struct PrincipalSlot(Arc<OnceLock<(&'static str, Option<u64>)>>);

/// Called by the auth guard once `principal` is established.
pub fn note_principal(request: &Request, principal: &Principal) {
    let Some(slot) = request.extensions().get::<PrincipalSlot>() else {
        return;
    };
    let identity = match principal {
        Principal::Client { issuer, subject } => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (issuer, subject).hash(&mut hasher);
            Some(hasher.finish())
        }
        Principal::Employee { .. } | Principal::Service { .. } => None,
    };
    let noted = (principal.kind(), identity);
    let _ = slot.0.set(noted);
}

/// Middleware: records every request's RED series, and counts the notification streams open
/// while their bodies live.
pub async fn record(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        // Unknown paths are one series, whatever was asked for.
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let slot = PrincipalSlot::default();
    request.extensions_mut().insert(slot.clone());
    let surface = state.config.surface.as_str();
    let response = next.run(request).await;
    let status = response.status();
    let (principal, identity) = slot.0.get().copied().unwrap_or(("anonymous", None));
    let labels = [
        KeyValue::new("service", "bff"),
        KeyValue::new("http.route", route.clone()),
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
        KeyValue::new("surface", surface),
        KeyValue::new("principal", principal),
    ];
    instruments().duration.record(started.elapsed().as_secs_f64(), &labels);
    if status == http::StatusCode::NOT_FOUND
        && route.contains('{')
        && let Some(identity) = identity
        && foreign_lookups().note(identity, Instant::now())
    {
        instruments()
            .foreign_bursts
            .add(1, &[KeyValue::new("service", "bff"), KeyValue::new("surface", surface)]);
        tracing::warn!(route, "a client met a burst of 404s on routes naming an id");
    }
    let is_stream = status.is_success()
        && response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return response;
    }
    let open = StreamOpen::new(surface);
    response.map(|body| {
        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
            // The guard lives as long as the body: the stream is open until it is dropped.
            let _ = &open;
            chunk
        }))
    })
}

/// One open stream, counted from creation to drop.
struct StreamOpen(&'static str);

impl StreamOpen {
    fn new(surface: &'static str) -> Self {
        instruments().streams_open.add(1, &Self::labels(surface));
        Self(surface)
    }

    fn labels(surface: &'static str) -> [KeyValue; 2] {
        [KeyValue::new("service", "bff"), KeyValue::new("surface", surface)]
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        instruments().streams_open.add(-1, &Self::labels(self.0));
    }
}

/// 404s on id routes per client principal (by hash) in fixed windows.
#[derive(Default)]
struct ForeignLookups(Mutex<HashMap<u64, (Instant, u32)>>);

fn foreign_lookups() -> &'static ForeignLookups {
    static LOOKUPS: OnceLock<ForeignLookups> = OnceLock::new();
    LOOKUPS.get_or_init(ForeignLookups::default)
}

impl ForeignLookups {
    /// Counts one 404 of `identity` at `now`; true when it completes a burst (once per window).
    fn note(&self, identity: u64, now: Instant) -> bool {
        let mut windows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= TRACKED_PRINCIPALS && !windows.contains_key(&identity) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < FOREIGN_WINDOW);
            if windows.len() >= TRACKED_PRINCIPALS {
                return false;
            }
        }
        let entry = windows.entry(identity).or_insert((now, 0));
        if now.duration_since(entry.0) >= FOREIGN_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 == FOREIGN_BURST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_signalled_once_per_window_and_per_principal() {
        let lookups = ForeignLookups::default();
        let start = Instant::now();
        let signalled = (0..FOREIGN_BURST * 2).filter(|_| lookups.note(1, start)).count();
        assert_eq!(signalled, 1);
        // Another principal's 404s are its own.
        assert!(!lookups.note(2, start));
        // A new window starts counting afresh.
        let later = start + FOREIGN_WINDOW;
        let signalled = (0..FOREIGN_BURST).filter(|_| lookups.note(1, later)).count();
        assert_eq!(signalled, 1);
    }
}
