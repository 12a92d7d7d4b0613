//! What audit-svc consumes: EVERY topic, one durable consumer per topic, one entry per event.
//!
//! Each event type has a whitelist of the facts copied into `details`: ids, statuses, amounts,
//! reason CODES. Free text that may hold personal data (cancellation and refund reasons "as
//! given", notification titles and bodies, carrier tracking numbers, product names and
//! descriptions, order-line names) is never copied. An event type this version does not know is
//! still recorded (action from its type, entity from its aggregate id) with empty details.

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::events::{EventHandler, HandlerError, ReceivedEvent, Tx};
use ordermesh_proto::common::{Actor as ProtoActor, Money};
use ordermesh_proto::events as ev;
use serde_json::{Map, Value, json};

use crate::domain::{Actor, NewEntry, action_of_event};
use crate::store;

/// The topics audit-svc consumes: all of them.
pub const TOPICS: [&str; 6] = ordermesh_platform::events::TOPICS;

/// Records every event it receives in the audit chain, in the consumer's transaction (so the
/// entry and the inbox row commit together: exactly one entry per event id).
pub struct AuditRecorder;

impl AuditRecorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self)
    }
}

#[async_trait]
impl EventHandler for AuditRecorder {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let entry = entry_of(event)?;
        store::append(tx, &entry).await?;
        Ok(())
    }
}

/// What the event is about, beyond the envelope.
struct Facts {
    entity_type: &'static str,
    entity_id: String,
    data_subject_id: String,
    actor: Option<ProtoActor>,
    details: Map<String, Value>,
}

impl Facts {
    fn new(entity_type: &'static str, entity_id: &str) -> Self {
        Self {
            entity_type,
            entity_id: entity_id.to_owned(),
            data_subject_id: String::new(),
            actor: None,
            details: Map::new(),
        }
    }
    fn subject(mut self, customer_id: &str) -> Self {
        self.data_subject_id = customer_id.to_owned();
        self
    }
    fn actor(mut self, actor: Option<ProtoActor>) -> Self {
        self.actor = actor;
        self
    }
    /// Adds `key` unless the value is empty.
    fn put(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        let empty = matches!(&value, Value::String(s) if s.is_empty()) || value.is_null();
        if !empty {
            self.details.insert(key.to_owned(), value);
        }
        self
    }
    fn money(self, key: &str, money: &Option<Money>) -> Self {
        match money {
            Some(m) => self.put(
                key,
                json!({"amount_minor": m.amount_minor, "currency_code": m.currency_code}),
            ),
            None => self,
        }
    }
}

fn stock_lines(lines: &[ordermesh_proto::product::StockLine]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|l| json!({"product_id": l.product_id, "quantity": l.quantity}))
            .collect(),
    )
}

fn order_status(value: i32) -> String {
    ordermesh_proto::order::OrderStatus::try_from(value)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The entry recording `event`. Undecodable payloads are permanent failures (dead-lettered).
pub fn entry_of(event: &ReceivedEvent) -> Result<NewEntry, HandlerError> {
    let short = event.short_type();
    let facts = match short {
        // order-events
        "OrderPlaced" => {
            let e: ev::OrderPlaced = event.decode()?;
            let items: Vec<Value> = e
                .items
                .iter()
                .map(|i| json!({"product_id": i.product_id, "sku": i.sku, "quantity": i.quantity}))
                .collect();
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
                .put("items", Value::Array(items))
                .money("total", &e.total)
        }
        "OrderStatusChanged" => {
            let e: ev::OrderStatusChanged = event.decode()?;
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
                .put("from_status", order_status(e.from_status))
                .put("to_status", order_status(e.to_status))
        }
        "OrderConfirmed" => {
            let e: ev::OrderConfirmed = event.decode()?;
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
                .put("payment_id", e.payment_id.clone())
                .money("total", &e.total)
        }
        "OrderRejected" => {
            let e: ev::OrderRejected = event.decode()?;
            let code = ordermesh_proto::order::RejectionCode::try_from(e.code)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_else(|_| e.code.to_string());
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
                .put("rejection_code", code)
                .put("previous_status", order_status(e.previous_status))
        }
        "OrderCancelled" => {
            let e: ev::OrderCancelled = event.decode()?;
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
                .put("was_paid", e.was_paid)
                .put("payment_id", e.payment_id.clone())
                .put("previous_status", order_status(e.previous_status))
        }
        "OrderShipped" => {
            let e: ev::OrderShipped = event.decode()?;
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
                .put("carrier", e.carrier)
        }
        "OrderDelivered" => {
            let e: ev::OrderDelivered = event.decode()?;
            Facts::new("order", &e.order_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("order_id", e.order_id.clone())
                .put("customer_id", e.customer_id.clone())
        }
        // inventory-events: reservations are recorded against their order.
        "StockReserved" => {
            let e: ev::StockReserved = event.decode()?;
            Facts::new("order", &e.order_id)
                .put("order_id", e.order_id.clone())
                .put("lines", stock_lines(&e.lines))
        }
        "StockRejected" => {
            let e: ev::StockRejected = event.decode()?;
            let shortfalls: Vec<Value> = e
                .shortfalls
                .iter()
                .map(|s| json!({"product_id": s.product_id, "requested": s.requested}))
                .collect();
            Facts::new("order", &e.order_id)
                .put("order_id", e.order_id.clone())
                .put("shortfalls", Value::Array(shortfalls))
        }
        "StockReleased" => {
            let e: ev::StockReleased = event.decode()?;
            Facts::new("order", &e.order_id)
                .put("order_id", e.order_id.clone())
                .put("lines", stock_lines(&e.lines))
        }
        "StockCommitted" => {
            let e: ev::StockCommitted = event.decode()?;
            Facts::new("order", &e.order_id)
                .put("order_id", e.order_id.clone())
                .put("lines", stock_lines(&e.lines))
        }
        "StockAdjusted" => {
            let e: ev::StockAdjusted = event.decode()?;
            let mut facts = Facts::new("product", &e.product_id)
                .actor(e.actor)
                .put("product_id", e.product_id.clone())
                .put("delta", e.delta);
            if let Some(level) = &e.stock_level {
                facts = facts
                    .put("on_hand", level.on_hand)
                    .put("reserved", level.reserved)
                    .put("available", level.available);
            }
            facts
        }
        "ProductCreated" | "ProductUpdated" => {
            let (product, actor, changed) = if short == "ProductCreated" {
                let e: ev::ProductCreated = event.decode()?;
                (e.product, e.actor, Vec::new())
            } else {
                let e: ev::ProductUpdated = event.decode()?;
                (e.product, e.actor, e.changed_fields)
            };
            let product = product.unwrap_or_default();
            let mut facts = Facts::new("product", &product.id)
                .actor(actor)
                .put("product_id", product.id.clone())
                .put("sku", product.sku.clone())
                .put("active", product.active)
                .money("price", &product.price);
            if !changed.is_empty() {
                facts = facts.put("changed_fields", changed);
            }
            facts
        }
        // payment-events
        "PaymentAuthorized" | "PaymentCaptured" => {
            let (payment_id, order_id, customer_id, amount) = if short == "PaymentAuthorized" {
                let e: ev::PaymentAuthorized = event.decode()?;
                (e.payment_id, e.order_id, e.customer_id, e.amount)
            } else {
                let e: ev::PaymentCaptured = event.decode()?;
                (e.payment_id, e.order_id, e.customer_id, e.amount)
            };
            Facts::new("payment", &payment_id)
                .subject(&customer_id)
                .put("payment_id", payment_id.clone())
                .put("order_id", order_id)
                .put("customer_id", customer_id)
                .money("amount", &amount)
        }
        "PaymentDeclined" => {
            let e: ev::PaymentDeclined = event.decode()?;
            Facts::new("payment", &e.payment_id)
                .subject(&e.customer_id)
                .put("payment_id", e.payment_id.clone())
                .put("order_id", e.order_id)
                .put("customer_id", e.customer_id.clone())
                .money("amount", &e.amount)
                .put("decline_reason", e.decline_reason)
        }
        "PaymentFailed" => {
            let e: ev::PaymentFailed = event.decode()?;
            Facts::new("payment", &e.payment_id)
                .subject(&e.customer_id)
                .put("payment_id", e.payment_id.clone())
                .put("order_id", e.order_id)
                .put("customer_id", e.customer_id.clone())
                .money("amount", &e.amount)
                .put("failure_reason", e.failure_reason)
        }
        "PaymentRefunded" => {
            let e: ev::PaymentRefunded = event.decode()?;
            Facts::new("payment", &e.payment_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("payment_id", e.payment_id.clone())
                .put("refund_id", e.refund_id)
                .put("order_id", e.order_id)
                .put("customer_id", e.customer_id.clone())
                .money("amount", &e.amount)
                .money("total_refunded", &e.total_refunded)
                .put("fully_refunded", e.fully_refunded)
        }
        "PaymentVoided" => {
            let e: ev::PaymentVoided = event.decode()?;
            Facts::new("payment", &e.payment_id)
                .subject(&e.customer_id)
                .put("payment_id", e.payment_id.clone())
                .put("order_id", e.order_id)
                .put("customer_id", e.customer_id.clone())
                .money("amount", &e.amount)
        }
        // customer-events
        "CustomerCreated" => {
            let e: ev::CustomerCreated = event.decode()?;
            Facts::new("customer", &e.customer_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("customer_id", e.customer_id.clone())
                .put("identity_linked", e.identity_linked)
        }
        "CustomerUpdated" => {
            let e: ev::CustomerUpdated = event.decode()?;
            let status = ordermesh_proto::customer::CustomerStatus::try_from(e.status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| e.status.to_string());
            Facts::new("customer", &e.customer_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("customer_id", e.customer_id.clone())
                .put("changed_fields", e.changed_fields)
                .put("status", status)
                .put("version", e.version)
        }
        "ConsentRecorded" => {
            let e: ev::ConsentRecorded = event.decode()?;
            Facts::new("consent", &e.consent_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("customer_id", e.customer_id.clone())
                .put("consent_id", e.consent_id.clone())
                .put("purpose", e.purpose)
                .put("granted", e.granted)
                .put("policy_version", e.policy_version)
        }
        // gdpr-events
        "CustomerDataExported" => {
            let e: ev::CustomerDataExported = event.decode()?;
            Facts::new("customer", &e.customer_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("customer_id", e.customer_id.clone())
                .put("export_id", e.export_id)
        }
        "ErasureRequested" => {
            let e: ev::ErasureRequested = event.decode()?;
            Facts::new("customer", &e.customer_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("customer_id", e.customer_id.clone())
                .put("erasure_request_id", e.erasure_request_id)
        }
        "CustomerErased" => {
            let e: ev::CustomerErased = event.decode()?;
            Facts::new("customer", &e.customer_id)
                .subject(&e.customer_id)
                .actor(e.actor)
                .put("customer_id", e.customer_id.clone())
                .put("erasure_request_id", e.erasure_request_id)
        }
        // notification-events: never the title or body; the context map's keys only.
        "NotificationRequested" => {
            let e: ev::NotificationRequested = event.decode()?;
            notification_facts(
                Facts::new("notification_request", &e.request_id).put("request_id", e.request_id.clone()),
                e.recipient.as_ref(),
                e.notification_type,
                &e.data,
            )
        }
        "NotificationCreated" => {
            let e: ev::NotificationCreated = event.decode()?;
            let actor = (!e.sender_id.is_empty()).then(|| ProtoActor {
                kind: ordermesh_proto::common::ActorKind::Employee as i32,
                id: e.sender_id.clone(),
                roles: Vec::new(),
            });
            notification_facts(
                Facts::new("notification", &e.notification_id)
                    .actor(actor)
                    .put("notification_id", e.notification_id.clone())
                    .put("request_id", e.request_id.clone()),
                e.recipient.as_ref(),
                e.notification_type,
                &e.data,
            )
        }
        _ => Facts::new(entity_of_topic(&event.topic), &event.aggregate_id),
    };
    let actor = match facts.actor.as_ref() {
        Some(actor) if !actor.id.is_empty() => Actor::from_proto(actor),
        _ => Actor::service(&event.source),
    };
    let mut details = facts.details;
    details.insert("event_type".into(), Value::String(short.to_owned()));
    Ok(NewEntry {
        actor,
        action: action_of_event(short),
        entity_type: facts.entity_type.to_owned(),
        entity_id: if facts.entity_id.is_empty() {
            event.aggregate_id.clone()
        } else {
            facts.entity_id
        },
        data_subject_id: facts.data_subject_id,
        correlation_id: event.correlation_id.clone(),
        occur_time: event.occur_time,
        details,
        source_service: event.source.clone(),
        event_id: Some(event.id.to_string()),
    })
}

fn notification_facts(
    facts: Facts,
    recipient: Option<&ordermesh_proto::notification::Recipient>,
    notification_type: i32,
    data: &std::collections::HashMap<String, String>,
) -> Facts {
    use ordermesh_proto::notification::recipient::Target;
    let kind = ordermesh_proto::notification::NotificationType::try_from(notification_type)
        .map(|t| t.as_str_name().to_owned())
        .unwrap_or_else(|_| notification_type.to_string());
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    let facts = facts.put("notification_type", kind).put(
        "data_keys",
        Value::Array(keys.into_iter().map(|k| Value::String(k.clone())).collect()),
    );
    match recipient.and_then(|r| r.target.as_ref()) {
        Some(Target::CustomerId(id)) => facts.subject(id).put("recipient_customer_id", id.clone()),
        Some(Target::Role(role)) => facts.put("recipient_role", role.clone()),
        None => facts,
    }
}

fn entity_of_topic(topic: &str) -> &'static str {
    match topic {
        "order-events" => "order",
        "inventory-events" => "product",
        "payment-events" => "payment",
        "customer-events" | "gdpr-events" => "customer",
        "notification-events" => "notification",
        _ => "event",
    }
}
