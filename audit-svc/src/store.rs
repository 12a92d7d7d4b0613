//! The audit chain on PostgreSQL or SQLite. One SQL text serves both backends (`on_pool!` /
//! `on_tx!` compile it once per backend). There is deliberately no UPDATE or DELETE of
//! `audit_entries` anywhere in this crate; the migrations add triggers that refuse both.
//!
//! Appends are serialized, so the chain stays ONE chain however many consumers, lanes and
//! instances append at once: on PostgreSQL the transaction first takes a transaction-scoped
//! advisory lock ([`CHAIN_LOCK`]), then reads the head and inserts; on SQLite the write lock
//! taken by `BEGIN IMMEDIATE` ([`Tx::begin`]) already excludes every other writer. The primary
//! key on `sequence` is the backstop: a second writer at the same position would fail.

use chrono::Utc;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::events::outbox;
use ordermesh_platform::{on_pool, on_tx};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use crate::domain::{
    Actor, ActorKind, ChainBreak, ChainVerifier, Entry, Filter, GENESIS_HASH, NewEntry, PageKey, from_micros, micros,
};

/// Key of the PostgreSQL advisory lock that serializes appends ("omaudit" in ASCII).
pub const CHAIN_LOCK: i64 = 0x006f_6d61_7564_6974;

pub fn migrations() -> Migrations {
    Migrations::embedded(
        &[
            &[(1, "audit", include_str!("../migrations/postgres/0001_audit.sql"))][..],
            outbox::POSTGRES_MIGRATIONS,
        ]
        .concat(),
        &[
            &[(1, "audit", include_str!("../migrations/sqlite/0001_audit.sql"))][..],
            outbox::SQLITE_MIGRATIONS,
        ]
        .concat(),
    )
}

const COLUMNS: &str = "sequence, id, actor_kind, actor_id, actor_roles, action, entity_type, entity_id, \
     data_subject_id, correlation_id, occur_micros, record_micros, details, source_service, event_id, \
     previous_hash, hash";

fn corrupt(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}

/// Maps an `audit_entries` row (any backend) to an [`Entry`].
macro_rules! entry_from_row {
    ($row:expr) => {{
        let row = $row;
        let kind: String = row.try_get("actor_kind")?;
        let id: String = row.try_get("id")?;
        let roles: String = row.try_get("actor_roles")?;
        Entry {
            sequence: row.try_get("sequence")?,
            id: Uuid::parse_str(&id).map_err(|_| corrupt("id", &id))?,
            actor: Actor {
                kind: ActorKind::parse(&kind).ok_or_else(|| corrupt("actor_kind", &kind))?,
                id: row.try_get("actor_id")?,
                roles: Actor::parse_roles(&roles),
            },
            action: row.try_get("action")?,
            entity_type: row.try_get("entity_type")?,
            entity_id: row.try_get("entity_id")?,
            data_subject_id: row.try_get("data_subject_id")?,
            correlation_id: row.try_get("correlation_id")?,
            occur_time: from_micros(row.try_get("occur_micros")?),
            record_time: from_micros(row.try_get("record_micros")?),
            details: row.try_get("details")?,
            source_service: row.try_get("source_service")?,
            event_id: row.try_get("event_id")?,
            previous_hash: row.try_get("previous_hash")?,
            hash: row.try_get("hash")?,
        }
    }};
}

/// Appends `new` at the head of the chain inside `tx` (the caller commits). Idempotent per
/// `event_id`: when an entry with it exists, that entry is returned and nothing is written.
pub async fn append(tx: &mut Tx, new: &NewEntry) -> Result<Entry, sqlx::Error> {
    if let Some(conn) = tx.postgres() {
        // Held until commit or rollback: appends of every connection and instance queue here.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    on_tx!(tx, |conn| {
        if let Some(event_id) = &new.event_id {
            let existing = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_entries WHERE event_id = $1"
            )))
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = existing {
                return Ok(entry_from_row!(row));
            }
        }
        let head = sqlx::query("SELECT sequence, hash FROM audit_entries ORDER BY sequence DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        let (sequence, previous_hash) = match head {
            Some(row) => (
                row.try_get::<i64, _>("sequence")? + 1,
                row.try_get::<Vec<u8>, _>("hash")?,
            ),
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

/// [`append`] in a transaction of its own.
pub async fn append_one(db: &Database, new: &NewEntry) -> Result<Entry, sqlx::Error> {
    let mut tx = Tx::begin(db).await?;
    let entry = append(&mut tx, new).await?;
    tx.commit().await?;
    Ok(entry)
}

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

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

async fn fetch(db: &Database, sql: String, args: Vec<Arg>) -> Result<Vec<Entry>, sqlx::Error> {
    on_pool!(db, |pool| {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Text(v) => query.bind(v),
                Arg::Int(v) => query.bind(v),
                Arg::Int32(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(pool).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            entries.push(entry_from_row!(row));
        }
        Ok(entries)
    })
}

/// Entries matching `filter`, newest first (occur time, then sequence), after the keyset
/// position `after`; at most `limit`.
pub async fn query(
    db: &Database,
    filter: &Filter,
    after: Option<PageKey>,
    limit: usize,
) -> Result<Vec<Entry>, sqlx::Error> {
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
    if let Some((at, sequence)) = after {
        let (a, b, c) = (q.arg(Arg::Int(at)), q.arg(Arg::Int(at)), q.arg(Arg::Int(sequence)));
        q.conditions.push(format!(
            "(occur_micros < {a} OR (occur_micros = {b} AND sequence < {c}))"
        ));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_entries {} ORDER BY occur_micros DESC, sequence DESC LIMIT {}",
        q.where_clause(),
        limit
    );
    fetch(db, sql, q.args).await
}

/// Entries about data subject `customer_id` (its own entity and every entry carrying it as the
/// data subject), oldest first, after `after`; at most `limit`.
pub async fn gdpr_trail(
    db: &Database,
    customer_id: &str,
    after: Option<PageKey>,
    limit: usize,
) -> Result<Vec<Entry>, sqlx::Error> {
    let mut q = Query::new();
    let (a, b) = (
        q.arg(Arg::Text(customer_id.to_owned())),
        q.arg(Arg::Text(customer_id.to_owned())),
    );
    q.conditions.push(format!(
        "(data_subject_id = {a} OR (entity_type = 'customer' AND entity_id = {b}))"
    ));
    if let Some((at, sequence)) = after {
        let (a, b, c) = (q.arg(Arg::Int(at)), q.arg(Arg::Int(at)), q.arg(Arg::Int(sequence)));
        q.conditions.push(format!(
            "(occur_micros > {a} OR (occur_micros = {b} AND sequence > {c}))"
        ));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_entries {} ORDER BY occur_micros, sequence LIMIT {}",
        q.where_clause(),
        limit
    );
    fetch(db, sql, q.args).await
}

/// Entries with `from <= sequence <= to`, in sequence order; at most `limit`.
pub async fn range(db: &Database, from: i64, to: i64, limit: usize) -> Result<Vec<Entry>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_entries WHERE sequence >= $1 AND sequence <= $2 ORDER BY sequence LIMIT {limit}"
    );
    fetch(db, sql, vec![Arg::Int(from), Arg::Int(to)]).await
}

/// The entry with `event_id`, if any.
pub async fn by_event_id(db: &Database, event_id: &str) -> Result<Option<Entry>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM audit_entries WHERE event_id = $1");
    Ok(fetch(db, sql, vec![Arg::Text(event_id.to_owned())]).await?.pop())
}

/// The sequence of the newest entry (0 when the log is empty).
pub async fn head_sequence(db: &Database) -> Result<i64, sqlx::Error> {
    on_pool!(db, |pool| {
        let row = sqlx::query("SELECT COALESCE(MAX(sequence), 0) AS head FROM audit_entries")
            .fetch_one(pool)
            .await?;
        row.try_get::<i64, _>("head")
    })
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: i64,
    pub last_sequence: i64,
    pub last_hash: Vec<u8>,
    pub broken: Option<ChainBreak>,
}

/// Entries read per round trip while verifying.
const VERIFY_BATCH: usize = 1000;

/// Recomputes the chain from `from` (default 1) to `to` (default: the head when the call starts)
/// and reports the first break: a missing sequence, a `previous_hash` that is not its
/// predecessor's hash, or a hash that does not match the entry's fields.
pub async fn verify(db: &Database, from: Option<i64>, to: Option<i64>) -> Result<Verification, sqlx::Error> {
    let from = from.unwrap_or(1).max(1);
    let head = head_sequence(db).await?;
    let end = to.unwrap_or(head);
    // The predecessor of a range that starts in the middle must exist: its hash anchors the range.
    let previous = if from == 1 {
        GENESIS_HASH.to_vec()
    } else {
        match range(db, from - 1, from - 1, 1).await?.pop() {
            Some(entry) => entry.hash,
            None => {
                return Ok(Verification {
                    checked: 0,
                    last_sequence: from - 1,
                    last_hash: Vec::new(),
                    broken: Some(ChainBreak {
                        sequence: from - 1,
                        id: String::new(),
                        reason: format!("sequence gap: entry {} is missing", from - 1),
                    }),
                });
            }
        }
    };
    let mut verifier = ChainVerifier::new(from, previous);
    let mut next = from;
    let mut broken = None;
    'walk: while next <= end {
        let batch = range(db, next, end, VERIFY_BATCH).await?;
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
        // A closed range must reach its end (an explicit `to` beyond the data, or a deleted tail
        // inside the range).
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
