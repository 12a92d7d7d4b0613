//! Payments, their gateway transactions and refunds: types, validated requests (read from the
//! wire in [`crate::convert`]) and the state rules. No I/O: the store persists what these
//! functions decide, the service layer ([`crate::service`]) calls the gateway between the two.
//!
//! Every gateway operation is a [`Transaction`] row. It is written as `PENDING` (the intent)
//! before the gateway is called, carrying the caller's idempotency key and a hash of the request,
//! and settled (SUCCEEDED / DECLINED / FAILED) together with the payment's new state and its
//! event in one database transaction after the gateway answered.

use chrono::{DateTime, Utc};
use ordermesh_platform::validate::Money;
use ordermesh_platform::{Actor, ServiceError};
use sha2::Digest;
use uuid::Uuid;

macro_rules! string_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(value: &str) -> Option<Self> {
                match value { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

string_enum!(PaymentStatus {
    Pending = "PENDING",
    Authorized = "AUTHORIZED",
    Captured = "CAPTURED",
    Declined = "DECLINED",
    Failed = "FAILED",
    PartiallyRefunded = "PARTIALLY_REFUNDED",
    Refunded = "REFUNDED",
    Voided = "VOIDED",
});

string_enum!(TransactionKind {
    Authorize = "AUTHORIZE",
    Capture = "CAPTURE",
    Refund = "REFUND",
    Void = "VOID",
});

string_enum!(TransactionStatus {
    Pending = "PENDING",
    Succeeded = "SUCCEEDED",
    Declined = "DECLINED",
    Failed = "FAILED",
});

string_enum!(RefundStatus {
    Pending = "PENDING",
    Succeeded = "SUCCEEDED",
    Failed = "FAILED",
});

impl PaymentStatus {
    /// Statuses that hold the order's one payment slot (all but DECLINED and FAILED).
    pub fn is_active(self) -> bool {
        !matches!(self, Self::Declined | Self::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// Amount authorised; its currency is the currency of every operation on the payment.
    pub amount: Money,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub status: PaymentStatus,
    /// The gateway's decline or failure code; empty unless DECLINED or FAILED.
    pub decline_reason: String,
    /// The gateway's reference of the authorisation.
    pub gateway_reference: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Payment {
    pub fn money(&self, amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency_code: self.amount.currency_code.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub kind: TransactionKind,
    pub amount_minor: i64,
    pub status: TransactionStatus,
    pub gateway_reference: String,
    pub failure_reason: String,
    /// The caller's idempotency key (unique); `None` for rows recorded alongside another
    /// operation (the capture of a one-step charge).
    pub idempotency_key: Option<String>,
    /// Hash of the request that used the key; a repeat with another request is refused.
    pub request_hash: String,
    /// AUTHORIZE only: capture right after a successful authorisation.
    pub capture: bool,
    /// REFUND only: the refund this operation performs.
    pub refund_id: Option<Uuid>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount_minor: i64,
    pub reason: String,
    pub status: RefundStatus,
    pub gateway_reference: String,
    pub requested_by: Actor,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A payment with its transactions and refunds, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub payment: Payment,
    pub transactions: Vec<Transaction>,
    pub refunds: Vec<Refund>,
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Request limits, checked where requests are read ([`crate::convert`]).
pub const MAX_KEY_LEN: usize = 128;
pub const MAX_TOKEN_LEN: usize = 256;
pub const MAX_REASON_LEN: usize = 500;

/// Hash binding an idempotency key to the request it was first used with.
pub fn request_hash(parts: &[&str]) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

/// A validated AuthorizePayment request.
#[derive(Debug, Clone)]
pub struct Authorize {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Money,
    pub payment_method_token: String,
    pub idempotency_key: String,
    pub capture: bool,
}

impl Authorize {
    pub fn hash(&self) -> String {
        request_hash(&[
            "authorize",
            &self.order_id.to_string(),
            &self.customer_id.to_string(),
            &self.amount.amount_minor.to_string(),
            &self.amount.currency_code,
            &self.payment_method_token,
            if self.capture { "capture" } else { "hold" },
        ])
    }
}

/// A validated CapturePayment, VoidPayment or RefundPayment request: the follow-up operations
/// on an existing payment.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub kind: TransactionKind,
    pub payment_id: Uuid,
    /// `None`: the whole authorised amount (capture), everything refundable (refund); always
    /// `None` for a void.
    pub amount: Option<Money>,
    pub reason: String,
    pub idempotency_key: String,
}

impl FollowUp {
    pub fn hash(&self) -> String {
        let amount = self
            .amount
            .as_ref()
            .map(|m| format!("{} {}", m.amount_minor, m.currency_code))
            .unwrap_or_default();
        request_hash(&[self.kind.as_str(), &self.payment_id.to_string(), &amount, &self.reason])
    }
}

/// The same idempotency key was first used for another request.
pub fn key_reused() -> ServiceError {
    ServiceError::precondition(
        "IDEMPOTENCY_KEY_REUSED",
        "this idempotency key was already used for a different request; use a new key for a new operation",
    )
}

fn state_error(payment: &Payment, action: &str) -> ServiceError {
    ServiceError::precondition(
        "PAYMENT_STATE",
        format!(
            "the payment is {} and cannot be {action}",
            payment.status.as_str().to_lowercase().replace('_', " ")
        ),
    )
}

fn currency_matches(payment: &Payment, amount: &Money) -> Result<(), ServiceError> {
    if amount.currency_code != payment.amount.currency_code {
        return Err(ServiceError::invalid(
            "amount.currency_code",
            format!("must be the payment's currency {}", payment.amount.currency_code),
        ));
    }
    Ok(())
}

/// Amount of refunds sent to the gateway whose outcome is not recorded yet.
pub fn pending_refunds(transactions: &[Transaction]) -> i64 {
    transactions
        .iter()
        .filter(|t| t.kind == TransactionKind::Refund && t.status == TransactionStatus::Pending)
        .map(|t| t.amount_minor)
        .sum()
}

/// What remains refundable: captured − refunded − refunds in flight.
pub fn refundable(payment: &Payment, transactions: &[Transaction]) -> i64 {
    payment.captured_minor - payment.refunded_minor - pending_refunds(transactions)
}

/// Checks that `op` may start on `payment` (with its `transactions`) and returns the amount of
/// the gateway operation.
pub fn check_follow_up(op: &FollowUp, payment: &Payment, transactions: &[Transaction]) -> Result<i64, ServiceError> {
    if let Some(amount) = &op.amount {
        currency_matches(payment, amount)?;
    }
    let in_flight = transactions
        .iter()
        .any(|t| t.status == TransactionStatus::Pending && t.kind != TransactionKind::Refund);
    match op.kind {
        TransactionKind::Capture | TransactionKind::Void => {
            let action = if op.kind == TransactionKind::Capture {
                "captured"
            } else {
                "voided"
            };
            if payment.status != PaymentStatus::Authorized {
                return Err(state_error(payment, action));
            }
            if in_flight {
                return Err(ServiceError::precondition(
                    "OPERATION_IN_PROGRESS",
                    "another capture or void of this payment is in progress; retry it with its idempotency key",
                ));
            }
            let amount = op
                .amount
                .as_ref()
                .map_or(payment.amount.amount_minor, |m| m.amount_minor);
            if amount > payment.amount.amount_minor {
                return Err(ServiceError::precondition(
                    "AMOUNT_EXCEEDS_AUTHORIZATION",
                    format!(
                        "cannot capture {amount}: only {} was authorised",
                        payment.amount.amount_minor
                    ),
                ));
            }
            Ok(if op.kind == TransactionKind::Void {
                payment.amount.amount_minor
            } else {
                amount
            })
        }
        TransactionKind::Refund => {
            if !matches!(
                payment.status,
                PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
            ) {
                return Err(state_error(payment, "refunded"));
            }
            let left = refundable(payment, transactions);
            let amount = op.amount.as_ref().map_or(left, |m| m.amount_minor);
            if left <= 0 {
                return Err(ServiceError::precondition(
                    "NOTHING_TO_REFUND",
                    "nothing remains refundable on this payment",
                ));
            }
            if amount > left {
                return Err(ServiceError::precondition(
                    "AMOUNT_EXCEEDS_REFUNDABLE",
                    format!("cannot refund {amount}: only {left} remains refundable (captured minus refunded)"),
                ));
            }
            Ok(amount)
        }
        TransactionKind::Authorize => Err(ServiceError::internal(anyhow::anyhow!(
            "authorize is not a follow-up operation"
        ))),
    }
}

/// The gateway's final answer to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved {
        gateway_reference: String,
    },
    /// A business refusal.
    Declined {
        reason: String,
    },
    /// A technical failure that retrying will not fix (the gateway rejected the request).
    Failed {
        reason: String,
    },
}

/// What an outcome changes, and the event it publishes.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub payment: Payment,
    pub transaction: Transaction,
    /// The capture recorded with a successful one-step charge.
    pub extra: Option<Transaction>,
    pub refund: Option<Refund>,
    pub event: Option<PaymentEvent>,
}

/// The events of payment-svc (topic `payment-events`), built into protobuf messages by
/// [`crate::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    Authorized,
    Captured { amount_minor: i64 },
    Declined { reason: String },
    Failed { amount_minor: i64, reason: String },
    Refunded { refund: Box<Refund> },
    Voided { reason: String },
}

/// Applies `outcome` to the PENDING `transaction` of `payment` (and its `refund`, if a refund).
/// `void_reason` is the reason given to VoidPayment (carried by PaymentVoided).
pub fn settle(
    payment: &Payment,
    transaction: &Transaction,
    refund: Option<&Refund>,
    outcome: &Outcome,
    void_reason: &str,
    now: DateTime<Utc>,
) -> Settlement {
    let mut p = payment.clone();
    let mut t = transaction.clone();
    let mut r = refund.cloned();
    let mut extra = None;
    p.update_time = now;
    t.update_time = now;
    let event = match outcome {
        Outcome::Approved { gateway_reference } => {
            t.status = TransactionStatus::Succeeded;
            t.gateway_reference = gateway_reference.clone();
            match t.kind {
                TransactionKind::Authorize => {
                    p.gateway_reference = gateway_reference.clone();
                    if t.capture {
                        p.status = PaymentStatus::Captured;
                        p.captured_minor = t.amount_minor;
                        extra = Some(Transaction {
                            id: Uuid::now_v7(),
                            kind: TransactionKind::Capture,
                            idempotency_key: None,
                            request_hash: String::new(),
                            capture: false,
                            ..t.clone()
                        });
                        Some(PaymentEvent::Captured {
                            amount_minor: t.amount_minor,
                        })
                    } else {
                        p.status = PaymentStatus::Authorized;
                        Some(PaymentEvent::Authorized)
                    }
                }
                TransactionKind::Capture => {
                    p.status = PaymentStatus::Captured;
                    p.captured_minor = t.amount_minor;
                    Some(PaymentEvent::Captured {
                        amount_minor: t.amount_minor,
                    })
                }
                TransactionKind::Void => {
                    p.status = PaymentStatus::Voided;
                    Some(PaymentEvent::Voided {
                        reason: void_reason.to_owned(),
                    })
                }
                TransactionKind::Refund => {
                    p.refunded_minor += t.amount_minor;
                    p.status = if p.refunded_minor >= p.captured_minor {
                        PaymentStatus::Refunded
                    } else {
                        PaymentStatus::PartiallyRefunded
                    };
                    r.as_mut().map(|r| {
                        r.status = RefundStatus::Succeeded;
                        r.gateway_reference = gateway_reference.clone();
                        r.update_time = now;
                        PaymentEvent::Refunded {
                            refund: Box::new(r.clone()),
                        }
                    })
                }
            }
        }
        Outcome::Declined { reason } | Outcome::Failed { reason } => {
            let declined = matches!(outcome, Outcome::Declined { .. });
            t.status = if declined {
                TransactionStatus::Declined
            } else {
                TransactionStatus::Failed
            };
            t.failure_reason = reason.clone();
            match t.kind {
                TransactionKind::Authorize => {
                    p.decline_reason = reason.clone();
                    if declined {
                        p.status = PaymentStatus::Declined;
                        Some(PaymentEvent::Declined { reason: reason.clone() })
                    } else {
                        p.status = PaymentStatus::Failed;
                        Some(PaymentEvent::Failed {
                            amount_minor: t.amount_minor,
                            reason: reason.clone(),
                        })
                    }
                }
                TransactionKind::Capture => {
                    // The authorisation could not be captured: the payment failed.
                    p.status = PaymentStatus::Failed;
                    p.decline_reason = reason.clone();
                    Some(PaymentEvent::Failed {
                        amount_minor: t.amount_minor,
                        reason: reason.clone(),
                    })
                }
                // A refused void or refund leaves the payment as it was; the transaction (and
                // refund) record the refusal.
                TransactionKind::Void => None,
                TransactionKind::Refund => {
                    if let Some(r) = r.as_mut() {
                        r.status = RefundStatus::Failed;
                        r.update_time = now;
                    }
                    None
                }
            }
        }
    };
    Settlement {
        payment: p,
        transaction: t,
        extra,
        refund: r,
        event,
    }
}

/// Filters of ListPayments (also the page-token fingerprint).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PaymentFilter {
    pub customer_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub status: Option<PaymentStatus>,
}

/// Money moved on one day in one currency (minor units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRevenue {
    pub day: chrono::NaiveDate,
    pub currency: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

/// `rows` summed per day and currency (several buckets make a day), oldest first, and the
/// whole range's totals per currency.
pub fn revenue_by_day(rows: &[DayRevenue]) -> (Vec<DayRevenue>, Vec<DayRevenue>) {
    let mut days: std::collections::BTreeMap<(chrono::NaiveDate, String), (i64, i64)> = Default::default();
    let mut totals: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for row in rows {
        let day = days.entry((row.day, row.currency.clone())).or_default();
        day.0 += row.captured_minor;
        day.1 += row.refunded_minor;
        let total = totals.entry(row.currency.clone()).or_default();
        total.0 += row.captured_minor;
        total.1 += row.refunded_minor;
    }
    let days = days
        .into_iter()
        .map(|((day, currency), (captured_minor, refunded_minor))| DayRevenue {
            day,
            currency,
            captured_minor,
            refunded_minor,
        })
        .collect();
    let totals = totals
        .into_iter()
        .map(|(currency, (captured_minor, refunded_minor))| DayRevenue {
            day: chrono::NaiveDate::MIN,
            currency,
            captured_minor,
            refunded_minor,
        })
        .collect();
    (days, totals)
}

#[cfg(test)]
mod tests {
    use ordermesh_platform::convert::now;

    use super::*;

    fn payment(status: PaymentStatus, captured: i64, refunded: i64) -> Payment {
        let now = now();
        Payment {
            id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            amount: Money {
                amount_minor: 1000,
                currency_code: "EUR".into(),
            },
            captured_minor: captured,
            refunded_minor: refunded,
            status,
            decline_reason: String::new(),
            gateway_reference: "ch_1".into(),
            create_time: now,
            update_time: now,
        }
    }

    fn refund(amount: Option<i64>) -> FollowUp {
        FollowUp {
            kind: TransactionKind::Refund,
            payment_id: Uuid::now_v7(),
            amount: amount.map(|a| Money {
                amount_minor: a,
                currency_code: "EUR".into(),
            }),
            reason: "r".into(),
            idempotency_key: "k".into(),
        }
    }

    #[test]
    fn refunds_never_exceed_what_was_captured() {
        let p = payment(PaymentStatus::PartiallyRefunded, 1000, 600);
        assert_eq!(check_follow_up(&refund(None), &p, &[]).unwrap(), 400);
        assert_eq!(check_follow_up(&refund(Some(400)), &p, &[]).unwrap(), 400);
        assert!(check_follow_up(&refund(Some(401)), &p, &[]).is_err());
        let authorized = payment(PaymentStatus::Authorized, 0, 0);
        assert!(check_follow_up(&refund(None), &authorized, &[]).is_err());
    }

    #[test]
    fn request_hash_separates_fields() {
        assert_ne!(request_hash(&["ab", "c"]), request_hash(&["a", "bc"]));
    }
}
