//! Persistence of notifications, read state and preferences on PostgreSQL or SQLite. One SQL text
//! serves both backends (`on_pool!`/`on_tx!`); the behaviour suite in `tests/store.rs` runs on
//! both.
//!
//! # Visibility order of ids
//!
//! Ids come from the table's sequence. A sequence alone does not make ids *visible* in order
//! (transaction A takes 5, B takes 6, B commits first: a reader could see 6 and then, later, 5,
//! and resuming "after 6" would skip 5). So every insert first serialises on a
//! transaction-scoped lock held until commit ([`Store::lock_inserts`]). Ids are therefore
//! assigned in commit order, and "id > N" is a gap-free resume point.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ordermesh_platform::auth::Role;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::events::tx::TxConn;
use ordermesh_platform::{StoreError, StoreResult, on_pool, on_tx};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{self, Channel, Kind, NewNotification, Notification, Preferences, Recipient, Scope};

/// Key of the PostgreSQL advisory lock that serialises notification inserts.
const INSERT_LOCK: i64 = 0x6e6f_7469_6679; // "notify"

pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[
            (
                1,
                "notifications",
                include_str!("../migrations/postgres/0001_notifications.sql"),
            ),
            (
                2,
                "erased customers",
                include_str!("../migrations/postgres/0002_erased_customers.sql"),
            ),
            (
                3,
                "order progress",
                include_str!("../migrations/postgres/0003_order_progress.sql"),
            ),
            (
                4,
                "notification trace",
                include_str!("../migrations/postgres/0004_notification_trace.sql"),
            ),
        ],
        &[
            (
                1,
                "notifications",
                include_str!("../migrations/sqlite/0001_notifications.sql"),
            ),
            (
                2,
                "erased customers",
                include_str!("../migrations/sqlite/0002_erased_customers.sql"),
            ),
            (
                3,
                "order progress",
                include_str!("../migrations/sqlite/0003_order_progress.sql"),
            ),
            (
                4,
                "notification trace",
                include_str!("../migrations/sqlite/0004_notification_trace.sql"),
            ),
        ],
    )
}

const COLUMNS: &str = "n.id, n.recipient_customer_id, n.recipient_role, n.notification_type, n.title, n.body, n.data, \
     n.correlation_id, n.sender_id, n.created_at, n.traceparent";

/// The scope condition; binds `$1` (all), `$2` (customer), `$3` (roles list).
const SCOPE: &str =
    "($1 OR n.recipient_customer_id = $2 OR ($3 IS NOT NULL AND $3 LIKE '%,' || n.recipient_role || ',%'))";

/// A reader's view of a scope: which notifications, and whose read state.
#[derive(Debug, Clone)]
pub struct View<'a> {
    pub scope: &'a Scope,
    /// Principal key whose read state is reported (`customer:…`, `employee:…`); `None`: unread.
    pub reader: Option<&'a str>,
    /// Only these types (empty: all).
    pub kinds: &'a [Kind],
}

/// The id order of a [`Store::select`].
enum Order {
    NewestFirst,
    OldestFirst,
}

/// `,admin,order-manager,` for the `LIKE` match of [`SCOPE`]; `None` without roles.
fn roles_list(scope: &Scope) -> Option<String> {
    (!scope.roles.is_empty()).then(|| {
        let names: Vec<&str> = scope.roles.iter().map(|r| r.as_str()).collect();
        format!(",{},", names.join(","))
    })
}

/// `,ORDER_STATUS,PAYMENT,` for the type match of [`Store::select`]; `None` for all types.
fn kinds_list(kinds: &[Kind]) -> Option<String> {
    (!kinds.is_empty()).then(|| {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        format!(",{},", names.join(","))
    })
}

/// A stored list of enum names (`EMAIL,SMS`; empty: none).
fn parse_list<T>(column: &'static str, value: &str, parse: impl Fn(&str) -> Option<T>) -> StoreResult<Vec<T>> {
    value
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| parse(name).ok_or_else(|| StoreError::corrupt(column, name)))
        .collect()
}

fn join<T: Copy>(items: &[T], name: impl Fn(T) -> &'static str) -> String {
    items.iter().map(|item| name(*item)).collect::<Vec<_>>().join(",")
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: i64,
    recipient_customer_id: Option<Uuid>,
    recipient_role: Option<String>,
    notification_type: String,
    title: String,
    body: String,
    data: Json<BTreeMap<String, String>>,
    correlation_id: String,
    sender_id: String,
    created_at: DateTime<Utc>,
    traceparent: Option<String>,
    /// Only selected with a reader's view.
    #[sqlx(default)]
    read_at: Option<DateTime<Utc>>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> StoreResult<Self> {
        let recipient = match (row.recipient_customer_id, row.recipient_role) {
            (Some(id), _) => Recipient::Customer(id),
            (None, Some(role)) => {
                Recipient::Role(Role::parse(&role).ok_or_else(|| StoreError::corrupt("recipient_role", &role))?)
            }
            (None, None) => return Err(StoreError::corrupt("recipient", "none")),
        };
        Ok(Self {
            id: row.id,
            recipient,
            kind: Kind::parse(&row.notification_type)
                .ok_or_else(|| StoreError::corrupt("notification_type", &row.notification_type))?,
            title: row.title,
            body: row.body,
            data: row.data.0,
            correlation_id: row.correlation_id,
            sender_id: row.sender_id,
            created_at: row.created_at,
            read_at: row.read_at,
            traceparent: row.traceparent,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PreferencesRow {
    channels: String,
    muted_types: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PreferencesRow> for Preferences {
    type Error = StoreError;

    fn try_from(row: PreferencesRow) -> StoreResult<Self> {
        Ok(Self {
            channels: parse_list("channels", &row.channels, Channel::parse)?,
            muted: parse_list("muted_types", &row.muted_types, Kind::parse)?,
            updated_at: Some(row.updated_at),
        })
    }
}

/// The notification store.
#[derive(Clone, Debug)]
pub struct Store(Database);

impl Store {
    pub fn new(db: &Database) -> Self {
        Self(db.clone())
    }

    /// A transaction to write notifications in (with [`Store::insert`]).
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(Tx::begin(&self.0).await?)
    }

    /// Takes the insert lock of `tx` now, so ids are assigned in commit order (see the module
    /// documentation) and check-then-insert sequences cannot race.
    pub async fn lock_inserts(&self, tx: &mut Tx) -> StoreResult<()> {
        // Once per transaction: the notifications of a batch of events share one.
        if !tx.first_in_transaction("notification insert lock") {
            return Ok(());
        }
        match tx.conn().await? {
            TxConn::Postgres(conn) => {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(INSERT_LOCK)
                    .execute(&mut **conn)
                    .await?;
            }
            // Every SQLite write transaction already holds the database's single write lock
            // (`BEGIN IMMEDIATE`) until it ends.
            TxConn::Sqlite(_) => {}
        }
        Ok(())
    }

    /// Stores `new` in the caller's transaction and returns it with its id. Serialises with every
    /// other insert until the transaction ends.
    pub async fn insert(&self, tx: &mut Tx, new: &NewNotification, now: DateTime<Utc>) -> StoreResult<Notification> {
        self.lock_inserts(tx).await?;
        let (customer, role) = match &new.recipient {
            Recipient::Customer(id) => (Some(*id), None),
            Recipient::Role(role) => (None, Some(role.as_str())),
        };
        // The work that creates it (an event's handling, a call), for the live delivery's span.
        let traceparent = ordermesh_platform::telemetry::current_traceparent();
        let id: i64 = on_tx!(tx, |conn| {
            sqlx::query_scalar(
                "INSERT INTO notifications (recipient_customer_id, recipient_role, notification_type, title, body, \
                 data, correlation_id, sender_id, idempotency_key, created_at, traceparent) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
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
            .bind(traceparent.as_deref())
            .fetch_one(&mut *conn)
            .await?
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
            traceparent,
        })
    }

    /// The notification `sender` created with idempotency `key`, inside `tx`. Call it after
    /// [`Store::lock_inserts`] so check-then-insert cannot race.
    pub async fn find_by_key(&self, tx: &mut Tx, sender: &str, key: &str) -> StoreResult<Option<Notification>> {
        let sql = format!("SELECT {COLUMNS} FROM notifications n WHERE n.sender_id = $1 AND n.idempotency_key = $2");
        let row: Option<NotificationRow> = on_tx!(tx, |conn| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(sender)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Notification::try_from).transpose()
    }

    /// One notification by id, without read state.
    pub async fn get(&self, id: i64) -> StoreResult<Option<Notification>> {
        let sql = format!("SELECT {COLUMNS} FROM notifications n WHERE n.id = $1");
        let row: Option<NotificationRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        });
        row.map(Notification::try_from).transpose()
    }

    /// The highest id stored (0 when empty).
    pub async fn max_id(&self) -> StoreResult<i64> {
        let sql = "SELECT COALESCE(MAX(id), 0) FROM notifications";
        let max_id = on_pool!(&self.0, |pool| sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(max_id)
    }

    /// Newest first, ids below `before` (the last id of the previous page).
    pub async fn list(
        &self,
        view: &View<'_>,
        unread_only: bool,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<Notification>> {
        self.select(view, unread_only, 0, before, Order::NewestFirst, limit)
            .await
    }

    /// Oldest first, ids above `after` (replay and catch-up of Subscribe).
    pub async fn after(&self, view: &View<'_>, after: i64, limit: usize) -> StoreResult<Vec<Notification>> {
        self.select(view, false, after, None, Order::OldestFirst, limit).await
    }

    /// The notifications of `view` with their read state, ids above `above` and below `below`.
    async fn select(
        &self,
        view: &View<'_>,
        unread_only: bool,
        above: i64,
        below: Option<i64>,
        order: Order,
        limit: usize,
    ) -> StoreResult<Vec<Notification>> {
        let order = match order {
            Order::NewestFirst => "DESC",
            Order::OldestFirst => "ASC",
        };
        let sql = format!(
            "SELECT {COLUMNS}, r.read_at FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.reader = $4 \
             WHERE {SCOPE} AND ($5 IS NULL OR $5 LIKE '%,' || n.notification_type || ',%') \
             AND (NOT $6 OR r.read_at IS NULL) AND n.id > $7 AND ($8 IS NULL OR n.id < $8) \
             ORDER BY n.id {order} LIMIT $9"
        );
        let scope = view.scope;
        let rows: Vec<NotificationRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(scope.all)
                .bind(scope.customer)
                .bind(roles_list(scope))
                .bind(view.reader.unwrap_or(""))
                .bind(kinds_list(view.kinds))
                .bind(unread_only)
                .bind(above)
                .bind(below)
                .bind(limit as i64)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(Notification::try_from).collect()
    }

    /// Unread notifications of `scope` for `reader` (all types).
    pub async fn unread_count(&self, scope: &Scope, reader: Option<&str>) -> StoreResult<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.reader = $4 \
             WHERE {SCOPE} AND r.read_at IS NULL"
        );
        Ok(on_pool!(&self.0, |pool| {
            sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(scope.all)
                .bind(scope.customer)
                .bind(roles_list(scope))
                .bind(reader.unwrap_or(""))
                .fetch_one(pool)
                .await?
        }))
    }

    /// Marks `ids` (or every notification, with `None`) of `scope` as read by `reader`. Ids
    /// outside the scope are ignored. Returns how many changed from unread to read.
    pub async fn mark_read(
        &self,
        scope: &Scope,
        reader: &str,
        ids: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let sql = format!(
            "INSERT INTO notification_reads (reader, notification_id, read_at) \
             SELECT $4, n.id, $5 FROM notifications n WHERE {SCOPE} AND ($6 OR n.id = $7) \
             ON CONFLICT (reader, notification_id) DO NOTHING"
        );
        let targets: Vec<Option<i64>> = match ids {
            None => vec![None],
            Some(ids) => ids.iter().copied().map(Some).collect(),
        };
        let mut tx = self.begin().await?;
        let mut updated = 0;
        for id in targets {
            updated += on_tx!(tx, |conn| {
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(scope.all)
                    .bind(scope.customer)
                    .bind(roles_list(scope))
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

    /// Every notification addressed to customer `customer_id`, oldest first, with its read state
    /// (for the customer's data export).
    pub async fn of_customer(&self, customer_id: Uuid) -> StoreResult<Vec<Notification>> {
        let sql = format!(
            "SELECT {COLUMNS}, r.read_at FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.reader = $2 \
             WHERE n.recipient_customer_id = $1 ORDER BY n.id"
        );
        let rows: Vec<NotificationRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(customer_id)
                .bind(domain::customer_key(customer_id))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(Notification::try_from).collect()
    }

    /// Deletes inside `tx` everything kept about customer `customer_id`: its notifications
    /// (their texts may name the person), its read marks and its preferences; and records that
    /// it was erased, so no notification is stored for it afterwards. How many notifications it
    /// deleted.
    pub async fn forget_customer(&self, tx: &mut Tx, customer_id: Uuid) -> StoreResult<u64> {
        let key = domain::customer_key(customer_id);
        on_tx!(tx, |conn| {
            sqlx::query("INSERT INTO erased_customers (customer_id, erased_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(customer_id)
                .bind(Utc::now())
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM notification_reads WHERE reader = $1")
                .bind(&key)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM notification_preferences WHERE principal = $1")
                .bind(&key)
                .execute(&mut *conn)
                .await?;
            Ok(
                sqlx::query("DELETE FROM notifications WHERE recipient_customer_id = $1")
                    .bind(customer_id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected(),
            )
        })
    }

    /// The stored preferences of `principal` (None: never set).
    pub async fn preferences(&self, principal: &str) -> StoreResult<Option<Preferences>> {
        let sql = "SELECT channels, muted_types, updated_at FROM notification_preferences WHERE principal = $1";
        let row: Option<PreferencesRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(sql).bind(principal).fetch_optional(pool).await?
        });
        row.map(Preferences::try_from).transpose()
    }

    /// What decides whether customer `customer_id` gets a notification, read inside `tx` (the
    /// consumer's transaction) in one round trip: the types it muted, and whether it was erased.
    pub async fn recipient_state(&self, tx: &mut Tx, customer_id: Uuid) -> StoreResult<(Vec<Kind>, bool)> {
        let sql = "SELECT (SELECT muted_types FROM notification_preferences WHERE principal = $1), \
                   EXISTS (SELECT 1 FROM erased_customers WHERE customer_id = $2)";
        let (muted, erased): (Option<String>, bool) = on_tx!(tx, |conn| {
            sqlx::query_as(sql)
                .bind(domain::customer_key(customer_id))
                .bind(customer_id)
                .fetch_one(&mut *conn)
                .await?
        });
        let muted = parse_list("muted_types", muted.as_deref().unwrap_or_default(), Kind::parse)?;
        Ok((muted, erased))
    }

    /// The last status change of `order_id` applied here, read inside the consumer's `tx`.
    pub async fn order_progress(&self, tx: &mut Tx, order_id: &str) -> StoreResult<Option<String>> {
        Ok(on_tx!(tx, |conn| {
            sqlx::query_scalar("SELECT status FROM order_progress WHERE order_id = $1")
                .bind(order_id)
                .fetch_optional(&mut *conn)
                .await?
        }))
    }

    /// Records `status` as the last change of `order_id` applied here, in the consumer's `tx`.
    pub async fn set_order_progress(&self, tx: &mut Tx, order_id: &str, status: &str) -> StoreResult<()> {
        on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO order_progress (order_id, status, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            )
            .bind(order_id)
            .bind(status)
            .bind(Utc::now())
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Stores the preferences of `principal` (insert or replace).
    pub async fn put_preferences(&self, principal: &str, prefs: &Preferences) -> StoreResult<()> {
        let channels = join(&prefs.channels, Channel::as_str);
        let muted = join(&prefs.muted, Kind::as_str);
        let updated_at = prefs.updated_at.unwrap_or_else(Utc::now);
        let sql = "INSERT INTO notification_preferences (principal, channels, muted_types, updated_at) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (principal) DO UPDATE SET channels = excluded.channels, \
                   muted_types = excluded.muted_types, updated_at = excluded.updated_at";
        on_pool!(&self.0, |pool| {
            sqlx::query(sql)
                .bind(principal)
                .bind(&channels)
                .bind(&muted)
                .bind(updated_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
