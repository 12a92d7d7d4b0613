//! customer-svc's retention jobs: expired export bundles (`exports`), creation idempotency keys
//! past their replay window (`idempotency`), and customers inactive for 7 years, erased through
//! the same saga as a requested erasure (`inactive-customers`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::Origin;
use ordermesh_platform::db::Database;
use ordermesh_platform::db::columns::Time;
use ordermesh_platform::events::EventsConfig;
use ordermesh_platform::housekeeping::{BATCH, ForgetIdempotencyKeys, Job, Report, common_jobs, delete_in_batches};

use crate::store::{Erased, Store};

/// How long `CreateCustomer` answers a repeated idempotency key with the customer it created.
pub const IDEMPOTENCY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Inactivity (no sign-in, order or profile change) after which a customer is erased.
pub const INACTIVITY_LIMIT: chrono::TimeDelta = chrono::TimeDelta::days(7 * 365 + 2);
/// The reason recorded for an erasure for inactivity.
pub const INACTIVITY_REASON: &str = "retention: no activity for 7 years";

pub struct ExpiredExports;

#[async_trait]
impl Job for ExpiredExports {
    fn name(&self) -> &'static str {
        "exports"
    }

    fn rule(&self) -> String {
        "deletes export bundles past their expiry (7 days after they were ready)".into()
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        let deleted = delete_in_batches(db, "data_exports", "state = 'READY' AND expire_time <= $1", Time(now)).await?;
        Ok(Report(vec![("expired exports deleted", deleted)]))
    }
}

/// `idempotency`: CreateCustomer keys older than [`IDEMPOTENCY_WINDOW`].
pub fn idempotency_keys() -> ForgetIdempotencyKeys<Time> {
    ForgetIdempotencyKeys {
        operation: "CreateCustomer",
        table: "customers",
        created: "create_time",
        window: IDEMPOTENCY_WINDOW,
        at: Time,
    }
}

pub struct InactiveCustomers;

#[async_trait]
impl Job for InactiveCustomers {
    fn name(&self) -> &'static str {
        "inactive-customers"
    }

    fn rule(&self) -> String {
        "erases customers with no sign-in, order or profile change for 7 years (the erasure saga)".into()
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        let store = Store::new(db);
        let origin = Origin::system("housekeeping");
        let anyone = |_: &crate::domain::Customer| true;
        let mut erased = 0;
        loop {
            let due = store.inactive_since(now - INACTIVITY_LIMIT, BATCH).await?;
            let mut started = 0;
            for id in &due {
                // Another instance may have taken it meanwhile: that is no new erasure here.
                let Erased { now: new, .. } = store
                    .erase_customer(*id, INACTIVITY_REASON.to_owned(), &anyone, &origin)
                    .await?;
                started += u64::from(new);
            }
            erased += started;
            if (due.len() as i64) < BATCH {
                break;
            }
        }
        Ok(Report(vec![("inactive customers erased", erased)]))
    }
}

/// Every housekeeping job of customer-svc.
pub fn jobs(events: &EventsConfig) -> Vec<Box<dyn Job>> {
    let mut jobs = common_jobs(events);
    jobs.push(Box::new(ExpiredExports));
    jobs.push(Box::new(idempotency_keys()));
    jobs.push(Box::new(InactiveCustomers));
    jobs
}
