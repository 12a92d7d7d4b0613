//! The fault suite's rig: the platform as processes on the production profile, with its own
//! NATS, Redis and PostgreSQL database, a recording payment gateway outside it, a load driver
//! placing orders through the BFF, and a checker of the platform's guarantees that reads every
//! service's database and the gateway's record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use ordermesh::processes::{BFF, Processes};
use ordermesh_e2e::backing::BackingServer;
use ordermesh_e2e::gateway::RecordingGateway;
use ordermesh_e2e::proxy::FaultProxy;
use ordermesh_platform::auth::{DevTokenRequest, IssuerKind, Role};
use ordermesh_platform::testing::TestDatabase;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The six services and the BFF, in the order the kill scenario takes them.
pub const ALL: [&str; 7] = ["product", "customer", "order", "payment", "audit", "notification", BFF];

pub struct Rig {
    pub nats: BackingServer,
    pub redis: BackingServer,
    pub database: TestDatabase,
    pub gateway: RecordingGateway,
    /// Between the services and PostgreSQL (the checker reads the database directly).
    pub database_proxy: FaultProxy,
    /// Between the services and NATS.
    pub nats_proxy: FaultProxy,
    /// Between the BFF and Redis.
    pub redis_proxy: FaultProxy,
    pub processes: Processes,
    pub bff: String,
    pub admin: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::env::var("FAULTS_KEEP_LOGS").is_ok_and(|v| v == "1") {
            let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("a temporary directory"));
            let _ = dir.keep();
        }
    }
}

impl Rig {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`Self::start`] with `extra` in every process's environment (settings under test).
    pub async fn start_with(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        ordermesh_platform::install_crypto_provider();
        let nats = BackingServer::nats().await?;
        let redis = BackingServer::redis().await?;
        let database = TestDatabase::postgres().await?;
        let gateway = RecordingGateway::start().await;
        let (database_proxy, proxied_database) = behind_proxy(database.url(), 5432).await?;
        let (nats_proxy, proxied_nats) = behind_proxy(&nats.url(), 4222).await?;
        let (redis_proxy, proxied_redis) = behind_proxy(&redis.url(), 6379).await?;
        let dir = tempfile::tempdir()?;
        if std::env::var("FAULTS_KEEP_LOGS").is_ok_and(|v| v == "1") {
            println!("logs of the processes: {}/logs", dir.path().display());
        }
        let mut env = vec![
            ("NATS_URL".to_owned(), proxied_nats),
            ("REDIS_URL".to_owned(), proxied_redis),
            ("DATABASE_URL".to_owned(), proxied_database),
            ("PAYMENT_GATEWAY_URL".to_owned(), gateway.url()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            // The load comes from a handful of principals; the limits are tested elsewhere.
            ("BFF_RATE_LIMIT_EXTERNAL".to_owned(), "1000000".to_owned()),
            ("BFF_RATE_LIMIT_INTERNAL".to_owned(), "1000000".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let exe = Path::new(env!("CARGO_BIN_EXE_ordermesh"));
        let mut processes = Processes::new(exe, dir.path(), free_offset()?, env).await?;
        for name in ALL {
            processes.start(name).await?;
        }
        let admin = mint(&processes, IssuerKind::Employee, "fault-admin", vec![Role::Admin])?;
        let bff = format!("http://{}", processes.addr(BFF));
        Ok(Self {
            nats,
            redis,
            database,
            gateway,
            database_proxy,
            nats_proxy,
            redis_proxy,
            processes,
            bff,
            admin,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
            _dir: dir,
        })
    }

    /// Kills `name` with SIGKILL, waits `down`, and starts it again.
    pub async fn crash(&mut self, name: &str, down: Duration) -> anyhow::Result<()> {
        self.processes.kill(name).await?;
        tokio::time::sleep(down).await;
        self.processes.start(name).await
    }

    /// Starts every process that has exited again (as Kubernetes restarts a container), with
    /// the rig's plain environment; what exited, and how.
    pub async fn restart_exited(&mut self) -> anyhow::Result<Vec<(String, std::process::ExitStatus)>> {
        let mut exited = Vec::new();
        while let Some((name, status)) = self.processes.exited() {
            self.processes.forget(&name);
            self.processes.start(&name).await?;
            exited.push((name, status));
        }
        Ok(exited)
    }

    /// Whether `name`'s log shows it died at a crash point (not of something else).
    pub fn died_at_crash_point(&self, name: &str) -> bool {
        std::fs::read_to_string(self.processes.log_file(name)).is_ok_and(|log| log.contains("aborting on purpose"))
    }

    /// A product for sale at `price_minor` with `stock` units.
    pub async fn product(&self, sku: &str, price_minor: i64, stock: i64) -> anyhow::Result<String> {
        let category = self
            .post(
                &self.admin,
                "/api/v1/products/categories",
                &json!({"name": format!("Faults {sku}")}),
            )
            .await?;
        let product = self
            .post(
                &self.admin,
                "/api/v1/products",
                &json!({"sku": sku, "name": sku, "categoryId": category["id"],
                        "price": {"amount": price_minor, "currency": "EUR"}}),
            )
            .await?;
        let id = product["id"].as_str().unwrap_or_default().to_owned();
        let adjustment = json!({"delta": stock, "reason": "initial stock"});
        self.post(
            &self.admin,
            &format!("/api/v1/products/{id}/stock/adjustments"),
            &adjustment,
        )
        .await?;
        Ok(id)
    }

    /// A client with a customer profile: its token and its customer's id.
    pub async fn client(&self, subject: &str) -> anyhow::Result<(String, String)> {
        let token = mint(&self.processes, IssuerKind::Client, subject, Vec::new())?;
        let profile = json!({"displayName": "Fault Client", "email": format!("{subject}@example.test")});
        let customer = self.post(&token, "/api/v1/customers/me", &profile).await?;
        let id = customer["id"].as_str().unwrap_or_default().to_owned();
        Ok((token, id))
    }

    /// `service`'s dead letters, as an operator lists them (`GET /api/v1/admin/dead-letters`).
    pub async fn dead_letters(&self, service: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/api/v1/admin/dead-letters?service={service}&pageSize=1000");
        let response = self
            .http
            .get(format!("{}{path}", self.bff))
            .bearer_auth(&self.admin)
            .send()
            .await?;
        let status = response.status();
        let page: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {page}");
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// Replays dead letter `id`, as an operator does once the cause is fixed.
    pub async fn replay_dead_letter(&self, id: u64) -> anyhow::Result<()> {
        let path = format!("/api/v1/admin/dead-letters/{id}/replay");
        self.post(&self.admin, &path, &json!({})).await.map(drop)
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.bff))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPool::connect(self.database.url()).await?)
    }
}

/// A [`FaultProxy`] in front of the server of `url` (`default_port` if it names none), and
/// `url` through it.
async fn behind_proxy(url: &str, default_port: u16) -> anyhow::Result<(FaultProxy, String)> {
    let parsed = reqwest::Url::parse(url)?;
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let upstream = tokio::net::lookup_host((host, parsed.port().unwrap_or(default_port)))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host} has no address"))?;
    let proxy = FaultProxy::start(upstream).await?;
    let mut through = parsed.clone();
    through
        .set_host(Some("127.0.0.1"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    through
        .set_port(Some(proxy.addr().port()))
        .map_err(|()| anyhow::anyhow!("no port in {url}"))?;
    Ok((proxy, through.to_string()))
}

fn mint(processes: &Processes, kind: IssuerKind, subject: &str, roles: Vec<Role>) -> anyhow::Result<String> {
    processes.issuer()?.mint(&DevTokenRequest {
        kind,
        subject: subject.to_owned(),
        roles,
        audience: "ordermesh".to_owned(),
        ttl: Duration::from_secs(3600),
    })
}

/// A port offset under which the BFF's, the issuer's and the six services' ports are all free.
fn free_offset() -> anyhow::Result<u16> {
    let base = 2000 + (std::process::id() % 200) as u16 * 10;
    for offset in (base..10_000).step_by(10) {
        // The BFF, the issuer, the six services and their second replicas (500 above).
        let services = [50051, 50052, 50053, 50054, 50055, 50056];
        let ports = [8080, 8090]
            .into_iter()
            .chain(services)
            .chain(services.map(|p| p + 500))
            .map(|p| p + offset);
        if ports
            .into_iter()
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        {
            return Ok(offset);
        }
    }
    anyhow::bail!("no free port offset")
}

/// One order the load driver placed.
#[derive(Debug, Clone)]
pub struct Placed {
    pub id: String,
    /// Attempts it took (retries with the same Idempotency-Key after a failure).
    pub attempts: u32,
    /// Which of the driver's clients placed it.
    pub client: usize,
}

/// What the load driver saw.
#[derive(Debug, Default)]
pub struct Load {
    pub placed: Vec<Placed>,
    /// Orders not accepted before the deadline (lost from the client's view).
    pub failed: Vec<String>,
    /// Latency of every attempt that was answered, in milliseconds, by when it started.
    pub latencies: Vec<(Duration, f64)>,
    /// Why attempts were retried (a status or "transport error"), counted.
    pub retried_for: BTreeMap<String, usize>,
}

/// One kind of order of the load's mix.
#[derive(Debug, Clone)]
pub struct Line {
    pub product: String,
    pub quantity: i32,
    pub payment: &'static str,
}

/// Places `count` orders through the BFF in an open loop at `rate` per second, the i-th with
/// `mix(i)` as client `clients[i % n]` and its own Idempotency-Key; a failed attempt (transport
/// error, 5xx) is retried with the same key until `deadline` after its start.
pub async fn drive(bff: &str, clients: &[String], count: usize, rate: f64, mix: impl Fn(usize) -> Line) -> Load {
    let (http, start, run) = load_client();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let request = Attempts::new(&http, bff, clients, i, mix(i), format!("{run}-{i}"), start);
        tasks.push(tokio::spawn(request.until_accepted(Duration::from_secs(120))));
    }
    let mut load = Load::default();
    for task in tasks {
        let (outcome, tried) = task.await.expect("load task");
        load.latencies.extend(tried.latencies);
        for reason in tried.retried_for {
            *load.retried_for.entry(reason).or_default() += 1;
        }
        match outcome {
            Ok(placed) => load.placed.push(placed),
            Err(key) => load.failed.push(key),
        }
    }
    load
}

struct Attempts {
    http: reqwest::Client,
    url: String,
    client: usize,
    token: String,
    key: String,
    body: Value,
    start: Instant,
}

impl Attempts {
    /// The i-th order of a load: `line`, as client `clients[i % n]`, under Idempotency-Key `key`.
    fn new(
        http: &reqwest::Client,
        bff: &str,
        clients: &[String],
        i: usize,
        line: Line,
        key: String,
        start: Instant,
    ) -> Self {
        let body = json!({
            "items": [{"productId": line.product, "quantity": line.quantity}],
            "shippingAddress": {"recipientName": "Fault Client", "line1": "1 Main Street", "city": "Berlin",
                                "postalCode": "10115", "countryCode": "DE"},
            "paymentMethodToken": line.payment,
        });
        Self {
            http: http.clone(),
            url: format!("{bff}/api/v1/orders"),
            client: i % clients.len(),
            token: clients[i % clients.len()].clone(),
            key,
            body,
            start,
        }
    }
}

/// The most orders per second the BFF accepts: `concurrency` clients each placing orders one
/// after another (a closed loop) for `period`. The orders placed are returned too (they are
/// orders like the others, for the checker).
pub async fn maximum_intake(
    bff: &str,
    clients: &[String],
    mix: std::sync::Arc<dyn Fn(usize) -> Line + Send + Sync>,
    concurrency: usize,
    period: Duration,
) -> (f64, Vec<String>) {
    let (http, start, run) = load_client();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, bff, clients, mix, next, run) = (
                http.clone(),
                bff.to_owned(),
                clients.to_vec(),
                mix.clone(),
                next.clone(),
                run.clone(),
            );
            tokio::spawn(async move {
                let mut placed = Vec::new();
                while start.elapsed() < period {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let request = Attempts::new(&http, &bff, &clients, i, mix(i), format!("max-{run}-{i}"), start);
                    if let (Ok(order), _) = request.until_accepted(Duration::from_secs(30)).await {
                        placed.push(order.id);
                    }
                }
                placed
            })
        })
        .collect();
    let mut placed = Vec::new();
    for worker in workers {
        placed.extend(worker.await.expect("intake worker"));
    }
    (placed.len() as f64 / start.elapsed().as_secs_f64(), placed)
}

/// One look at the platform during a soak: each process's resident memory, and the outbox and
/// inbox tables of every service.
#[derive(Debug)]
pub struct Sample {
    pub at: Duration,
    /// Resident set size per process, in MiB.
    pub rss_mib: BTreeMap<String, f64>,
    /// Outbox rows not yet published, all services.
    pub unsent: i64,
    pub outbox_rows: i64,
    pub inbox_rows: i64,
}

impl Rig {
    pub async fn sample(&self, at: Duration) -> anyhow::Result<Sample> {
        let rss_mib = self
            .processes
            .running()
            .into_iter()
            .filter_map(|name| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", self.processes.pid(&name)?)).ok()?;
                let kib: f64 = status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some((name, kib / 1024.0))
            })
            .collect();
        let pool = self.pool().await?;
        let mut sample = Sample {
            at,
            rss_mib,
            unsent: 0,
            outbox_rows: 0,
            inbox_rows: 0,
        };
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables \
             WHERE table_name IN ('event_outbox', 'event_inbox')",
        )
        .fetch_all(&pool)
        .await?;
        for (schema, table) in tables {
            let (rows, unsent): (i64, i64) = if table == "event_outbox" {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    r#"SELECT COUNT(*), COUNT(*) FILTER (WHERE sent_at IS NULL) FROM "{schema}".event_outbox"#
                )))
                .fetch_one(&pool)
                .await?
            } else {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    r#"SELECT COUNT(*), CAST(0 AS bigint) FROM "{schema}".event_inbox"#
                )))
                .fetch_one(&pool)
                .await?
            };
            if table == "event_outbox" {
                sample.outbox_rows += rows;
                sample.unsent += unsent;
            } else {
                sample.inbox_rows += rows;
            }
        }
        pool.close().await;
        Ok(sample)
    }
}

/// What a load starts from: its HTTP client (10 s per attempt), its start, and the run's id
/// that makes its Idempotency-Keys unique.
fn load_client() -> (reqwest::Client, Instant, String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    (http, Instant::now(), uuid::Uuid::now_v7().simple().to_string())
}

/// What one order's attempts saw.
#[derive(Default)]
struct Tried {
    latencies: Vec<(Duration, f64)>,
    retried_for: Vec<String>,
}

impl Attempts {
    async fn until_accepted(self, deadline: Duration) -> (Result<Placed, String>, Tried) {
        let begun = Instant::now();
        let mut tried = Tried::default();
        let mut attempts = 0;
        while begun.elapsed() < deadline {
            attempts += 1;
            let sent = Instant::now();
            let answer = self
                .http
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("Idempotency-Key", &self.key)
                .json(&self.body)
                .send()
                .await;
            match answer {
                Ok(response) => {
                    tried
                        .latencies
                        .push((sent - self.start, sent.elapsed().as_secs_f64() * 1000.0));
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        let id = body["id"].as_str().unwrap_or_default().to_owned();
                        return (
                            Ok(Placed {
                                id,
                                attempts,
                                client: self.client,
                            }),
                            tried,
                        );
                    }
                    // A refusal of the request itself is final (and a defect of the driver).
                    if status.is_client_error() && status.as_u16() != 429 {
                        return (Err(format!("{}: {status} {body}", self.key)), tried);
                    }
                    tried
                        .retried_for
                        .push(format!("{status} {}", body["type"].as_str().unwrap_or("")));
                }
                Err(_) => tried.retried_for.push("transport error".to_owned()),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (Err(format!("{}: not accepted within {deadline:?}", self.key)), tried)
    }
}

/// The 99th percentile (nearest rank) of the latencies whose attempt started in `window`.
pub fn p99(latencies: &[(Duration, f64)], window: std::ops::Range<Duration>) -> Option<f64> {
    let mut inside: Vec<f64> = latencies
        .iter()
        .filter(|(at, _)| window.contains(at))
        .map(|(_, ms)| *ms)
        .collect();
    if inside.is_empty() {
        return None;
    }
    inside.sort_by(f64::total_cmp);
    let rank = ((inside.len() as f64) * 0.99).ceil() as usize;
    Some(inside[rank.clamp(1, inside.len()) - 1])
}

/// What the checker found: every figure the scenario prints, and every broken invariant.
#[derive(Debug, Default)]
pub struct Findings {
    pub orders: usize,
    pub terminal: usize,
    pub by_status: BTreeMap<String, usize>,
    pub duplicate_captures: usize,
    pub duplicate_notifications: usize,
    pub duplicate_audit_entries: usize,
    /// Orders whose status changes were applied or told out of order.
    pub out_of_order: usize,
    pub lost: usize,
    pub violations: Vec<String>,
}

impl Findings {
    fn violated(&mut self, what: String) {
        if self.violations.len() < 30 {
            self.violations.push(what);
        }
    }
}

/// Waits (up to `deadline`) until every order in `ids` is terminal, then checks every invariant.
/// `stock` maps each product to its initial units.
pub async fn check(
    rig: &Rig,
    ids: &[String],
    stock: &HashMap<String, i64>,
    deadline: Duration,
) -> anyhow::Result<Findings> {
    let pool = rig.pool().await?;
    let statuses = wait_terminal(&pool, ids, deadline).await?;
    let mut findings = Findings {
        orders: ids.len(),
        ..Default::default()
    };
    for id in ids {
        match statuses.get(id) {
            Some(status) => {
                *findings.by_status.entry(status.clone()).or_default() += 1;
                if TERMINAL.contains(&status.as_str()) {
                    findings.terminal += 1;
                } else {
                    findings.violated(format!("order {id} is still {status}"));
                }
            }
            None => {
                findings.lost += 1;
                findings.violated(format!("order {id} was accepted but is not stored"));
            }
        }
    }
    check_money(rig, &statuses, &mut findings);
    check_history_chains(&pool, ids, &mut findings).await?;
    eventually(&mut findings, async |found| check_stock(&pool, stock, found).await).await?;
    eventually(&mut findings, async |found| {
        check_notifications(&pool, ids, found).await?;
        check_told_in_order(&pool, ids, found).await
    })
    .await?;
    eventually(&mut findings, async |found| check_audit_complete(&pool, found).await).await?;
    check_audit_chain(rig, &pool, &mut findings).await?;
    pool.close().await;
    Ok(findings)
}

const TERMINAL: [&str; 3] = ["CONFIRMED", "REJECTED", "CANCELLED"];

pub async fn wait_terminal(
    pool: &PgPool,
    ids: &[String],
    deadline: Duration,
) -> anyhow::Result<HashMap<String, String>> {
    let until = Instant::now() + deadline;
    loop {
        let rows: Vec<(String, String)> =
            sqlx::query_as(r#"SELECT id::text, status FROM "order".orders WHERE id::text = ANY($1)"#)
                .bind(ids)
                .fetch_all(pool)
                .await?;
        let statuses: HashMap<String, String> = rows.into_iter().collect();
        let settled = ids
            .iter()
            .all(|id| statuses.get(id).is_some_and(|s| TERMINAL.contains(&s.as_str())));
        if settled || Instant::now() >= until {
            return Ok(statuses);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Money, where it moves: per order at most one capture at the gateway, kept (captured and not
/// refunded) exactly when the order is CONFIRMED.
fn check_money(rig: &Rig, statuses: &HashMap<String, String>, findings: &mut Findings) {
    for (id, status) in statuses {
        let captures = rig.gateway.captures_of(id);
        if captures > 1 {
            findings.duplicate_captures += captures - 1;
            findings.violated(format!("order {id} captured {captures} times"));
        }
        let kept = captures as i64 - rig.gateway.refunds_of(id) as i64;
        let expected = i64::from(status == "CONFIRMED");
        if kept != expected {
            findings.violated(format!("order {id} is {status} but keeps {kept} captures"));
        }
    }
}

/// Stock never negative (the table's checks) and, once every order is terminal, what is
/// available equal to the initial units minus the confirmed orders' units, which stay reserved
/// until they ship (no order ships here).
async fn check_stock(pool: &PgPool, initial: &HashMap<String, i64>, findings: &mut Findings) -> anyhow::Result<()> {
    for (product, units) in initial {
        let (on_hand, reserved): (i64, i64) =
            sqlx::query_as(r#"SELECT on_hand, reserved FROM product.stock_levels WHERE product_id::text = $1"#)
                .bind(product)
                .fetch_one(pool)
                .await?;
        let (sold,): (Option<i64>,) = sqlx::query_as(
            r#"SELECT CAST(SUM(i.quantity) AS bigint) FROM "order".order_items i JOIN "order".orders o ON o.id = i.order_id
               WHERE o.status = 'CONFIRMED' AND i.product_id::text = $1"#,
        )
        .bind(product)
        .fetch_one(pool)
        .await?;
        let available = on_hand - reserved;
        let expected = units - sold.unwrap_or(0);
        if reserved != sold.unwrap_or(0) || available != expected || on_hand < 0 {
            findings.violated(format!(
                "product {product}: on hand {on_hand}, reserved {reserved}, available {available}, expected {expected}"
            ));
        }
    }
    Ok(())
}

/// Runs `check` until it finds nothing wrong or two minutes have passed, and keeps what it
/// found last: the services converge asynchronously after the orders are terminal (a
/// reservation released, a notification written, an event audited). Two minutes cover the
/// slowest convergence by design: a status change that arrived before the one it follows, whose
/// predecessor a killed process held, waits through the retry schedule (1 + 5 + 15 + 60 s).
pub async fn eventually(
    findings: &mut Findings,
    mut check: impl AsyncFnMut(&mut Findings) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let mut found = Findings::default();
        check(&mut found).await?;
        if found.violations.is_empty() || Instant::now() >= until {
            findings.duplicate_notifications += found.duplicate_notifications;
            findings.out_of_order += found.out_of_order;
            findings.lost += found.lost;
            found.violations.into_iter().for_each(|v| findings.violated(v));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every status an order went through told its customer exactly once.
pub async fn check_notifications(pool: &PgPool, ids: &[String], findings: &mut Findings) -> anyhow::Result<()> {
    let history: Vec<(String, String)> = sqlx::query_as(
        r#"SELECT order_id::text, to_status FROM "order".order_status_history WHERE order_id::text = ANY($1)"#,
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let told: Vec<(String, String, i64)> = sqlx::query_as(
        r#"SELECT data->>'order_id', data->>'status', COUNT(*) FROM notification.notifications
           WHERE recipient_customer_id IS NOT NULL AND data->>'order_id' = ANY($1) AND data ? 'status'
           AND notification_type LIKE 'ORDER%' GROUP BY 1, 2"#,
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut expected: BTreeSet<(String, String)> = history.into_iter().collect();
    for (order, status, count) in told {
        if count > 1 {
            findings.duplicate_notifications += (count - 1) as usize;
            findings.violated(format!("order {order}: {status} told {count} times"));
        }
        expected.remove(&(order, status));
    }
    for (order, status) in expected.into_iter().take(10) {
        findings.violated(format!("order {order}: {status} never told"));
    }
    Ok(())
}

/// Each order's history is one chain: numbered 1, 2, … without a gap, each change starting
/// from the status the one before ended in.
async fn check_history_chains(pool: &PgPool, ids: &[String], findings: &mut Findings) -> anyhow::Result<()> {
    let rows: Vec<(String, i32, Option<String>, String)> = sqlx::query_as(
        r#"SELECT order_id::text, seq, from_status, to_status FROM "order".order_status_history
           WHERE order_id::text = ANY($1) ORDER BY order_id, seq"#,
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut previous: Option<(&str, i32, &str)> = None;
    for (order, seq, from, to) in &rows {
        let expected = match previous {
            Some((last, last_seq, last_to)) if last == order => (last_seq + 1, Some(last_to)),
            _ => (1, None),
        };
        if (*seq, from.as_deref()) != expected && !(expected.0 == 1 && *seq == 1) {
            findings.out_of_order += 1;
            findings.violated(format!(
                "order {order}: change {seq} ({from:?} → {to}) does not follow the one before"
            ));
        }
        previous = Some((order, *seq, to));
    }
    Ok(())
}

/// Each customer is told an order's status changes in the order they happened (the order of
/// the notifications' ids, which is the order a feed and the SSE stream show them in).
async fn check_told_in_order(pool: &PgPool, ids: &[String], findings: &mut Findings) -> anyhow::Result<()> {
    let history: Vec<(String, String)> = sqlx::query_as(
        r#"SELECT order_id::text, to_status FROM "order".order_status_history
           WHERE order_id::text = ANY($1) ORDER BY order_id, seq"#,
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let told: Vec<(String, String)> = sqlx::query_as(
        r#"SELECT data->>'order_id', data->>'status' FROM notification.notifications
           WHERE recipient_customer_id IS NOT NULL AND data->>'order_id' = ANY($1) AND data ? 'status'
           AND notification_type LIKE 'ORDER%' ORDER BY id"#,
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut happened: HashMap<String, Vec<String>> = HashMap::new();
    for (order, status) in history {
        happened.entry(order).or_default().push(status);
    }
    let mut heard: HashMap<String, Vec<String>> = HashMap::new();
    for (order, status) in told {
        heard.entry(order).or_default().push(status);
    }
    for (order, heard) in heard {
        let happened = happened.get(&order).map(Vec::as_slice).unwrap_or_default();
        // What was told, in the order told, must be the order it happened in (each once).
        let positions: Vec<Option<usize>> = heard.iter().map(|s| happened.iter().position(|h| h == s)).collect();
        if positions.windows(2).any(|pair| pair[0] >= pair[1]) {
            findings.out_of_order += 1;
            findings.violated(format!("order {order}: told {heard:?}, happened {happened:?}"));
        }
    }
    Ok(())
}

/// Every event of every outbox is in the audit log.
async fn check_audit_complete(pool: &PgPool, findings: &mut Findings) -> anyhow::Result<()> {
    let missing: Vec<(String, String)> = sqlx::query_as(
        r#"SELECT o.schema, o.event_id::text FROM (
             SELECT 'product' AS schema, event_id FROM product.event_outbox
             UNION ALL SELECT 'customer', event_id FROM customer.event_outbox
             UNION ALL SELECT 'order', event_id FROM "order".event_outbox
             UNION ALL SELECT 'payment', event_id FROM payment.event_outbox
             UNION ALL SELECT 'notification', event_id FROM notification.event_outbox) o
           WHERE NOT EXISTS (SELECT 1 FROM audit.audit_entries a WHERE a.event_id = o.event_id::text)"#,
    )
    .fetch_all(pool)
    .await?;
    findings.lost += missing.len();
    for (schema, event) in missing.into_iter().take(10) {
        findings.violated(format!("event {event} of {schema} never audited"));
    }
    Ok(())
}

/// The audit chain verifies and holds no event twice.
async fn check_audit_chain(rig: &Rig, pool: &PgPool, findings: &mut Findings) -> anyhow::Result<()> {
    let (twice,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT event_id FROM audit.audit_entries WHERE event_id IS NOT NULL \
         GROUP BY event_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(pool)
    .await?;
    findings.duplicate_audit_entries = twice as usize;
    if twice > 0 {
        findings.violated(format!("{twice} events audited more than once"));
    }
    if let Some(broken) = rig.verify_audit_chain().await? {
        findings.violated(format!("the audit chain does not verify: {broken}"));
    }
    Ok(())
}

impl Rig {
    /// `None` when audit-svc's VerifyChain finds the whole chain sound, else what is wrong.
    async fn verify_audit_chain(&self) -> anyhow::Result<Option<String>> {
        use ordermesh_proto::audit::VerifyChainRequest;
        use ordermesh_proto::audit::audit_service_client::AuditServiceClient;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.processes.addr("audit")))?
            .connect()
            .await?;
        let mut request = tonic::Request::new(VerifyChainRequest::default());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.admin).parse()?);
        let answer = AuditServiceClient::new(channel)
            .verify_chain(request)
            .await?
            .into_inner();
        Ok((!answer.ok).then(|| format!("{} at {:?}", answer.reason, answer.first_broken_sequence)))
    }
}

/// Prints a scenario's figures (the test's output is the report).
pub fn report(scenario: &str, load: &Load, findings: &Findings, p99s: [(&str, Option<f64>); 3], elapsed: Duration) {
    let retried = load.placed.iter().filter(|p| p.attempts > 1).count();
    let ms = |p: Option<f64>| p.map_or("-".to_owned(), |v| format!("{v:.0} ms"));
    println!(
        "\n[{scenario}] orders {} | accepted {} (retried {retried}) | not accepted {} | terminal {} | {:?} | \
         duplicate captures {} | duplicate notifications {} | duplicate audit entries {} | out of order {} | lost {} | \
         p99 {} {} / {} {} / {} {} | {:.0} s",
        findings.orders + load.failed.len(),
        load.placed.len(),
        load.failed.len(),
        findings.terminal,
        findings.by_status,
        findings.duplicate_captures,
        findings.duplicate_notifications,
        findings.duplicate_audit_entries,
        findings.out_of_order,
        findings.lost,
        p99s[0].0,
        ms(p99s[0].1),
        p99s[1].0,
        ms(p99s[1].1),
        p99s[2].0,
        ms(p99s[2].1),
        elapsed.as_secs_f64()
    );
    for violation in &findings.violations {
        println!("  violated: {violation}");
    }
    println!("  retried for: {:?}", load.retried_for);
    for failure in load.failed.iter().take(10) {
        println!("  not accepted: {failure}");
    }
}
