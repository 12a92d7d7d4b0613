//! The events order-svc publishes on `order-events`, built from the order after a change.

use ordermesh_platform::convert;
use ordermesh_platform::events::{EventMessage, OutgoingEvent};
use ordermesh_proto::events as ev;

use crate::convert::{actor, items, proto_status, rejection_code, total};
use crate::domain::{Order, OrderStatus};

const SOURCE: &str = "order-svc";

fn now() -> Option<prost_types::Timestamp> {
    Some(convert::timestamp(convert::now()))
}

fn event(order: &Order, message: &impl EventMessage) -> OutgoingEvent {
    OutgoingEvent::of(SOURCE, &order.id.to_string(), &order.correlation_id, message)
}

pub fn placed(order: &Order, actor_label: &str) -> OutgoingEvent {
    event(
        order,
        &ev::OrderPlaced {
            order_id: order.id.to_string(),
            customer_id: order.customer_id.to_string(),
            items: items(order),
            total: Some(total(order)),
            actor: Some(actor(actor_label)),
            occur_time: now(),
        },
    )
}

/// The events of a transition from `from` to the order's current status.
pub fn transitioned(order: &Order, from: OrderStatus, reason: Option<&str>, actor_label: &str) -> Vec<OutgoingEvent> {
    let order_id = order.id.to_string();
    let customer_id = order.customer_id.to_string();
    let changed = event(
        order,
        &ev::OrderStatusChanged {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            from_status: proto_status(from) as i32,
            to_status: proto_status(order.status) as i32,
            reason: reason.unwrap_or_default().to_owned(),
            actor: Some(actor(actor_label)),
            occur_time: now(),
        },
    );
    let outcome = match order.status {
        OrderStatus::Confirmed => Some(event(
            order,
            &ev::OrderConfirmed {
                order_id,
                customer_id,
                payment_id: order.payment_id.clone().unwrap_or_default(),
                total: Some(total(order)),
                occur_time: now(),
            },
        )),
        OrderStatus::Rejected => Some(event(
            order,
            &ev::OrderRejected {
                order_id,
                customer_id,
                code: rejection_code(order.rejection_code.as_deref()) as i32,
                reason: order.rejection_reason.clone().unwrap_or_default(),
                previous_status: proto_status(from) as i32,
                occur_time: now(),
            },
        )),
        OrderStatus::Cancelled => Some(event(
            order,
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
        OrderStatus::Shipped => Some(event(
            order,
            &ev::OrderShipped {
                order_id,
                customer_id,
                carrier: order.carrier.clone().unwrap_or_default(),
                tracking_number: order.tracking_number.clone().unwrap_or_default(),
                actor: Some(actor(actor_label)),
                occur_time: now(),
            },
        )),
        OrderStatus::Delivered => Some(event(
            order,
            &ev::OrderDelivered {
                order_id,
                customer_id,
                actor: Some(actor(actor_label)),
                occur_time: now(),
            },
        )),
        OrderStatus::Pending | OrderStatus::Reserved => None,
    };
    std::iter::once(changed).chain(outcome).collect()
}
