//! The payment gateway port and its adapters: a sandbox whose outcome is chosen by the
//! payment-method token (for development and tests), and an HTTP adapter for a real provider.

use std::sync::Arc;

mod http;
mod sandbox;

pub use self::http::{HttpGateway, HttpGatewayConfig};
pub use sandbox::SandboxGateway;

/// An amount in minor units of `currency` (ISO-4217).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Amount {
    pub minor: i64,
    pub currency: String,
}

/// Authorize (and, when `capture` is set, capture in the same step) a charge.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// Sent as `Idempotency-Key`: the gateway performs the charge at most once per key.
    pub idempotency_key: String,
    pub amount: Amount,
    pub payment_method_token: String,
    /// Our reference (the order id); no personal data.
    pub reference: String,
    pub capture: bool,
}

/// Capture, void or refund against an earlier gateway operation.
#[derive(Debug, Clone)]
pub struct FollowUpRequest {
    pub idempotency_key: String,
    /// The gateway's reference of the authorization (capture, void) or capture (refund).
    pub gateway_reference: String,
    pub amount: Amount,
}

/// The gateway's answer to a request it processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    Approved {
        gateway_reference: String,
    },
    /// A business refusal: final, not to be retried.
    Declined {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Transient: the outcome is unknown or the gateway is unreachable. Retrying with the SAME
    /// idempotency key is safe.
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
    /// The breaker is open; no request was sent.
    #[error("payment gateway circuit is open")]
    CircuitOpen,
    /// The gateway refused the request as malformed; retrying will not help.
    #[error("payment gateway rejected the request: {0}")]
    Rejected(String),
}

impl GatewayError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::CircuitOpen)
    }
}

#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn charge(&self, request: &ChargeRequest) -> Result<GatewayOutcome, GatewayError>;
    async fn capture(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError>;
    async fn refund(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError>;
    /// Releases an authorization that will not be captured.
    async fn void(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError>;
}

/// The gateway of the environment: [`HttpGateway`] on `PAYMENT_GATEWAY_URL` (with
/// `PAYMENT_GATEWAY_API_KEY` as its bearer key, if set), else the [`SandboxGateway`].
pub fn from_env(env: &ordermesh_platform::Env) -> anyhow::Result<Arc<dyn PaymentGateway>> {
    match env.optional("PAYMENT_GATEWAY_URL") {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "PAYMENT_GATEWAY_URL must be an http:// or https:// URL"
            );
            let mut config = HttpGatewayConfig::new(url);
            config.api_key = env.optional("PAYMENT_GATEWAY_API_KEY");
            Ok(Arc::new(HttpGateway::new(config)?))
        }
        None => {
            tracing::info!("PAYMENT_GATEWAY_URL not set: using the sandbox payment gateway");
            Ok(Arc::new(SandboxGateway::new()))
        }
    }
}
