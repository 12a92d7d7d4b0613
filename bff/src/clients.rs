//! gRPC clients of the services: one pooled, lazily connected channel per service and purpose,
//! built by the platform (`channel()`: per-attempt deadline, circuit breaker, retry on
//! UNAVAILABLE). Reads use a channel that retries; writes use one with `max_retries: 0`, since
//! a write that timed out may have happened. The caller's token and correlation id travel with
//! each call ([`CallContext`]).

use std::time::Duration;

use ordermesh_platform::PeerUrls;
use ordermesh_platform::client::{ClientConfig, ResilientChannel, channel};
use ordermesh_proto::audit::audit_service_client::AuditServiceClient;
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::notification::notification_service_client::NotificationServiceClient;
use ordermesh_proto::order::order_service_client::OrderServiceClient;
use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;
use ordermesh_proto::product::product_service_client::ProductServiceClient;

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
    /// Name and address of every service, for readiness checks.
    pub services: Vec<(&'static str, String)>,
}

fn pair<C>(name: &str, url: &str, timeout: Duration, make: fn(ResilientChannel) -> C) -> anyhow::Result<Pair<C>> {
    let mut config = ClientConfig::new(format!("{name}-svc"), url);
    config.timeout = timeout;
    let (read, _) = channel(&config)?;
    config.max_retries = 0;
    let (write, _) = channel(&config)?;
    Ok(Pair {
        read: make(read),
        write: make(write),
    })
}

impl Clients {
    pub fn new(peers: &PeerUrls, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            product: pair("product", &peers.product, timeout, ProductServiceClient::new)?,
            customer: pair("customer", &peers.customer, timeout, CustomerServiceClient::new)?,
            order: pair("order", &peers.order, timeout, OrderServiceClient::new)?,
            payment: pair("payment", &peers.payment, timeout, PaymentServiceClient::new)?,
            notification: pair(
                "notification",
                &peers.notification,
                timeout,
                NotificationServiceClient::new,
            )?,
            audit: pair("audit", &peers.audit, timeout, AuditServiceClient::new)?,
            services: vec![
                ("product", peers.product.clone()),
                ("customer", peers.customer.clone()),
                ("order", peers.order.clone()),
                ("payment", peers.payment.clone()),
                ("notification", peers.notification.clone()),
                ("audit", peers.audit.clone()),
            ],
        })
    }

    /// gRPC health of every service: `(name, serving)`.
    pub async fn health(&self) -> Vec<(&'static str, bool)> {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let checks = self.services.iter().map(|(name, url)| async move {
            let serving = async {
                let channel = tonic::transport::Endpoint::from_shared(url.clone())
                    .ok()?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(1))
                    .connect_lazy();
                let response = HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .ok()?;
                Some(response.into_inner().status == ServingStatus::Serving as i32)
            }
            .await
            .unwrap_or(false);
            (*name, serving)
        });
        futures::future::join_all(checks).await
    }
}
