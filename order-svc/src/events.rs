//! The events order-svc publishes on `order-events`, built from the order after a change.

use ordermesh_platform::events::OutgoingEvent;
use ordermesh_proto::common::{Actor, ActorKind, Money};
use ordermesh_proto::events as ev;
use ordermesh_proto::order::{OrderItem, OrderStatus as ProtoStatus, RejectionCode};

use crate::domain::{Order, OrderStatus};

pub const TOPIC: &str = "order-events";
const SOURCE: &str = "order-svc";

pub fn proto_status(status: OrderStatus) -> ProtoStatus {
    match status {
        OrderStatus::Pending => ProtoStatus::Pending,
        OrderStatus::Reserved => ProtoStatus::Reserved,
        OrderStatus::Confirmed => ProtoStatus::Confirmed,
        OrderStatus::Shipped => ProtoStatus::Shipped,
        OrderStatus::Delivered => ProtoStatus::Delivered,
        OrderStatus::Rejected => ProtoStatus::Rejected,
        OrderStatus::Cancelled => ProtoStatus::Cancelled,
    }
}

pub fn money(minor: i64, currency: &str) -> Money {
    Money {
        amount_minor: minor,
        currency_code: currency.to_owned(),
    }
}

pub fn items(order: &Order) -> Vec<OrderItem> {
    order
        .items
        .iter()
        .map(|line| OrderItem {
            product_id: line.product_id.clone(),
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price: Some(money(line.unit_price_minor, &line.currency)),
            quantity: line.quantity,
            line_total: Some(money(line.line_total().unwrap_or_default(), &line.currency)),
        })
        .collect()
}

/// `employee:<sub>` / `client:<sub>` / `service:<name>` / `system` → the proto actor.
pub fn actor(label: &str) -> Actor {
    let (kind, id) = match label.split_once(':') {
        Some(("employee", id)) => (ActorKind::Employee, id),
        Some(("client", id)) => (ActorKind::Customer, id),
        Some(("service", id)) => (ActorKind::Service, id),
        _ => (ActorKind::System, SOURCE),
    };
    Actor {
        kind: kind as i32,
        id: id.to_owned(),
        roles: Vec::new(),
    }
}

fn now() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(std::time::SystemTime::now()))
}

fn event(order: &Order, event_type: &str, message: &impl prost::Message) -> OutgoingEvent {
    OutgoingEvent::new(
        SOURCE,
        TOPIC,
        event_type,
        &order.id.to_string(),
        &order.correlation_id,
        message,
    )
}

pub fn placed(order: &Order, actor_label: &str) -> OutgoingEvent {
    event(
        order,
        "OrderPlaced",
        &ev::OrderPlaced {
            order_id: order.id.to_string(),
            customer_id: order.customer_id.to_string(),
            items: items(order),
            total: Some(money(order.total_minor, &order.currency)),
            actor: Some(actor(actor_label)),
            occur_time: now(),
        },
    )
}

/// The events of a transition from `from` to the order's current status.
pub fn transitioned(order: &Order, from: OrderStatus, reason: Option<&str>, actor_label: &str) -> Vec<OutgoingEvent> {
    let order_id = order.id.to_string();
    let customer_id = order.customer_id.to_string();
    let mut events = vec![event(
        order,
        "OrderStatusChanged",
        &ev::OrderStatusChanged {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            from_status: proto_status(from) as i32,
            to_status: proto_status(order.status) as i32,
            reason: reason.unwrap_or_default().to_owned(),
            actor: Some(actor(actor_label)),
            occur_time: now(),
        },
    )];
    match order.status {
        OrderStatus::Confirmed => events.push(event(
            order,
            "OrderConfirmed",
            &ev::OrderConfirmed {
                order_id,
                customer_id,
                payment_id: order.payment_id.clone().unwrap_or_default(),
                total: Some(money(order.total_minor, &order.currency)),
                occur_time: now(),
            },
        )),
        OrderStatus::Rejected => {
            let code = match order.rejection_code.as_deref() {
                Some("OUT_OF_STOCK") => RejectionCode::OutOfStock,
                Some("PAYMENT_DECLINED") => RejectionCode::PaymentDeclined,
                Some("PAYMENT_FAILED") => RejectionCode::PaymentFailed,
                Some("PRODUCT_UNAVAILABLE") => RejectionCode::ProductUnavailable,
                _ => RejectionCode::Unspecified,
            };
            events.push(event(
                order,
                "OrderRejected",
                &ev::OrderRejected {
                    order_id,
                    customer_id,
                    code: code as i32,
                    reason: order.rejection_reason.clone().unwrap_or_default(),
                    previous_status: proto_status(from) as i32,
                    occur_time: now(),
                },
            ))
        }
        OrderStatus::Cancelled => events.push(event(
            order,
            "OrderCancelled",
            &ev::OrderCancelled {
                order_id,
                customer_id,
                reason: order.cancellation_reason.clone().unwrap_or_default(),
                was_paid: from.is_paid(),
                payment_id: order.payment_id.clone().unwrap_or_default(),
                previous_status: proto_status(from) as i32,
                actor: Some(actor(actor_label)),
                occur_time: now(),
            },
        )),
        OrderStatus::Shipped => events.push(event(
            order,
            "OrderShipped",
            &ev::OrderShipped {
                order_id,
                customer_id,
                carrier: order.carrier.clone().unwrap_or_default(),
                tracking_number: order.tracking_number.clone().unwrap_or_default(),
                actor: Some(actor(actor_label)),
                occur_time: now(),
            },
        )),
        OrderStatus::Delivered => events.push(event(
            order,
            "OrderDelivered",
            &ev::OrderDelivered {
                order_id,
                customer_id,
                actor: Some(actor(actor_label)),
                occur_time: now(),
            },
        )),
        OrderStatus::Pending | OrderStatus::Reserved => {}
    }
    events
}
