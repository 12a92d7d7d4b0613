//! `ordermesh housekeeping <job>`: the retention and maintenance jobs of the services
//! (see `ordermesh_platform::housekeeping`), run against each service's database as configured
//! by the environment (`DATABASE_URL`, default `sqlite://data/<service>.db`). In Kubernetes each
//! job is a CronJob of the service it belongs to; `ordermesh up` runs them on a timer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use ordermesh_platform::db::Database;
use ordermesh_platform::housekeeping::{Job, common_jobs};
use ordermesh_platform::{Env, ServiceConfig, Shutdown};

#[derive(Debug, clap::Args)]
pub struct HousekeepingArgs {
    /// Where `ordermesh up` keeps its SQLite files: the databases used when `DATABASE_URL` is
    /// not set, and the default `AUDIT_ARCHIVE_DIR` (`<data-dir>/audit-archive`).
    #[command(flatten)]
    data: crate::DataDirArg,
    /// The job to run on every service that has it (e.g. `outbox`, `notifications`, `exports`,
    /// `idempotency`, `inactive-customers`, `audit-archive`, `maintenance`), or `list` to list
    /// every job of every service with its rule.
    job: String,
    /// Only on this service (`order`, `customer`, …); a CronJob names its own service.
    #[arg(long)]
    service: Option<String>,
}

/// The services, with their default ports (for their configuration from the environment).
const SERVICES: [(&str, u16); 6] = [
    (product_svc::SERVICE, product_svc::DEFAULT_PORT),
    (customer_svc::SERVICE, customer_svc::DEFAULT_PORT),
    (order_svc::SERVICE, order_svc::DEFAULT_PORT),
    (payment_svc::SERVICE, payment_svc::DEFAULT_PORT),
    (audit_svc::SERVICE, audit_svc::DEFAULT_PORT),
    (notification_svc::SERVICE, notification_svc::DEFAULT_PORT),
];

/// Every job of `service`, configured from `config`; the audit archive goes to `archive_dir`.
pub fn jobs_of(service: &str, config: &ServiceConfig, archive_dir: &Path) -> Vec<Box<dyn Job>> {
    let events = &config.events;
    match service {
        customer_svc::SERVICE => customer_svc::housekeeping::jobs(events),
        order_svc::SERVICE => order_svc::housekeeping::jobs(events),
        notification_svc::SERVICE => notification_svc::housekeeping::jobs(events),
        audit_svc::SERVICE => audit_svc::housekeeping::jobs(events, archive_dir.to_owned()),
        _ => common_jobs(events),
    }
}

/// Where audit archives go: `AUDIT_ARCHIVE_DIR`, default `<data_dir>/audit-archive`.
pub fn archive_dir(env: &Env, data_dir: &Path) -> PathBuf {
    env.optional("AUDIT_ARCHIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("audit-archive"))
}

/// The configuration of `service` from the environment, on the embedded profile's SQLite file in
/// `data_dir` unless `DATABASE_URL` is set (as `ordermesh up` runs it).
pub fn service_config(env: &Env, service: &'static str, port: u16, data_dir: &Path) -> anyhow::Result<ServiceConfig> {
    let mut config = ServiceConfig::from_env(env, service, port)?;
    if env.optional("DATABASE_URL").is_none() {
        config.database_url = crate::up::embedded_database_url(data_dir, service);
    }
    Ok(config)
}

pub fn run(args: HousekeepingArgs) -> anyhow::Result<()> {
    let env = Env::from_process();
    let HousekeepingArgs { data, job, service } = args;
    let archive = archive_dir(&env, &data.data_dir);
    match job.as_str() {
        "list" => {
            for (service, port) in SERVICES {
                let config = service_config(&env, service, port, &data.data_dir)?;
                for job in jobs_of(service, &config, &archive) {
                    println!("{service:<13} {:<19} {}", job.name(), job.rule());
                }
            }
            Ok(())
        }
        _ => {
            if let Some(service) = &service {
                anyhow::ensure!(
                    SERVICES.iter().any(|(name, _)| name == service),
                    "--service {service:?} is not a service of this platform"
                );
            }
            tokio::runtime::Runtime::new()?.block_on(async move {
                let mut ran = 0;
                for (name, port) in SERVICES {
                    if service.as_deref().is_some_and(|s| s != name) {
                        continue;
                    }
                    let config = service_config(&env, name, port, &data.data_dir)?;
                    let Some(found) = jobs_of(name, &config, &archive).into_iter().find(|j| j.name() == job) else {
                        continue;
                    };
                    let db = Database::for_service(&config).await?;
                    let report = found.run(&db, Utc::now()).await;
                    db.close().await;
                    println!("{name}-svc {job}: {}", report?);
                    ran += 1;
                }
                anyhow::ensure!(
                    ran > 0,
                    "no service has a job {job:?}; `ordermesh housekeeping list` lists them"
                );
                Ok(())
            })
        }
    }
}

/// How often `ordermesh up` runs the retention jobs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often it runs `maintenance`.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// `ordermesh up`'s timer: every retention job of every service each hour, `maintenance` weekly,
/// on the databases of `services` (name and configuration). Failures are logged and retried at
/// the next tick.
pub async fn timer(services: Vec<(&'static str, ServiceConfig)>, archive_dir: PathBuf, shutdown: Shutdown) {
    let mut ticks = 0u64;
    let per_maintenance = (MAINTENANCE_EVERY.as_secs() / RETENTION_EVERY.as_secs()).max(1);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(RETENTION_EVERY) => {}
        }
        ticks += 1;
        for (name, config) in &services {
            let db = match Database::for_service(config).await {
                Ok(db) => db,
                Err(error) => {
                    tracing::warn!(service = name, %error, "housekeeping could not open the database");
                    continue;
                }
            };
            for job in jobs_of(name, config, &archive_dir) {
                if job.name() == "maintenance" && !ticks.is_multiple_of(per_maintenance) {
                    continue;
                }
                match job.run(&db, Utc::now()).await {
                    Ok(report) => tracing::info!(service = name, job = job.name(), %report, "housekeeping"),
                    Err(error) => tracing::warn!(service = name, job = job.name(), %error, "housekeeping failed"),
                }
            }
            db.close().await;
        }
    }
}
