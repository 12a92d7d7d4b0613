//! order-svc's retention job: order idempotency keys past their replay window
//! (`ordermesh housekeeping idempotency`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventsConfig;
use ordermesh_platform::housekeeping::{Job, Report, common_jobs, in_batches};

/// How long `PlaceOrder` answers a customer's repeated idempotency key with the order it placed
/// (the BFF keeps its own copy of the answer 24 hours).
pub const IDEMPOTENCY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);

pub struct IdempotencyKeys;

#[async_trait]
impl Job for IdempotencyKeys {
    fn name(&self) -> &'static str {
        "idempotency"
    }

    fn rule(&self) -> String {
        "forgets PlaceOrder idempotency keys older than 7 days".into()
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        let cleared = in_batches(
            db,
            "UPDATE orders SET idempotency_key = NULL",
            "orders",
            "idempotency_key IS NOT NULL AND created_at < $1",
            now - IDEMPOTENCY_WINDOW,
        )
        .await?;
        Ok(Report(vec![("idempotency keys forgotten", cleared)]))
    }
}

/// Every housekeeping job of order-svc.
pub fn jobs(events: &EventsConfig) -> Vec<Box<dyn Job>> {
    let mut jobs = common_jobs(events);
    jobs.push(Box::new(IdempotencyKeys));
    jobs
}
