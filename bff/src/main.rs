//! `bff` binary: the backend-for-frontend alone, configured by the environment.

fn main() -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = std::env::var("BFF_ADDR")
        .unwrap_or_else(|_| format!("0.0.0.0:{}", bff::DEFAULT_PORT))
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid configuration: BFF_ADDR: {e}"))?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let env = ordermesh_platform::Env::from_process();
        let telemetry = ordermesh_platform::telemetry::TelemetryConfig::from_env(&env, "bff")?;
        let _guard = ordermesh_platform::telemetry::init(&telemetry)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        bff::run(listener, ordermesh_platform::Shutdown::on_signals()).await
    })
}
