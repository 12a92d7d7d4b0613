//! The whole platform as users run it: the release `ordermesh up` binary as a child process, on
//! the embedded profile (SQLite files, in-process bus) or the production one (a fresh PostgreSQL
//! database, NATS JetStream and Redis of this machine under unique prefixes), with the BFF's
//! rate limits out of the way. Its RSS is the child's own, apart from the load's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use ordermesh_platform::auth::{DevIssuer, IssuerKind, Role};
use ordermesh_proto::product::product_service_client::ProductServiceClient;
use ordermesh_proto::product::{AdjustStockRequest, Product};

use crate::pgbench::admin_sql;
use crate::targets::{authorized, create_product};

const NATS_URL: &str = "nats://127.0.0.1:4222";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// SQLite files and the in-process bus: `cargo run`'s default.
    Embedded,
    /// PostgreSQL, NATS JetStream, Redis.
    Postgres,
}

/// How the platform under load is started.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub profile: Profile,
    /// `false` starts the services without their outbox relays (`EVENTS_PUBLISH=off`): orders
    /// are taken and nothing downstream happens — the baseline of "publishing on".
    pub publish: bool,
    /// Concurrent notification streams a single user may hold (the stream scenario opens many).
    pub streams_per_user: usize,
}

/// A running `ordermesh up`.
pub struct Up {
    child: Child,
    data_dir: tempfile::TempDir,
    issuer: DevIssuer,
    database: Option<String>,
    pub bff: SocketAddr,
    pub product: SocketAddr,
}

/// The release binary built beside this one (`bench/run` builds both), or `ORDERMESH_BIN`: a
/// copy of an earlier build, for a before/after of a change with the same harness.
fn ordermesh_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("ORDERMESH_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("ordermesh"),
    };
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p ordermesh` (bench/run does)",
        path.display()
    );
    Ok(path)
}

/// The first of this run's ports: the services take base..base+5, the BFF base+80 and the dev
/// issuer base+90 (`--port-offset base-8000`). Below Linux's ephemeral range (an outgoing
/// connection cannot hold one first), different for each platform this process starts.
fn port_base() -> u16 {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    21000 + ((std::process::id() + run * 7) % 200) as u16 * 50
}

impl Up {
    pub async fn start(options: &UpOptions) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let base = port_base();
        let names = ["PRODUCT", "CUSTOMER", "ORDER", "PAYMENT", "AUDIT", "NOTIFICATION"];
        let mut command = Command::new(ordermesh_binary()?);
        command
            .args(["up", "--data-dir"])
            .arg(data_dir.path())
            .args(["--port-offset", &(base - 8000).to_string()])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .env("BFF_RATE_LIMIT_EXTERNAL", "1000000000")
            .env("BFF_RATE_LIMIT_INTERNAL", "1000000000")
            .env(
                "BFF_SSE_MAX_STREAMS_PER_PRINCIPAL",
                options.streams_per_user.to_string(),
            )
            .env("EVENTS_PUBLISH", if options.publish { "on" } else { "off" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (index, name) in (0u16..).zip(names) {
            command.env(format!("{name}_ADDR"), format!("127.0.0.1:{}", base + index));
        }
        let database = match options.profile {
            Profile::Embedded => None,
            Profile::Postgres => {
                let name = format!("ordermesh_bench_{}", uuid::Uuid::now_v7().simple());
                admin_sql(&format!("CREATE DATABASE {name}")).await?;
                let prefix = format!("bench{}", uuid::Uuid::now_v7().simple());
                command
                    .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:5432/{name}"))
                    .env("NATS_URL", NATS_URL)
                    .env("NATS_SUBJECT_PREFIX", &prefix)
                    .env("NATS_STREAM_PREFIX", format!("{prefix}-"))
                    .env("REDIS_URL", REDIS_URL)
                    .env("BFF_CACHE_PREFIX", &prefix);
                Some(name)
            }
        };
        let child = command.spawn().context("start ordermesh up")?;
        let bff = SocketAddr::from(([127, 0, 0, 1], base + 80));
        let mut up = Self {
            child,
            issuer: DevIssuer::generate("http://unused")?,
            data_dir,
            database,
            bff,
            product: SocketAddr::from(([127, 0, 0, 1], base)),
        };
        up.wait_ready().await?;
        let url = std::fs::read_to_string(up.data_dir.path().join("dev-issuer.url"))?;
        up.issuer = DevIssuer::load_or_generate(url.trim(), &up.data_dir.path().join("dev-issuer.pem"))?;
        Ok(up)
    }

    /// Until `ordermesh up` printed its banner: the services are ready and the demo data (the
    /// customers the load orders for) is in place.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let stdout = self.child.stdout.take().context("no stdout")?;
        let (banner_done, mut done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut signal = Some(banner_done);
            // Read to the end, so the child never blocks on a full pipe.
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Demo customers:")
                    && let Some(signal) = signal.take()
                {
                    let _ = signal.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("ordermesh up exited with {status}");
            }
            if tokio::time::timeout(Duration::from_millis(50), &mut done).await.is_ok() {
                return Ok(());
            }
        }
        anyhow::bail!("ordermesh up was not ready within 120 s")
    }

    pub fn token(&self, kind: IssuerKind, subject: &str, roles: Vec<Role>) -> anyhow::Result<String> {
        crate::targets::mint(&self.issuer, kind, subject, roles)
    }

    /// A token of the first demo client (a customer `ordermesh up` registers).
    pub fn client_token(&self) -> anyhow::Result<String> {
        self.token(IssuerKind::Client, "demo-client-1", vec![])
    }

    /// The second demo client's token: a customer apart from the load's.
    pub fn probe_token(&self) -> anyhow::Result<String> {
        self.token(IssuerKind::Client, "demo-client-2", vec![])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The resident set of `ordermesh up`, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        crate::streams::rss_kib(self.pid())
    }

    /// A product with `stock` units (so a long run never runs out), by product-svc's own API.
    pub async fn stocked_product(&self, stock: i64) -> anyhow::Result<Product> {
        let admin = self.token(IssuerKind::Employee, "bench-admin", vec![Role::Admin])?;
        let sku = format!("BENCH-{}", uuid::Uuid::now_v7().simple()).to_uppercase();
        let product = create_product(self.product, &admin, &sku).await?;
        let mut client = ProductServiceClient::connect(format!("http://{}", self.product)).await?;
        client
            .adjust_stock(authorized(
                AdjustStockRequest {
                    product_id: product.id.clone(),
                    delta: stock,
                    reason: "bench".into(),
                    idempotency_key: uuid::Uuid::now_v7().to_string(),
                },
                &admin,
            ))
            .await?;
        Ok(product)
    }

    /// Orders whose saga has not ended (PENDING or RESERVED), read from order-svc's database.
    pub async fn unsettled_orders(&self) -> anyhow::Result<u64> {
        let url = match &self.database {
            Some(name) => format!("postgres://postgres@127.0.0.1:5432/{name}"),
            None => format!("sqlite://{}/order.db", self.data_dir.path().display()),
        };
        let db = ordermesh_platform::db::Database::connect_with(&url, "order", 1).await?;
        let sql = "SELECT COUNT(*) FROM orders WHERE status IN ('PENDING', 'RESERVED')";
        let count: i64 = match &db {
            ordermesh_platform::db::Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            ordermesh_platform::db::Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        };
        db.close().await;
        Ok(count as u64)
    }

    /// Waits until no order is unsettled or `limit` passed; returns the time it took and what
    /// was left.
    pub async fn settle(&self, limit: Duration) -> anyhow::Result<(Duration, u64)> {
        let started = Instant::now();
        loop {
            let left = self.unsettled_orders().await?;
            if left == 0 || started.elapsed() >= limit {
                return Ok((started.elapsed(), left));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(name) = self.database.take() {
            // Dropped from a fresh runtime: this runs after the scenario's own.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .map(|rt| rt.block_on(admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))))
            })
            .join();
        }
    }
}
