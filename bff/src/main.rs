//! `bff` binary: the backend-for-frontend alone, configured by the environment (README) and
//! `--surface external|internal|both` (overrides `BFF_SURFACE`).

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bff",
    about = "ordermesh backend-for-frontend (REST for the client and employee portals)"
)]
struct Args {
    /// Which portal(s) to serve; default `BFF_SURFACE`, else both.
    #[arg(long, value_enum)]
    surface: Option<bff::Surface>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = ordermesh_platform::Env::from_process();
    let addr = bff::listen_addr(&env)?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let telemetry = ordermesh_platform::telemetry::TelemetryConfig::from_env(&env, "bff")?;
        let _guard = ordermesh_platform::telemetry::init(&telemetry)?;
        let mut config = bff::BffConfig::from_env(&env)?;
        if let Some(surface) = args.surface {
            config.surface = surface;
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        bff::run(config, listener, ordermesh_platform::Shutdown::on_signals()).await
    })
}
