//! gRPC clients of the services: one pooled, lazily connected channel per service and purpose,
//! built by the platform (`channel()`: per-attempt deadline, circuit breaker, retry on
//! UNAVAILABLE). Reads use a channel that retries; writes use one with `max_retries: 0`, since
//! a write that timed out may have happened. The caller's token and correlation id travel with
//! each call ([`CallContext`]).

use std::time::Duration;

use ordermesh_platform::client::{ClientConfig, ResilientChannel, channel};
use ordermesh_platform::mesh::Workload;
use ordermesh_proto::audit::audit_service_client::AuditServiceClient;
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::notification::notification_service_client::NotificationServiceClient;
use ordermesh_proto::ops::ops_service_client::OpsServiceClient;
use ordermesh_proto::order::order_service_client::OrderServiceClient;
use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;
use ordermesh_proto::product::product_service_client::ProductServiceClient;
use tonic_health::pb::health_client::HealthClient;

use crate::BffConfig;

/// A read client (retries UNAVAILABLE) and a write client (never retries) of one service.
#[derive(Clone)]
pub struct Pair<C> {
    pub read: C,
    pub write: C,
}

#[derive(Clone)]
pub struct Clients {
    pub product: Pair<ProductServiceClient<ResilientChannel>>,
    pub customer: Pair<CustomerServiceClient<ResilientChannel>>,
    pub order: Pair<OrderServiceClient<ResilientChannel>>,
    pub payment: Pair<PaymentServiceClient<ResilientChannel>>,
    pub notification: Pair<NotificationServiceClient<ResilientChannel>>,
    pub audit: Pair<AuditServiceClient<ResilientChannel>>,
    /// The health client of every service, for readiness checks.
    health: Vec<(&'static str, HealthClient<ResilientChannel>)>,
    /// The ops API of every service (admin dashboard, dead letters). Never retried: a replay
    /// that timed out may have happened.
    pub ops: Vec<(Workload, OpsServiceClient<ResilientChannel>)>,
}

/// The BFF's client of `callee`: its address, the BFF's workload and TLS.
fn client_config(config: &BffConfig, callee: Workload) -> ClientConfig {
    let url = config.peers.url(callee).to_owned();
    let mut client = ClientConfig::between(config.workload(), callee, url, config.tls.clone());
    client.timeout = config.grpc_timeout;
    client
}

fn pair<C>(config: &BffConfig, callee: Workload, make: fn(ResilientChannel) -> C) -> anyhow::Result<Pair<C>> {
    let mut client = client_config(config, callee);
    let (read, _) = channel(&client)?;
    client.max_retries = 0;
    let (write, _) = channel(&client)?;
    Ok(Pair {
        read: make(read),
        write: make(write),
    })
}

/// A readiness probe answers at once: one short attempt, no retry.
fn health_client(config: &BffConfig, callee: Workload) -> anyhow::Result<HealthClient<ResilientChannel>> {
    let mut client = client_config(config, callee);
    client.timeout = Duration::from_secs(1);
    client.connect_timeout = Duration::from_secs(1);
    client.max_retries = 0;
    Ok(HealthClient::new(channel(&client)?.0))
}

impl Clients {
    pub fn new(config: &BffConfig) -> anyhow::Result<Self> {
        let mut health = Vec::new();
        let mut ops = Vec::new();
        for callee in Workload::SERVICES {
            let name = callee.name().trim_end_matches("-svc");
            health.push((name, health_client(config, callee)?));
            let mut client = client_config(config, callee);
            client.max_retries = 0;
            ops.push((callee, OpsServiceClient::new(channel(&client)?.0)));
        }
        Ok(Self {
            product: pair(config, Workload::Product, ProductServiceClient::new)?,
            customer: pair(config, Workload::Customer, CustomerServiceClient::new)?,
            order: pair(config, Workload::Order, OrderServiceClient::new)?,
            payment: pair(config, Workload::Payment, PaymentServiceClient::new)?,
            notification: pair(config, Workload::Notification, NotificationServiceClient::new)?,
            audit: pair(config, Workload::Audit, AuditServiceClient::new)?,
            health,
            ops,
        })
    }

    /// gRPC health of every service: `(name, serving)`.
    pub async fn health(&self) -> Vec<(&'static str, bool)> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        let checks = self.health.iter().map(|(name, client)| async move {
            let serving = client
                .clone()
                .check(HealthCheckRequest { service: String::new() })
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
            (*name, serving)
        });
        futures::future::join_all(checks).await
    }
}
