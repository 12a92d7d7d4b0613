//! `/api/v1/payments`: reading payments (a client: its own, checked here since payment-svc
//! serves only employees and services), authorising and refunding (employees).
//!
//! payment-svc does not accept client tokens, so for clients the BFF reads with its own
//! workload identity and returns only payments whose `customerId` is the caller's customer
//! (anything else is 404, exactly like an unknown id).

use axum::Json;
use axum::http::HeaderMap;
use axum::response::Response;
use ordermesh_platform::client::CallContext;
use ordermesh_proto::payment as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, created, next_token};
use crate::auth::{Caller, own_customer};
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size, text};
use crate::idempotency;
use crate::models::{CreatePayment, CreateRefund, Payment, PaymentPage, RefundResult};
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListPayments {
    /// Only payments of this order.
    pub order_id: Option<uuid::Uuid>,
    /// Only payments of this customer (employees; a client always sees its own).
    pub customer_id: Option<uuid::Uuid>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// The context of a call the BFF makes with its own identity, for the caller's request.
fn service_ctx(state: &crate::AppState, caller: &Caller) -> ApiResult<CallContext> {
    let token = state.config.credentials.token().map_err(|error| {
        tracing::error!(error = %error, "BFF service credentials unreadable");
        Problem::unavailable("the BFF cannot authenticate to payment-svc")
    })?;
    if token.is_none() {
        tracing::error!("BFF has no service credentials (SERVICE_TOKEN_FILE)");
        return Err(Problem::unavailable("the BFF cannot authenticate to payment-svc"));
    }
    Ok(CallContext {
        bearer_token: token,
        correlation_id: Some(caller.correlation_id.clone()),
    })
}

/// List payments, newest first (a client: its own).
#[utoipa::path(get, path = "/api/v1/payments", tag = "payments", params(ListPayments),
    responses((status = 200, description = "A page of payments", body = PaymentPage)))]
pub async fn list(state: Shared, caller: Caller, ApiQuery(q): ApiQuery<ListPayments>) -> ApiResult<Json<PaymentPage>> {
    let (ctx, customer_id) = if caller.is_client() {
        let own = own_customer(&state, &caller).await?;
        if q.customer_id.is_some_and(|c| c.to_string() != own) {
            return Err(Problem::not_found("customer not found"));
        }
        (service_ctx(&state, &caller)?, own)
    } else {
        (caller.ctx(), q.customer_id.map(|c| c.to_string()).unwrap_or_default())
    };
    let request = pb::ListPaymentsRequest {
        customer_id,
        order_id: q.order_id.map(|o| o.to_string()).unwrap_or_default(),
        page_size: page_size(q.page_size)?,
        page_token: q.page_token.unwrap_or_default(),
        ..Default::default()
    };
    let response = state
        .clients
        .payment
        .read
        .clone()
        .list_payments(ctx.request(request))
        .await?
        .into_inner();
    Ok(Json(PaymentPage {
        items: response.payments.into_iter().map(Payment::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Get a payment (a client: only its own).
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payments",
    params(("id" = uuid::Uuid, Path, description = "Payment id")),
    responses((status = 200, description = "The payment", body = Payment)))]
pub async fn get(state: Shared, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Payment>> {
    let own = if caller.is_client() {
        Some(own_customer(&state, &caller).await?)
    } else {
        None
    };
    let ctx = match own {
        Some(_) => service_ctx(&state, &caller)?,
        None => caller.ctx(),
    };
    // Another customer's payment and an unknown one answer exactly alike.
    let hidden = || Problem::not_found("payment not found");
    let payment = match state
        .clients
        .payment
        .read
        .clone()
        .get_payment(ctx.request(pb::GetPaymentRequest { payment_id: id }))
        .await
    {
        Ok(response) => response.into_inner().payment.ok_or_else(Problem::internal)?,
        Err(status) if own.is_some() && status.code() == tonic::Code::NotFound => return Err(hidden()),
        Err(status) => return Err(status.into()),
    };
    if own.is_some_and(|own| own != payment.customer_id) {
        return Err(hidden());
    }
    Ok(Json(Payment::from_proto(payment)))
}

/// Authorise (and optionally capture) a payment for an order (order managers).
#[utoipa::path(post, path = "/api/v1/payments", tag = "payments", request_body = CreatePayment,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe key of 1-128 visible ASCII characters; a repeat with the same key and body gives the first answer")),
    responses((status = 201, description = "The payment (possibly declined)", body = Payment,
        headers(("Location" = String, description = "URL of the payment")))))]
pub async fn create(
    state: Shared,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreatePayment>,
) -> ApiResult<Response> {
    let key = idempotency::key(&headers)?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    text("paymentMethodToken", &body.payment_method_token, 256)?;
    let request = pb::AuthorizePaymentRequest {
        order_id: body.order_id,
        customer_id: body.customer_id,
        amount: Some(body.amount.to_proto()),
        payment_method_token: body.payment_method_token,
        idempotency_key: key,
        capture: body.capture,
    };
    let payment = state
        .clients
        .payment
        .write
        .clone()
        .authorize_payment(caller.ctx().request(request))
        .await?
        .into_inner()
        .payment
        .ok_or_else(Problem::internal)?;
    let location = format!("/api/v1/payments/{}", payment.id);
    Ok(created(&location, Payment::from_proto(payment)))
}

/// Refund a captured payment, in full or in part (employees).
#[utoipa::path(post, path = "/api/v1/payments/{id}/refunds", tag = "payments",
    params(("id" = uuid::Uuid, Path, description = "Payment id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe key of 1-128 visible ASCII characters; a repeat with the same key and body gives the first answer")),
    request_body = CreateRefund,
    responses((status = 201, description = "The refund and the payment after it", body = RefundResult)))]
pub async fn refund(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRefund>,
) -> ApiResult<Response> {
    let key = idempotency::key(&headers)?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let amount = match body.amount {
        None => None,
        Some(amount) => {
            // In the payment's currency, which the body does not repeat.
            let request = caller.ctx().request(pb::GetPaymentRequest { payment_id: id.clone() });
            let payment = state
                .clients
                .payment
                .read
                .clone()
                .get_payment(request)
                .await?
                .into_inner();
            let currency = payment.payment.and_then(|p| p.amount).map(|m| m.currency_code);
            Some(ordermesh_proto::common::Money {
                amount_minor: amount,
                currency_code: currency.ok_or_else(Problem::internal)?,
            })
        }
    };
    let request = pb::RefundPaymentRequest {
        payment_id: id.clone(),
        amount,
        reason: body.reason,
        idempotency_key: key,
    };
    let response = state
        .clients
        .payment
        .write
        .clone()
        .refund_payment(caller.ctx().request(request))
        .await?
        .into_inner();
    let location = format!("/api/v1/payments/{id}");
    Ok(created(
        &location,
        RefundResult {
            payment: response.payment.map(Payment::from_proto),
            refund: response.refund.map(crate::models::Refund::from_proto),
        },
    ))
}
