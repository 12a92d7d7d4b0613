//! Gauges that are states rather than events — a service's outbox backlog and its database
//! pool's connections — sampled by one task per service. A query per scrape from a callback is
//! not possible (observable callbacks are synchronous), and a query per relay pass would cost
//! every commit; a few seconds of staleness is nothing next to the minutes the alerts wait.

use std::time::Duration;

use opentelemetry::KeyValue;

use crate::db::Database;
use crate::events::outbox;
use crate::shutdown::Shutdown;

/// How often the gauges are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples `db`'s outbox backlog and pool usage as `service`'s, every [`SAMPLE_INTERVAL`]
/// until `shutdown`.
pub fn spawn(service: &'static str, db: Database, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => sample(service, &db).await,
                _ = shutdown.wait() => break,
            }
        }
    })
}

/// Records one sample of `db` as `service`'s.
pub async fn sample(service: &'static str, db: &Database) {
    let metrics = super::metrics();
    let label = [KeyValue::new("service", service)];
    let (size, idle, max) = match db {
        Database::Postgres(pool) => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
        Database::Sqlite(pool) => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
    };
    let idle = idle as u64;
    let used = u64::from(size).saturating_sub(idle);
    metrics
        .pool_connections
        .record(used, &[label[0].clone(), KeyValue::new("state", "used")]);
    metrics
        .pool_connections
        .record(idle, &[label[0].clone(), KeyValue::new("state", "idle")]);
    metrics.pool_max.record(u64::from(max), &label);
    match outbox::backlog(db).await {
        Ok(backlog) => {
            let age = backlog
                .oldest
                .map(|oldest| (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics.outbox_backlog.record(backlog.pending.max(0) as u64, &label);
            metrics.outbox_oldest_pending_age.record(age, &label);
        }
        // A database that does not answer keeps the last sample; its own alerts tell why.
        Err(error) => tracing::debug!(%error, service, "metrics: outbox backlog not sampled"),
    }
}
