//! `analytics-1m` (a big benchmark: run it by name): the figures of a one-year range over a
//! million orders, as order-svc and payment-svc compute them (their stores' `analytics` and
//! `revenue`, on PostgreSQL, in databases of their own migrated like theirs), against the
//! cheapest query that reads the same orders (a count of the year's orders through the same
//! index), alternately. Goal: the order figures and the revenue each under 100 ms.
//!
//! The rows are seeded in bulk into the schema as it was before the analytics rollups
//! (migrations 1 and 2), then the rest of the migrations run: 0003 fills the rollups from the
//! rows, as it does for an existing database, so the figures come from the same rollups the
//! services keep while they write.

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use ordermesh_platform::analytics::DayRange;
use ordermesh_platform::db::Database;
use ordermesh_proto::common;

use crate::pgbench::admin_sql;
use crate::scenarios::Report;

/// Orders seeded over the year before today.
pub const ORDERS: i64 = 1_000_000;
const GOAL_MS: f64 = 100.0;

/// order-svc's and payment-svc's tables with `orders` orders (1-3 lines each over 1000
/// products; 80 % confirmed or later, 10 % rejected, 10 % cancelled and refunded), placed
/// evenly over the last 365 days.
const SEED_ORDERS: &str = r#"
INSERT INTO orders (id, customer_id, status, total_minor, currency, payment_method_token, correlation_id,
                    rejection_code, created_at, updated_at)
SELECT md5('o' || n)::uuid, md5('c' || (n % 50000))::uuid,
       CASE WHEN n % 10 = 0 THEN 'REJECTED' WHEN n % 10 = 1 THEN 'CANCELLED'
            WHEN n % 10 < 5 THEN 'DELIVERED' WHEN n % 10 < 7 THEN 'SHIPPED' ELSE 'CONFIRMED' END,
       1000 * (1 + n % 3), 'EUR', 'tok_approved', 'bench-' || n,
       CASE WHEN n % 10 = 0 THEN (CASE WHEN n % 20 = 0 THEN 'OUT_OF_STOCK' ELSE 'PAYMENT_DECLINED' END) END,
       now() - make_interval(secs => (n * 31536000.0 / $1)), now()
FROM generate_series(1, $1) AS n;
INSERT INTO order_items (order_id, line_no, product_id, sku, name, unit_price_minor, currency, quantity)
SELECT md5('o' || n)::uuid, l, md5('p' || ((n * 7 + l) % 1000))::uuid, 'SKU-' || ((n * 7 + l) % 1000),
       'Product ' || ((n * 7 + l) % 1000), 1000, 'EUR', 1
FROM generate_series(1, $1) AS n, generate_series(0, 2) AS l WHERE l <= n % 3;
INSERT INTO order_status_history (order_id, seq, from_status, to_status, actor, changed_at)
SELECT md5('o' || n)::uuid, 3, 'RESERVED', 'CONFIRMED', 'order-svc',
       now() - make_interval(secs => (n * 31536000.0 / $1)) + make_interval(secs => 0.05 + (n % 100) / 50.0)
FROM generate_series(1, $1) AS n WHERE n % 10 <> 0;
"#;

const SEED_PAYMENTS: &str = r#"
INSERT INTO payments (id, order_id, customer_id, amount_minor, currency, captured_minor, refunded_minor, status,
                      create_time, update_time)
SELECT md5('p' || n)::uuid, md5('o' || n)::uuid, md5('c' || (n % 50000))::uuid, 1000 * (1 + n % 3), 'EUR',
       1000 * (1 + n % 3), CASE WHEN n % 10 = 1 THEN 1000 * (1 + n % 3) ELSE 0 END,
       CASE WHEN n % 10 = 1 THEN 'REFUNDED' ELSE 'CAPTURED' END,
       now() - make_interval(secs => (n * 31536000.0 / $1)), now()
FROM generate_series(1, $1) AS n WHERE n % 10 <> 0;
INSERT INTO transactions (id, payment_id, kind, amount_minor, status, create_time, update_time)
SELECT md5('t' || n || k)::uuid, md5('p' || n)::uuid, k, 1000 * (1 + n % 3), 'SUCCEEDED',
       now() - make_interval(secs => (n * 31536000.0 / $1)), now() - make_interval(secs => (n * 31536000.0 / $1))
FROM generate_series(1, $1) AS n, (VALUES ('AUTHORIZE'), ('CAPTURE'), ('REFUND')) AS kinds (k)
WHERE n % 10 <> 0 AND (k <> 'REFUND' OR n % 10 = 1);
"#;

/// The first migration with the analytics rollups (and their backfill), in both services.
const ROLLUPS_MIGRATION: i64 = 3;

/// A database of its own, migrated for `schema` and seeded; dropped at the end of the run.
async fn seeded(
    name: &str,
    schema: &str,
    migrations: &ordermesh_platform::db::Migrations,
    seed: &str,
) -> anyhow::Result<Database> {
    admin_sql(&format!("CREATE DATABASE {name}")).await?;
    let db = Database::connect_with(&format!("postgres://postgres@127.0.0.1:5432/{name}"), schema, 2).await?;
    let Database::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL expected")
    };
    let before_rollups = sqlx::migrate::Migrator::with_migrations(
        migrations
            .postgres
            .migrations
            .iter()
            .filter(|m| m.version < ROLLUPS_MIGRATION)
            .cloned()
            .collect(),
    );
    before_rollups.run(pool).await?;
    for statement in seed.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .bind(ORDERS)
            .execute(pool)
            .await?;
    }
    db.migrate(migrations).await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(db)
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// Runs the scenario; `rounds` timings of each side.
pub async fn analytics_1m(rounds: usize) -> anyhow::Result<Report> {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let (order_name, payment_name) = (
        format!("ordermesh_bench_orders_{suffix}"),
        format!("ordermesh_bench_payments_{suffix}"),
    );
    let started = Instant::now();
    let outcome = measure(&order_name, &payment_name, rounds).await;
    for name in [&order_name, &payment_name] {
        let _ = admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
    let (orders_ms, revenue_ms, baseline_ms) = outcome?;
    let pass = orders_ms < GOAL_MS && revenue_ms < GOAL_MS;
    Ok(Report {
        scenario: "analytics-1m",
        lines: vec![
            format!(
                "  a one-year range over {ORDERS} orders (seeded in {:.0} s)",
                started.elapsed().as_secs_f64()
            ),
            format!("  order figures (GetOrderAnalytics' store)   {orders_ms:>8.1} ms"),
            format!("  revenue (GetRevenueAnalytics' store)       {revenue_ms:>8.1} ms"),
            format!("  baseline: count of the year's orders       {baseline_ms:>8.1} ms"),
            format!(
                "  ratios {:.1}× and {:.1}× the baseline; goal each < {GOAL_MS} ms: {}",
                orders_ms / baseline_ms.max(f64::EPSILON),
                revenue_ms / baseline_ms.max(f64::EPSILON),
                if pass { "pass" } else { "MISS" }
            ),
        ],
        figures: serde_json::json!({
            "orders": ORDERS, "order_figures_ms": orders_ms, "revenue_ms": revenue_ms, "baseline_ms": baseline_ms,
        }),
        pass,
    })
}

async fn measure(order_name: &str, payment_name: &str, rounds: usize) -> anyhow::Result<(f64, f64, f64)> {
    let orders_db = seeded(order_name, "order", &order_svc::store::migrations(), SEED_ORDERS).await?;
    let payments_db = seeded(
        payment_name,
        "payment",
        &payment_svc::store::migrations(),
        SEED_PAYMENTS,
    )
    .await?;
    let today = Utc::now().date_naive();
    let range = common::DateRange {
        start_date: (today - Days::new(364)).format("%Y-%m-%d").to_string(),
        end_date: today.format("%Y-%m-%d").to_string(),
        time_zone: "Europe/Berlin".into(),
    };
    let range = DayRange::parse(Some(&range), "range", 366)?;
    let orders = order_svc::store::Store::new(&orders_db);
    let payments = payment_svc::store::Store::new(&payments_db);
    let (from, to) = range.instants();
    let Database::Postgres(pool) = &orders_db else {
        anyhow::bail!("PostgreSQL expected")
    };
    let (mut ours, mut revenue, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    // One warm-up of each, then alternately.
    for round in 0..=rounds {
        let at = Instant::now();
        let figures = orders.analytics(&range, 10).await?;
        let order_time = at.elapsed();
        let at = Instant::now();
        payments.revenue(&range).await?;
        let revenue_time = at.elapsed();
        let at = Instant::now();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE created_at >= $1 AND created_at < $2")
            .bind(from)
            .bind(to)
            .fetch_one(pool)
            .await?;
        let baseline_time = at.elapsed();
        anyhow::ensure!(
            figures.orders == count,
            "figures count {} orders, the baseline {count}",
            figures.orders
        );
        if round > 0 {
            ours.push(order_time);
            revenue.push(revenue_time);
            theirs.push(baseline_time);
        }
    }
    orders_db.close().await;
    payments_db.close().await;
    Ok((median_ms(ours), median_ms(revenue), median_ms(theirs)))
}
