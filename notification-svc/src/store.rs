//! Persistence of notifications, read state and preferences on PostgreSQL or SQLite. One SQL text
//! serves both backends (`on_pool!`/`on_tx!`); the behaviour suite in `tests/store.rs` runs on
//! both.
//!
//! # Visibility order of ids
//!
//! Ids come from the table's sequence. A sequence alone does not make ids *visible* in order
//! (transaction A takes 5, B takes 6, B commits first: a reader could see 6 and then, later, 5,
//! and resuming "after 6" would skip 5). So every insert first serialises on a
//! transaction-scoped lock held until commit: on PostgreSQL `pg_advisory_xact_lock`, on SQLite
//! the database write lock every [`Tx`] holds (`BEGIN IMMEDIATE`). Ids are therefore assigned
//! in commit order, and "id > N" is a gap-free resume point.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ordermesh_platform::auth::Role;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::events::outbox;
use ordermesh_platform::{on_pool, on_tx};
use sqlx::Row;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{Channel, Kind, NewNotification, Notification, Preferences, Recipient, Scope, kinds_list};

/// Key of the PostgreSQL advisory lock that serialises notification inserts.
const INSERT_LOCK: i64 = 0x6e6f_7469_6679; // "notify"

pub fn migrations() -> Migrations {
    Migrations::embedded(
        &[
            &[(
                1,
                "notifications",
                include_str!("../migrations/postgres/0001_notifications.sql"),
            )][..],
            outbox::POSTGRES_MIGRATIONS,
        ]
        .concat(),
        &[
            &[(
                1,
                "notifications",
                include_str!("../migrations/sqlite/0001_notifications.sql"),
            )][..],
            outbox::SQLITE_MIGRATIONS,
        ]
        .concat(),
    )
}

const COLUMNS: &str = "n.id, n.recipient_customer_id, n.recipient_role, n.notification_type, n.title, n.body, n.data, \
     n.correlation_id, n.sender_id, n.created_at";

/// The scope condition; binds `$1` (all), `$2` (customer), `$3` (roles list).
const SCOPE: &str =
    "($1 OR n.recipient_customer_id = $2 OR ($3 IS NOT NULL AND $3 LIKE '%,' || n.recipient_role || ',%'))";

fn corrupt(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}

macro_rules! notification_from_row {
    ($row:expr, $with_read:expr) => {{
        let row = $row;
        let customer: Option<Uuid> = row.try_get("recipient_customer_id")?;
        let role: Option<String> = row.try_get("recipient_role")?;
        let recipient = match (customer, role) {
            (Some(id), _) => Recipient::Customer(id),
            (None, Some(role)) => Recipient::Role(Role::parse(&role).ok_or_else(|| corrupt("recipient_role", &role))?),
            (None, None) => return Err(corrupt("recipient", "none")),
        };
        let kind: String = row.try_get("notification_type")?;
        let data: Json<BTreeMap<String, String>> = row.try_get("data")?;
        Notification {
            id: row.try_get("id")?,
            recipient,
            kind: Kind::parse(&kind).ok_or_else(|| corrupt("notification_type", &kind))?,
            title: row.try_get("title")?,
            body: row.try_get("body")?,
            data: data.0,
            correlation_id: row.try_get("correlation_id")?,
            sender_id: row.try_get("sender_id")?,
            created_at: row.try_get("created_at")?,
            read_at: if $with_read { row.try_get("read_at")? } else { None },
        }
    }};
}

/// Stores `new` in the caller's transaction and returns it with its id. Serialises with every
/// other insert until the transaction ends (see the module documentation).
pub async fn insert(tx: &mut Tx, new: &NewNotification, now: DateTime<Utc>) -> Result<Notification, sqlx::Error> {
    if let Some(conn) = tx.postgres() {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INSERT_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let (customer, role) = match &new.recipient {
        Recipient::Customer(id) => (Some(*id), None),
        Recipient::Role(role) => (None, Some(role.as_str())),
    };
    let id: i64 = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO notifications (recipient_customer_id, recipient_role, notification_type, title, body, data, \
             correlation_id, sender_id, idempotency_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(customer)
        .bind(role)
        .bind(new.kind.as_str())
        .bind(&new.title)
        .bind(&new.body)
        .bind(Json(&new.data))
        .bind(&new.correlation_id)
        .bind(&new.sender_id)
        .bind(new.idempotency_key.as_deref())
        .bind(now)
        .fetch_one(&mut *conn)
        .await?
        .try_get("id")?
    });
    Ok(Notification {
        id,
        recipient: new.recipient.clone(),
        kind: new.kind,
        title: new.title.clone(),
        body: new.body.clone(),
        data: new.data.clone(),
        correlation_id: new.correlation_id.clone(),
        sender_id: new.sender_id.clone(),
        created_at: now,
        read_at: None,
    })
}

/// The notification `sender` created with idempotency `key`, inside `tx`. On PostgreSQL call it
/// after taking the insert lock ([`lock_inserts`]) so check-then-insert cannot race.
pub async fn find_by_key(tx: &mut Tx, sender: &str, key: &str) -> Result<Option<Notification>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM notifications n WHERE n.sender_id = $1 AND n.idempotency_key = $2");
    on_tx!(tx, |conn| {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sender)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => Ok(Some(notification_from_row!(&row, false))),
            None => Ok(None),
        }
    })
}

/// Takes the insert lock now (PostgreSQL; SQLite transactions already hold the write lock).
pub async fn lock_inserts(tx: &mut Tx) -> Result<(), sqlx::Error> {
    if let Some(conn) = tx.postgres() {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INSERT_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// One notification by id, without read state.
pub async fn get(db: &Database, id: i64) -> Result<Option<Notification>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM notifications n WHERE n.id = $1");
    on_pool!(db, |pool| {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await?;
        match row {
            Some(row) => Ok(Some(notification_from_row!(&row, false))),
            None => Ok(None),
        }
    })
}

/// The highest id stored (0 when empty).
pub async fn max_id(db: &Database) -> Result<i64, sqlx::Error> {
    on_pool!(db, |pool| {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS max_id FROM notifications")
            .fetch_one(pool)
            .await?;
        row.try_get::<i64, _>("max_id")
    })
}

/// A reader's view of a scope: which notifications, and whose read state.
#[derive(Debug, Clone)]
pub struct View<'a> {
    pub scope: &'a Scope,
    /// Principal key whose read state is reported (`customer:…`, `employee:…`); `None`: unread.
    pub reader: Option<&'a str>,
    /// Only these types (empty: all).
    pub kinds: &'a [Kind],
}

/// Newest first, ids below `before` (the last id of the previous page).
pub async fn list(
    db: &Database,
    view: &View<'_>,
    unread_only: bool,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Notification>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, r.read_at FROM notifications n \
         LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.reader = $4 \
         WHERE {SCOPE} AND ($5 IS NULL OR $5 LIKE '%,' || n.notification_type || ',%') \
         AND (NOT $6 OR r.read_at IS NULL) AND ($7 IS NULL OR n.id < $7) \
         ORDER BY n.id DESC LIMIT $8"
    );
    let scope = view.scope;
    on_pool!(db, |pool| {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.all)
            .bind(scope.customer)
            .bind(scope.roles_list())
            .bind(view.reader.unwrap_or(""))
            .bind(kinds_list(view.kinds))
            .bind(unread_only)
            .bind(before)
            .bind(limit as i64)
            .fetch_all(pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(notification_from_row!(row, true));
        }
        Ok(out)
    })
}

/// Oldest first, ids above `after` (replay and catch-up of Subscribe).
pub async fn after(db: &Database, view: &View<'_>, after: i64, limit: usize) -> Result<Vec<Notification>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, r.read_at FROM notifications n \
         LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.reader = $4 \
         WHERE {SCOPE} AND ($5 IS NULL OR $5 LIKE '%,' || n.notification_type || ',%') \
         AND n.id > $6 ORDER BY n.id LIMIT $7"
    );
    let scope = view.scope;
    on_pool!(db, |pool| {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.all)
            .bind(scope.customer)
            .bind(scope.roles_list())
            .bind(view.reader.unwrap_or(""))
            .bind(kinds_list(view.kinds))
            .bind(after)
            .bind(limit as i64)
            .fetch_all(pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(notification_from_row!(row, true));
        }
        Ok(out)
    })
}

/// Unread notifications of `scope` for `reader` (all types).
pub async fn unread_count(db: &Database, scope: &Scope, reader: Option<&str>) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT COUNT(*) AS unread FROM notifications n \
         LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.reader = $4 \
         WHERE {SCOPE} AND r.read_at IS NULL"
    );
    on_pool!(db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.all)
            .bind(scope.customer)
            .bind(scope.roles_list())
            .bind(reader.unwrap_or(""))
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>("unread")
    })
}

/// Marks `ids` (or every notification, with `None`) of `scope` as read by `reader`. Ids outside
/// the scope are ignored. Returns how many changed from unread to read.
pub async fn mark_read(
    db: &Database,
    scope: &Scope,
    reader: &str,
    ids: Option<&[i64]>,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "INSERT INTO notification_reads (reader, notification_id, read_at) \
         SELECT $4, n.id, $5 FROM notifications n WHERE {SCOPE} AND ($6 OR n.id = $7) \
         ON CONFLICT (reader, notification_id) DO NOTHING"
    );
    let mut tx = Tx::begin(db).await?;
    let mut updated = 0;
    let targets: Vec<Option<i64>> = match ids {
        None => vec![None],
        Some(ids) => ids.iter().copied().map(Some).collect(),
    };
    for id in targets {
        updated += on_tx!(tx, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(scope.all)
                .bind(scope.customer)
                .bind(scope.roles_list())
                .bind(reader)
                .bind(now)
                .bind(id.is_none())
                .bind(id.unwrap_or(0))
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
    }
    tx.commit().await?;
    Ok(updated)
}

fn join<T>(items: &[T], name: impl Fn(&T) -> &'static str) -> String {
    items.iter().map(name).collect::<Vec<_>>().join(",")
}

/// The stored preferences of `principal` (None: never set).
pub async fn preferences(db: &Database, principal: &str) -> Result<Option<Preferences>, sqlx::Error> {
    on_pool!(db, |pool| {
        let row =
            sqlx::query("SELECT channels, muted_types, updated_at FROM notification_preferences WHERE principal = $1")
                .bind(principal)
                .fetch_optional(pool)
                .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let channels: String = row.try_get("channels")?;
                let muted: String = row.try_get("muted_types")?;
                Ok(Some(Preferences {
                    channels: channels.split(',').filter_map(Channel::parse).collect(),
                    muted: muted.split(',').filter_map(Kind::parse).collect(),
                    updated_at: row.try_get("updated_at")?,
                }))
            }
        }
    })
}

/// Muted types of `principal`, read inside `tx` (the consumer's transaction).
pub async fn muted_in_tx(tx: &mut Tx, principal: &str) -> Result<Vec<Kind>, sqlx::Error> {
    on_tx!(tx, |conn| {
        let row = sqlx::query("SELECT muted_types FROM notification_preferences WHERE principal = $1")
            .bind(principal)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            None => Ok(Vec::new()),
            Some(row) => {
                let muted: String = row.try_get("muted_types")?;
                Ok(muted.split(',').filter_map(Kind::parse).collect())
            }
        }
    })
}

/// Stores the preferences of `principal` (insert or replace).
pub async fn put_preferences(db: &Database, principal: &str, prefs: &Preferences) -> Result<(), sqlx::Error> {
    let channels = join(&prefs.channels, |c| c.as_str());
    let muted = join(&prefs.muted, |k| k.as_str());
    on_pool!(db, |pool| {
        sqlx::query(
            "INSERT INTO notification_preferences (principal, channels, muted_types, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (principal) DO UPDATE SET channels = excluded.channels, \
             muted_types = excluded.muted_types, updated_at = excluded.updated_at",
        )
        .bind(principal)
        .bind(&channels)
        .bind(&muted)
        .bind(prefs.updated_at.unwrap_or_else(Utc::now))
        .execute(pool)
        .await?;
        Ok(())
    })
}
