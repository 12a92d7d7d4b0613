use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::client::{BreakerConfig, CircuitBreaker};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::{ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, PaymentGateway};

#[derive(Debug, Clone)]
pub struct HttpGatewayConfig {
    /// Base URL of the provider's API, e.g. `https://payments.example/api`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; from the environment, never from the repository.
    pub api_key: Option<String>,
    /// Deadline of one HTTP attempt.
    pub timeout: Duration,
    /// Attempts per operation (the first one included).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    /// Upper bound on a provider's `Retry-After` that we are willing to wait inside one call.
    pub max_retry_after: Duration,
    /// Bulkhead: calls in flight at once; more wait up to `queue_timeout`, then fail transiently.
    pub max_concurrency: usize,
    pub queue_timeout: Duration,
    pub breaker: BreakerConfig,
}

impl HttpGatewayConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            base_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
            max_concurrency: 32,
            queue_timeout: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Adapter for a JSON-over-HTTP payment provider:
///
/// - `POST {base}/v1/charges` `{amount, currency, payment_method, reference, capture}`
/// - `POST {base}/v1/captures`, `POST {base}/v1/refunds` and `POST {base}/v1/voids`
///   `{reference, amount, currency}`
///
/// Every request carries `Idempotency-Key`, and a retry reuses it, so the provider performs each
/// operation once however often we ask. 2xx `{id, status: "approved"|"declined", decline_reason}`
/// and 402 are answers; 429 and 5xx are retried with backoff (honouring `Retry-After`); other 4xx
/// are final. Repeated transport failures open the circuit breaker; a semaphore bounds
/// concurrency so a slow provider cannot take every task of the service with it.
pub struct HttpGateway {
    config: HttpGatewayConfig,
    http: reqwest::Client,
    breaker: CircuitBreaker,
    bulkhead: Arc<Semaphore>,
}

#[derive(Deserialize)]
struct ProviderAnswer {
    id: Option<String>,
    status: String,
    decline_reason: Option<String>,
}

enum Attempt {
    Done(GatewayOutcome),
    Final(GatewayError),
    Retry {
        error: GatewayError,
        after: Option<Duration>,
    },
}

impl HttpGateway {
    pub fn new(config: HttpGatewayConfig) -> anyhow::Result<Self> {
        ordermesh_platform::install_crypto_provider();
        let http = reqwest::Client::builder().timeout(config.timeout).build()?;
        let breaker = CircuitBreaker::new("payment-gateway", config.breaker.clone());
        let bulkhead = Arc::new(Semaphore::new(config.max_concurrency));
        Ok(Self {
            config,
            http,
            breaker,
            bulkhead,
        })
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    async fn post(&self, path: &str, key: &str, body: serde_json::Value) -> Result<GatewayOutcome, GatewayError> {
        let _slot = tokio::time::timeout(self.config.queue_timeout, self.bulkhead.acquire())
            .await
            .map_err(|_| GatewayError::Unavailable("too many payment calls in flight".into()))?
            .expect("bulkhead semaphore is never closed");
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let mut attempt = 1;
        loop {
            let permit = self.breaker.try_acquire().map_err(|_| GatewayError::CircuitOpen)?;
            let (outcome, healthy) = match self.attempt(&url, key, &body).await {
                Attempt::Done(outcome) => (Ok(outcome), true),
                Attempt::Final(error) => (Err(error), true),
                Attempt::Retry { error, after } => {
                    permit.record(false);
                    if attempt >= self.config.max_attempts {
                        return Err(error);
                    }
                    let backoff = after
                        .map(|a| a.min(self.config.max_retry_after))
                        .unwrap_or(self.config.base_backoff * 2u32.pow(attempt - 1));
                    tracing::info!(attempt, backoff_ms = backoff.as_millis() as u64, %error, "retrying payment gateway");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                    continue;
                }
            };
            permit.record(healthy);
            return outcome;
        }
    }

    async fn attempt(&self, url: &str, key: &str, body: &serde_json::Value) -> Attempt {
        let mut request = self.http.post(url).header("Idempotency-Key", key).json(body);
        if let Some(api_key) = &self.config.api_key {
            request = request.bearer_auth(api_key);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = GatewayError::Unavailable(error.without_url().to_string());
                return Attempt::Retry { error, after: None };
            }
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Attempt::Retry {
                error: GatewayError::Unavailable(format!("provider answered {status}")),
                after,
            };
        }
        if !(status.is_success() || status.as_u16() == 402) {
            return Attempt::Final(GatewayError::Rejected(format!("provider answered {status}")));
        }
        let answer: ProviderAnswer = match response.json().await {
            Ok(answer) => answer,
            // The operation may have happened; treat as unknown and retry with the same key.
            Err(error) => {
                let error = GatewayError::Unavailable(format!("unreadable provider answer: {}", error.without_url()));
                return Attempt::Retry { error, after: None };
            }
        };
        match (answer.status.as_str(), answer.id) {
            ("approved", Some(id)) => Attempt::Done(GatewayOutcome::Approved { gateway_reference: id }),
            ("declined", _) => Attempt::Done(GatewayOutcome::Declined {
                reason: answer.decline_reason.unwrap_or_else(|| "declined".into()),
            }),
            (other, _) => Attempt::Final(GatewayError::Rejected(format!("unexpected provider status {other:?}"))),
        }
    }
}

#[async_trait::async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<GatewayOutcome, GatewayError> {
        let body = json!({
            "amount": request.amount.minor, "currency": request.amount.currency,
            "payment_method": request.payment_method_token, "reference": request.reference,
            "capture": request.capture,
        });
        self.post("/v1/charges", &request.idempotency_key, body).await
    }

    async fn capture(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        let body = json!({"reference": request.gateway_reference, "amount": request.amount.minor,
                          "currency": request.amount.currency});
        self.post("/v1/captures", &request.idempotency_key, body).await
    }

    async fn refund(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        let body = json!({"reference": request.gateway_reference, "amount": request.amount.minor,
                          "currency": request.amount.currency});
        self.post("/v1/refunds", &request.idempotency_key, body).await
    }

    async fn void(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        let body = json!({"reference": request.gateway_reference, "amount": request.amount.minor,
                          "currency": request.amount.currency});
        self.post("/v1/voids", &request.idempotency_key, body).await
    }
}
