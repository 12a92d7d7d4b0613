use std::collections::HashMap;
use std::sync::Mutex;

use super::{ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, PaymentGateway};

/// The sandbox gateway. The payment-method token picks the outcome:
///
/// | token | outcome |
/// |---|---|
/// | `tok_approved` (or any `tok_approved_*`) | approved |
/// | `tok_declined` | declined: `card_declined` |
/// | `tok_insufficient_funds` | declined: `insufficient_funds` |
/// | `tok_gateway_error` | transient gateway error (retry later) |
/// | anything else | declined: `invalid_payment_method` |
///
/// Like a real provider it answers a repeated idempotency key with the first answer.
#[derive(Default)]
pub struct SandboxGateway {
    seen: Mutex<HashMap<String, GatewayOutcome>>,
}

impl SandboxGateway {
    pub fn new() -> Self {
        Self::default()
    }

    fn once(&self, key: &str, outcome: impl FnOnce() -> GatewayOutcome) -> GatewayOutcome {
        self.seen
            .lock()
            .expect("sandbox lock")
            .entry(key.to_owned())
            .or_insert_with(outcome)
            .clone()
    }

    fn approve(kind: &str) -> GatewayOutcome {
        GatewayOutcome::Approved {
            gateway_reference: format!("sbx_{kind}_{}", uuid::Uuid::now_v7().simple()),
        }
    }
}

#[async_trait::async_trait]
impl PaymentGateway for SandboxGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<GatewayOutcome, GatewayError> {
        let token = request.payment_method_token.as_str();
        let declined = |reason: &str| GatewayOutcome::Declined {
            reason: reason.to_owned(),
        };
        let outcome = match token {
            "tok_gateway_error" => return Err(GatewayError::Unavailable("sandbox gateway error".into())),
            t if t == "tok_approved" || t.starts_with("tok_approved_") => {
                self.once(&request.idempotency_key, || Self::approve("ch"))
            }
            "tok_declined" => self.once(&request.idempotency_key, || declined("card_declined")),
            "tok_insufficient_funds" => self.once(&request.idempotency_key, || declined("insufficient_funds")),
            _ => self.once(&request.idempotency_key, || declined("invalid_payment_method")),
        };
        Ok(outcome)
    }

    async fn capture(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        Ok(self.once(&request.idempotency_key, || Self::approve("cp")))
    }

    async fn refund(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        Ok(self.once(&request.idempotency_key, || Self::approve("re")))
    }

    async fn void(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        Ok(self.once(&request.idempotency_key, || Self::approve("vd")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Amount;
    use super::*;

    fn charge(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            amount: Amount {
                minor: 1999,
                currency: "EUR".into(),
            },
            payment_method_token: token.into(),
            reference: "order-1".into(),
            capture: true,
        }
    }

    #[tokio::test]
    async fn token_chooses_the_outcome() {
        let gateway = SandboxGateway::new();
        assert!(matches!(
            gateway.charge(&charge("tok_approved", "a")).await,
            Ok(GatewayOutcome::Approved { .. })
        ));
        assert_eq!(
            gateway.charge(&charge("tok_insufficient_funds", "b")).await,
            Ok(GatewayOutcome::Declined {
                reason: "insufficient_funds".into()
            })
        );
        assert_eq!(
            gateway.charge(&charge("tok_declined", "c")).await,
            Ok(GatewayOutcome::Declined {
                reason: "card_declined".into()
            })
        );
        assert!(
            gateway
                .charge(&charge("tok_gateway_error", "d"))
                .await
                .unwrap_err()
                .is_transient()
        );
    }

    #[tokio::test]
    async fn a_repeated_key_gets_the_first_answer() {
        let gateway = SandboxGateway::new();
        let first = gateway.charge(&charge("tok_approved", "k")).await.unwrap();
        assert_eq!(gateway.charge(&charge("tok_approved", "k")).await.unwrap(), first);
    }
}
