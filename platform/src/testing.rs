//! Helpers for tests that run against the real servers: a fresh PostgreSQL database or SQLite
//! file per test, removed when the handle is dropped. Tests run in parallel, so nothing here is
//! shared between them.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// Admin connection used to create and drop per-test databases. `TEST_DATABASE_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
pub struct TestDatabase {
    url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty PostgreSQL database.
    pub async fn postgres() -> anyhow::Result<Self> {
        let name = format!("om_test_{}", uuid::Uuid::now_v7().simple());
        let admin = PgConnectOptions::from_str(&admin_url())?;
        let mut conn = admin.connect().await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let url = admin.database(&name).to_url_lossy().to_string();
        Ok(Self {
            url,
            pg_name: Some(name),
            _dir: None,
        })
    }

    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}/test.db", dir.path().display());
        Ok(Self {
            url,
            pg_name: None,
            _dir: Some(dir),
        })
    }

    /// Both backends, for suites that must pass on each.
    pub async fn both() -> anyhow::Result<[Self; 2]> {
        Ok([Self::postgres().await?, Self::sqlite()?])
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_name.is_some()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(admin) = PgConnectOptions::from_str(&admin_url()) else {
                    return;
                };
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
