use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use std::sync::Arc;

use ordermesh_platform::auth::{DevIssuer, DevTokenRequest, IssuerKind, Role, ServiceCredentials};
use ordermesh_platform::host::BindError;
use ordermesh_platform::launch::Launcher;
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::dev_ca::{DevCa, DevCaFiles};
use ordermesh_platform::mesh::tls::{WorkloadTls, trust_domain_and_namespace};
use ordermesh_platform::{Env, Listen, ServiceConfig, Shutdown, telemetry};

use crate::DataDirArg;

/// Audience of dev tokens.
pub const DEV_AUDIENCE: &str = "ordermesh";
/// Port of the dev issuer's JWKS and discovery endpoints (plus `--port-offset`).
const DEV_ISSUER_PORT: u16 = 8090;

pub(crate) fn dev_issuer_url(port_offset: u16) -> String {
    format!("http://127.0.0.1:{}", DEV_ISSUER_PORT + port_offset)
}

pub(crate) fn dev_issuer_addr(port_offset: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DEV_ISSUER_PORT + port_offset))
}

/// The SQLite database of `service` on the embedded profile.
pub fn embedded_database_url(data_dir: &Path, service: &str) -> String {
    format!("sqlite://{}/{service}.db", data_dir.display())
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
    /// Run every service over mutual TLS and the BFF over HTTPS, with a development CA and
    /// per-workload certificates made at start in `<data-dir>/tls` (the call graph is enforced:
    /// a workload may call only what it declares).
    #[arg(long)]
    tls: bool,
    /// Run each service and the BFF as a process of its own (`ordermesh serve <name>`), logs in
    /// `<data-dir>/logs`; needs NATS (`NATS_URL`), as the fault suite runs it.
    #[arg(long, conflicts_with = "tls")]
    processes: bool,
}

impl Default for UpArgs {
    fn default() -> Self {
        Self {
            data: DataDirArg {
                data_dir: PathBuf::from("data"),
            },
            ephemeral: false,
            port_offset: 0,
            tls: false,
            processes: false,
        }
    }
}

type RunFn = fn(ServiceConfig, Listen, Shutdown) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The six services, their default ports, and how to run each in-process.
pub const SERVICES: [(&str, u16, RunFn); 6] = [
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
        if args.processes {
            anyhow::ensure!(
                env.optional("NATS_URL").is_some(),
                "--processes needs NATS_URL: the in-process bus cannot cross processes"
            );
            return crate::processes::up(&data_dir, args.port_offset, started).await;
        }
        let shutdown = Shutdown::on_signals();
        let result = start(&env, &data_dir, &args, &shutdown, started).await;
        result.map_err(|error| suggest_port_offset(error, args.port_offset))
    })
}

/// Starts the dev issuer, the six services and the BFF, seeds the demo data, prints the banner,
/// and runs until shutdown or the first component that fails.
async fn start(env: &Env, data_dir: &Path, args: &UpArgs, shutdown: &Shutdown, started: Instant) -> anyhow::Result<()> {
    let offset = args.port_offset;
    let issuer = Arc::new(DevIssuer::load_or_generate(
        dev_issuer_url(offset),
        &dev_issuer_path(data_dir),
    )?);
    std::fs::write(data_dir.join("dev-issuer.url"), dev_issuer_url(offset))?;
    let tls = args.tls.then(|| DevTls::create(env, data_dir)).transpose()?;
    let mut launcher = Launcher::new(shutdown);
    if let Some(tls) = &tls {
        launcher = launcher.with_tls(tls.workload(Workload::Ops)?);
    }

    // Bind every listener first, so each service is told where its peers really are.
    let issuer_listener = launcher.bind("dev-issuer", dev_issuer_addr(offset)).await?;
    let mut bound = Vec::new();
    for (name, port, run) in SERVICES {
        let config = ServiceConfig::from_env(env, name, port + offset)?;
        let listener = launcher.bind(name, config.listen_addr).await?;
        bound.push((name, run, config, listener));
    }
    let bff_default = SocketAddr::from(([0, 0, 0, 0], bff::DEFAULT_PORT + offset));
    let bff_listener = launcher.bind("bff", env.parse_or("BFF_ADDR", bff_default)?).await?;

    let router = issuer.router();
    launcher.spawn("dev-issuer", issuer_listener, |listener, stop| async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await
            .map_err(anyhow::Error::from)
    });
    let mut housekept = Vec::new();
    for (name, run, mut config, listener) in bound {
        config.peers = launcher.peer_urls(&config.peers);
        with_dev_defaults(env, data_dir, &issuer, name, &mut config);
        if let (Some(tls), Some(workload)) = (&tls, config.workload()) {
            config.tls = Some(tls.workload(workload)?);
        }
        housekept.push((name, config.clone()));
        launcher.spawn(name, listener, move |listener, stop| run(config, listener.into(), stop));
    }
    // Retention and maintenance, as CronJobs do in a cluster.
    let archive = crate::housekeeping::archive_dir(env, data_dir);
    tokio::spawn(crate::housekeeping::timer(housekept, archive, shutdown.clone()));
    let mut bff_config = bff::BffConfig::from_env(env)?;
    bff_with_dev_defaults(&issuer, &mut bff_config);
    // The services just started, wherever their listeners are.
    bff_config.peers = launcher.peer_urls(&bff_config.peers);
    if let Some(tls) = &tls {
        bff_config.tls = Some(tls.workload(bff_config.workload())?);
        bff_config.https = Some(tls.ca.https(&["localhost", "127.0.0.1"])?);
    }
    let bff_addr = bff_listener.local_addr()?;
    launcher.spawn("bff", bff_listener, move |listener, stop| {
        bff::run(bff_config, listener, stop)
    });

    let mut addresses = Vec::new();
    for (name, ..) in SERVICES {
        launcher.wait_ready(name).await?;
        addresses.push((name, launcher.addr(name).expect("bound")));
    }
    let seed_tls = tls.as_ref().map(|tls| tls.workload(Workload::DemoSeed)).transpose()?;
    let customers = crate::demo::seed(&issuer, &launcher.url("product"), &launcher.url("customer"), seed_tls).await?;
    let banner = Banner {
        data_dir,
        bff_addr,
        services: &addresses,
        tls: tls.as_ref().map(|tls| &tls.files),
    };
    banner.print(&issuer, &customers, started.elapsed())?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "platform ready");

    // Any component failing brings the whole platform down rather than leaving it half-up.
    launcher.run_until_done().await
}

/// What `ordermesh up` gives service `name` where the environment leaves it unset: its SQLite
/// file in `data_dir`, and the dev issuer as its trusted issuer and the source of its own tokens.
pub(crate) fn with_dev_defaults(
    env: &Env,
    data_dir: &Path,
    issuer: &Arc<DevIssuer>,
    name: &str,
    config: &mut ServiceConfig,
) {
    if env.optional("DATABASE_URL").is_none() {
        config.database_url = embedded_database_url(data_dir, name);
    }
    if config.auth.issuers.is_empty() {
        config.auth = issuer.auth_config(DEV_AUDIENCE);
        config.credentials = ServiceCredentials::dev(issuer.clone(), name, DEV_AUDIENCE);
    }
}

/// The BFF's part of [`with_dev_defaults`]: the dev issuer, where no issuer is configured.
pub(crate) fn bff_with_dev_defaults(issuer: &Arc<DevIssuer>, config: &mut bff::BffConfig) {
    if config.auth.issuers.is_empty() {
        config.auth = issuer.auth_config(DEV_AUDIENCE);
        config.credentials = ServiceCredentials::dev(issuer.clone(), "bff", DEV_AUDIENCE);
    }
}

/// A default port inside Linux's ephemeral range (32768–60999) can be taken by any outgoing
/// connection; say how to move every port at once.
fn suggest_port_offset(error: anyhow::Error, offset: u16) -> anyhow::Error {
    let taken = match error.downcast_ref::<BindError>() {
        Some(bind) if bind.address_in_use() => bind.addr,
        _ => return error,
    };
    error.context(format!(
        "another process holds {taken}; run `ordermesh up --port-offset {}` (or set \
         ORDERMESH_PORT_OFFSET) to move every port, or set the service's own address",
        offset + 100
    ))
}

/// Prints where the platform is and how to reach it, with tokens to paste.
pub(crate) fn print_banner(
    data_dir: &Path,
    bff_addr: SocketAddr,
    services: &[(&str, SocketAddr)],
    issuer: &DevIssuer,
    demo_customers: &[String],
    elapsed: Duration,
) -> anyhow::Result<()> {
    let banner = Banner {
        data_dir,
        bff_addr,
        services,
        tls: None,
    };
    banner.print(issuer, demo_customers, elapsed)
}

/// Where the platform is and how to reach it.
struct Banner<'a> {
    data_dir: &'a Path,
    bff_addr: SocketAddr,
    services: &'a [(&'a str, SocketAddr)],
    /// The development CA's files under `--tls`.
    tls: Option<&'a DevCaFiles>,
}

impl Banner<'_> {
    fn print(&self, issuer: &DevIssuer, demo_customers: &[String], elapsed: Duration) -> anyhow::Result<()> {
        println!(
            "ordermesh is up ({:.1}s), data in {}",
            elapsed.as_secs_f64(),
            self.data_dir.display()
        );
        self.print_addresses();
        print_tokens(issuer, demo_customers)
    }

    fn print_addresses(&self) {
        let port = self.bff_addr.port();
        let Some(files) = self.tls else {
            println!("  BFF            http://localhost:{port}");
            for (name, addr) in self.services {
                let port = addr.port();
                println!("  {name:<14} localhost:{port}  (grpcurl -plaintext localhost:{port} list)");
            }
            return;
        };
        let ca = files.ca.display();
        println!("  BFF            https://localhost:{port}  (curl --cacert {ca} …)");
        let ops = format!(
            "-cacert {ca} -cert {} -key {}",
            files.cert(Workload::Ops).display(),
            files.key(Workload::Ops).display()
        );
        for (name, addr) in self.services {
            println!("  {name:<14} localhost:{}  (mutual TLS)", addr.port());
        }
        println!("  as an operator: grpcurl {ops} localhost:<port> list");
    }
}

fn print_tokens(issuer: &DevIssuer, demo_customers: &[String]) -> anyhow::Result<()> {
    let token = |kind, subject: &str, roles: Vec<Role>| {
        issuer.mint(&DevTokenRequest {
            kind,
            subject: subject.to_owned(),
            roles,
            audience: DEV_AUDIENCE.to_owned(),
            ttl: Duration::from_secs(8 * 3600),
        })
    };
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

/// `--tls`: a development CA made at start, and every workload's certificate written next to
/// it (operators use `ops`'s with grpcurl).
struct DevTls {
    ca: DevCa,
    files: DevCaFiles,
}

impl DevTls {
    fn create(env: &Env, data_dir: &Path) -> anyhow::Result<Self> {
        let (trust_domain, namespace) = trust_domain_and_namespace(env);
        let ca = DevCa::generate(&trust_domain, &namespace)?;
        let files = ca.write(&data_dir.join("tls"), &Workload::ALL)?;
        Ok(Self { ca, files })
    }

    /// `workload`'s TLS settings, from the files written at start.
    fn workload(&self, workload: Workload) -> anyhow::Result<Arc<WorkloadTls>> {
        let read =
            |path: std::path::PathBuf| std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        let tls = WorkloadTls::from_pem(
            read(self.files.cert(workload))?,
            read(self.files.key(workload))?,
            read(self.files.ca.clone())?,
            read(self.files.ca.clone())?,
        )
        .map_err(|(var, reason)| anyhow::anyhow!("{var}: {reason}"))?;
        Ok(Arc::new(tls))
    }
}
