//! `/api/v1/notifications`: the caller's notifications (list, mark read) and sending
//! (customer service). Served by notification-svc over gRPC.

use axum::Json;
use axum::http::HeaderMap;
use axum::response::Response;
use ordermesh_proto::notification as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, created, next_token};
use crate::auth::{Caller, own_customer};
use crate::extract::{ApiJson, ApiQuery, page_size};
use crate::idempotency;
use crate::models::{MarkRead, MarkReadResult, Notification, NotificationPage, NotificationType, SendNotification};
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListNotifications {
    /// Only unread notifications.
    pub unread_only: Option<bool>,
    /// Only notifications of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub notification_type: Option<NotificationType>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", params(ListNotifications),
    responses((status = 200, description = "A page of notifications", body = NotificationPage)))]
pub async fn list(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListNotifications>,
) -> ApiResult<Json<NotificationPage>> {
    let customer_id = if caller.is_client() {
        own_customer(&state, &caller).await?
    } else {
        String::new()
    };
    let request = pb::ListNotificationsRequest {
        unread_only: q.unread_only.unwrap_or(false),
        notification_types: q
            .notification_type
            .map(|t| vec![t.to_proto() as i32])
            .unwrap_or_default(),
        customer_id,
        page_size: page_size(q.page_size)?,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .notification
        .read
        .clone()
        .list_notifications(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(NotificationPage {
        items: response
            .notifications
            .into_iter()
            .map(Notification::from_proto)
            .collect(),
        next_page_token: next_token(response.next_page_token),
        unread_count: response.unread_count,
    }))
}

/// Mark some (`ids`) or all (`all: true`) of the caller's notifications read.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", request_body = MarkRead,
    responses((status = 200, description = "Counts after the update", body = MarkReadResult)))]
pub async fn mark_read(
    state: Shared,
    caller: Caller,
    ApiJson(body): ApiJson<MarkRead>,
) -> ApiResult<Json<MarkReadResult>> {
    if body.ids.is_empty() && !body.all {
        return Err(Problem::bad_request("give notification ids or all: true"));
    }
    let response = state
        .clients
        .notification
        .write
        .clone()
        .mark_read(caller.ctx().request(pb::MarkReadRequest {
            notification_ids: body.ids,
            all: body.all,
        }))
        .await?
        .into_inner();
    Ok(Json(MarkReadResult {
        updated_count: response.updated_count,
        unread_count: response.unread_count,
    }))
}

/// Send a notification to a customer or to every employee with a role (customer service).
#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications", request_body = SendNotification,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key; generated when absent")),
    responses((status = 201, description = "The notification", body = Notification)))]
pub async fn send(
    state: Shared,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendNotification>,
) -> ApiResult<Response> {
    let target = match (body.recipient.customer_id, body.recipient.role) {
        (Some(customer), None) => pb::recipient::Target::CustomerId(customer),
        (None, Some(role)) => pb::recipient::Target::Role(role),
        _ => {
            return Err(Problem::invalid_field(
                "recipient",
                "give exactly one of customerId and role",
            ));
        }
    };
    let key = idempotency::key(&headers)?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let request = pb::SendNotificationRequest {
        recipient: Some(pb::Recipient { target: Some(target) }),
        notification_type: body.notification_type.to_proto() as i32,
        title: body.title,
        body: body.body,
        data: body.data.into_iter().collect(),
        idempotency_key: key,
    };
    let notification = state
        .clients
        .notification
        .write
        .clone()
        .send_notification(caller.ctx().request(request))
        .await?
        .into_inner()
        .notification
        .ok_or_else(Problem::internal)?;
    Ok(created("/api/v1/notifications", Notification::from_proto(notification)))
}
