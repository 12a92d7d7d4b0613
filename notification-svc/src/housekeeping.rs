//! notification-svc's retention: a customer's notification is kept 30 days after it was read,
//! and no notification longer than 90 days (`ordermesh housekeeping notifications`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventsConfig;
use ordermesh_platform::housekeeping::{Job, Report, common_jobs, delete_in_batches};

/// How long a customer's notification is kept once read.
pub const READ_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long any notification is kept.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

pub struct NotificationRetention;

#[async_trait]
impl Job for NotificationRetention {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn rule(&self) -> String {
        "deletes customers' notifications read more than 30 days ago, and every notification older than 90 days".into()
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        let read_before = now - chrono::Duration::from_std(READ_RETENTION)?;
        let created_before = now - chrono::Duration::from_std(RETENTION)?;
        // Read marks go with their notification (ON DELETE CASCADE).
        let read = delete_in_batches(
            db,
            "notifications",
            "recipient_customer_id IS NOT NULL AND EXISTS (SELECT 1 FROM notification_reads r \
             WHERE r.notification_id = notifications.id AND r.read_at < $1)",
            read_before,
        )
        .await?;
        let old = delete_in_batches(db, "notifications", "created_at < $1", created_before).await?;
        Ok(Report(vec![
            ("read notifications deleted", read),
            ("old notifications deleted", old),
        ]))
    }
}

/// Every housekeeping job of notification-svc.
pub fn jobs(events: &EventsConfig) -> Vec<Box<dyn Job>> {
    let mut jobs = common_jobs(events);
    jobs.push(Box::new(NotificationRetention));
    jobs
}
