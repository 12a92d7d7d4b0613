//! `product-svc` binary: the product service alone, configured by the environment (as in a container).

fn main() -> anyhow::Result<()> {
    ordermesh_platform::grpc::run_main(product_svc::SERVICE, product_svc::DEFAULT_PORT, product_svc::run)
}
