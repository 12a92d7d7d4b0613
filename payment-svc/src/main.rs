//! `payment-svc` binary: the payment service alone, configured by the environment (as in a container).

fn main() -> anyhow::Result<()> {
    ordermesh_platform::grpc::run_main(payment_svc::SERVICE, payment_svc::DEFAULT_PORT, payment_svc::run)
}
