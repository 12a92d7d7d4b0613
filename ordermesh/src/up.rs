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
/// Port of the dev issuer's JWKS and discovery endpoints.
const DEV_ISSUER_PORT: u16 = 8090;

pub fn dev_issuer_url() -> String {
    format!("http://127.0.0.1:{DEV_ISSUER_PORT}")
}

pub fn dev_issuer_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-issuer.pem")
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Use a temporary data directory, removed on exit.
    #[arg(long)]
    ephemeral: bool,
}

impl Default for UpArgs {
    fn default() -> Self {
        Self {
            data: DataDirArg {
                data_dir: PathBuf::from("data"),
            },
            ephemeral: false,
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
        let issuer = Arc::new(DevIssuer::load_or_generate(
            dev_issuer_url(),
            &dev_issuer_path(&data_dir),
        )?);
        let issuer_listener = TcpListener::bind(("127.0.0.1", DEV_ISSUER_PORT)).await?;
        let mut tasks = tokio::task::JoinSet::new();
        let issuer_router = issuer.router();
        let issuer_shutdown = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(issuer_listener, issuer_router)
                .with_graceful_shutdown(async move { issuer_shutdown.wait().await })
                .await
                .map_err(anyhow::Error::from)
        });

        let mut addresses = Vec::new();
        for (name, port, run) in SERVICES {
            let mut config = ServiceConfig::from_env(&env, name, port)?;
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
            let listener = TcpListener::bind(config.listen_addr).await?;
            addresses.push((name, listener.local_addr()?));
            tasks.spawn(run(config, listener, shutdown.clone()));
        }
        let bff_listener = TcpListener::bind(("0.0.0.0", bff::DEFAULT_PORT)).await?;
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

        print_banner(&data_dir, bff_addr, &addresses, &issuer, started.elapsed())?;

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
    println!("  dev issuer     {}", dev_issuer_url());
    println!("Tokens (valid 8 hours):");
    println!(
        "  ADMIN_TOKEN={}",
        token(IssuerKind::Employee, "dev-admin", vec![Role::Admin])?
    );
    println!("  CLIENT_TOKEN={}", token(IssuerKind::Client, "dev-client-1", vec![])?);
    Ok(())
}
