//! PostgreSQL store: native uuid, timestamptz, bigint and text[] columns; row locks with
//! `FOR UPDATE`.

use ordermesh_platform::db::Database;

fn encode_roles(roles: &[String]) -> Vec<String> {
    roles.to_vec()
}

fn decode_roles(row: &sqlx::postgres::PgRow) -> Result<Vec<String>, sqlx::Error> {
    sqlx::Row::try_get(row, "actor_roles")
}

/// The store on a PostgreSQL [`Database`].
#[derive(Clone, Debug)]
pub struct PgStore {
    db: Database,
}

impl PgStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

super::sql::sql_store!(PgStore, sqlx::Postgres, Postgres, postgres, " FOR UPDATE");
