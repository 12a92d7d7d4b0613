//! `/api/v1/orders`: placing (clients, asynchronous: 202), reading, cancelling, and shipping
//! (order managers).

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordermesh_proto::order as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, next_token};
use crate::auth::{Caller, own_customer};
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size, text, time_range};
use crate::idempotency;
use crate::models::{CreateOrder, Order, OrderPage, OrderStatus, UpdateOrderStatus};
use crate::problem::{ApiResult, Problem};

/// The personal data of an order's JSON, kept out of the idempotency cache.
const SHIPPING_ADDRESS: &str = "shippingAddress";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListOrders {
    /// Only orders in this status (`unspecified`: in any status).
    pub status: Option<OrderStatus>,
    /// Only this customer's orders (employees; a client always sees its own).
    pub customer_id: Option<uuid::Uuid>,
    /// Only orders placed at or after this instant (RFC 3339).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only orders placed before this instant (RFC 3339); none when it is not after `from`.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CancelOrder {
    /// Why (no personal data), at most 500 characters, no control characters; default
    /// "cancelled via the portal".
    #[param(max_length = 500, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub reason: Option<String>,
}

/// Place an order for the caller's own customer.
///
/// Answers at once with the order in status `pending`; stock and payment follow
/// asynchronously. A repeat with the same `Idempotency-Key` and body replays the first
/// answer; the same key with another body is 422.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe key of 1-128 visible ASCII characters; a repeat with the same key and body gives the first answer")),
    responses((status = 202, description = "Accepted; the saga continues asynchronously", body = Order,
        headers(("Location" = String, description = "URL of the order"),
                ("X-Correlation-Id" = String, description = "Correlation id of the order's workflow"))),
        (status = 422, description = "Idempotency key reused with another body", body = crate::problem::ProblemDocument,
            content_type = "application/problem+json")))]
pub async fn create(
    state: Shared,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrder>,
) -> ApiResult<Response> {
    let key = idempotency::key(&headers)?;
    let customer_id = own_customer(&state, &caller).await?;
    let scope = format!("orders:{customer_id}");
    let fingerprint = idempotency::fingerprint(&body);
    if let Some(key) = &key
        && let Some(replay) = idempotency::replay(&state.cache, &scope, key, &fingerprint).await?
    {
        // The address was left out of the cache; it is read back from the order (gone if the
        // customer was erased meanwhile).
        let current = fetch(&state, &caller, replay.resource.clone()).await?;
        let mut body: serde_json::Value = serde_json::from_str(&replay.body).map_err(|_| Problem::internal())?;
        body[SHIPPING_ADDRESS] = serde_json::to_value(&current.shipping_address).map_err(|_| Problem::internal())?;
        return Ok(replay.with_body(body.to_string()));
    }
    text("paymentMethodToken", &body.payment_method_token, 256)?;
    let request = pb::PlaceOrderRequest {
        customer_id,
        items: body
            .items
            .iter()
            .map(|i| pb::PlaceOrderItem {
                product_id: i.product_id.clone(),
                quantity: i.quantity,
            })
            .collect(),
        shipping_address: Some(body.shipping_address.to_proto()),
        payment_method_token: body.payment_method_token.clone(),
        idempotency_key: key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
    };
    let placed = state
        .clients
        .order
        .write
        .clone()
        .place_order(caller.ctx().request(request))
        .await?
        .into_inner();
    let order = Order::from_proto(placed.order.ok_or_else(Problem::internal)?);
    let location = format!("/api/v1/orders/{}", order.id);
    let correlation = if placed.correlation_id.is_empty() {
        caller.correlation_id.clone()
    } else {
        placed.correlation_id
    };
    let json = serde_json::to_string(&order).map_err(|_| Problem::internal())?;
    let headers = [
        (header::CONTENT_TYPE.as_str(), "application/json".to_owned()),
        (header::LOCATION.as_str(), location),
        ("x-correlation-id", correlation),
    ];
    if let Some(key) = &key {
        let record = idempotency::Record {
            cache: &state.cache,
            ttl: state.config.idempotency_ttl,
            scope: &scope,
            key,
            fingerprint: &fingerprint,
        };
        let mut cached = serde_json::to_value(&order).map_err(|_| Problem::internal())?;
        cached[SHIPPING_ADDRESS] = serde_json::Value::Null;
        idempotency::store(record, StatusCode::ACCEPTED, &headers, &cached.to_string(), &order.id).await;
    }
    let mut response = (StatusCode::ACCEPTED, json).into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// List orders, newest first (a client's own; employees any).
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(ListOrders),
    responses((status = 200, description = "A page of orders", body = OrderPage)))]
pub async fn list(state: Shared, caller: Caller, ApiQuery(q): ApiQuery<ListOrders>) -> ApiResult<Json<OrderPage>> {
    let customer_id = if caller.is_client() {
        let own = own_customer(&state, &caller).await?;
        if q.customer_id.is_some_and(|c| c.to_string() != own) {
            return Err(Problem::not_found("customer not found"));
        }
        own
    } else {
        q.customer_id.map(|c| c.to_string()).unwrap_or_default()
    };
    list_for(&state, &caller, customer_id, q).await
}

pub(crate) async fn list_for(
    state: &crate::AppState,
    caller: &Caller,
    customer_id: String,
    q: ListOrders,
) -> ApiResult<Json<OrderPage>> {
    let page_size = page_size(q.page_size)?;
    let Some((created_after, created_before)) = time_range(q.from, q.to) else {
        return Ok(Json(OrderPage {
            items: Vec::new(),
            next_page_token: None,
        }));
    };
    let request = pb::ListOrdersRequest {
        customer_id,
        statuses: q
            .status
            .filter(|s| *s != OrderStatus::Unspecified)
            .map(|s| vec![s.to_proto() as i32])
            .unwrap_or_default(),
        created_after,
        created_before,
        page_size,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .order
        .read
        .clone()
        .list_orders(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(OrderPage {
        items: response.orders.into_iter().map(Order::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Get an order with its history.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses((status = 200, description = "The order", body = Order)))]
pub async fn get(state: Shared, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Order>> {
    Ok(Json(fetch(&state, &caller, id).await?))
}

async fn fetch(state: &crate::AppState, caller: &Caller, id: String) -> ApiResult<Order> {
    let order = state
        .clients
        .order
        .read
        .clone()
        .get_order(caller.ctx().request(pb::GetOrderRequest { order_id: id }))
        .await?
        .into_inner()
        .order
        .ok_or_else(Problem::internal)?;
    Ok(Order::from_proto(order))
}

/// Cancel an order (pending, reserved or confirmed); a paid order is refunded.
#[utoipa::path(delete, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id"), CancelOrder),
    responses((status = 200, description = "The cancelled order", body = Order)))]
pub async fn cancel(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CancelOrder>,
) -> ApiResult<Json<Order>> {
    let reason = q
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "cancelled via the portal".to_owned());
    text("reason", &reason, 500)?;
    let order = state
        .clients
        .order
        .write
        .clone()
        .cancel_order(caller.ctx().request(pb::CancelOrderRequest { order_id: id, reason }))
        .await?
        .into_inner()
        .order
        .ok_or_else(Problem::internal)?;
    Ok(Json(Order::from_proto(order)))
}

/// Ship or deliver an order (order managers).
#[utoipa::path(put, path = "/api/v1/orders/{id}/status", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")), request_body = UpdateOrderStatus,
    responses((status = 200, description = "The order after the transition", body = Order)))]
pub async fn update_status(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateOrderStatus>,
) -> ApiResult<Json<Order>> {
    let request = match body {
        UpdateOrderStatus::Shipped {
            carrier,
            tracking_number,
            note,
        } => pb::UpdateOrderStatusRequest {
            order_id: id,
            status: pb::OrderStatus::Shipped as i32,
            carrier,
            tracking_number,
            note,
        },
        UpdateOrderStatus::Delivered { note } => pb::UpdateOrderStatusRequest {
            order_id: id,
            status: pb::OrderStatus::Delivered as i32,
            note,
            ..Default::default()
        },
    };
    let order = state
        .clients
        .order
        .write
        .clone()
        .update_order_status(caller.ctx().request(request))
        .await?
        .into_inner()
        .order
        .ok_or_else(Problem::internal)?;
    Ok(Json(Order::from_proto(order)))
}
