//! The services order-svc calls, through the platform's resilient channels (deadline, retry on
//! UNAVAILABLE, circuit breaker). Their failures map to our errors with
//! [`ordermesh_platform::client::peer_error`].

use ordermesh_platform::auth::ServiceCredentials;
use ordermesh_platform::client::{CallContext, ResilientChannel, channel};
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::{ServiceConfig, ServiceError};
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;
use ordermesh_proto::product::product_service_client::ProductServiceClient;

#[derive(Clone)]
pub struct Peers {
    pub product: ProductServiceClient<ResilientChannel>,
    pub customer: CustomerServiceClient<ResilientChannel>,
    pub payment: PaymentServiceClient<ResilientChannel>,
    credentials: ServiceCredentials,
}

impl Peers {
    pub fn connect(config: &ServiceConfig) -> anyhow::Result<Self> {
        let (product, _) = channel(&config.client(Workload::Product))?;
        let (customer, _) = channel(&config.client(Workload::Customer))?;
        let (payment, _) = channel(&config.client(Workload::Payment))?;
        Ok(Self {
            product: ProductServiceClient::new(product),
            customer: CustomerServiceClient::new(customer),
            payment: PaymentServiceClient::new(payment),
            credentials: config.credentials.clone(),
        })
    }

    /// Context for calls order-svc makes on its own behalf (saga steps), with its service token.
    pub fn as_service(&self, correlation_id: &str) -> Result<CallContext, ServiceError> {
        let token = self.credentials.token().map_err(ServiceError::Internal)?;
        Ok(CallContext {
            bearer_token: token,
            correlation_id: Some(correlation_id.to_owned()),
        })
    }
}
