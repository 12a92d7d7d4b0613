//! order-svc's retention job: order idempotency keys past their replay window
//! (`ordermesh housekeeping idempotency`).

use chrono::{DateTime, Utc};
use ordermesh_platform::events::EventsConfig;
use ordermesh_platform::housekeeping::{ForgetIdempotencyKeys, Job, common_jobs};

/// How long `PlaceOrder` answers a customer's repeated idempotency key with the order it placed
/// (the BFF keeps its own copy of the answer 24 hours).
pub const IDEMPOTENCY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// `idempotency`: PlaceOrder keys older than [`IDEMPOTENCY_WINDOW`].
pub fn idempotency_keys() -> ForgetIdempotencyKeys<DateTime<Utc>> {
    ForgetIdempotencyKeys {
        operation: "PlaceOrder",
        table: "orders",
        created: "created_at",
        window: IDEMPOTENCY_WINDOW,
        at: |at| at,
    }
}

/// Every housekeeping job of order-svc.
pub fn jobs(events: &EventsConfig) -> Vec<Box<dyn Job>> {
    let mut jobs = common_jobs(events);
    jobs.push(Box::new(idempotency_keys()));
    jobs
}
