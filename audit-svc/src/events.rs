//! What audit-svc consumes: EVERY topic, one durable consumer per topic, one entry per event.
//!
//! Each event type has a whitelist of the facts copied into `details`: ids, statuses, amounts,
//! reason CODES. Free text that may hold personal data (cancellation and refund reasons "as
//! given", notification titles and bodies, carrier tracking numbers, product names and
//! descriptions, order-line names) is never copied. An event type this version does not know is
//! still recorded (action from its type, entity from its aggregate id) with empty details.

use std::collections::HashMap;

use async_trait::async_trait;
use ordermesh_platform::events::{EventHandler, HandlerError, ReceivedEvent, Tx, topics};
use ordermesh_platform::{Actor, ActorKind};
use ordermesh_proto::common::{self, Money};
use ordermesh_proto::event_types::{
    CustomerEvent, GdprEvent, InventoryEvent, NotificationEvent, OpsEvent, OrderEvent, PaymentEvent, TopicEvents,
};
use ordermesh_proto::notification::{NotificationType, Recipient, recipient::Target};
use ordermesh_proto::order::{OrderStatus, RejectionCode};
use ordermesh_proto::product::{Product, StockLine};
use serde_json::{Map, Value, json};

use crate::domain::{NewEntry, action_of_event};
use crate::store::Store;

/// Records every event it receives in the audit chain, in the consumer's transaction (so the
/// entry and the inbox row commit together: exactly one entry per event id).
///
/// A raw [`EventHandler`] rather than a `TopicHandler` of each topic's enum: those skip the
/// types this build does not know, and the audit log must record those too (see [`entry_of`]).
pub struct AuditRecorder {
    store: Store,
}

impl AuditRecorder {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl EventHandler for AuditRecorder {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let entry = entry_of(event)?;
        self.store.append(tx, &entry).await?;
        Ok(())
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

/// What the event is about, beyond the envelope.
struct Facts {
    entity_type: &'static str,
    entity_id: String,
    data_subject_id: String,
    actor: Option<Actor>,
    details: Map<String, Value>,
    /// The action, when the one derived from the type name would read badly.
    action: Option<&'static str>,
}

impl Facts {
    fn new(entity_type: &'static str, entity_id: &str) -> Self {
        Self {
            entity_type,
            entity_id: entity_id.to_owned(),
            data_subject_id: String::new(),
            actor: None,
            details: Map::new(),
            action: None,
        }
    }
    fn action(mut self, action: &'static str) -> Self {
        self.action = Some(action);
        self
    }
    fn subject(mut self, customer_id: &str) -> Self {
        self.data_subject_id = customer_id.to_owned();
        self
    }
    fn actor(mut self, actor: Option<common::Actor>) -> Self {
        self.actor = actor.as_ref().map(Actor::from);
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

/// The entry recording `event`. Undecodable payloads are permanent failures (dead-lettered).
pub fn entry_of(event: &ReceivedEvent) -> Result<NewEntry, HandlerError> {
    let short = event.short_type();
    let facts = known_facts(event)?.unwrap_or_else(|| Facts::new(entity_of_topic(&event.topic), &event.aggregate_id));
    let actor = match facts.actor {
        Some(actor) if !actor.id.is_empty() => actor,
        _ => Actor::service(&event.source),
    };
    let mut details = facts.details;
    details.insert("event_type".into(), Value::String(short.to_owned()));
    Ok(NewEntry {
        actor,
        action: facts.action.map_or_else(|| action_of_event(short), str::to_owned),
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

/// The facts of an event whose type this build knows, whatever topic carried it; `None` for a
/// type from a newer producer.
fn known_facts(event: &ReceivedEvent) -> Result<Option<Facts>, prost::DecodeError> {
    let (kind, payload) = (event.event_type.as_str(), &event.payload[..]);
    Ok(if let Some(e) = OrderEvent::decode(kind, payload)? {
        Some(order_facts(e))
    } else if let Some(e) = InventoryEvent::decode(kind, payload)? {
        Some(inventory_facts(e))
    } else if let Some(e) = PaymentEvent::decode(kind, payload)? {
        Some(payment_facts(e))
    } else if let Some(e) = CustomerEvent::decode(kind, payload)? {
        Some(customer_facts(e))
    } else if let Some(e) = GdprEvent::decode(kind, payload)? {
        Some(gdpr_facts(e))
    } else if let Some(e) = OpsEvent::decode(kind, payload)? {
        Some(ops_facts(e))
    } else {
        NotificationEvent::decode(kind, payload)?.map(notification_facts)
    })
}

fn order_facts(event: OrderEvent) -> Facts {
    let order = |order_id: &str, customer_id: &str| {
        Facts::new("order", order_id)
            .subject(customer_id)
            .put("order_id", order_id)
            .put("customer_id", customer_id)
    };
    match event {
        OrderEvent::OrderPlaced(e) => {
            let items: Vec<Value> = e
                .items
                .iter()
                .map(|i| json!({"product_id": i.product_id, "sku": i.sku, "quantity": i.quantity}))
                .collect();
            order(&e.order_id, &e.customer_id)
                .actor(e.actor)
                .put("items", Value::Array(items))
                .money("total", &e.total)
        }
        OrderEvent::OrderStatusChanged(e) => order(&e.order_id, &e.customer_id)
            .actor(e.actor)
            .put("from_status", order_status(e.from_status))
            .put("to_status", order_status(e.to_status)),
        OrderEvent::OrderConfirmed(e) => order(&e.order_id, &e.customer_id)
            .put("payment_id", e.payment_id)
            .money("total", &e.total),
        OrderEvent::OrderRejected(e) => {
            let code = RejectionCode::try_from(e.code)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_else(|_| e.code.to_string());
            order(&e.order_id, &e.customer_id)
                .put("rejection_code", code)
                .put("previous_status", order_status(e.previous_status))
        }
        OrderEvent::OrderCancelled(e) => order(&e.order_id, &e.customer_id)
            .actor(e.actor)
            .put("was_paid", e.was_paid)
            .put("payment_id", e.payment_id)
            .put("previous_status", order_status(e.previous_status)),
        OrderEvent::OrderShipped(e) => order(&e.order_id, &e.customer_id)
            .actor(e.actor)
            .put("carrier", e.carrier),
        OrderEvent::OrderDelivered(e) => order(&e.order_id, &e.customer_id).actor(e.actor),
    }
}

/// Reservations are recorded against their order, catalogue and stock changes against the
/// product.
fn inventory_facts(event: InventoryEvent) -> Facts {
    let order = |order_id: &str| Facts::new("order", order_id).put("order_id", order_id);
    match event {
        InventoryEvent::StockReserved(e) => order(&e.order_id).put("lines", stock_lines(&e.lines)),
        InventoryEvent::StockRejected(e) => {
            let shortfalls: Vec<Value> = e
                .shortfalls
                .iter()
                .map(|s| json!({"product_id": s.product_id, "requested": s.requested}))
                .collect();
            order(&e.order_id).put("shortfalls", Value::Array(shortfalls))
        }
        InventoryEvent::StockReleased(e) => order(&e.order_id).put("lines", stock_lines(&e.lines)),
        InventoryEvent::StockCommitted(e) => order(&e.order_id).put("lines", stock_lines(&e.lines)),
        InventoryEvent::StockAdjusted(e) => {
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
        InventoryEvent::StockLow(e) => Facts::new("product", &e.product_id)
            .put("product_id", e.product_id.clone())
            .put("sku", e.sku)
            .put("available", e.available)
            .put("threshold", e.threshold),
        InventoryEvent::ProductCreated(e) => product_facts(e.product, e.actor, Vec::new()),
        InventoryEvent::ProductUpdated(e) => product_facts(e.product, e.actor, e.changed_fields),
    }
}

/// Never the product's name or description.
fn product_facts(product: Option<Product>, actor: Option<common::Actor>, changed_fields: Vec<String>) -> Facts {
    let product = product.unwrap_or_default();
    let mut facts = Facts::new("product", &product.id)
        .actor(actor)
        .put("product_id", product.id.clone())
        .put("sku", product.sku.clone())
        .put("active", product.active)
        .money("price", &product.price);
    if !changed_fields.is_empty() {
        facts = facts.put("changed_fields", changed_fields);
    }
    facts
}

fn payment_facts(event: PaymentEvent) -> Facts {
    let payment = |payment_id: &str, order_id: String, customer_id: &str, amount: &Option<Money>| {
        Facts::new("payment", payment_id)
            .subject(customer_id)
            .put("payment_id", payment_id)
            .put("order_id", order_id)
            .put("customer_id", customer_id)
            .money("amount", amount)
    };
    match event {
        PaymentEvent::PaymentAuthorized(e) => payment(&e.payment_id, e.order_id, &e.customer_id, &e.amount),
        PaymentEvent::PaymentCaptured(e) => payment(&e.payment_id, e.order_id, &e.customer_id, &e.amount),
        PaymentEvent::PaymentDeclined(e) => {
            payment(&e.payment_id, e.order_id, &e.customer_id, &e.amount).put("decline_reason", e.decline_reason)
        }
        PaymentEvent::PaymentFailed(e) => {
            payment(&e.payment_id, e.order_id, &e.customer_id, &e.amount).put("failure_reason", e.failure_reason)
        }
        PaymentEvent::PaymentVoided(e) => payment(&e.payment_id, e.order_id, &e.customer_id, &e.amount),
        // Never the refund's reason as given.
        PaymentEvent::PaymentRefunded(e) => payment(&e.payment_id, e.order_id, &e.customer_id, &e.amount)
            .actor(e.actor)
            .put("refund_id", e.refund_id)
            .money("total_refunded", &e.total_refunded)
            .put("fully_refunded", e.fully_refunded),
    }
}

/// An entry about the customer itself, its own data subject.
fn about_customer(customer_id: &str, actor: Option<common::Actor>) -> Facts {
    Facts::new("customer", customer_id)
        .subject(customer_id)
        .actor(actor)
        .put("customer_id", customer_id)
}

fn customer_facts(event: CustomerEvent) -> Facts {
    match event {
        CustomerEvent::CustomerCreated(e) => {
            about_customer(&e.customer_id, e.actor).put("identity_linked", e.identity_linked)
        }
        CustomerEvent::CustomerUpdated(e) => {
            let status = ordermesh_proto::customer::CustomerStatus::try_from(e.status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| e.status.to_string());
            about_customer(&e.customer_id, e.actor)
                .put("changed_fields", e.changed_fields)
                .put("status", status)
                .put("version", e.version)
        }
        CustomerEvent::ConsentRecorded(e) => Facts::new("consent", &e.consent_id)
            .subject(&e.customer_id)
            .actor(e.actor)
            .put("customer_id", e.customer_id.clone())
            .put("consent_id", e.consent_id.clone())
            .put("purpose", e.purpose)
            .put("granted", e.granted)
            .put("policy_version", e.policy_version),
    }
}

fn gdpr_facts(event: GdprEvent) -> Facts {
    match event {
        GdprEvent::CustomerDataExported(e) => about_customer(&e.customer_id, e.actor).put("export_id", e.export_id),
        GdprEvent::ErasureRequested(e) => {
            about_customer(&e.customer_id, e.actor).put("erasure_request_id", e.erasure_request_id)
        }
        GdprEvent::ErasureCompleted(e) => about_customer(&e.customer_id, None)
            .put("erasure_request_id", e.erasure_request_id)
            .put("service", e.service),
        GdprEvent::CustomerErased(e) => {
            about_customer(&e.customer_id, e.actor).put("erasure_request_id", e.erasure_request_id)
        }
    }
}

/// An operator's action on a dead letter: which event, of which service, and why it was discarded
/// (operators give reasons about events, never about people).
fn ops_facts(event: OpsEvent) -> Facts {
    let letter = |id: u64, service: String, event_id: String, topic: String, event_type: String| {
        Facts::new("dead_letter", &id.to_string())
            .put("service", service)
            .put("event_id", event_id)
            .put("topic", topic)
            .put("dead_letter_event_type", event_type)
    };
    match event {
        OpsEvent::DeadLetterReplayed(e) => letter(e.dead_letter_id, e.service, e.event_id, e.topic, e.event_type)
            .actor(e.actor)
            .action("dead_letter.replayed"),
        OpsEvent::DeadLetterDiscarded(e) => letter(e.dead_letter_id, e.service, e.event_id, e.topic, e.event_type)
            .actor(e.actor)
            .put("reason", e.reason)
            .action("dead_letter.discarded"),
    }
}

/// Never the title or body; the context map's keys only.
fn notification_facts(event: NotificationEvent) -> Facts {
    match event {
        NotificationEvent::NotificationRequested(e) => notification(
            Facts::new("notification_request", &e.request_id).put("request_id", e.request_id.clone()),
            e.recipient.as_ref(),
            e.notification_type,
            &e.data,
        ),
        NotificationEvent::NotificationCreated(e) => {
            let mut facts = Facts::new("notification", &e.notification_id)
                .put("notification_id", e.notification_id.clone())
                .put("request_id", e.request_id.clone());
            if !e.sender_id.is_empty() {
                facts.actor = Some(Actor::new(ActorKind::Employee, e.sender_id.clone(), []));
            }
            notification(facts, e.recipient.as_ref(), e.notification_type, &e.data)
        }
    }
}

fn notification(
    facts: Facts,
    recipient: Option<&Recipient>,
    notification_type: i32,
    data: &HashMap<String, String>,
) -> Facts {
    let kind = NotificationType::try_from(notification_type)
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

fn stock_lines(lines: &[StockLine]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|l| json!({"product_id": l.product_id, "quantity": l.quantity}))
            .collect(),
    )
}

fn order_status(value: i32) -> String {
    OrderStatus::try_from(value)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The entity an event of a type this build does not know is recorded against.
fn entity_of_topic(topic: &str) -> &'static str {
    match topic {
        topics::ORDER_EVENTS => "order",
        topics::INVENTORY_EVENTS => "product",
        topics::PAYMENT_EVENTS => "payment",
        topics::CUSTOMER_EVENTS | topics::GDPR_EVENTS => "customer",
        topics::NOTIFICATION_EVENTS => "notification",
        topics::OPS_EVENTS => "dead_letter",
        _ => "event",
    }
}
