//! Database connection from `DATABASE_URL` and the service's embedded migrations.
//!
//! PostgreSQL (production) gives each service its own schema, selected through `search_path`;
//! SQLite (embedded) gives each service its own file.

pub mod columns;
pub mod page;
pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, SqlSafeStr};
use sqlx::{PgPool, SqlitePool};

/// Pool size when `DATABASE_MAX_CONNECTIONS` is not set.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// A connected pool of either backend.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A service's migrations for both backends, embedded in the binary at compile time.
pub struct Migrations {
    pub postgres: Migrator,
    pub sqlite: Migrator,
}

impl Migrations {
    /// Builds both migrators from `(version, description, sql)` lists, typically written with
    /// `include_str!` so the SQL is embedded in the binary without compile-time database access.
    pub fn embedded(
        postgres: &[(i64, &'static str, &'static str)],
        sqlite: &[(i64, &'static str, &'static str)],
    ) -> Self {
        let migrator = |list: &[(i64, &'static str, &'static str)]| {
            Migrator::with_migrations(
                list.iter()
                    .map(|(version, description, sql)| {
                        Migration::new(
                            *version,
                            (*description).into(),
                            MigrationType::Simple,
                            AssertSqlSafe(*sql).into_sql_str(),
                            false,
                        )
                    })
                    .collect(),
            )
        };
        Self {
            postgres: migrator(postgres),
            sqlite: migrator(sqlite),
        }
    }
}

impl Migrations {
    /// A service's own migrations followed by the platform's (the event outbox and inbox,
    /// versions 9000 and up), which every service runs.
    pub fn with_platform(
        postgres: &[(i64, &'static str, &'static str)],
        sqlite: &[(i64, &'static str, &'static str)],
    ) -> Self {
        use crate::events::outbox;
        Self::embedded(
            &[postgres, outbox::POSTGRES_MIGRATIONS].concat(),
            &[sqlite, outbox::SQLITE_MIGRATIONS].concat(),
        )
    }
}

/// What tells pools on the same data apart from pools on other data: server, database and
/// options (the service's `search_path`) on PostgreSQL, the file as opened on SQLite (no
/// `canonicalize`: file-system calls on a hot path; the services open each file under one name).
pub(crate) fn identity(db: &Database) -> String {
    match db {
        Database::Postgres(pool) => {
            let options = pool.connect_options();
            format!(
                "{}:{}/{}?{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default(),
                options.get_options().unwrap_or_default()
            )
        }
        Database::Sqlite(pool) => sqlite_identity(pool),
    }
}

/// [`identity`] of a SQLite pool.
pub(crate) fn sqlite_identity(pool: &SqlitePool) -> String {
    pool.connect_options().get_filename().display().to_string()
}

impl Database {
    /// Connects to `url`. For PostgreSQL, `schema` is created if missing and put first on the
    /// `search_path` of every connection. For SQLite the file and its directory are created.
    pub async fn connect(url: &str, schema: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, schema, DEFAULT_MAX_CONNECTIONS).await
    }

    /// The database of a service: `config.database_url`, its schema, `DATABASE_MAX_CONNECTIONS`.
    pub async fn for_service(config: &crate::ServiceConfig) -> anyhow::Result<Self> {
        Self::connect_with(&config.database_url, config.service, config.database_max_connections).await
    }

    /// [`Database::connect`] with at most `max_connections` pooled connections.
    pub async fn connect_with(url: &str, schema: &str, max_connections: u32) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            anyhow::ensure!(
                schema.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "schema name {schema:?} must be lowercase letters and underscores"
            );
            let options = PgConnectOptions::from_str(url)?;
            // Create the schema over a plain connection first; the pool's connections then use it.
            // Only when it is missing: PostgreSQL checks the CREATE privilege even for `IF NOT
            // EXISTS`, and a deployment whose schemas exist need not grant it.
            let bootstrap = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&bootstrap)
                .await?;
            if !exists {
                sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                    .execute(&bootstrap)
                    .await?;
            }
            bootstrap.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .idle_timeout(Duration::from_secs(60))
                // Quoted: a service name may be a reserved word (`order`).
                .connect_with(options.options([("search_path", format!("\"{schema}\""))]))
                .await?;
            Ok(Self::Postgres(pool))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Deleted and overwritten values are zeroed in the file, not left in free space:
                // an erased customer's data must not be recoverable from the raw file (GDPR).
                .pragma("secure_delete", "ON");
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.min(8))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Self::Sqlite(pool))
        } else {
            anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite://")
        }
    }

    /// Runs the pending migrations of the matching backend.
    pub async fn migrate(&self, migrations: &Migrations) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool) => migrations.postgres.run(pool).await?,
            Self::Sqlite(pool) => migrations.sqlite.run(pool).await?,
        }
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// After erasing personal data: on SQLite, checkpoints the write-ahead log into the file and
    /// truncates it, so no earlier page image holding the erased values stays in the log
    /// (`secure_delete` already zeroes them in the file). Best effort: a checkpoint kept from
    /// finishing by a reader is retried by the next one. PostgreSQL: nothing to do here (dead
    /// row versions are reclaimed by VACUUM, run by the maintenance job).
    pub async fn purge_freed(&self) {
        let Self::Sqlite(pool) = self else { return };
        let _turn = writer::turn(pool).await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await {
            tracing::warn!(%error, "checkpointing the SQLite log after an erasure failed");
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Runs the same sqlx code on whichever backend `db` is, binding `$pool` to the pool. The body
/// is compiled once per backend, so it must use SQL both accept (`$N` placeholders, `RETURNING`,
/// `ON CONFLICT`, no `FOR UPDATE`) and types both encode (UUIDs, `DateTime<Utc>`, `Json<T>`).
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Postgres($pool) => $body,
            $crate::db::Database::Sqlite($pool) => $body,
        }
    };
}

/// [`on_pool!`] for a [`crate::events::Tx`]: binds `$conn` to the transaction's connection.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx.conn().await? {
            $crate::events::tx::TxConn::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::events::tx::TxConn::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// Why a store call failed, the same for every service and both backends. Stores return it;
/// the service layer maps it to [`crate::ServiceError`] (one `From`) and event handlers to a
/// transient or permanent [`crate::events::HandlerError`] (one `From`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy (pool timeout, lost connection, SQLite
    /// busy/locked, PostgreSQL serialization failure or deadlock): may pass, worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint rejected a write; `constraint` names it where the backend says.
    #[error("unique constraint violated ({})", .constraint.as_deref().unwrap_or("unnamed"))]
    UniqueViolation { constraint: Option<String> },
    /// A stored value the code cannot read back (an unknown enum name, say).
    #[error("unexpected {column} {value:?} in the database")]
    Corrupt { column: &'static str, value: String },
    /// Anything else the database reported.
    #[error(transparent)]
    Database(sqlx::Error),
}

/// What every store function returns.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// A stored value that does not parse.
    pub fn corrupt(column: &'static str, value: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            column,
            value: value.to_string(),
        }
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Maps a unique violation to `on_unique` (an ALREADY_EXISTS, say), anything else to the
    /// usual [`crate::ServiceError`].
    pub fn or_on_unique(self, on_unique: crate::ServiceError) -> crate::ServiceError {
        match self {
            Self::UniqueViolation { .. } => on_unique,
            other => other.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Self::Unavailable(error),
            sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                // PostgreSQL names the constraint; SQLite only lists the columns in its message
                // ("UNIQUE constraint failed: customers.email").
                let constraint = db.constraint().map(str::to_owned).or_else(|| {
                    db.message()
                        .strip_prefix("UNIQUE constraint failed: ")
                        .map(str::to_owned)
                });
                Self::UniqueViolation { constraint }
            }
            // SQLITE_BUSY / SQLITE_LOCKED (with extended codes), PostgreSQL serialization
            // failure, deadlock, too many connections, admin shutdown.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|code| {
                    let code = code.as_ref();
                    ["5", "6", "261", "262", "517", "40001", "40P01", "53300", "57P01"].contains(&code)
                }) =>
            {
                Self::Unavailable(error)
            }
            _ => Self::Database(error),
        }
    }
}

#[cfg(test)]
mod store_error_tests {
    use super::*;
    use crate::ServiceError;

    #[test]
    fn a_pool_timeout_is_unavailable_everywhere() {
        let error = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(error.is_transient());
        assert!(matches!(ServiceError::from(error), ServiceError::Unavailable(_)));
    }

    #[test]
    fn other_failures_are_internal_and_not_transient() {
        let error = StoreError::from(sqlx::Error::RowNotFound);
        assert!(!error.is_transient());
        assert!(matches!(ServiceError::from(error), ServiceError::Internal(_)));
        let corrupt = StoreError::corrupt("status", "FLYING");
        assert_eq!(corrupt.to_string(), "unexpected status \"FLYING\" in the database");
    }

    #[tokio::test]
    async fn a_unique_violation_is_recognised_and_mapped_by_the_caller() {
        let dir = tempfile_dir();
        let db = Database::connect(&format!("sqlite://{}/u.db", dir.display()), "t")
            .await
            .unwrap();
        let Database::Sqlite(pool) = &db else { unreachable!() };
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('a')").execute(pool).await.unwrap();
        let error: StoreError = sqlx::query("INSERT INTO t VALUES ('a')")
            .execute(pool)
            .await
            .unwrap_err()
            .into();
        assert!(
            matches!(&error, StoreError::UniqueViolation { constraint: Some(c) } if c == "t.k"),
            "{error:?}"
        );
        let mapped = error.or_on_unique(ServiceError::AlreadyExists {
            resource: "t",
            field: "k",
        });
        assert!(matches!(mapped, ServiceError::AlreadyExists { .. }));
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("om-store-error-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
