//! The audit chain on PostgreSQL or SQLite. One SQL text serves both backends (`on_pool!` /
//! `on_tx!` compile it once per backend). There is no UPDATE of `audit_entries` anywhere in this
//! crate, and one DELETE: [`Store::archive_next`], of entries it has verified, written to an
//! archive and covered by a checkpoint. The migrations add triggers that refuse every UPDATE and
//! every DELETE above the latest checkpoint, and any checkpoint that does not name a stored
//! entry with its hash.
//!
//! Appends are serialized, so the chain stays ONE chain however many consumers, lanes and
//! instances append at once: on PostgreSQL the transaction first takes a transaction-scoped
//! advisory lock ([`CHAIN_LOCK`]), then reads the head and inserts; on SQLite the write lock
//! taken by `BEGIN IMMEDIATE` ([`Tx::begin`]) already excludes every other writer. The primary
//! key on `sequence` is the backstop: a second writer at the same position would fail.

use chrono::{DateTime, Utc};
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{Actor, ActorKind, StoreError, StoreResult, on_pool, on_tx};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::domain::{ChainBreak, ChainVerifier, Entry, Filter, GENESIS_HASH, NewEntry, PageKey, from_micros, micros};

/// Key of the PostgreSQL advisory lock that serializes appends ("omaudit" in ASCII).
pub const CHAIN_LOCK: i64 = 0x006f_6d61_7564_6974;

pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[
            (1, "audit", include_str!("../migrations/postgres/0001_audit.sql")),
            (2, "archive", include_str!("../migrations/postgres/0002_archive.sql")),
        ],
        &[
            (1, "audit", include_str!("../migrations/sqlite/0001_audit.sql")),
            (2, "archive", include_str!("../migrations/sqlite/0002_archive.sql")),
        ],
    )
}

const COLUMNS: &str = "sequence, id, actor_kind, actor_id, actor_roles, action, entity_type, entity_id, \
     data_subject_id, correlation_id, occur_micros, record_micros, details, source_service, event_id, \
     previous_hash, hash";

const SELECT_CHECKPOINT: &str =
    "SELECT last_sequence, last_hash, entries, archive_name, archive_sha256, archive_micros FROM audit_checkpoints";

/// Where archived entries end: the last archived entry and its hash (the anchor of what is left),
/// and the archive file that holds them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    pub last_sequence: i64,
    pub last_hash: Vec<u8>,
    pub entries: i64,
    pub archive_name: String,
    pub archive_sha256: String,
    pub archive_micros: i64,
}

/// An `audit_entries` row as stored ([`COLUMNS`]).
#[derive(sqlx::FromRow)]
struct EntryRow {
    sequence: i64,
    id: String,
    actor_kind: String,
    actor_id: String,
    actor_roles: String,
    action: String,
    entity_type: String,
    entity_id: String,
    data_subject_id: String,
    correlation_id: String,
    occur_micros: i64,
    record_micros: i64,
    details: String,
    source_service: String,
    event_id: Option<String>,
    previous_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl TryFrom<EntryRow> for Entry {
    type Error = StoreError;

    fn try_from(row: EntryRow) -> StoreResult<Entry> {
        let roles = if row.actor_roles.is_empty() {
            Vec::new()
        } else {
            row.actor_roles.split(',').map(str::to_owned).collect()
        };
        Ok(Entry {
            sequence: row.sequence,
            id: Uuid::parse_str(&row.id).map_err(|_| StoreError::corrupt("id", &row.id))?,
            // Built as stored, not through `Actor::new` (which sorts): a tampered role list must
            // reach the verifier unchanged, or it would hash as the original.
            actor: Actor {
                kind: ActorKind::parse(&row.actor_kind)
                    .ok_or_else(|| StoreError::corrupt("actor_kind", &row.actor_kind))?,
                id: row.actor_id,
                roles,
            },
            action: row.action,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            data_subject_id: row.data_subject_id,
            correlation_id: row.correlation_id,
            occur_time: from_micros(row.occur_micros),
            record_time: from_micros(row.record_micros),
            details: row.details,
            source_service: row.source_service,
            event_id: row.event_id,
            previous_hash: row.previous_hash,
            hash: row.hash,
        })
    }
}

/// The audit chain of one database.
#[derive(Clone, Debug)]
pub struct Store(Database);

impl Store {
    pub fn new(db: &Database) -> Self {
        Self(db.clone())
    }

    /// Appends `new` at the head of the chain inside `tx` (the caller commits). Idempotent per
    /// `event_id`: when an entry with it exists, that entry is returned and nothing is written.
    pub async fn append(&self, tx: &mut Tx, new: &NewEntry) -> StoreResult<Entry> {
        // PostgreSQL only: SQLite's `BEGIN IMMEDIATE` already holds the database's write lock.
        // Once per transaction: appends of a batch of events share one.
        if tx.first_in_transaction("audit chain lock")
            && let Some(conn) = tx.postgres().await?
        {
            // Held until commit or rollback: appends of every connection and instance queue here.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CHAIN_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        on_tx!(tx, |conn| {
            // The head, and whether `event_id` is already recorded, in one statement (an empty
            // chain has no entry of any event either).
            let head: Option<(i64, Vec<u8>, Option<i64>)> = sqlx::query_as(
                "SELECT head.sequence, head.hash, \
                 (SELECT e.sequence FROM audit_entries e WHERE e.event_id = $1) \
                 FROM audit_entries head ORDER BY head.sequence DESC LIMIT 1",
            )
            .bind(new.event_id.as_deref())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((_, _, Some(existing))) = head {
                let row: EntryRow = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM audit_entries WHERE sequence = $1"
                )))
                .bind(existing)
                .fetch_one(&mut *conn)
                .await?;
                return row.try_into();
            }
            let (sequence, previous_hash) = match head {
                Some((sequence, hash, _)) => (sequence + 1, hash),
                None => (1, GENESIS_HASH.to_vec()),
            };
            let entry = new.seal(sequence, Uuid::now_v7(), Utc::now(), &previous_hash);
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO audit_entries ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            )))
            .bind(entry.sequence)
            .bind(entry.id.to_string())
            .bind(entry.actor.kind.as_str())
            .bind(&entry.actor.id)
            .bind(entry.actor.roles_text())
            .bind(&entry.action)
            .bind(&entry.entity_type)
            .bind(&entry.entity_id)
            .bind(&entry.data_subject_id)
            .bind(&entry.correlation_id)
            .bind(micros(entry.occur_time))
            .bind(micros(entry.record_time))
            .bind(&entry.details)
            .bind(&entry.source_service)
            .bind(entry.event_id.as_deref())
            .bind(&entry.previous_hash)
            .bind(&entry.hash)
            .execute(&mut *conn)
            .await?;
            Ok(entry)
        })
    }

    /// [`Self::append`] in a transaction of its own.
    pub async fn append_one(&self, new: &NewEntry) -> StoreResult<Entry> {
        let mut tx = Tx::begin(&self.0).await?;
        let entry = self.append(&mut tx, new).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Runs a query built by [`Query`] (or with the same placeholders) over [`COLUMNS`].
    async fn fetch(&self, sql: String, args: Vec<Arg>) -> StoreResult<Vec<Entry>> {
        let rows: Vec<EntryRow> = on_pool!(&self.0, |pool| {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for arg in args {
                query = match arg {
                    Arg::Text(v) => query.bind(v),
                    Arg::Int(v) => query.bind(v),
                    Arg::Int32(v) => query.bind(v),
                };
            }
            query.fetch_all(pool).await?
        });
        rows.into_iter().map(Entry::try_from).collect()
    }

    /// Entries matching `filter`, newest first (occur time, then sequence), after the keyset
    /// position `after`; at most `limit`.
    pub async fn query(&self, filter: &Filter, after: Option<PageKey>, limit: usize) -> StoreResult<Vec<Entry>> {
        let mut q = Query::new();
        q.eq_text("actor_id", &filter.actor_id);
        if let Some(kind) = filter.actor_kind {
            q.eq_text("actor_kind", kind.as_str());
        }
        q.eq_text("entity_type", &filter.entity_type);
        q.eq_text("entity_id", &filter.entity_id);
        q.eq_text("correlation_id", &filter.correlation_id);
        if !filter.action.is_empty() {
            if filter.action_prefix {
                let len = q.arg(Arg::Int32(filter.action.chars().count() as i32));
                let prefix = q.arg(Arg::Text(filter.action.clone()));
                q.conditions.push(format!("substr(action, 1, {len}) = {prefix}"));
            } else {
                q.eq_text("action", &filter.action);
            }
        }
        if let Some(start) = filter.start_micros {
            let p = q.arg(Arg::Int(start));
            q.conditions.push(format!("occur_micros >= {p}"));
        }
        if let Some(end) = filter.end_micros {
            let p = q.arg(Arg::Int(end));
            q.conditions.push(format!("occur_micros < {p}"));
        }
        q.after(after, "<");
        let sql = q.select("occur_micros DESC, sequence DESC", limit);
        self.fetch(sql, q.args).await
    }

    /// Entries about data subject `customer_id` (its own entity and every entry carrying it as
    /// the data subject), oldest first, after `after`; at most `limit`.
    pub async fn gdpr_trail(&self, customer_id: &str, after: Option<PageKey>, limit: usize) -> StoreResult<Vec<Entry>> {
        let mut q = Query::new();
        let (a, b) = (
            q.arg(Arg::Text(customer_id.to_owned())),
            q.arg(Arg::Text(customer_id.to_owned())),
        );
        q.conditions.push(format!(
            "(data_subject_id = {a} OR (entity_type = 'customer' AND entity_id = {b}))"
        ));
        q.after(after, ">");
        let sql = q.select("occur_micros, sequence", limit);
        self.fetch(sql, q.args).await
    }

    /// Entries with `from <= sequence <= to`, in sequence order; at most `limit`.
    pub async fn range(&self, from: i64, to: i64, limit: usize) -> StoreResult<Vec<Entry>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_entries WHERE sequence >= $1 AND sequence <= $2 ORDER BY sequence LIMIT {limit}"
        );
        self.fetch(sql, vec![Arg::Int(from), Arg::Int(to)]).await
    }

    /// The entry with `event_id`, if any.
    pub async fn by_event_id(&self, event_id: &str) -> StoreResult<Option<Entry>> {
        let sql = format!("SELECT {COLUMNS} FROM audit_entries WHERE event_id = $1");
        Ok(self.fetch(sql, vec![Arg::Text(event_id.to_owned())]).await?.pop())
    }

    /// The sequence of the newest entry (0 when the log is empty).
    /// The latest archive checkpoint, if entries were archived.
    pub async fn latest_checkpoint(&self) -> StoreResult<Option<Checkpoint>> {
        let sql = format!("{SELECT_CHECKPOINT} ORDER BY last_sequence DESC LIMIT 1");
        let row: Option<Checkpoint> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_optional(pool).await?
        });
        Ok(row)
    }

    /// Archives the next entries past retention, at most `limit`: in one transaction (holding the
    /// chain, so appends and other archivers wait), reads the oldest unarchived entries that
    /// occurred before `before` (a contiguous run from the last checkpoint, never the head),
    /// verifies their chain from the checkpoint, hands them to `write` (which stores the archive
    /// and returns its name and SHA-256), records the checkpoint and deletes them. `None` when
    /// nothing is due. A broken chain is an error and archives nothing.
    pub async fn archive_next(
        &self,
        before: DateTime<Utc>,
        limit: i64,
        write: impl FnOnce(&[Entry]) -> anyhow::Result<(String, String)>,
    ) -> anyhow::Result<Option<Checkpoint>> {
        let mut tx = Tx::begin(&self.0).await?;
        if let Some(conn) = tx.postgres().await? {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CHAIN_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let sql = format!("{SELECT_CHECKPOINT} ORDER BY last_sequence DESC LIMIT 1");
        let checkpoint: Option<Checkpoint> = on_tx!(tx, |conn| {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_optional(&mut *conn).await?
        });
        let (after, previous) = match &checkpoint {
            Some(c) => (c.last_sequence, c.last_hash.clone()),
            None => (0, GENESIS_HASH.to_vec()),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_entries WHERE sequence > $1 \
             AND sequence < (SELECT MAX(sequence) FROM audit_entries) ORDER BY sequence LIMIT $2"
        );
        let rows: Vec<EntryRow> = on_tx!(tx, |conn| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        });
        let entries: Vec<Entry> = rows
            .into_iter()
            .map(Entry::try_from)
            .take_while(|e| e.as_ref().map_or(true, |e| e.occur_time < before))
            .collect::<StoreResult<_>>()?;
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        let mut verifier = ChainVerifier::new(after + 1, previous);
        for entry in &entries {
            if let Err(broken) = verifier.check(entry) {
                anyhow::bail!(
                    "the audit chain is broken at {}: {}; nothing archived",
                    broken.sequence,
                    broken.reason
                );
            }
        }
        let (archive_name, archive_sha256) = write(&entries)?;
        let checkpoint = Checkpoint {
            last_sequence: last.sequence,
            last_hash: last.hash.clone(),
            entries: entries.len() as i64,
            archive_name,
            archive_sha256,
            archive_micros: micros(Utc::now()),
        };
        let c = &checkpoint;
        on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO audit_checkpoints (last_sequence, last_hash, entries, archive_name, archive_sha256, \
                 archive_micros) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(c.last_sequence)
            .bind(&c.last_hash)
            .bind(c.entries)
            .bind(&c.archive_name)
            .bind(&c.archive_sha256)
            .bind(c.archive_micros)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM audit_entries WHERE sequence > $1 AND sequence <= $2")
                .bind(after)
                .bind(c.last_sequence)
                .execute(&mut *conn)
                .await?;
        });
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    pub async fn head_sequence(&self) -> StoreResult<i64> {
        let sql = "SELECT COALESCE(MAX(sequence), 0) FROM audit_entries";
        Ok(on_pool!(&self.0, |pool| sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await?))
    }

    /// Recomputes the chain from `from` (default 1) to `to` (default: the head when the call
    /// starts) and reports the first break: a missing sequence, a `previous_hash` that is not its
    /// predecessor's hash, or a hash that does not match the entry's fields.
    pub async fn verify(&self, from: Option<i64>, to: Option<i64>) -> StoreResult<Verification> {
        // Archived entries are gone; the latest checkpoint anchors what is left.
        let checkpoint = self.latest_checkpoint().await?;
        let floor = checkpoint.as_ref().map_or(1, |c| c.last_sequence + 1);
        let from = from.unwrap_or(1).max(floor);
        let head = self.head_sequence().await?;
        let end = to.unwrap_or(head);
        // The predecessor of a range that starts in the middle must exist: its hash anchors the
        // range.
        let previous = if let Some(checkpoint) = checkpoint.filter(|c| c.last_sequence + 1 == from) {
            checkpoint.last_hash
        } else if from == 1 {
            GENESIS_HASH.to_vec()
        } else {
            match self.range(from - 1, from - 1, 1).await?.pop() {
                Some(entry) => entry.hash,
                None => return Ok(Verification::unanchored(from)),
            }
        };
        let mut verifier = ChainVerifier::new(from, previous);
        let mut next = from;
        let mut broken = None;
        'walk: while next <= end {
            let batch = self.range(next, end, VERIFY_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for entry in &batch {
                if let Err(b) = verifier.check(entry) {
                    broken = Some(b);
                    break 'walk;
                }
            }
            next = batch.last().map(|e| e.sequence + 1).unwrap_or(end + 1);
        }
        if broken.is_none() {
            // A closed range must reach its end (an explicit `to` beyond the data, or a deleted
            // tail inside the range).
            let bound = if to.is_some() || from <= head { Some(end) } else { None };
            broken = verifier.finish(bound).err();
        }
        Ok(Verification {
            checked: verifier.checked,
            last_sequence: verifier.last_sequence,
            last_hash: verifier.last_hash.clone(),
            broken,
        })
    }
}

/// Result of [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: i64,
    pub last_sequence: i64,
    pub last_hash: Vec<u8>,
    pub broken: Option<ChainBreak>,
}

impl Verification {
    /// A range starting at `from` whose predecessor is missing: nothing can be checked.
    fn unanchored(from: i64) -> Self {
        Self {
            checked: 0,
            last_sequence: from - 1,
            last_hash: Vec::new(),
            broken: Some(ChainBreak {
                sequence: from - 1,
                id: String::new(),
                reason: format!("sequence gap: entry {} is missing", from - 1),
            }),
        }
    }
}

/// Entries read per round trip while verifying.
const VERIFY_BATCH: usize = 1000;

/// A bound value of a dynamically built query.
enum Arg {
    Text(String),
    Int(i64),
    Int32(i32),
}

struct Query {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Query {
    fn new() -> Self {
        Self {
            conditions: Vec::new(),
            args: Vec::new(),
        }
    }

    /// The next placeholder, binding `arg` to it.
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn eq_text(&mut self, column: &str, value: &str) {
        if !value.is_empty() {
            let p = self.arg(Arg::Text(value.to_owned()));
            self.conditions.push(format!("{column} = {p}"));
        }
    }

    /// Keeps the entries past the keyset position `after` in time order: `op` is `<` when
    /// paging newest first, `>` oldest first.
    fn after(&mut self, after: Option<PageKey>, op: &str) {
        if let Some((at, sequence)) = after {
            let (a, b, c) = (
                self.arg(Arg::Int(at)),
                self.arg(Arg::Int(at)),
                self.arg(Arg::Int(sequence)),
            );
            self.conditions.push(format!(
                "(occur_micros {op} {a} OR (occur_micros = {b} AND sequence {op} {c}))"
            ));
        }
    }

    /// The SELECT of the entries matching every condition, in `order`, at most `limit`.
    fn select(&self, order: &str, limit: usize) -> String {
        let filter = if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        };
        format!("SELECT {COLUMNS} FROM audit_entries {filter} ORDER BY {order} LIMIT {limit}")
    }
}
