//! SQLite store: UUID blobs, RFC 3339 text times, integer money, roles as a JSON array. No row
//! locks: a [`ordermesh_platform::events::Tx`] on SQLite starts with `BEGIN IMMEDIATE`, holding
//! the database's write lock for its whole duration.

use ordermesh_platform::db::Database;

fn encode_roles(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_roles(row: &sqlx::sqlite::SqliteRow) -> Result<Vec<String>, sqlx::Error> {
    let text: String = sqlx::Row::try_get(row, "actor_roles")?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))
}

/// The store on an SQLite [`Database`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Database,
}

impl SqliteStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

super::sql::sql_store!(SqliteStore, sqlx::Sqlite, Sqlite, sqlite, "");
