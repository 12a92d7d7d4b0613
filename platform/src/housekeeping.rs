//! Retention and maintenance jobs (`ordermesh housekeeping <job>`): each service lists its
//! [`Job`]s — the ones every service has ([`outbox`](OutboxRetention), [`maintenance`]) and its
//! own — and operators schedule them (Kubernetes CronJobs; a timer in `ordermesh up`).
//!
//! Every job is idempotent, works in batches of [`BATCH`] rows, each in its own short
//! transaction (no long locks), and is safe to run on several replicas at once: on PostgreSQL a
//! batch claims its rows with `FOR UPDATE SKIP LOCKED`, so two instances never delete the same
//! row and their counts add up to the work done once; on SQLite the file has one writer at a
//! time.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Encode, Postgres, Sqlite, Type};

use crate::db::{Database, writer};
use crate::events::EventsConfig;

/// Rows per batch.
pub const BATCH: i64 = 500;

/// What one run of a job did: counts by what was removed or done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report(pub Vec<(&'static str, u64)>);

impl Report {
    pub fn count(&self, what: &str) -> u64 {
        self.0.iter().filter(|(w, _)| *w == what).map(|(_, n)| n).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(what, n)| format!("{n} {what}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// One retention or maintenance job of one service's database.
#[async_trait]
pub trait Job: Send + Sync {
    /// Its name on the command line.
    fn name(&self) -> &'static str;
    /// The rule it applies, in a sentence.
    fn rule(&self) -> String;
    /// Applies the rule as of `now`.
    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report>;
}

/// A value bound on either backend.
pub trait Bind:
    for<'q> Encode<'q, Postgres> + Type<Postgres> + for<'q> Encode<'q, Sqlite> + Type<Sqlite> + Clone + Send + Sync
{
}

impl<T> Bind for T where
    T: for<'q> Encode<'q, Postgres> + Type<Postgres> + for<'q> Encode<'q, Sqlite> + Type<Sqlite> + Clone + Send + Sync
{
}

/// Deletes from `table` the rows matching `condition` (which may use `$1`, bound to `cutoff`),
/// [`BATCH`] rows at a time, until none is left; how many it deleted.
pub async fn delete_in_batches<T: Bind>(
    db: &Database,
    table: &str,
    condition: &str,
    cutoff: T,
) -> Result<u64, sqlx::Error> {
    in_batches(db, &format!("DELETE FROM {table}"), table, condition, cutoff).await
}

/// Runs `statement` (`DELETE FROM t` or `UPDATE t SET …`) on the rows of `table` matching
/// `condition`, [`BATCH`] rows at a time (chosen by physical row id: `ctid`, SQLite's `rowid`),
/// until a batch is short; how many rows it changed. The statement must make its rows stop
/// matching `condition`, or this never ends.
pub async fn in_batches<T: Bind>(
    db: &Database,
    statement: &str,
    table: &str,
    condition: &str,
    cutoff: T,
) -> Result<u64, sqlx::Error> {
    let (key, lock) = if db.is_postgres() {
        ("ctid", " FOR UPDATE SKIP LOCKED")
    } else {
        ("rowid", "")
    };
    let sql = format!("{statement} WHERE {key} IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {BATCH}{lock})");
    let mut total = 0;
    loop {
        let deleted = match db {
            Database::Postgres(pool) => sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(cutoff.clone())
                .execute(pool)
                .await?
                .rows_affected(),
            Database::Sqlite(pool) => {
                // Wait for this process's turn to write, as every writer of the file does.
                let _turn = writer::turn(pool).await;
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(cutoff.clone())
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}

fn ago(now: DateTime<Utc>, age: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)
}

/// `outbox`: sent outbox rows once the broker's de-duplication window (plus a margin) is past —
/// a re-publication after that would not be recognised by the broker anyway, and the inbox
/// catches it — and inbox ids once no copy of their event can come back: the dead-letter stream,
/// from which `ordermesh dlq replay` republishes to every consumer of the topic, keeps events the
/// longest.
pub struct OutboxRetention {
    pub sent_outbox_age: Duration,
    pub inbox_age: Duration,
}

/// Margin on the de-duplication window.
const OUTBOX_MARGIN: Duration = Duration::from_secs(3600);
/// Margin on the dead-letter stream's retention.
const INBOX_MARGIN: Duration = Duration::from_secs(24 * 3600);

impl OutboxRetention {
    pub fn new(events: &EventsConfig) -> Self {
        Self {
            sent_outbox_age: events.duplicate_window + OUTBOX_MARGIN,
            inbox_age: events.dlq_max_age() + INBOX_MARGIN,
        }
    }
}

#[async_trait]
impl Job for OutboxRetention {
    fn name(&self) -> &'static str {
        "outbox"
    }

    fn rule(&self) -> String {
        format!(
            "deletes outbox rows sent more than {} s ago and inbox ids recorded more than {} s ago",
            self.sent_outbox_age.as_secs(),
            self.inbox_age.as_secs()
        )
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        let outbox_before = ago(now, self.sent_outbox_age);
        let inbox_before = ago(now, self.inbox_age);
        let outbox = delete_in_batches(
            db,
            "event_outbox",
            "sent_at IS NOT NULL AND sent_at < $1",
            outbox_before,
        )
        .await?;
        let inbox = match db {
            Database::Postgres(_) => delete_in_batches(db, "event_inbox", "processed_at < $1", inbox_before).await?,
            // processed_at is written by SQLite's strftime (see the migration), not by sqlx.
            Database::Sqlite(_) => {
                let before = inbox_before.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
                delete_in_batches(db, "event_inbox", "processed_at < $1", before).await?
            }
        };
        Ok(Report(vec![
            ("outbox rows deleted", outbox),
            ("inbox ids deleted", inbox),
        ]))
    }
}

/// `maintenance` (weekly): `VACUUM ANALYZE` on PostgreSQL (the tables this service's role
/// owns); `PRAGMA optimize` and `VACUUM` on SQLite, which also returns the free pages that
/// erased rows left to the file system.
pub struct Maintenance;

#[async_trait]
impl Job for Maintenance {
    fn name(&self) -> &'static str {
        "maintenance"
    }

    fn rule(&self) -> String {
        "VACUUM ANALYZE (PostgreSQL) or PRAGMA optimize and VACUUM (SQLite); weekly".into()
    }

    async fn run(&self, db: &Database, _now: DateTime<Utc>) -> anyhow::Result<Report> {
        match db {
            Database::Postgres(pool) => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables \
                     WHERE tableowner = current_user AND schemaname = current_schema()",
                )
                .fetch_all(pool)
                .await?;
                for table in &tables {
                    sqlx::query(AssertSqlSafe(format!("VACUUM (ANALYZE) {table}")))
                        .execute(pool)
                        .await?;
                }
                Ok(Report(vec![("tables vacuumed and analysed", tables.len() as u64)]))
            }
            Database::Sqlite(pool) => {
                let _turn = writer::turn(pool).await;
                sqlx::query("PRAGMA optimize").execute(pool).await?;
                sqlx::query("VACUUM").execute(pool).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
                Ok(Report(vec![("databases vacuumed and optimised", 1)]))
            }
        }
    }
}

/// `idempotency`: forgets the idempotency keys of `table` written more than `window` ago (the
/// key column is set to NULL; the row stays), so a key answers with its first result for a
/// bounded time only. `at` encodes a time as the table's `created` column stores it.
pub struct ForgetIdempotencyKeys<T> {
    /// What the keys are for, e.g. "PlaceOrder".
    pub operation: &'static str,
    pub table: &'static str,
    /// The column with the time the key was written.
    pub created: &'static str,
    pub window: chrono::TimeDelta,
    pub at: fn(DateTime<Utc>) -> T,
}

#[async_trait]
impl<T: Bind + 'static> Job for ForgetIdempotencyKeys<T> {
    fn name(&self) -> &'static str {
        "idempotency"
    }

    fn rule(&self) -> String {
        format!(
            "forgets {} idempotency keys older than {} days",
            self.operation,
            self.window.num_days()
        )
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        let cleared = in_batches(
            db,
            &format!("UPDATE {} SET idempotency_key = NULL", self.table),
            self.table,
            &format!("idempotency_key IS NOT NULL AND {} < $1", self.created),
            (self.at)(now - self.window),
        )
        .await?;
        Ok(Report(vec![("idempotency keys forgotten", cleared)]))
    }
}

/// The jobs every service has.
pub fn common_jobs(events: &EventsConfig) -> Vec<Box<dyn Job>> {
    vec![Box::new(OutboxRetention::new(events)), Box::new(Maintenance)]
}
