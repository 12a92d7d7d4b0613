//! The platform as separate OS processes: each service and the BFF is `ordermesh serve <name>`,
//! a child with its own port and log file that can be killed (SIGKILL) and started again. The
//! fault suite (`ordermesh/tests/faults.rs`) drives it through [`Processes`]; `ordermesh up
//! --processes` runs it by hand, to reproduce a scenario.
//!
//! A child configures itself as `ordermesh up` configures the in-process services (the same
//! environment variables, the dev issuer's key from the data directory for tokens), so the
//! two runs differ only in where the process boundaries are. The in-process bus cannot cross
//! them: processes need NATS (`NATS_URL`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ordermesh_platform::auth::DevIssuer;
use ordermesh_platform::{Env, ServiceConfig, Shutdown, telemetry};
use tokio::process::{Child, Command};

use crate::up::{SERVICES, bff_with_dev_defaults, dev_issuer_path, load_dev_issuer, with_dev_defaults};

/// The BFF's name among the processes.
pub const BFF: &str = "bff";

/// How far a replica's port is from its first replica's (`order.1` listens 500 above `order`).
const REPLICA_PORT_STEP: u16 = 500;

/// The name of `service`'s replica `n` among the processes (`n` = 0 is `service` itself): a
/// process of its own sharing the service's database and its consumers' durable subscriptions,
/// on a port of its own.
pub fn replica(service: &str, n: u16) -> String {
    if n == 0 {
        service.to_owned()
    } else {
        format!("{service}.{n}")
    }
}

/// The service and replica number of a process's name.
fn instance(name: &str) -> (&str, u16) {
    match name.split_once('.') {
        Some((service, n)) => (service, n.parse().expect("a replica number")),
        None => (name, 0),
    }
}

/// `ordermesh serve`: one service (or the BFF) of a platform run as processes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// `product`, `customer`, `order`, `payment`, `audit`, `notification` or `bff`.
    pub name: String,
    #[command(flatten)]
    pub data: crate::DataDirArg,
    /// Added to the default ports, as `ordermesh up --port-offset`.
    #[arg(long, env = "ORDERMESH_PORT_OFFSET", default_value_t = 0)]
    pub port_offset: u16,
}

/// The default port of `name` (a service or [`BFF`]).
pub fn default_port(name: &str) -> Option<u16> {
    if name == BFF {
        return Some(bff::DEFAULT_PORT);
    }
    SERVICES
        .iter()
        .find(|(service, ..)| *service == name)
        .map(|(_, port, _)| *port)
}

/// Runs `args.name` until SIGTERM/SIGINT.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    ordermesh_platform::install_crypto_provider();
    let env = Env::from_process();
    anyhow::ensure!(
        env.optional("NATS_URL").is_some(),
        "a platform of processes needs NATS_URL: the in-process bus cannot cross processes"
    );
    let data_dir = args.data.data_dir.clone();
    let issuer = Arc::new(load_dev_issuer(&data_dir)?);
    tokio::runtime::Runtime::new()?.block_on(async move {
        let _telemetry = telemetry::init(&telemetry::TelemetryConfig::from_env(&env, &args.name)?)?;
        let shutdown = Shutdown::on_signals();
        let offset = args.port_offset;
        if args.name == BFF {
            let mut config = bff::BffConfig::from_env(&env)?;
            bff_with_dev_defaults(&issuer, &mut config);
            let addr = env.parse_or(
                "BFF_ADDR",
                SocketAddr::from(([127, 0, 0, 1], bff::DEFAULT_PORT + offset)),
            )?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            return bff::run(config, listener, shutdown).await;
        }
        let (name, port, run) = SERVICES
            .into_iter()
            .find(|(name, ..)| *name == args.name)
            .with_context(|| format!("no service named {:?}", args.name))?;
        let mut config = ServiceConfig::from_env(&env, name, port + offset)?;
        with_dev_defaults(&env, &data_dir, &issuer, name, &mut config);
        let listen = config.listen_addr.into();
        run(config, listen, shutdown).await
    })
}

/// A platform of processes: `exe serve <name>` children sharing a data directory (the dev
/// issuer's key) and an environment, each logging to `<data dir>/logs/<name>.log`; the dev
/// issuer's keys are served from this process.
pub struct Processes {
    exe: PathBuf,
    data_dir: PathBuf,
    port_offset: u16,
    env: Vec<(String, String)>,
    children: HashMap<String, Child>,
    issuer: tokio::task::JoinHandle<()>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        // The children are killed on drop (`kill_on_drop`).
        self.issuer.abort();
    }
}

impl Processes {
    /// Creates the dev issuer's key in `data_dir` (if it has none) for the children to share
    /// and serves its keys; `env` is added to every child's environment (NATS_URL,
    /// DATABASE_URL, REDIS_URL, PAYMENT_GATEWAY_URL, …).
    pub async fn new(
        exe: &Path,
        data_dir: &Path,
        port_offset: u16,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir.join("logs"))?;
        let url = crate::up::dev_issuer_url(port_offset);
        let issuer = DevIssuer::load_or_generate(&url, &dev_issuer_path(data_dir))?;
        std::fs::write(data_dir.join("dev-issuer.url"), &url)?;
        let listener = ordermesh_platform::host::bind("dev-issuer", crate::up::dev_issuer_addr(port_offset)).await?;
        let router = issuer.router();
        let issuer = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let mut env = env;
        // Each process finds its peers on their default ports moved by the offset.
        for (name, port, _) in SERVICES {
            env.push((
                format!("{}_SVC_URL", name.to_uppercase()),
                format!("http://127.0.0.1:{}", port + port_offset),
            ));
        }
        Ok(Self {
            exe: exe.to_owned(),
            data_dir: data_dir.to_owned(),
            port_offset,
            env,
            children: HashMap::new(),
            issuer,
        })
    }

    /// The dev issuer the children trust (to mint tokens).
    pub fn issuer(&self) -> anyhow::Result<DevIssuer> {
        load_dev_issuer(&self.data_dir)
    }

    /// Where `name` (a service, the BFF or a [`replica`]) listens.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let (service, replica) = instance(name);
        let port =
            default_port(service).expect("a service or the BFF") + self.port_offset + REPLICA_PORT_STEP * replica;
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The operating system's id of `name`'s process, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).and_then(Child::id)
    }

    /// The names of the running processes.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self.children.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn log_file(&self, name: &str) -> PathBuf {
        self.data_dir.join("logs").join(format!("{name}.log"))
    }

    /// Starts `name` (a service, the BFF or a [`replica`]; appending to its log file) and
    /// waits until it is ready.
    pub async fn start(&mut self, name: &str) -> anyhow::Result<()> {
        self.start_with(name, &[]).await
    }

    /// [`Self::start`] with `extra` added to this one start's environment (a crash point, a
    /// setting under test).
    pub async fn start_with(&mut self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        anyhow::ensure!(!self.children.contains_key(name), "{name} is running");
        let (service, replica) = instance(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(name))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("serve")
            .arg(service)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--port-offset")
            .arg(self.port_offset.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if replica > 0 {
            // Its own port; its peers and callers keep talking to the first replica.
            let variable = if service == BFF {
                "BFF_ADDR".to_owned()
            } else {
                format!("{}_ADDR", service.to_uppercase())
            };
            command.env(variable, self.addr(name).to_string());
        }
        if let Some(addr) = self.metrics_addr(name)? {
            command.env("METRICS_ADDR", addr.to_string());
        }
        let child = command
            .envs(extra.iter().copied())
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.insert(name.to_owned(), child);
        self.wait_ready(name).await
    }

    /// With `METRICS_ADDR` set, every process serves its own scrape endpoint: that port + 1 +
    /// the process's place (product-svc 1 … notification-svc 6, the BFF 7), + 10 per replica.
    fn metrics_addr(&self, name: &str) -> anyhow::Result<Option<SocketAddr>> {
        let configured = self
            .env
            .iter()
            .find(|(key, _)| key == "METRICS_ADDR")
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var("METRICS_ADDR").ok());
        let Some(configured) = configured else { return Ok(None) };
        let mut addr: SocketAddr = configured
            .parse()
            .with_context(|| format!("METRICS_ADDR: {configured:?} is not an address"))?;
        let (service, replica) = instance(name);
        let place = crate::up::SERVICES
            .iter()
            .position(|(s, ..)| *s == service)
            .unwrap_or(crate::up::SERVICES.len()) as u16;
        addr.set_port(addr.port() + 1 + place + 10 * replica);
        Ok(Some(addr))
    }

    /// Kills `name` with SIGKILL (no shutdown, no drain: a crash) and reaps it.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let mut child = self
            .children
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        child.kill().await?;
        Ok(())
    }

    /// Asks `name` to stop (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        let mut child = self
            .children
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        if let Some(pid) = child.id() {
            Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
        }
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .with_context(|| format!("{name} did not stop within 30 s"))??;
        Ok(())
    }

    /// Forgets `name`'s process (it has exited), so it can be started again.
    pub fn forget(&mut self, name: &str) {
        self.children.remove(name);
    }

    /// The first child that has exited, with its status.
    pub fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .find_map(|(name, child)| child.try_wait().ok().flatten().map(|status| (name.clone(), status)))
    }

    async fn wait_ready(&mut self, name: &str) -> anyhow::Result<()> {
        let addr = self.addr(name);
        let log = self.log_file(name);
        let child = self.children.get_mut(name).expect("just started");
        let exited = || {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| anyhow::anyhow!("{name} exited ({status}); see {}", log.display()))
        };
        let (service, _) = instance(name);
        if service == BFF {
            return wait_http_ready(addr, Duration::from_secs(60), exited).await;
        }
        ordermesh_platform::host::wait_ready(service, addr, Duration::from_secs(60), exited).await
    }
}

/// `ordermesh up --processes`: the six services and the BFF as children of this process (dev
/// issuer served here), the demo data seeded, the banner printed; until SIGINT/SIGTERM. A child
/// that exits (killed, crashed) is started again, as Kubernetes restarts a container.
pub async fn up(data_dir: &Path, port_offset: u16, started: std::time::Instant) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut processes = Processes::new(&exe, data_dir, port_offset, Vec::new()).await?;
    for (name, ..) in SERVICES {
        processes.start(name).await?;
    }
    processes.start(BFF).await?;
    let issuer = processes.issuer()?;
    let url = |name: &str| format!("http://{}", processes.addr(name));
    let customers = crate::demo::seed(&issuer, &url("product"), &url("customer"), None).await?;
    let services: Vec<(&str, SocketAddr)> = SERVICES
        .iter()
        .map(|(name, ..)| (*name, processes.addr(name)))
        .collect();
    crate::up::print_banner(
        data_dir,
        processes.addr(BFF),
        &services,
        &issuer,
        &customers,
        started.elapsed(),
    )?;
    println!(
        "Processes: one per service and the BFF, logs in {}",
        data_dir.join("logs").display()
    );
    let shutdown = Shutdown::on_signals();
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some((name, status)) = processes.exited() {
                    println!("{name} exited ({status}); starting it again");
                    processes.forget(&name);
                    processes.start(&name).await?;
                }
            }
        }
    }
    let names: Vec<&str> = std::iter::once(BFF)
        .chain(SERVICES.iter().map(|(name, ..)| *name))
        .collect();
    for name in names {
        processes.stop(name).await?;
    }
    Ok(())
}

/// Waits until the BFF at `addr` answers `/readyz` with 200.
async fn wait_http_ready(
    addr: SocketAddr,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<anyhow::Error>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let http = reqwest::Client::new();
    loop {
        if let Some(error) = exited() {
            return Err(error);
        }
        let ready = http.get(format!("http://{addr}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the BFF at {addr} is not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
