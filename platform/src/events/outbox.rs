//! Transactional outbox (insert in the caller's transaction), the consumers' inbox table, and the
//! relay that moves committed outbox rows to the bus.
//!
//! # Tables
//! [`POSTGRES_MIGRATIONS`] and [`SQLITE_MIGRATIONS`] create `event_outbox` and `event_inbox`.
//! Every service appends them to its own migration lists (versions 9000+ are reserved for the
//! platform), e.g. `[SERVICE_PG, outbox::POSTGRES_MIGRATIONS].concat()`.
//!
//! # Relay
//! Publishes pending rows in `seq` order, awaits the broker's ack (the event id is the
//! `Nats-Msg-Id`), then marks them sent. A failure or timeout leaves the row pending and the
//! relay retries with backoff, with the same id, so the broker absorbs a repeat. It wakes on
//! a commit to its own database only — `LISTEN ordermesh_outbox_<schema>` on PostgreSQL (one
//! NOTIFY per committing transaction, sent by [`Tx::commit`]) and an in-process signal keyed by
//! the database — and polls as a fallback. (One channel and one signal for every relay of a
//! process woke all six services' relays for each commit of any of them: in `ordermesh up` on
//! PostgreSQL, empty relay passes were well over half the statements the database ran.)
//!
//! On PostgreSQL several relays may run: rows are claimed with `FOR UPDATE SKIP LOCKED` under a
//! transaction-scoped advisory lock per schema, so one relay publishes at a time (keeping
//! per-aggregate order) and the others stand by.
//!
//! [`Tx::commit`]: super::Tx::commit

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, Row, SqliteConnection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::bus::EventBus;
use super::envelope::OutgoingEvent;
use super::tx::{Tx, TxConn};
use crate::db::Database;
use crate::shutdown::Shutdown;

/// Prefix of the PostgreSQL NOTIFY channel of a schema's relays: `ordermesh_outbox_<schema>`.
pub const NOTIFY_CHANNEL_PREFIX: &str = "ordermesh_outbox_";

const POSTGRES_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS event_outbox (
    seq            BIGSERIAL PRIMARY KEY,
    event_id       UUID NOT NULL UNIQUE,
    topic          TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    source         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    traceparent    TEXT,
    tracestate     TEXT,
    payload        BYTEA NOT NULL,
    occur_time     TIMESTAMPTZ NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at        TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS event_outbox_pending ON event_outbox (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS event_inbox (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
"#;

const SQLITE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS event_outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    topic          TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    source         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    traceparent    TEXT,
    tracestate     TEXT,
    payload        BLOB NOT NULL,
    occur_time     TEXT NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sent_at        TEXT
);
CREATE INDEX IF NOT EXISTS event_outbox_pending ON event_outbox (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS event_inbox (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (consumer, event_id)
);
"#;

/// Platform migrations for PostgreSQL: append to the service's list.
pub const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(9001, "event outbox and inbox", POSTGRES_SQL)];
/// Platform migrations for SQLite: append to the service's list.
pub const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(9001, "event outbox and inbox", SQLITE_SQL)];

/// The in-process wake-up of each database's relays, keyed by the database's identity.
static COMMITTED: LazyLock<Mutex<HashMap<String, Arc<Notify>>>> = LazyLock::new(Default::default);

fn committed(db: &Database) -> Arc<Notify> {
    let mut signals = COMMITTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    signals.entry(crate::db::identity(db)).or_default().clone()
}

/// Wakes the relays of `db` in this process. [`Tx::commit`] calls it; call it yourself after
/// committing a plain sqlx transaction in which you used [`enqueue_sqlite`] or [`enqueue_pg`]
/// (with [`signal_pg`]), else the relay's poll finds the rows.
pub fn notify_committed(db: &Database) {
    committed(db).notify_waiters();
}

/// Signals the relays of this schema in every process, on commit (PostgreSQL delivers a NOTIFY
/// only if and when its transaction commits, once however often it was sent). [`Tx::commit`]
/// sends it once for a transaction that enqueued events.
pub async fn signal_pg(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1 || current_schema(), '')")
        .bind(NOTIFY_CHANNEL_PREFIX)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts `event` into the outbox within the caller's PostgreSQL transaction (then
/// [`signal_pg`] once before the commit).
pub async fn enqueue_pg(conn: &mut PgConnection, event: &OutgoingEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_outbox (event_id, topic, event_type, aggregate_id, source, correlation_id, \
         traceparent, tracestate, payload, occur_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(event.id)
    .bind(&event.topic)
    .bind(&event.event_type)
    .bind(&event.aggregate_id)
    .bind(&event.source)
    .bind(&event.correlation_id)
    .bind(&event.traceparent)
    .bind(&event.tracestate)
    .bind(&event.payload)
    .bind(event.occur_time)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts `event` into the outbox within the caller's SQLite transaction.
pub async fn enqueue_sqlite(conn: &mut SqliteConnection, event: &OutgoingEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_outbox (event_id, topic, event_type, aggregate_id, source, correlation_id, \
         traceparent, tracestate, payload, occur_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.id.to_string())
    .bind(&event.topic)
    .bind(&event.event_type)
    .bind(&event.aggregate_id)
    .bind(&event.source)
    .bind(&event.correlation_id)
    .bind(&event.traceparent)
    .bind(&event.tracestate)
    .bind(&event.payload)
    .bind(event.occur_time)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether `consumer` has processed `event_id` (a read on the pool: a redelivery costs no
/// transaction).
pub async fn is_processed(db: &Database, consumer: &str, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let sql = "SELECT 1 FROM event_inbox WHERE consumer = $1 AND event_id = $2";
    // SQLite stores the id as text (see `record_inbox`).
    let found = match db {
        Database::Postgres(pool) => sqlx::query(sql)
            .bind(consumer)
            .bind(event_id)
            .fetch_optional(pool)
            .await?
            .is_some(),
        Database::Sqlite(pool) => sqlx::query(sql)
            .bind(consumer)
            .bind(event_id.to_string())
            .fetch_optional(pool)
            .await?
            .is_some(),
    };
    Ok(found)
}

/// Records `event_id` as processed by `consumer` in the transaction. Returns `false` when it
/// already was (a duplicate delivery: skip its effects).
pub async fn record_inbox(tx: &mut Tx, consumer: &str, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let result = match tx.conn().await? {
        TxConn::Postgres(c) => {
            sqlx::query("INSERT INTO event_inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(consumer)
                .bind(event_id)
                .execute(&mut **c)
                .await?
                .rows_affected()
        }
        TxConn::Sqlite(c) => sqlx::query("INSERT OR IGNORE INTO event_inbox (consumer, event_id) VALUES (?, ?)")
            .bind(consumer)
            .bind(event_id.to_string())
            .execute(&mut **c)
            .await?
            .rows_affected(),
    };
    Ok(result == 1)
}

/// Number of outbox rows not yet sent (the outbox backlog).
pub async fn pending_count(db: &Database) -> Result<i64, sqlx::Error> {
    let sql = "SELECT COUNT(*) FROM event_outbox WHERE sent_at IS NULL";
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
}

/// The outbox backlog: how many rows are not yet sent, and when the oldest was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
}

/// The outbox backlog of `db` (served by the ops API).
pub async fn backlog(db: &Database) -> Result<Backlog, sqlx::Error> {
    let sql = "SELECT COUNT(*), MIN(created_at) FROM event_outbox WHERE sent_at IS NULL";
    let (pending, oldest) = match db {
        Database::Postgres(pool) => {
            sqlx::query_as::<_, (i64, Option<DateTime<Utc>>)>(sql)
                .fetch_one(pool)
                .await?
        }
        Database::Sqlite(pool) => {
            let (pending, oldest): (i64, Option<String>) = sqlx::query_as(sql).fetch_one(pool).await?;
            let oldest = oldest
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc));
            (pending, oldest)
        }
    };
    Ok(Backlog { pending, oldest })
}

/// Marks every outbox row as unsent again (rows sent within `within`, or all when `None`), so
/// the relay publishes them again with their original ids. Used at start-up of the embedded
/// profile (the in-process bus forgets on restart; consumers' inboxes absorb repeats) and by
/// tests that simulate a relay killed between publish and mark.
pub async fn mark_unsent(db: &Database, within: Option<Duration>) -> Result<u64, sqlx::Error> {
    let since = within
        .and_then(|w| chrono::Duration::from_std(w).ok())
        .map(|w| Utc::now() - w);
    // One statement for both backends and both cases: `$1` NULL means "every sent row".
    Ok(crate::on_pool!(db, |pool| {
        sqlx::query(
            "UPDATE event_outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND ($1 IS NULL OR sent_at >= $1)",
        )
        .bind(since)
        .execute(pool)
        .await?
        .rows_affected()
    }))
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows per batch.
    pub batch_size: i64,
    /// Fallback poll when no wake-up arrives.
    pub poll_interval: Duration,
    /// Backoff after a failed publish, doubled up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// At start, re-publish rows sent within this window (embedded profile: the in-process bus
    /// does not survive a restart). `None` for NATS.
    pub republish_on_start: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            republish_on_start: None,
        }
    }
}

impl RelayConfig {
    /// For the in-process bus: rows sent in the last hour are published again at start-up, so a
    /// restart of the process loses nothing that consumers had not yet processed.
    pub fn embedded() -> Self {
        Self {
            republish_on_start: Some(Duration::from_secs(3600)),
            ..Self::default()
        }
    }
}

/// Moves committed outbox rows of one database to the bus.
pub struct Relay {
    db: Database,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Result<(i64, OutgoingEvent), sqlx::Error> {
    Ok((
        row.try_get("seq")?,
        OutgoingEvent {
            id: row.try_get("event_id")?,
            topic: row.try_get("topic")?,
            event_type: row.try_get("event_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            payload: row.try_get("payload")?,
            correlation_id: row.try_get("correlation_id")?,
            traceparent: row.try_get("traceparent")?,
            tracestate: row.try_get("tracestate")?,
            source: row.try_get("source")?,
            occur_time: row.try_get("occur_time")?,
        },
    ))
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<(i64, OutgoingEvent), sqlx::Error> {
    let id: String = row.try_get("event_id")?;
    Ok((
        row.try_get("seq")?,
        OutgoingEvent {
            id: id.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            topic: row.try_get("topic")?,
            event_type: row.try_get("event_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            payload: row.try_get("payload")?,
            correlation_id: row.try_get("correlation_id")?,
            traceparent: row.try_get("traceparent")?,
            tracestate: row.try_get("tracestate")?,
            source: row.try_get("source")?,
            occur_time: row.try_get("occur_time")?,
        },
    ))
}

const SELECT_COLUMNS: &str = "seq, event_id, topic, event_type, aggregate_id, source, correlation_id, traceparent, \
                              tracestate, payload, occur_time";

/// Result of one relay pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayPass {
    /// Rows published and marked sent.
    pub published: usize,
    /// More rows may be pending (a full batch was sent).
    pub more: bool,
}

impl Relay {
    pub fn new(db: Database, bus: Arc<dyn EventBus>, config: RelayConfig) -> Self {
        Self { db, bus, config }
    }

    /// Runs the relay until `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    pub async fn run(self, shutdown: Shutdown) {
        if let Some(window) = self.config.republish_on_start
            && let Err(error) = mark_unsent(&self.db, Some(window)).await
        {
            tracing::warn!(%error, "outbox: could not re-arm recently sent rows");
        }
        let committed = committed(&self.db);
        let mut listener = match &self.db {
            Database::Postgres(pool) => match listen(pool).await {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "outbox: LISTEN failed, polling only");
                    None
                }
            },
            Database::Sqlite(_) => None,
        };
        let mut backoff = self.config.min_backoff;
        while !shutdown.is_triggered() {
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.publish_pending().await {
                Ok(pass) => {
                    backoff = self.config.min_backoff;
                    if pass.more {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "outbox relay: publish failed, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => break,
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    continue;
                }
            }
            tokio::select! {
                // On PostgreSQL the NOTIFY of the same commit follows; one wake-up per commit.
                _ = notified, if listener.is_none() => {}
                _ = pg_notification(&mut listener) => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.wait() => break,
            }
        }
    }

    /// Publishes one batch of pending rows in order and marks the acknowledged ones sent. Stops
    /// at the first failure (keeping order); the error is returned after marking what was sent.
    pub async fn publish_pending(&self) -> anyhow::Result<RelayPass> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // The schema's relay lock and the rows in one statement: the lock is tried once
                // (a sub-select, not per row); without it the answer is empty and another relay
                // is publishing. Rows another relay marked sent meanwhile are re-checked by
                // FOR UPDATE and drop out.
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SELECT_COLUMNS} FROM event_outbox \
                     WHERE (SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.event_outbox'))) \
                     AND sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
                )))
                .bind(self.config.batch_size)
                .fetch_all(&mut *tx)
                .await?;
                let rows = rows.iter().map(pg_row).collect::<Result<Vec<_>, _>>()?;
                let (sent, error) = self.publish_rows(&rows).await;
                if !sent.is_empty() {
                    crate::crash::point(crate::crash::OUTBOX_AFTER_ACK);
                    sqlx::query("UPDATE event_outbox SET sent_at = now() WHERE seq = ANY($1)")
                        .bind(&sent)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                self.finish(rows.len(), sent.len(), error)
            }
            Database::Sqlite(pool) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SELECT_COLUMNS} FROM event_outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?"
                )))
                .bind(self.config.batch_size)
                .fetch_all(pool)
                .await?;
                let rows = rows.iter().map(sqlite_row).collect::<Result<Vec<_>, _>>()?;
                let (sent, error) = self.publish_rows(&rows).await;
                if !sent.is_empty() {
                    crate::crash::point(crate::crash::OUTBOX_AFTER_ACK);
                    // One statement in a writer's turn (see `db::writer`), however many rows.
                    let mut tx = Tx::begin(&self.db).await?;
                    if let TxConn::Sqlite(conn) = tx.conn().await? {
                        sqlx::query(
                            "UPDATE event_outbox SET sent_at = ? WHERE seq IN (SELECT value FROM json_each(?))",
                        )
                        .bind(Utc::now())
                        .bind(serde_json::to_string(&sent)?)
                        .execute(&mut **conn)
                        .await?;
                    }
                    tx.commit().await?;
                }
                self.finish(rows.len(), sent.len(), error)
            }
        }
    }

    fn finish(&self, selected: usize, sent: usize, error: Option<anyhow::Error>) -> anyhow::Result<RelayPass> {
        match error {
            Some(error) => Err(error),
            None => Ok(RelayPass {
                published: sent,
                more: selected as i64 >= self.config.batch_size,
            }),
        }
    }

    async fn publish_rows(&self, rows: &[(i64, OutgoingEvent)]) -> (Vec<i64>, Option<anyhow::Error>) {
        let events: Vec<&OutgoingEvent> = rows.iter().map(|(_, event)| event).collect();
        // A span per event from the send to the broker's ack, a child of the span that wrote
        // the row (as the consumers' spans are: the headers keep the writer's context).
        let spans: Vec<tracing::Span> = events.iter().map(|event| self.publish_span(event)).collect();
        let (stored, error) = self.bus.publish_all(&events).await;
        for span in &spans[stored..] {
            span.record("otel.status_code", "ERROR");
        }
        drop(spans);
        count_published(&events[..stored]);
        if error.is_some()
            && let Some(failed) = events.get(stored)
        {
            crate::metrics::record_publish_failure(&failed.source);
        }
        let sent = rows[..stored].iter().map(|(seq, _)| *seq).collect();
        (sent, error.map(Into::into))
    }
}

impl Relay {
    /// OpenTelemetry's messaging conventions: `send <topic>`, kind producer.
    fn publish_span(&self, event: &OutgoingEvent) -> tracing::Span {
        let span = tracing::info_span!(
            "publish event",
            otel.name = %format_args!("send {}", event.topic),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = self.bus.messaging_system(),
            messaging.operation.type = "send",
            messaging.destination.name = %event.topic,
            messaging.message.id = %event.id,
            event_type = %event.event_type,
            correlation_id = %event.correlation_id,
        );
        crate::telemetry::set_remote_parent(&span, |key| match key {
            "traceparent" => event.traceparent.clone(),
            "tracestate" => event.tracestate.clone(),
            _ => None,
        });
        span
    }
}

/// Counts `events`, acknowledged by the broker, per publishing service, topic and type (one
/// counter call per run of equal labels).
fn count_published(events: &[&OutgoingEvent]) {
    for run in events.chunk_by(|a, b| a.source == b.source && a.topic == b.topic && a.event_type == b.event_type) {
        let first = run[0];
        crate::metrics::record_published(&first.source, &first.topic, &first.event_type, run.len() as u64);
    }
}

/// A listener on the NOTIFY channel of `pool`'s schema.
async fn listen(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(pool).await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(&format!("{NOTIFY_CHANNEL_PREFIX}{schema}")).await?;
    Ok(listener)
}

async fn pg_notification(listener: &mut Option<PgListener>) {
    match listener {
        Some(listener) => {
            if listener.recv().await.is_err() {
                // Connection trouble: the listener reconnects on the next call; do not spin.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Commits signalled before the pass that follows are all covered by it.
            while listener.next_buffered().is_some() {}
        }
        None => std::future::pending().await,
    }
}
