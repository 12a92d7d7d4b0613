//! `audit-svc` binary: the audit service alone, configured by the environment (as in a container).

fn main() -> anyhow::Result<()> {
    ordermesh_platform::grpc::run_main(audit_svc::SERVICE, audit_svc::DEFAULT_PORT, audit_svc::run)
}
