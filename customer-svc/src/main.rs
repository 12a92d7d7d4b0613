//! `customer-svc` binary: the customer service alone, configured by the environment (as in a container).

fn main() -> anyhow::Result<()> {
    ordermesh_platform::grpc::run_main(customer_svc::SERVICE, customer_svc::DEFAULT_PORT, customer_svc::run)
}
