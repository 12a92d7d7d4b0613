//! `notification-svc` binary: the notification service alone, configured by the environment (as in a container).

fn main() -> anyhow::Result<()> {
    ordermesh_platform::grpc::run_main(
        notification_svc::SERVICE,
        notification_svc::DEFAULT_PORT,
        notification_svc::run,
    )
}
