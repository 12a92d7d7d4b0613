//! `/api/v1/notifications`: the caller's notifications (list, mark read), sending (customer
//! service) and the live stream (Server-Sent Events; see [`crate::stream`]). Served by
//! notification-svc over gRPC.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use ordermesh_proto::notification as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, created, next_token};
use crate::auth::{Caller, own_customer};
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size};
use crate::models::{
    MarkRead, MarkReadResult, Notification, NotificationPage, NotificationPreferences, NotificationType, Recipient,
    SendNotification, StreamTicket, UpdateNotificationPreferences,
};
use crate::problem::{ApiResult, Problem};
use crate::{feed, idempotency, stream};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListNotifications {
    /// Only unread notifications.
    pub unread_only: Option<bool>,
    /// Only notifications of this type (`unspecified`: of any type).
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
            .filter(|t| *t != NotificationType::Unspecified)
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

/// Mark some (`ids`) or all (`all: true`, which covers any ids given with it) of the caller's
/// notifications read; neither marks nothing and answers the counts.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", request_body = MarkRead,
    responses((status = 200, description = "Counts after the update", body = MarkReadResult)))]
pub async fn mark_read(
    state: Shared,
    caller: Caller,
    ApiJson(body): ApiJson<MarkRead>,
) -> ApiResult<Json<MarkReadResult>> {
    if body.ids.len() > 500 {
        return Err(Problem::invalid_field("ids", "must have at most 500 ids"));
    }
    if let Some(i) = body.ids.iter().position(|id| !is_notification_id(id)) {
        return Err(Problem::invalid_field(format!("ids[{i}]"), "is not a notification id"));
    }
    if body.ids.is_empty() && !body.all {
        // Nothing to mark (notification-svc wants ids or `all`): the counts as they are.
        let request = pb::ListNotificationsRequest {
            unread_only: true,
            page_size: 1,
            ..Default::default()
        };
        let mut notifications = state.clients.notification.read.clone();
        let page = notifications.list_notifications(caller.ctx().request(request)).await?;
        return Ok(Json(MarkReadResult {
            updated_count: 0,
            unread_count: page.into_inner().unread_count,
        }));
    }
    // `all` covers the ids given with it.
    let notification_ids = if body.all { Vec::new() } else { body.ids };
    let response = state
        .clients
        .notification
        .write
        .clone()
        .mark_read(caller.ctx().request(pb::MarkReadRequest {
            notification_ids,
            all: body.all,
        }))
        .await?
        .into_inner();
    Ok(Json(MarkReadResult {
        updated_count: response.updated_count,
        unread_count: response.unread_count,
    }))
}

/// Mark one of the caller's notifications read (the same as `POST /notifications/read` with one
/// id). Idempotent: `updatedCount` is 0 when it was read already, or is not the caller's.
#[utoipa::path(put, path = "/api/v1/notifications/{id}/read", tag = "notifications",
    params(("id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "Notification id")),
    responses((status = 200, description = "Counts after the update", body = MarkReadResult)))]
pub async fn mark_one_read(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<MarkReadResult>> {
    mark_read(
        state,
        caller,
        ApiJson(MarkRead {
            ids: vec![id],
            all: false,
        }),
    )
    .await
}

/// Send a notification to a customer or to every employee with a role (customer service).
#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications", request_body = SendNotification,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe key of 1-128 visible ASCII characters; a repeat with the same key and body gives the first answer")),
    responses((status = 201, description = "The notification", body = Notification)))]
pub async fn send(
    state: Shared,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendNotification>,
) -> ApiResult<Response> {
    let target = match body.recipient {
        Recipient::Customer(c) => pb::recipient::Target::CustomerId(c.customer_id.to_string()),
        Recipient::Role(r) => pb::recipient::Target::Role(r.role.as_str().to_owned()),
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// A stream ticket from `POST /api/v1/notifications/stream-ticket`, instead of the
    /// `Authorization` header (for `EventSource`). Single use.
    pub ticket: Option<String>,
    /// Resume after this notification id (like the `Last-Event-ID` header, which wins when both
    /// are given): the missed notifications are replayed first.
    pub last_event_id: Option<String>,
}

/// The resume point of a stream: a non-empty `Last-Event-ID`, else `lastEventId`; a decimal id
/// or nothing.
fn resume_point(headers: &HeaderMap, query: Option<String>) -> Result<String, Problem> {
    let header = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Problem::invalid_field("Last-Event-ID", "must be a notification id"))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let (field, value) = match header {
        Some(value) if !value.is_empty() => ("Last-Event-ID", value),
        _ => ("lastEventId", query.unwrap_or_default().trim().to_owned()),
    };
    if !value.is_empty() && (value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit())) {
        return Err(Problem::invalid_field(field, "must be a notification id"));
    }
    Ok(value)
}

/// The caller's notifications, live, as Server-Sent Events: each notification is an event with
/// `id:` its id, `event:` its type (`order_status`, `payment`, `message`, `account`, `system`)
/// and `data:` its JSON (as in the list). Comment lines keep idle connections alive. With
/// `Last-Event-ID` (or `lastEventId`) the notifications after that id are replayed first, none
/// twice. Authenticate with the bearer header or a single-use `ticket`. A client that falls
/// behind by a whole buffer is disconnected and resumes with `Last-Event-ID`; at most a few
/// concurrent streams per user (429 beyond).
#[utoipa::path(get, path = "/api/v1/notifications/stream", tag = "notifications",
    params(StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Id of the last notification received")),
    responses((status = 200, description = "An endless stream of notification events",
        content_type = "text/event-stream", body = String)))]
pub async fn stream(
    state: Shared,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamParams>,
) -> ApiResult<Response> {
    let after_id = resume_point(&headers, q.last_event_id)?;
    let Some(slot) = state.streams.acquire(&caller.principal) else {
        let mut problem =
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-streams", "Too many streams").detail(format!(
                "at most {} concurrent notification streams per user; close one first",
                state.config.streams.max_per_principal
            ));
        problem.retry_after = Some(5);
        return Err(problem);
    };
    if !state.feed.ready(state.config.grpc_timeout).await {
        return Err(Problem::unavailable("live notifications are not available right now"));
    }
    // The replay's first page tells the caller's scope; the connection registers under it, and
    // the next page covers whatever was committed meanwhile (see `crate::feed`).
    let mut client = state.clients.notification.read.clone();
    let context = caller.ctx();
    let first = client
        .catch_up(context.request(pb::CatchUpRequest {
            after_id,
            page_size: stream::REPLAY_PAGE,
        }))
        .await?
        .into_inner();
    let (registration, live) = state
        .feed
        .register(feed::Route::scope(&first), state.config.streams.buffer_events);
    let next = client
        .catch_up(context.request(pb::CatchUpRequest {
            after_id: first.cursor.clone(),
            page_size: stream::REPLAY_PAGE,
        }))
        .await?
        .into_inner();
    let cursor = feed::parse_id(&next.cursor)
        .map_err(|_| Problem::unavailable("notification-svc answered an invalid cursor"))?;
    let mut pending = first.notifications;
    pending.extend(next.notifications);
    let replay = stream::Replay {
        client,
        context,
        pending,
        cursor,
        more: next.more,
    };
    let events = stream::body(replay, live, registration, slot, state.shutdown.clone());
    // The first event makes the stream visibly open (and tells EventSource how soon to retry).
    let open = Event::default().retry(Duration::from_secs(3)).comment("stream open");
    let events = futures::stream::once(async move { Ok(open) }).chain(events);
    let sse = Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(state.config.streams.heartbeat)
            .text("heartbeat"),
    );
    let mut response = sse.into_response();
    // Proxies (nginx) must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A single-use ticket for opening the stream without an `Authorization` header (browsers'
/// `EventSource`): `GET /api/v1/notifications/stream?ticket=…` within `expiresIn` seconds.
#[utoipa::path(post, path = "/api/v1/notifications/stream-ticket", tag = "notifications",
    responses((status = 200, description = "The ticket", body = StreamTicket)))]
pub async fn stream_ticket(state: Shared, caller: Caller) -> ApiResult<Json<StreamTicket>> {
    let ttl = state.config.streams.ticket_ttl;
    let ticket = stream::issue_ticket(&state.cache, &caller.token, ttl)
        .await
        .ok_or_else(|| {
            Problem::unavailable("stream tickets cannot be stored right now; use the Authorization header")
        })?;
    Ok(Json(StreamTicket {
        ticket,
        expires_in: ttl.as_secs(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(last: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(last) = last {
            headers.insert("last-event-id", HeaderValue::from_str(last).unwrap());
        }
        headers
    }

    #[test]
    fn the_resume_point_is_the_header_else_the_parameter() {
        assert_eq!(resume_point(&headers(None), None).unwrap(), "");
        assert_eq!(resume_point(&headers(Some("42")), Some("7".into())).unwrap(), "42");
        assert_eq!(resume_point(&headers(None), Some("7".into())).unwrap(), "7");
        assert_eq!(resume_point(&headers(Some("")), Some("7".into())).unwrap(), "7");
        for bad in ["-1", "4 2", "x", "99999999999999999999"] {
            assert!(resume_point(&headers(Some(bad)), None).is_err(), "{bad}");
            assert!(resume_point(&headers(None), Some(bad.into())).is_err(), "{bad}");
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PreferencesOf {
    /// The preferences of this customer instead of the caller's (customer-service and admin).
    pub customer_id: Option<uuid::Uuid>,
}

/// The caller's notification preferences (or a customer's, for customer-service and admin).
#[utoipa::path(get, path = "/api/v1/notifications/preferences", tag = "notifications", params(PreferencesOf),
    responses((status = 200, description = "The preferences", body = NotificationPreferences)))]
pub async fn preferences(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<PreferencesOf>,
) -> ApiResult<Json<NotificationPreferences>> {
    let request = pb::GetPreferencesRequest {
        customer_id: q.customer_id.map(|id| id.to_string()).unwrap_or_default(),
    };
    let prefs = state
        .clients
        .notification
        .read
        .clone()
        .get_preferences(caller.ctx().request(request))
        .await?
        .into_inner()
        .preferences
        .unwrap_or_default();
    Ok(Json(NotificationPreferences::from_proto(prefs)))
}

/// Change notification preferences: the fields present are replaced (none: nothing changes).
#[utoipa::path(put, path = "/api/v1/notifications/preferences", tag = "notifications", params(PreferencesOf),
    request_body = UpdateNotificationPreferences,
    responses((status = 200, description = "The preferences after the change", body = NotificationPreferences)))]
pub async fn update_preferences(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<PreferencesOf>,
    ApiJson(body): ApiJson<UpdateNotificationPreferences>,
) -> ApiResult<Json<NotificationPreferences>> {
    let Some((preferences, paths)) = body.to_proto() else {
        // Nothing to replace: the answer is the preferences as they are.
        return preferences(state, caller, ApiQuery(q)).await;
    };
    let request = pb::UpdatePreferencesRequest {
        preferences: Some(preferences),
        update_mask: Some(prost_types::FieldMask { paths }),
        customer_id: q.customer_id.map(|id| id.to_string()).unwrap_or_default(),
    };
    let prefs = state
        .clients
        .notification
        .write
        .clone()
        .update_preferences(caller.ctx().request(request))
        .await?
        .into_inner()
        .preferences
        .unwrap_or_default();
    Ok(Json(NotificationPreferences::from_proto(prefs)))
}

/// A notification id as the document states it: a positive integer of at most 18 digits.
fn is_notification_id(id: &str) -> bool {
    (1..=18).contains(&id.len()) && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit())
}
