//! The payment API's messages and the domain: requests are validated into domain commands,
//! payments and refunds are written out. Times, money and actors go through the platform's
//! shared conversions ([`ordermesh_platform::convert`]).

use ordermesh_platform::convert::timestamp;
use ordermesh_platform::validate::{self, Money};
use ordermesh_platform::{ServiceError, Violations};
use ordermesh_proto::common;
use ordermesh_proto::payment as pb;

use crate::domain::{
    Authorize, FollowUp, MAX_KEY_LEN, MAX_REASON_LEN, MAX_TOKEN_LEN, PaymentFilter, PaymentStatus, PaymentView, Refund,
    RefundStatus, Transaction, TransactionKind, TransactionStatus,
};

/// A money field that must be > 0.
fn positive_money(v: &mut Violations, field: &str, value: Option<&common::Money>, required: bool) -> Option<Money> {
    let money = validate::money(v, field, value, required, false)?;
    if money.amount_minor == 0 {
        v.add(format!("{field}.amount_minor"), "must be greater than zero");
        return None;
    }
    Some(money)
}

impl TryFrom<&pb::AuthorizePaymentRequest> for Authorize {
    type Error = ServiceError;

    fn try_from(req: &pb::AuthorizePaymentRequest) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let order_id = validate::uuid(&mut v, "order_id", &req.order_id);
        let customer_id = validate::uuid(&mut v, "customer_id", &req.customer_id);
        let amount = positive_money(&mut v, "amount", req.amount.as_ref(), true);
        validate::length(
            &mut v,
            "payment_method_token",
            &req.payment_method_token,
            1,
            MAX_TOKEN_LEN,
        );
        validate::length(&mut v, "idempotency_key", &req.idempotency_key, 1, MAX_KEY_LEN);
        v.into_result()?;
        Ok(Self {
            order_id: order_id.expect("validated"),
            customer_id: customer_id.expect("validated"),
            amount: amount.expect("validated"),
            payment_method_token: req.payment_method_token.clone(),
            idempotency_key: req.idempotency_key.clone(),
            capture: req.capture,
        })
    }
}

impl TryFrom<&pb::CapturePaymentRequest> for FollowUp {
    type Error = ServiceError;

    fn try_from(req: &pb::CapturePaymentRequest) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let payment_id = validate::uuid(&mut v, "payment_id", &req.payment_id);
        let amount = positive_money(&mut v, "amount", req.amount.as_ref(), false);
        validate::length(&mut v, "idempotency_key", &req.idempotency_key, 1, MAX_KEY_LEN);
        v.into_result()?;
        Ok(Self {
            kind: TransactionKind::Capture,
            payment_id: payment_id.expect("validated"),
            amount,
            reason: String::new(),
            idempotency_key: req.idempotency_key.clone(),
        })
    }
}

impl TryFrom<&pb::VoidPaymentRequest> for FollowUp {
    type Error = ServiceError;

    fn try_from(req: &pb::VoidPaymentRequest) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let payment_id = validate::uuid(&mut v, "payment_id", &req.payment_id);
        validate::length(&mut v, "reason", &req.reason, 0, MAX_REASON_LEN);
        validate::length(&mut v, "idempotency_key", &req.idempotency_key, 1, MAX_KEY_LEN);
        v.into_result()?;
        Ok(Self {
            kind: TransactionKind::Void,
            payment_id: payment_id.expect("validated"),
            amount: None,
            reason: req.reason.clone(),
            idempotency_key: req.idempotency_key.clone(),
        })
    }
}

impl TryFrom<&pb::RefundPaymentRequest> for FollowUp {
    type Error = ServiceError;

    fn try_from(req: &pb::RefundPaymentRequest) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let payment_id = validate::uuid(&mut v, "payment_id", &req.payment_id);
        let amount = positive_money(&mut v, "amount", req.amount.as_ref(), false);
        validate::length(&mut v, "reason", &req.reason, 1, MAX_REASON_LEN);
        validate::length(&mut v, "idempotency_key", &req.idempotency_key, 1, MAX_KEY_LEN);
        v.into_result()?;
        Ok(Self {
            kind: TransactionKind::Refund,
            payment_id: payment_id.expect("validated"),
            amount,
            reason: req.reason.clone(),
            idempotency_key: req.idempotency_key.clone(),
        })
    }
}

impl TryFrom<&pb::ListPaymentsRequest> for PaymentFilter {
    type Error = ServiceError;

    fn try_from(req: &pb::ListPaymentsRequest) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let customer_id = validate::optional_uuid(&mut v, "customer_id", &req.customer_id);
        let order_id = validate::optional_uuid(&mut v, "order_id", &req.order_id);
        let status = match pb::PaymentStatus::try_from(req.status) {
            Ok(status) => payment_status_filter(status),
            Err(_) => {
                v.add("status", "is not a PaymentStatus");
                None
            }
        };
        v.into_result()?;
        Ok(Self {
            customer_id,
            order_id,
            status,
        })
    }
}

/// The status a list is filtered by; `UNSPECIFIED` is no filter.
fn payment_status_filter(status: pb::PaymentStatus) -> Option<PaymentStatus> {
    Some(match status {
        pb::PaymentStatus::Unspecified => return None,
        pb::PaymentStatus::Authorized => PaymentStatus::Authorized,
        pb::PaymentStatus::Captured => PaymentStatus::Captured,
        pb::PaymentStatus::Declined => PaymentStatus::Declined,
        pb::PaymentStatus::Failed => PaymentStatus::Failed,
        pb::PaymentStatus::PartiallyRefunded => PaymentStatus::PartiallyRefunded,
        pb::PaymentStatus::Refunded => PaymentStatus::Refunded,
        pb::PaymentStatus::Voided => PaymentStatus::Voided,
    })
}

/// `PENDING` (the authorisation was sent, its outcome is not recorded yet) has no value of its
/// own in the API: it is reported as `PAYMENT_STATUS_UNSPECIFIED`.
fn payment_status(status: PaymentStatus) -> pb::PaymentStatus {
    match status {
        PaymentStatus::Pending => pb::PaymentStatus::Unspecified,
        PaymentStatus::Authorized => pb::PaymentStatus::Authorized,
        PaymentStatus::Captured => pb::PaymentStatus::Captured,
        PaymentStatus::Declined => pb::PaymentStatus::Declined,
        PaymentStatus::Failed => pb::PaymentStatus::Failed,
        PaymentStatus::PartiallyRefunded => pb::PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
        PaymentStatus::Voided => pb::PaymentStatus::Voided,
    }
}

/// A payment with its transactions and refunds, every amount in the payment's currency.
pub fn payment(view: &PaymentView) -> pb::Payment {
    let p = &view.payment;
    let currency = p.amount.currency_code.as_str();
    pb::Payment {
        id: p.id.to_string(),
        order_id: p.order_id.to_string(),
        customer_id: p.customer_id.to_string(),
        amount: Some((&p.amount).into()),
        captured_amount: Some(p.money(p.captured_minor).into()),
        refunded_amount: Some(p.money(p.refunded_minor).into()),
        status: payment_status(p.status) as i32,
        decline_reason: p.decline_reason.clone(),
        gateway_reference: p.gateway_reference.clone(),
        transactions: view.transactions.iter().map(|t| transaction(t, currency)).collect(),
        refunds: view.refunds.iter().map(|r| refund(r, currency)).collect(),
        create_time: Some(timestamp(p.create_time)),
        update_time: Some(timestamp(p.update_time)),
    }
}

fn transaction(t: &Transaction, currency: &str) -> pb::Transaction {
    pb::Transaction {
        id: t.id.to_string(),
        kind: match t.kind {
            TransactionKind::Authorize => pb::TransactionKind::Authorize,
            TransactionKind::Capture => pb::TransactionKind::Capture,
            TransactionKind::Refund => pb::TransactionKind::Refund,
            TransactionKind::Void => pb::TransactionKind::Void,
        } as i32,
        amount: Some(money(t.amount_minor, currency)),
        gateway_reference: t.gateway_reference.clone(),
        // PENDING (sent, outcome unknown) has no API value.
        status: match t.status {
            TransactionStatus::Pending => pb::TransactionStatus::Unspecified,
            TransactionStatus::Succeeded => pb::TransactionStatus::Succeeded,
            TransactionStatus::Declined => pb::TransactionStatus::Declined,
            TransactionStatus::Failed => pb::TransactionStatus::Failed,
        } as i32,
        failure_reason: t.failure_reason.clone(),
        // The API's create_time is when the operation completed: when its outcome was recorded.
        create_time: Some(timestamp(t.update_time)),
    }
}

/// A refund; `currency` is its payment's.
pub fn refund(refund: &Refund, currency: &str) -> pb::Refund {
    pb::Refund {
        id: refund.id.to_string(),
        payment_id: refund.payment_id.to_string(),
        amount: Some(money(refund.amount_minor, currency)),
        reason: refund.reason.clone(),
        status: match refund.status {
            RefundStatus::Pending => pb::RefundStatus::Pending,
            RefundStatus::Succeeded => pb::RefundStatus::Succeeded,
            RefundStatus::Failed => pb::RefundStatus::Failed,
        } as i32,
        gateway_reference: refund.gateway_reference.clone(),
        requested_by: Some((&refund.requested_by).into()),
        create_time: Some(timestamp(refund.create_time)),
    }
}

fn money(amount_minor: i64, currency: &str) -> common::Money {
    common::Money {
        amount_minor,
        currency_code: currency.to_owned(),
    }
}

/// Revenue of one currency (a day's or the range's).
pub fn revenue(r: &crate::domain::DayRevenue) -> pb::Revenue {
    pb::Revenue {
        currency_code: r.currency.clone(),
        captured_minor: r.captured_minor,
        refunded_minor: r.refunded_minor,
        net_minor: r.captured_minor - r.refunded_minor,
    }
}
