//! `ordermesh.notification.v1.NotificationService`: decode, authorize, call the store, map errors.
//!
//! # Who sees what
//!
//! A caller's *scope* is the set of recipients whose notifications it sees:
//! - a **client** sees only its own customer's notifications. Its customer is resolved through
//!   customer-svc `GetCustomerByIdentity` (the caller's token is forwarded); a client with no
//!   linked customer, or asking for anything else, gets NOT_FOUND / an empty result, never
//!   another customer's data. `customer_id` in requests is ignored for clients. Read state
//!   and preferences belong to the customer (`customer:<id>`), shared by all its sessions.
//! - an **employee** sees the notifications of the role groups it holds (an employee with
//!   roles `[order-manager]` sees, lists and subscribes to the `order-manager` group). Read
//!   state and preferences are its own (`employee:<subject>`). With `customer_id`, an employee
//!   with the customer-service or admin role views that customer's notifications (and their
//!   read state) instead; other employees get PERMISSION_DENIED. MarkRead always acts on the
//!   employee's own read state.
//! - a **service** may read any notification (with `customer_id`: that customer's, else all);
//!   it has no read state, so MarkRead is PERMISSION_DENIED.
//! - SendNotification needs an employee with customer-service, order-manager or admin.
//! - no token: UNAUTHENTICATED.
//!
//! # Ids and Subscribe
//!
//! Notification ids are the decimal strings of the store's increasing sequence (see
//! [`crate::domain`]). Subscribe first subscribes to the instance's live feed, THEN replays
//! every notification of the caller's scope with id > `after_id` (empty: > the newest id at
//! subscription time) in id order, then waits on the live feed (fed by the writers' commit
//! hooks, see [`crate::live`]). A live item whose id is not above the last id sent is dropped
//! (already replayed); one above it triggers a catch-up read of the store for everything above
//! the last id sent, in order. Since ids become visible in id order, this gives no gap and no
//! duplicate between replay and live, whatever order the live items of several replicas arrive
//! in. A heartbeat is sent after `heartbeat` without any
//! message. A stream whose live feed lagged (its client reads too slowly) ends with
//! RESOURCE_EXHAUSTED "lagged; resubscribe with after_id"; the stream ends cleanly on shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::client::{CallContext, ResilientChannel, client_customer};
use ordermesh_platform::convert::{now, timestamp};
use ordermesh_platform::grpc::{CorrelationId, caller};
use ordermesh_platform::{ServiceError, Shutdown, Violations, pagination, validate};
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::notification as pb;
use ordermesh_proto::notification::notification_service_server::NotificationService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert;
use crate::domain::{self, Kind, NewNotification, Recipient, Scope};
use crate::events;
use crate::live::{LiveHub, LiveItem, Options};
use crate::store::{Store, View};

const SEND_ROLES: [Role; 3] = [Role::CustomerService, Role::OrderManager, Role::Admin];
const VIEW_CUSTOMER_ROLES: [Role; 2] = [Role::CustomerService, Role::Admin];
/// Rows read per replay / catch-up query.
const REPLAY_BATCH: usize = 500;
const MARK_READ_MAX: usize = 500;

pub struct NotificationApi {
    store: Store,
    hub: LiveHub,
    customers: CustomerServiceClient<ResilientChannel>,
    options: Options,
    /// Ends the Subscribe streams.
    shutdown: Shutdown,
}

/// Whose notifications a call acts on, and whose read state.
struct Caller {
    scope: Scope,
    reader: Option<String>,
}

impl NotificationApi {
    pub fn new(
        store: Store,
        hub: LiveHub,
        customers: CustomerServiceClient<ResilientChannel>,
        options: Options,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            store,
            hub,
            customers,
            options,
            shutdown,
        }
    }

    /// The scope and reader of `principal`, optionally viewing `customer_id` (employees with a
    /// customer role, services; ignored for clients).
    async fn resolve(
        &self,
        principal: &Principal,
        context: &CallContext,
        customer_id: &str,
    ) -> Result<Caller, ServiceError> {
        let viewed = if customer_id.is_empty() || matches!(principal, Principal::Client { .. }) {
            None
        } else {
            Some(Uuid::parse_str(customer_id).map_err(|_| ServiceError::invalid("customer_id", "must be a UUID"))?)
        };
        match principal {
            Principal::Client { issuer, subject } => {
                let customer = client_customer(&self.customers, context, issuer, subject).await?;
                Ok(Caller {
                    scope: Scope::customer(customer),
                    reader: Some(domain::customer_key(customer)),
                })
            }
            Principal::Employee { subject, roles } => match viewed {
                None => Ok(Caller {
                    scope: Scope::roles(roles.iter().copied()),
                    reader: Some(domain::employee_key(subject)),
                }),
                Some(customer) if principal.has_any_role(&VIEW_CUSTOMER_ROLES) => Ok(Caller {
                    scope: Scope::customer(customer),
                    reader: Some(domain::customer_key(customer)),
                }),
                Some(_) => Err(ServiceError::PermissionDenied(
                    "viewing a customer's notifications needs the customer-service or admin role".into(),
                )),
            },
            Principal::Service { .. } => Ok(match viewed {
                Some(customer) => Caller {
                    scope: Scope::customer(customer),
                    reader: Some(domain::customer_key(customer)),
                },
                None => Caller {
                    scope: Scope::everything(),
                    reader: None,
                },
            }),
        }
    }

    async fn list(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<pb::ListNotificationsResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let kinds = convert::kinds(&mut violations, "notification_types", &message.notification_types);
        let limit = match pagination::page_size(message.page_size) {
            Ok(limit) => limit,
            Err(_) => {
                violations.add("page_size", "must not be negative");
                0
            }
        };
        if !message.customer_id.is_empty() && Uuid::parse_str(&message.customer_id).is_err() {
            violations.add("customer_id", "must be a UUID");
        }
        violations.into_result()?;
        let who = self.resolve(&principal, &context, &message.customer_id).await?;
        let kind_names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let filters = (message.unread_only, &kind_names, &message.customer_id);
        let before: Option<i64> = pagination::decode(&message.page_token, &filters)?;
        let view = View {
            scope: &who.scope,
            reader: who.reader.as_deref(),
            kinds: &kinds,
        };
        let rows = self.store.list(&view, message.unread_only, before, limit + 1).await?;
        let (rows, next_page_token) = pagination::finish(rows, limit, &filters, |n| n.id);
        let unread_count = self.store.unread_count(&who.scope, who.reader.as_deref()).await?;
        Ok(pb::ListNotificationsResponse {
            notifications: rows.iter().map(pb::Notification::from).collect(),
            next_page_token,
            unread_count,
        })
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Result<pb::MarkReadResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let mut ids = Vec::with_capacity(message.notification_ids.len());
        if message.all && !message.notification_ids.is_empty() {
            violations.add("notification_ids", "set notification_ids or all, not both");
        } else if !message.all && message.notification_ids.is_empty() {
            violations.add("notification_ids", "is required unless all is set");
        }
        if message.notification_ids.len() > MARK_READ_MAX {
            violations.add("notification_ids", format!("must have at most {MARK_READ_MAX} ids"));
        }
        for (i, raw) in message.notification_ids.iter().enumerate().take(MARK_READ_MAX) {
            match domain::parse_id(raw) {
                Some(id) => ids.push(id),
                None => {
                    violations.add(format!("notification_ids[{i}]"), "is not a notification id");
                }
            }
        }
        violations.into_result()?;
        if matches!(principal, Principal::Service { .. }) {
            return Err(ServiceError::PermissionDenied(
                "services have no notifications to mark as read".into(),
            ));
        }
        let who = self.resolve(&principal, &context, "").await?;
        let reader = who.reader.clone().unwrap_or_default();
        let updated = self
            .store
            .mark_read(&who.scope, &reader, (!message.all).then_some(ids.as_slice()), now())
            .await?;
        let unread_count = self.store.unread_count(&who.scope, Some(&reader)).await?;
        Ok(pb::MarkReadResponse {
            updated_count: updated as i64,
            unread_count,
        })
    }

    async fn send(
        &self,
        request: Request<pb::SendNotificationRequest>,
    ) -> Result<pb::SendNotificationResponse, ServiceError> {
        let principal = caller(&request)?;
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let message = request.into_inner();
        let mut violations = Violations::new();
        let data: BTreeMap<String, String> = message.data.into_iter().collect();
        let target = convert::new_notification_target(
            &mut violations,
            message.recipient.as_ref(),
            message.notification_type,
            Kind::Message,
            &message.title,
            &message.body,
            &data,
        );
        if message.idempotency_key.chars().count() > domain::IDEMPOTENCY_KEY_MAX {
            violations.add(
                "idempotency_key",
                format!("must have at most {} characters", domain::IDEMPOTENCY_KEY_MAX),
            );
        }
        violations.into_result()?;
        let (recipient, kind) = target.ok_or_else(|| ServiceError::invalid("recipient", "is required"))?;
        let Principal::Employee { subject, .. } = &principal else {
            return Err(ServiceError::PermissionDenied(
                "sending notifications needs an employee with the customer-service, order-manager or admin role".into(),
            ));
        };
        if !principal.has_any_role(&SEND_ROLES) {
            return Err(ServiceError::PermissionDenied(
                "sending notifications needs the customer-service, order-manager or admin role".into(),
            ));
        }
        let key = (!message.idempotency_key.is_empty()).then(|| message.idempotency_key.clone());
        let new = NewNotification {
            recipient,
            kind,
            title: message.title,
            body: message.body,
            data,
            correlation_id,
            sender_id: subject.clone(),
            idempotency_key: key.clone(),
        };
        let mut tx = self.store.begin().await?;
        self.store.lock_inserts(&mut tx).await?;
        if let Some(key) = &key
            && let Some(existing) = self.store.find_by_key(&mut tx, subject, key).await?
        {
            tx.rollback().await?;
            return Ok(pb::SendNotificationResponse {
                notification: Some((&existing).into()),
            });
        }
        if let Recipient::Customer(customer) = &new.recipient
            && self.store.recipient_state(&mut tx, *customer).await?.1
        {
            return Err(ServiceError::precondition(
                "CUSTOMER_ERASED",
                "the customer has been erased (GDPR): nothing is sent to it any more",
            ));
        }
        let stored = self.store.insert(&mut tx, &new, now()).await?;
        tx.enqueue(&events::created(&stored, key.as_deref())).await?;
        self.hub.announce_on_commit(&mut tx, &stored);
        tx.commit().await?;
        tracing::info!(notification_id = stored.id, "notification sent");
        Ok(pb::SendNotificationResponse {
            notification: Some((&stored).into()),
        })
    }

    /// The preferences key of the caller (or of the customer it names).
    async fn preferences_key(
        &self,
        principal: &Principal,
        context: &CallContext,
        customer_id: &str,
    ) -> Result<String, ServiceError> {
        if matches!(principal, Principal::Service { .. }) && customer_id.is_empty() {
            return Err(ServiceError::invalid("customer_id", "is required for service callers"));
        }
        let who = self.resolve(principal, context, customer_id).await?;
        who.reader
            .ok_or_else(|| ServiceError::invalid("customer_id", "is required for service callers"))
    }

    async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Result<pb::GetPreferencesResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let key = self.preferences_key(&principal, &context, &message.customer_id).await?;
        let prefs = self.store.preferences(&key).await?.unwrap_or_default();
        Ok(pb::GetPreferencesResponse {
            preferences: Some((&prefs).into()),
        })
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Result<pb::UpdatePreferencesResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let paths = validate::update_mask(
            &mut violations,
            message.update_mask.as_ref(),
            &["channels", "muted_types"],
        );
        let given = message.preferences.unwrap_or_default();
        let mut channels = Vec::new();
        for (i, value) in given.channels.iter().enumerate() {
            match convert::channel(*value) {
                Some(channel) if !channels.contains(&channel) => channels.push(channel),
                Some(_) => {}
                None => {
                    violations.add(format!("preferences.channels[{i}]"), "must be a known channel");
                }
            }
        }
        let mut muted = Vec::new();
        for (i, value) in given.muted_types.iter().enumerate() {
            match convert::kind(*value) {
                Some(Kind::Account) => {
                    violations.add(format!("preferences.muted_types[{i}]"), "ACCOUNT cannot be muted");
                }
                Some(kind) if !muted.contains(&kind) => muted.push(kind),
                Some(_) => {}
                None => {
                    violations.add(
                        format!("preferences.muted_types[{i}]"),
                        "must be a known notification type",
                    );
                }
            }
        }
        violations.into_result()?;
        let key = self.preferences_key(&principal, &context, &message.customer_id).await?;
        let mut prefs = self.store.preferences(&key).await?.unwrap_or_default();
        if paths.contains(&"channels") {
            channels.sort();
            prefs.channels = channels;
        }
        if paths.contains(&"muted_types") {
            muted.sort();
            prefs.muted = muted;
        }
        prefs.updated_at = Some(now());
        self.store.put_preferences(&key, &prefs).await?;
        Ok(pb::UpdatePreferencesResponse {
            preferences: Some((&prefs).into()),
        })
    }

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<SubscribeStream, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let kinds = convert::kinds(&mut violations, "notification_types", &message.notification_types);
        let after = if message.after_id.is_empty() {
            None
        } else {
            match domain::parse_position(&message.after_id) {
                Some(id) => Some(id),
                None => {
                    violations.add("after_id", "is not a notification id");
                    None
                }
            }
        };
        violations.into_result()?;
        let who = self.resolve(&principal, &context, "").await?;
        // Live first, then the replay point: nothing committed in between can be missed.
        let live = self.hub.subscribe();
        let cursor = match after {
            Some(id) => id,
            None => self.store.max_id().await?,
        };
        let (sender, receiver) = mpsc::channel(self.options.stream_buffer.max(1));
        let stream = Stream {
            store: self.store.clone(),
            scope: who.scope,
            reader: who.reader,
            kinds,
            cursor,
            sender,
            heartbeat: self.options.heartbeat,
        };
        tokio::spawn(stream.run(live, self.shutdown.clone()));
        Ok(ReceiverStream::new(receiver))
    }

    async fn catch_up(&self, request: Request<pb::CatchUpRequest>) -> Result<pb::CatchUpResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let limit = match pagination::page_size(message.page_size) {
            Ok(limit) => limit,
            Err(_) => {
                violations.add("page_size", "must not be negative");
                0
            }
        };
        let after = match message.after_id.as_str() {
            "" => None,
            id => {
                let parsed = domain::parse_position(id);
                if parsed.is_none() {
                    violations.add("after_id", "is not a notification id");
                }
                parsed
            }
        };
        violations.into_result()?;
        let who = self.resolve(&principal, &context, "").await?;
        let scope = who
            .scope
            .customer
            .map(Recipient::Customer)
            .into_iter()
            .chain(who.scope.roles.iter().copied().map(Recipient::Role))
            .map(|recipient| pb::Recipient::from(&recipient))
            .collect();
        let (rows, cursor) = match after {
            // Nothing to replay: the newest id is where a live stream continues.
            None => (Vec::new(), self.store.max_id().await?),
            Some(after) => {
                let view = View {
                    scope: &who.scope,
                    reader: who.reader.as_deref(),
                    kinds: &[],
                };
                let rows = self.store.after(&view, after, limit).await?;
                let cursor = rows.last().map_or(after, |n| n.id);
                (rows, cursor)
            }
        };
        Ok(pb::CatchUpResponse {
            more: rows.len() == limit,
            notifications: rows.iter().map(pb::Notification::from).collect(),
            cursor: cursor.to_string(),
            scope,
            all: who.scope.all,
        })
    }
}

type SubscribeStream = ReceiverStream<Result<pb::SubscribeResponse, Status>>;

/// The state of one Subscribe stream.
struct Stream {
    store: Store,
    scope: Scope,
    reader: Option<String>,
    kinds: Vec<Kind>,
    /// The last id sent (or the resume point).
    cursor: i64,
    sender: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    heartbeat: Duration,
}

/// Why a stream stopped sending.
enum Stop {
    ClientGone,
    Failed(Status),
}

impl Stream {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<LiveItem>>, shutdown: Shutdown) {
        let outcome = async {
            self.catch_up().await?;
            let mut next_heartbeat = tokio::time::Instant::now() + self.heartbeat;
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return Ok(()),
                    _ = self.sender.closed() => return Err(Stop::ClientGone),
                    item = live.recv() => match item {
                        Ok(item) => {
                            if item.id > self.cursor
                                && self.scope.contains(&item.recipient)
                                && (self.kinds.is_empty() || self.kinds.contains(&item.kind))
                                && self.catch_up().await? > 0
                            {
                                next_heartbeat = tokio::time::Instant::now() + self.heartbeat;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return Err(Stop::Failed(Status::resource_exhausted(
                                "lagged; resubscribe with after_id",
                            )));
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    _ = tokio::time::sleep_until(next_heartbeat) => {
                        let beat = pb::SubscribeResponse {
                            event: Some(pb::subscribe_response::Event::Heartbeat(pb::Heartbeat {
                                server_time: Some(timestamp(Utc::now())),
                            })),
                        };
                        self.send(Ok(beat)).await?;
                        next_heartbeat = tokio::time::Instant::now() + self.heartbeat;
                    }
                }
            }
        }
        .await;
        if let Err(Stop::Failed(status)) = outcome {
            let _ = self.sender.send(Err(status)).await;
        }
    }

    async fn send(&self, item: Result<pb::SubscribeResponse, Status>) -> Result<(), Stop> {
        self.sender.send(item).await.map_err(|_| Stop::ClientGone)
    }

    /// Sends every stored notification of the scope above the cursor, in id order.
    async fn catch_up(&mut self) -> Result<usize, Stop> {
        let mut sent = 0;
        loop {
            let view = View {
                scope: &self.scope,
                reader: self.reader.as_deref(),
                kinds: &self.kinds,
            };
            let rows = self
                .store
                .after(&view, self.cursor, REPLAY_BATCH)
                .await
                .map_err(|error| Stop::Failed(ServiceError::from(error).into()))?;
            let count = rows.len();
            for notification in rows {
                self.cursor = notification.id;
                let item = pb::SubscribeResponse {
                    event: Some(pb::subscribe_response::Event::Notification((&notification).into())),
                };
                self.send(Ok(item)).await?;
                sent += 1;
            }
            if count < REPLAY_BATCH {
                return Ok(sent);
            }
        }
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        Ok(Response::new(NotificationApi::mark_read(self, request).await?))
    }

    async fn send_notification(
        &self,
        request: Request<pb::SendNotificationRequest>,
    ) -> Result<Response<pb::SendNotificationResponse>, Status> {
        Ok(Response::new(self.send(request).await?))
    }

    async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Result<Response<pb::GetPreferencesResponse>, Status> {
        Ok(Response::new(NotificationApi::get_preferences(self, request).await?))
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Result<Response<pb::UpdatePreferencesResponse>, Status> {
        Ok(Response::new(NotificationApi::update_preferences(self, request).await?))
    }

    async fn catch_up(&self, request: Request<pb::CatchUpRequest>) -> Result<Response<pb::CatchUpResponse>, Status> {
        Ok(Response::new(NotificationApi::catch_up(self, request).await?))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Ok(Response::new(NotificationApi::subscribe(self, request).await?))
    }
}
