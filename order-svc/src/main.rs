//! `order-svc` binary: the order service alone, configured by the environment (as in a container).

fn main() -> anyhow::Result<()> {
    ordermesh_platform::grpc::run_main(order_svc::SERVICE, order_svc::DEFAULT_PORT, order_svc::run)
}
