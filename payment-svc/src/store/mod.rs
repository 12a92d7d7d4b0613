//! Persistence of payments, transactions and refunds on PostgreSQL or SQLite, and the embedded
//! migrations. Every statement is one SQL text run on either backend (`on_pool!`/`on_tx!`);
//! what differs — row locks and the encoding of an actor's roles — is in [`Dialect`].
//!
//! Reads run on the pool. Everything that changes state runs inside a [`Tx`] the caller opens,
//! so the service layer decides what commits together: an intent row on its own before the
//! gateway call, the outcome with its outbox event after it, or everything inside the
//! transaction of an event handler.

mod rows;

use std::collections::{BTreeMap, HashMap};

use ordermesh_platform::analytics::{
    DayRange, PendingRollup, SqliteTime, bucket_sql_on, fold_pending, take_pending_sql,
};
use ordermesh_platform::db::page::fetch_optional_in;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{ServiceError, StoreError, StoreResult, on_pool, on_tx};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder};
use uuid::Uuid;

use crate::domain::{DayRevenue, Payment, PaymentFilter, PaymentView, Refund, Transaction};
use rows::{PAYMENT_COLUMNS, PaymentRow, REFUND_COLUMNS, RefundRow, TRANSACTION_COLUMNS, TransactionRow};

/// The service's migrations of both backends, then the platform's outbox and inbox.
/// What replaces an erased free text.
pub const ERASED_TEXT: &str = "[erased]";

pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[
            (
                1,
                "payments",
                include_str!("../../migrations/postgres/0001_payments.sql"),
            ),
            (
                2,
                "analytics",
                include_str!("../../migrations/postgres/0002_analytics.sql"),
            ),
            (3, "rollups", include_str!("../../migrations/postgres/0003_rollups.sql")),
            (
                4,
                "rollup pending",
                include_str!("../../migrations/postgres/0004_rollup_pending.sql"),
            ),
        ],
        &[
            (1, "payments", include_str!("../../migrations/sqlite/0001_payments.sql")),
            (
                2,
                "analytics",
                include_str!("../../migrations/sqlite/0002_analytics.sql"),
            ),
            (3, "rollups", include_str!("../../migrations/sqlite/0003_rollups.sql")),
            (
                4,
                "rollup pending",
                include_str!("../../migrations/sqlite/0004_rollup_pending.sql"),
            ),
        ],
    )
}

/// The SQL that differs between the backends.
struct Dialect {
    /// Appended to the SELECT of a row the transaction is about to change. PostgreSQL locks the
    /// row until the transaction ends; SQLite has no row locks and needs none: a [`Tx`] on SQLite
    /// holds the database's write lock from its `BEGIN IMMEDIATE`.
    row_lock: &'static str,
    /// `refunds.actor_roles` read as a JSON array: PostgreSQL stores a `text[]`, SQLite the JSON
    /// text itself.
    read_roles: &'static str,
    /// The value of `refunds.actor_roles` made of the JSON array bound as `$1`.
    write_roles: &'static str,
}

const POSTGRES: Dialect = Dialect {
    row_lock: " FOR UPDATE",
    read_roles: "array_to_json(actor_roles) AS actor_roles",
    write_roles: "ARRAY(SELECT jsonb_array_elements_text($1))",
};

const SQLITE: Dialect = Dialect {
    row_lock: "",
    read_roles: "actor_roles",
    write_roles: "$1",
};

impl Dialect {
    fn of(db: &Database) -> &'static Self {
        match db {
            Database::Postgres(_) => &POSTGRES,
            Database::Sqlite(_) => &SQLITE,
        }
    }

    fn of_tx(tx: &Tx) -> &'static Self {
        if tx.is_postgres() { &POSTGRES } else { &SQLITE }
    }

    fn refund_columns(&self) -> String {
        format!("{REFUND_COLUMNS}, {}, create_time, update_time", self.read_roles)
    }
}

/// The payment store of a connected (and migrated) database.
#[derive(Clone, Debug)]
pub struct Store(Database);

impl Store {
    pub fn new(db: &Database) -> Self {
        Self(db.clone())
    }

    /// The database the store works on (for [`Tx::begin`]).
    pub fn database(&self) -> &Database {
        &self.0
    }

    /// A payment with its transactions and refunds.
    pub async fn get_payment(&self, id: Uuid) -> StoreResult<Option<PaymentView>> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
        let row: Option<PaymentRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        });
        let Some(row) = row else { return Ok(None) };
        Ok(self.views(vec![row.try_into()?]).await?.pop())
    }

    /// Newest first (by id, UUIDv7), strictly older than `after`; at most `limit` payments.
    pub async fn list_payments(
        &self,
        filter: &PaymentFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<PaymentView>> {
        let rows: Vec<PaymentRow> = on_pool!(&self.0, |pool| {
            let mut q = QueryBuilder::new(format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE 1 = 1"));
            if let Some(customer_id) = filter.customer_id {
                q.push(" AND customer_id = ").push_bind(customer_id);
            }
            if let Some(order_id) = filter.order_id {
                q.push(" AND order_id = ").push_bind(order_id);
            }
            if let Some(status) = filter.status {
                q.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(after) = after {
                q.push(" AND id < ").push_bind(after);
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
            q.build_query_as().fetch_all(pool).await?
        });
        let payments = rows.into_iter().map(Payment::try_from).collect::<StoreResult<_>>()?;
        self.views(payments).await
    }

    /// `payments` with their transactions and refunds, read in one query each.
    async fn views(&self, payments: Vec<Payment>) -> StoreResult<Vec<PaymentView>> {
        if payments.is_empty() {
            return Ok(Vec::new());
        }
        let transactions_sql = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE payment_id IN (");
        let refunds_sql = format!(
            "SELECT {} FROM refunds WHERE payment_id IN (",
            Dialect::of(&self.0).refund_columns()
        );
        let ids: Vec<Uuid> = payments.iter().map(|p| p.id).collect();
        let (transactions, refunds): (Vec<TransactionRow>, Vec<RefundRow>) = on_pool!(&self.0, |pool| {
            let transactions = in_list(transactions_sql, &ids).build_query_as().fetch_all(pool).await?;
            let refunds = in_list(refunds_sql, &ids).build_query_as().fetch_all(pool).await?;
            (transactions, refunds)
        });
        let mut transactions_of: HashMap<Uuid, Vec<Transaction>> = HashMap::new();
        for row in transactions {
            let t = Transaction::try_from(row)?;
            transactions_of.entry(t.payment_id).or_default().push(t);
        }
        let mut refunds_of: HashMap<Uuid, Vec<Refund>> = HashMap::new();
        for row in refunds {
            let r = Refund::try_from(row)?;
            refunds_of.entry(r.payment_id).or_default().push(r);
        }
        Ok(payments
            .into_iter()
            .map(|payment| PaymentView {
                transactions: transactions_of.remove(&payment.id).unwrap_or_default(),
                refunds: refunds_of.remove(&payment.id).unwrap_or_default(),
                payment,
            })
            .collect())
    }

    /// Money moved in `range`, per 15-minute bucket's day and currency: the captures and the
    /// refunds that succeeded in it (by when they did), read from the rollup that
    /// [`Store::insert_transaction`] and [`Store::update_transaction`] keep in step (what they
    /// recorded folded first, so every write committed before counts).
    pub async fn revenue(&self, range: &DayRange) -> StoreResult<Vec<DayRevenue>> {
        self.fold_revenue().await?;
        let (first, end) = range.buckets();
        let rows: Vec<(i64, String, i64, i64)> = on_pool!(&self.0, |pool| {
            sqlx::query_as(
                "SELECT bucket, currency, captured_minor, refunded_minor FROM payment_rollup_revenue \
                 WHERE bucket >= $1 AND bucket < $2 AND (captured_minor <> 0 OR refunded_minor <> 0)",
            )
            .bind(first)
            .bind(end)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(bucket, currency, captured_minor, refunded_minor)| DayRevenue {
                day: range.day_of_bucket(bucket),
                currency,
                captured_minor,
                refunded_minor,
            })
            .collect())
    }

    /// Records `sign` times what transaction `id`, as it is now, counts for in the revenue
    /// rollup (migration 0003): its amount, in the bucket of its update time, if it is a
    /// capture or a refund that succeeded. A write subtracts the old row's share before and adds
    /// the new one's after, so the rollup follows whatever the write changed. Recorded, not
    /// added: [`Store::fold_revenue`] adds it, so concurrent writes never wait on the hot row.
    async fn count_revenue(&self, tx: &mut Tx, id: Uuid, sign: i64) -> StoreResult<()> {
        let bucket = bucket_sql_on(tx.is_postgres(), "t.update_time", SqliteTime::Text);
        let sql = format!(
            "INSERT INTO payment_rollup_pending (bucket, currency, captured_minor, refunded_minor) \
             SELECT {bucket}, p.currency, CASE WHEN t.kind = 'CAPTURE' THEN $2 * t.amount_minor ELSE 0 END, \
             CASE WHEN t.kind = 'REFUND' THEN $2 * t.amount_minor ELSE 0 END \
             FROM transactions t JOIN payments p ON p.id = t.payment_id \
             WHERE t.id = $1 AND t.status = 'SUCCEEDED' AND t.kind IN ('CAPTURE', 'REFUND')"
        );
        on_tx!(tx, |conn| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(sign)
                .execute(&mut *conn)
                .await
                .map(drop)?
        });
        Ok(())
    }

    /// Folds the recorded revenue changes into the rollup ([`fold_pending`]); how many.
    pub async fn fold_revenue(&self) -> StoreResult<u64> {
        fold_pending(&self.0, &RevenueRollup).await
    }

    /// Replaces the free-text reasons of refunds of customer `customer_id`'s payments (typed by
    /// the customer or by staff, so they may name a person) inside `tx`. Amounts, statuses,
    /// gateway references and times stay (accounting). How many refunds it touched.
    pub async fn anonymise_customer(&self, tx: &mut Tx, customer_id: Uuid) -> StoreResult<u64> {
        on_tx!(tx, |conn| {
            Ok(sqlx::query(
                "UPDATE refunds SET reason = $2 WHERE payment_id IN (SELECT id FROM payments WHERE customer_id = $1) \
                 AND reason NOT IN ('', $2)",
            )
            .bind(customer_id)
            .bind(ERASED_TEXT)
            .execute(&mut *conn)
            .await?
            .rows_affected())
        })
    }

    /// The transaction that used idempotency key `key`.
    pub async fn transaction_by_key(&self, tx: &mut Tx, key: &str) -> StoreResult<Option<Transaction>> {
        let sql = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE idempotency_key = $1");
        let row: Option<TransactionRow> = on_tx!(tx, |conn| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Transaction::try_from).transpose()
    }

    /// A transaction, locked until `tx` ends.
    pub async fn lock_transaction(&self, tx: &mut Tx, id: Uuid) -> StoreResult<Option<Transaction>> {
        let lock = Dialect::of_tx(tx).row_lock;
        let sql = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = $1{lock}");
        fetch_optional_in::<TransactionRow, _, _>(tx, sql, id).await
    }

    /// A payment, locked until `tx` ends.
    pub async fn lock_payment(&self, tx: &mut Tx, id: Uuid) -> StoreResult<Option<Payment>> {
        let lock = Dialect::of_tx(tx).row_lock;
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1{lock}");
        fetch_optional_in::<PaymentRow, _, _>(tx, sql, id).await
    }

    /// The order's payment that is not DECLINED or FAILED (there is at most one), locked.
    pub async fn active_payment_for_order(&self, tx: &mut Tx, order_id: Uuid) -> StoreResult<Option<Payment>> {
        let lock = Dialect::of_tx(tx).row_lock;
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 AND status NOT IN ('DECLINED', 'FAILED'){lock}"
        );
        fetch_optional_in::<PaymentRow, _, _>(tx, sql, order_id).await
    }

    /// The transactions of a payment, oldest first.
    pub async fn transactions_of(&self, tx: &mut Tx, payment_id: Uuid) -> StoreResult<Vec<Transaction>> {
        let sql = format!("SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE payment_id = $1 ORDER BY id");
        let rows: Vec<TransactionRow> = on_tx!(tx, |conn| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(payment_id)
                .fetch_all(&mut *conn)
                .await?
        });
        rows.into_iter().map(Transaction::try_from).collect()
    }

    /// A refund (for the settlement of its transaction).
    pub async fn refund(&self, tx: &mut Tx, id: Uuid) -> StoreResult<Option<Refund>> {
        let sql = format!(
            "SELECT {} FROM refunds WHERE id = $1",
            Dialect::of_tx(tx).refund_columns()
        );
        fetch_optional_in::<RefundRow, _, _>(tx, sql, id).await
    }

    /// ALREADY_EXISTS (`order_id`) when the order already has a payment that is not DECLINED
    /// or FAILED.
    pub async fn insert_payment(&self, tx: &mut Tx, p: &Payment) -> Result<(), ServiceError> {
        let sql = format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        let written = on_tx!(tx, |conn| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(p.id)
                .bind(p.order_id)
                .bind(p.customer_id)
                .bind(p.amount.amount_minor)
                .bind(&p.amount.currency_code)
                .bind(p.captured_minor)
                .bind(p.refunded_minor)
                .bind(p.status.as_str())
                .bind(&p.decline_reason)
                .bind(&p.gateway_reference)
                .bind(p.create_time)
                .bind(p.update_time)
                .execute(&mut *conn)
                .await
                .map(drop)
        });
        written.map_err(|error| {
            StoreError::from(error).or_on_unique(ServiceError::AlreadyExists {
                resource: "payment",
                field: "order_id",
            })
        })
    }

    /// Counts it in the revenue rollup. ALREADY_EXISTS (`idempotency_key`) when the key was
    /// used before.
    pub async fn insert_transaction(&self, tx: &mut Tx, t: &Transaction) -> Result<(), ServiceError> {
        let sql = format!(
            "INSERT INTO transactions ({TRANSACTION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let written = on_tx!(tx, |conn| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(t.id)
                .bind(t.payment_id)
                .bind(t.kind.as_str())
                .bind(t.amount_minor)
                .bind(t.status.as_str())
                .bind(&t.gateway_reference)
                .bind(&t.failure_reason)
                .bind(&t.idempotency_key)
                .bind(&t.request_hash)
                .bind(t.capture)
                .bind(t.refund_id)
                .bind(t.create_time)
                .bind(t.update_time)
                .execute(&mut *conn)
                .await
                .map(drop)
        });
        written.map_err(|error| {
            StoreError::from(error).or_on_unique(ServiceError::AlreadyExists {
                resource: "transaction",
                field: "idempotency_key",
            })
        })?;
        Ok(self.count_revenue(tx, t.id, 1).await?)
    }

    pub async fn insert_refund(&self, tx: &mut Tx, r: &Refund) -> StoreResult<()> {
        // The roles go first, as `$1`, so the dialect's expression can name them.
        let sql = format!(
            "INSERT INTO refunds (actor_roles, {REFUND_COLUMNS}, create_time, update_time) \
             VALUES ({}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            Dialect::of_tx(tx).write_roles
        );
        on_tx!(tx, |conn| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(Json(&r.requested_by.roles))
                .bind(r.id)
                .bind(r.payment_id)
                .bind(r.amount_minor)
                .bind(&r.reason)
                .bind(r.status.as_str())
                .bind(&r.gateway_reference)
                .bind(rows::actor_kind_column(&r.requested_by))
                .bind(&r.requested_by.id)
                .bind(r.create_time)
                .bind(r.update_time)
                .execute(&mut *conn)
                .await
                .map(drop)?
        });
        Ok(())
    }

    /// Writes the mutable fields (amounts, status, reason, reference, update time).
    pub async fn update_payment(&self, tx: &mut Tx, p: &Payment) -> StoreResult<()> {
        on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE payments SET captured_minor = $1, refunded_minor = $2, status = $3, \
                 decline_reason = $4, gateway_reference = $5, update_time = $6 WHERE id = $7",
            )
            .bind(p.captured_minor)
            .bind(p.refunded_minor)
            .bind(p.status.as_str())
            .bind(&p.decline_reason)
            .bind(&p.gateway_reference)
            .bind(p.update_time)
            .bind(p.id)
            .execute(&mut *conn)
            .await
            .map(drop)?
        });
        Ok(())
    }

    /// Writes status, reference, failure reason and update time, and the change of its share of
    /// the revenue rollup.
    pub async fn update_transaction(&self, tx: &mut Tx, t: &Transaction) -> StoreResult<()> {
        self.count_revenue(tx, t.id, -1).await?;
        on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE transactions SET status = $1, gateway_reference = $2, failure_reason = $3, \
                 update_time = $4 WHERE id = $5",
            )
            .bind(t.status.as_str())
            .bind(&t.gateway_reference)
            .bind(&t.failure_reason)
            .bind(t.update_time)
            .bind(t.id)
            .execute(&mut *conn)
            .await
            .map(drop)?
        });
        self.count_revenue(tx, t.id, 1).await
    }

    /// Writes status, reference and update time.
    pub async fn update_refund(&self, tx: &mut Tx, r: &Refund) -> StoreResult<()> {
        on_tx!(tx, |conn| {
            sqlx::query("UPDATE refunds SET status = $1, gateway_reference = $2, update_time = $3 WHERE id = $4")
                .bind(r.status.as_str())
                .bind(&r.gateway_reference)
                .bind(r.update_time)
                .bind(r.id)
                .execute(&mut *conn)
                .await
                .map(drop)?
        });
        Ok(())
    }
}

/// `select` followed by the placeholders of `ids` and `) ORDER BY id`.
fn in_list<DB: sqlx::Database>(select: String, ids: &[Uuid]) -> QueryBuilder<DB>
where
    DB::Arguments: Default,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut q = QueryBuilder::new(select);
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(") ORDER BY id");
    q
}

/// The revenue rollup's recorded changes, each batch summed per bucket and currency before it
/// is added.
struct RevenueRollup;

impl PendingRollup for RevenueRollup {
    const PENDING: &'static str = "payment_rollup_pending";

    async fn fold_batch(&self, tx: &mut Tx) -> StoreResult<u64> {
        let take = take_pending_sql(Self::PENDING, "bucket, currency, captured_minor, refunded_minor");
        on_tx!(tx, |conn| {
            let recorded: Vec<(i64, String, i64, i64)> =
                sqlx::query_as(AssertSqlSafe(take)).fetch_all(&mut *conn).await?;
            let mut sums: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
            for (bucket, currency, captured, refunded) in &recorded {
                let sum = sums.entry((*bucket, currency)).or_default();
                sum.0 += captured;
                sum.1 += refunded;
            }
            // In key order, so concurrent folds lock the rows in one order.
            for ((bucket, currency), (captured, refunded)) in sums {
                sqlx::query(
                    "INSERT INTO payment_rollup_revenue (bucket, currency, captured_minor, refunded_minor) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (bucket, currency) DO UPDATE SET \
                     captured_minor = payment_rollup_revenue.captured_minor + excluded.captured_minor, \
                     refunded_minor = payment_rollup_revenue.refunded_minor + excluded.refunded_minor",
                )
                .bind(bucket)
                .bind(currency)
                .bind(captured)
                .bind(refunded)
                .execute(&mut *conn)
                .await?;
            }
            Ok(recorded.len() as u64)
        })
    }
}
