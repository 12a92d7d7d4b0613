//! Connecting a service to PostgreSQL with the least privileges a deployment grants: its own
//! schema, created beforehand, and no CREATE on the database.

use std::str::FromStr;

use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

#[tokio::test]
async fn a_role_without_create_on_the_database_connects_to_its_existing_schema() {
    let db = TestDatabase::postgres().await.unwrap();
    let role = format!("om_limited_{}", uuid::Uuid::now_v7().simple());
    let admin_options = PgConnectOptions::from_str(db.url()).unwrap();
    let mut admin = admin_options.connect().await.unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("REVOKE CREATE ON DATABASE {database} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {database} TO {role}"),
        format!("CREATE SCHEMA \"limited\" AUTHORIZATION {role}"),
    ] {
        sqlx::query(AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
    }

    let as_role = admin_options.clone().username(&role).to_url_lossy().to_string();
    let connected = Database::connect(&as_role, "limited").await;
    // The role may not create a schema: a missing one is refused, naming the privilege.
    let missing = Database::connect(&as_role, "other").await;

    if let Ok(db) = &connected {
        db.close().await;
    }
    sqlx::query("DROP SCHEMA \"limited\" CASCADE")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP OWNED BY {role}")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();

    connected.expect("a role owning its schema connects without CREATE on the database");
    let Err(refused) = missing else {
        panic!("a role without CREATE made a schema")
    };
    assert!(format!("{refused:#}").contains("permission denied"), "{refused:#}");
}
