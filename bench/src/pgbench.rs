//! The baseline of order intake on PostgreSQL: pgbench running order-svc's intake transaction —
//! the same statements PlaceOrder's transaction makes (the order, its item, its first history
//! entry, the OrderPlaced outbox row and the relay's NOTIFY) — as one `-M prepared` script, in a
//! database of its own migrated with order-svc's migrations (its outbox rows must never reach a
//! relay).

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use ordermesh_platform::db::Database;

use crate::orders::Intake;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// One intake transaction. `:n` makes the ids and the idempotency key unique per transaction.
// (No colon inside literals: pgbench would read `:word` as a variable.)
const SCRIPT: &str = r#"\set n random(1, 9000000000000000)
BEGIN;
INSERT INTO orders (id, customer_id, status, total_minor, currency, payment_method_token, idempotency_key, shipping_address, correlation_id, version, created_at, updated_at) VALUES (lpad(to_hex(:n::bigint), 32, '0')::uuid, '0190a0a0-0000-7000-8000-000000000001', 'PENDING', 3999, 'EUR', 'tok_approved', 'pgbench-' || :n::bigint, '\x0a0e312042656e636820537472656574'::bytea, 'pgbench-' || :n::bigint, 1, now(), now());
INSERT INTO order_items (order_id, line_no, product_id, sku, name, unit_price_minor, currency, quantity) VALUES (lpad(to_hex(:n::bigint), 32, '0')::uuid, 0, '0190a0a0-0000-7000-8000-000000000002', 'BENCH-1', 'Bench kettle', 3999, 'EUR', 1);
INSERT INTO order_status_history (order_id, seq, from_status, to_status, reason, actor, cause_event_id, changed_at) VALUES (lpad(to_hex(:n::bigint), 32, '0')::uuid, 1, NULL, 'PENDING', 'placed', 'client-demo-client-1', NULL, now());
INSERT INTO event_outbox (event_id, topic, event_type, aggregate_id, source, correlation_id, traceparent, tracestate, payload, occur_time) VALUES (lpad(to_hex(:n::bigint), 32, 'f')::uuid, 'order-events', 'OrderPlaced', lpad(to_hex(:n::bigint), 32, '0'), 'order-svc', 'pgbench-' || :n::bigint, NULL, NULL, '\x0a2430313930'::bytea, now());
SELECT pg_notify('ordermesh_outbox', '');
END;
"#;

/// A database migrated like order-svc's, dropped with this value.
pub struct IntakeBaseline {
    name: String,
    script: tempfile::NamedTempFile,
}

impl IntakeBaseline {
    pub async fn create() -> anyhow::Result<Self> {
        let name = format!("ordermesh_pgbench_{}", uuid::Uuid::now_v7().simple());
        admin_sql(&format!("CREATE DATABASE {name}")).await?;
        let db = Database::connect_with(&url(&name), "order", 1).await?;
        db.migrate(&order_svc::store::migrations()).await?;
        db.close().await;
        let script = tempfile::NamedTempFile::new()?;
        std::fs::write(script.path(), SCRIPT)?;
        Ok(Self { name, script })
    }

    /// pgbench at `clients` for `duration`: transactions per second.
    pub fn run(&self, clients: usize, duration: Duration) -> anyhow::Result<Intake> {
        let output = Command::new("pgbench")
            .args(["-n", "-M", "prepared", "-j", "2"])
            .arg(format!("-c{clients}"))
            .arg(format!("-T{}", duration.as_secs().max(1)))
            .arg("-f")
            .arg(self.script.path())
            .arg("-h127.0.0.1")
            .arg("-Upostgres")
            .arg(&self.name)
            .env("PGOPTIONS", "-c search_path=\"order\"")
            .output()
            .context("run pgbench (Debian's postgresql package)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let tps = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .context("pgbench: no tps")?;
        let failed = text
            .lines()
            .find_map(|l| l.strip_prefix("number of failed transactions: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(Intake {
            accepted_per_second: tps,
            accepted: (tps * duration.as_secs_f64()) as u64,
            failures: failed,
            ..Default::default()
        })
    }
}

fn url(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Runs `sql` on the server's `postgres` database (CREATE/DROP DATABASE).
pub async fn admin_sql(sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(ADMIN_URL).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    Ok(())
}

impl Drop for IntakeBaseline {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ =
            std::thread::spawn(move || tokio::runtime::Runtime::new().map(|rt| rt.block_on(admin_sql(&sql)))).join();
    }
}
