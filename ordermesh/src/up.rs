use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use std::sync::Arc;

use ordermesh_platform::auth::{DevIssuer, DevTokenRequest, IssuerKind, Role, ServiceCredentials};
use ordermesh_platform::{Env, ServiceConfig, Shutdown, telemetry};
use tokio::net::TcpListener;

use crate::DataDirArg;

/// Audience of dev tokens.
pub const DEV_AUDIENCE: &str = "ordermesh";
/// Port of the dev issuer's JWKS and discovery endpoints (plus `--port-offset`).
const DEV_ISSUER_PORT: u16 = 8090;

fn dev_issuer_url(port_offset: u16) -> String {
    format!("http://127.0.0.1:{}", DEV_ISSUER_PORT + port_offset)
}

pub fn dev_issuer_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-issuer.pem")
}

/// The dev issuer of the platform that last ran on `data_dir` (its URL is kept next to its key,
/// so `ordermesh token` mints tokens whatever port offset `up` used).
pub fn load_dev_issuer(data_dir: &Path) -> anyhow::Result<DevIssuer> {
    let key = dev_issuer_path(data_dir);
    anyhow::ensure!(
        key.exists(),
        "no dev issuer key at {}: start `ordermesh up` with this data directory first",
        key.display()
    );
    let url = std::fs::read_to_string(data_dir.join("dev-issuer.url")).unwrap_or_else(|_| dev_issuer_url(0));
    DevIssuer::load_or_generate(url.trim(), &key)
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Use a temporary data directory, removed on exit.
    #[arg(long)]
    ephemeral: bool,
    /// Added to every default port (BFF 8080, gRPC 50051-50056, dev issuer 8090), to run a
    /// second platform beside another one. Explicit `<SERVICE>_ADDR`/`BFF_ADDR` win.
    #[arg(long, env = "ORDERMESH_PORT_OFFSET", default_value_t = 0)]
    port_offset: u16,
}

impl Default for UpArgs {
    fn default() -> Self {
        Self {
            data: DataDirArg {
                data_dir: PathBuf::from("data"),
            },
            ephemeral: false,
            port_offset: 0,
        }
    }
}

type RunFn = fn(ServiceConfig, TcpListener, Shutdown) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The six services, their default ports, and how to run each in-process.
const SERVICES: [(&str, u16, RunFn); 6] = [
    (product_svc::SERVICE, product_svc::DEFAULT_PORT, |c, l, s| {
        Box::pin(product_svc::run(c, l, s))
    }),
    (customer_svc::SERVICE, customer_svc::DEFAULT_PORT, |c, l, s| {
        Box::pin(customer_svc::run(c, l, s))
    }),
    (order_svc::SERVICE, order_svc::DEFAULT_PORT, |c, l, s| {
        Box::pin(order_svc::run(c, l, s))
    }),
    (payment_svc::SERVICE, payment_svc::DEFAULT_PORT, |c, l, s| {
        Box::pin(payment_svc::run(c, l, s))
    }),
    (audit_svc::SERVICE, audit_svc::DEFAULT_PORT, |c, l, s| {
        Box::pin(audit_svc::run(c, l, s))
    }),
    (notification_svc::SERVICE, notification_svc::DEFAULT_PORT, |c, l, s| {
        Box::pin(notification_svc::run(c, l, s))
    }),
];

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    ordermesh_platform::install_crypto_provider();
    let env = Env::from_process();
    let started = Instant::now();
    let temp = args.ephemeral.then(tempfile::tempdir).transpose()?;
    let data_dir = temp
        .as_ref()
        .map(|t| t.path().to_path_buf())
        .unwrap_or(args.data.data_dir.clone());
    std::fs::create_dir_all(&data_dir)?;

    tokio::runtime::Runtime::new()?.block_on(async move {
        let _telemetry = telemetry::init(&telemetry::TelemetryConfig::from_env(&env, "up")?)?;
        let shutdown = Shutdown::on_signals();
        let offset = args.port_offset;
        let issuer = Arc::new(DevIssuer::load_or_generate(
            dev_issuer_url(offset),
            &dev_issuer_path(&data_dir),
        )?);
        std::fs::write(data_dir.join("dev-issuer.url"), dev_issuer_url(offset))?;
        let issuer_listener = TcpListener::bind(("127.0.0.1", DEV_ISSUER_PORT + offset)).await?;
        let mut tasks = tokio::task::JoinSet::new();
        let issuer_router = issuer.router();
        let issuer_shutdown = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(issuer_listener, issuer_router)
                .with_graceful_shutdown(async move { issuer_shutdown.wait().await })
                .await
                .map_err(anyhow::Error::from)
        });

        // Bind every listener first, so each service is told where its peers really are.
        let mut bound = Vec::new();
        for (name, port, run) in SERVICES {
            let config = ServiceConfig::from_env(&env, name, port + offset)?;
            let listener = TcpListener::bind(config.listen_addr).await?;
            bound.push((name, run, config, listener));
        }
        let peer = |name: &str| {
            bound
                .iter()
                .find(|(n, ..)| *n == name)
                .and_then(|(.., listener)| listener.local_addr().ok())
                .map(|addr| format!("http://127.0.0.1:{}", addr.port()))
                .expect("every service is bound")
        };
        let peers = ordermesh_platform::PeerUrls {
            product: peer("product"),
            customer: peer("customer"),
            order: peer("order"),
            payment: peer("payment"),
            audit: peer("audit"),
            notification: peer("notification"),
        };
        let mut addresses = Vec::new();
        for (name, run, mut config, listener) in bound {
            config.peers = peers.clone();
            if env.optional("DATABASE_URL").is_none() {
                config.database_url = format!("sqlite://{}/{name}.db", data_dir.display());
            }
            if config.auth.issuers.is_empty() {
                config.auth = issuer.auth_config(DEV_AUDIENCE);
                config.credentials = ServiceCredentials::Dev {
                    issuer: issuer.clone(),
                    service: name.to_owned(),
                    audience: DEV_AUDIENCE.to_owned(),
                };
            }
            addresses.push((name, listener.local_addr()?));
            tasks.spawn(run(config, listener, shutdown.clone()));
        }
        let bff_listener = TcpListener::bind(("0.0.0.0", bff::DEFAULT_PORT + offset)).await?;
        let bff_addr = bff_listener.local_addr()?;
        let mut bff_config = bff::BffConfig::from_env(&env)?;
        if bff_config.auth.issuers.is_empty() {
            bff_config.auth = issuer.auth_config(DEV_AUDIENCE);
            bff_config.credentials = ServiceCredentials::Dev {
                issuer: issuer.clone(),
                service: "bff".to_owned(),
                audience: DEV_AUDIENCE.to_owned(),
            };
        }
        // The services just started, wherever their listeners are.
        for (name, addr) in &addresses {
            let url = format!("http://127.0.0.1:{}", addr.port());
            match *name {
                "product" => bff_config.peers.product = url,
                "customer" => bff_config.peers.customer = url,
                "order" => bff_config.peers.order = url,
                "payment" => bff_config.peers.payment = url,
                "audit" => bff_config.peers.audit = url,
                "notification" => bff_config.peers.notification = url,
                _ => {}
            }
        }
        tasks.spawn(bff::run(bff_config, bff_listener, shutdown.clone()));

        for (name, addr) in &addresses {
            wait_serving(name, *addr).await?;
        }
        let url = |name: &str| {
            addresses
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, addr)| format!("http://127.0.0.1:{}", addr.port()))
        };
        let customers = crate::demo::seed(
            &issuer,
            &url("product").expect("product"),
            &url("customer").expect("customer"),
        )
        .await?;
        print_banner(&data_dir, bff_addr, &addresses, &issuer, &customers, started.elapsed())?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "platform ready");

        // Any task failing brings the whole platform down rather than leaving it half-up.
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(error) = outcome {
                tracing::error!(error = format!("{error:#}"), "a component failed; shutting down");
                shutdown.trigger();
                if result.is_ok() {
                    result = Err(error);
                }
            }
            if !shutdown.is_triggered() {
                shutdown.trigger();
            }
        }
        tokio::time::timeout(Duration::from_secs(1), async {}).await.ok();
        result
    })
}

fn print_banner(
    data_dir: &Path,
    bff_addr: std::net::SocketAddr,
    services: &[(&str, std::net::SocketAddr)],
    issuer: &DevIssuer,
    demo_customers: &[String],
    elapsed: Duration,
) -> anyhow::Result<()> {
    let token = |kind, subject: &str, roles: Vec<Role>| {
        issuer.mint(&DevTokenRequest {
            kind,
            subject: subject.to_owned(),
            roles,
            audience: DEV_AUDIENCE.to_owned(),
            ttl: Duration::from_secs(8 * 3600),
        })
    };
    println!(
        "ordermesh is up ({:.1}s), data in {}",
        elapsed.as_secs_f64(),
        data_dir.display()
    );
    println!("  BFF            http://localhost:{}", bff_addr.port());
    for (name, addr) in services {
        println!(
            "  {name:<14} localhost:{}  (grpcurl -plaintext localhost:{} list)",
            addr.port(),
            addr.port()
        );
    }
    println!("  dev issuer     {}", issuer.jwks_url());
    println!("Tokens (valid 8 hours):");
    println!(
        "  ADMIN_TOKEN={}",
        token(IssuerKind::Employee, "dev-admin", vec![Role::Admin])?
    );
    let (subject, _) = crate::demo::DEMO_CLIENTS[0];
    println!("  CLIENT_TOKEN={}", token(IssuerKind::Client, subject, vec![])?);
    println!(
        "  MANAGER_TOKEN={}",
        token(IssuerKind::Employee, "dev-manager", vec![Role::OrderManager])?
    );
    println!(
        "Demo customers: {} (CLIENT_TOKEN is the first one's)",
        demo_customers.join(", ")
    );
    Ok(())
}

/// Waits until the service at `addr` reports SERVING on the gRPC health service.
async fn wait_serving(name: &str, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", addr.port()))?.connect_lazy();
    let mut health = HealthClient::new(channel);
    for _ in 0..600 {
        let status = health.check(HealthCheckRequest { service: String::new() }).await;
        if status.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name} did not become ready within 30 s")
}
