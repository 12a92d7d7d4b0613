//! The order in its generated forms, for the API (`grpc`) and the events (`events`, `saga`):
//! the domain never sees a generated type. Times, money and actors go through the platform's
//! shared conversions.

use ordermesh_platform::convert::{optional_timestamp, timestamp};
use ordermesh_platform::{Actor, ActorKind};
use ordermesh_proto::common;
use ordermesh_proto::order::{self as pb, OrderStatus as ProtoStatus, RejectionCode};
use prost::Message as _;

use crate::domain::analytics::{OrderFigures, ProductSales};
use crate::domain::{HistoryEntry, Order, OrderStatus};

/// The service as the actor of what it does on its own (`system` in the history).
const SERVICE_ACTOR: &str = "order-svc";

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

/// The domain status of a proto status; `None` for UNSPECIFIED.
pub fn domain_status(status: ProtoStatus) -> Option<OrderStatus> {
    OrderStatus::ALL.into_iter().find(|s| proto_status(*s) == status)
}

/// The stored rejection code (`OUT_OF_STOCK`, …) as the API's enum; unknown codes are
/// UNSPECIFIED.
pub fn rejection_code(code: Option<&str>) -> RejectionCode {
    match code {
        Some("OUT_OF_STOCK") => RejectionCode::OutOfStock,
        Some("PAYMENT_DECLINED") => RejectionCode::PaymentDeclined,
        Some("PAYMENT_FAILED") => RejectionCode::PaymentFailed,
        Some("PRODUCT_UNAVAILABLE") => RejectionCode::ProductUnavailable,
        _ => RejectionCode::Unspecified,
    }
}

pub fn money(minor: i64, currency: &str) -> common::Money {
    common::Money {
        amount_minor: minor,
        currency_code: currency.to_owned(),
    }
}

/// The order's total.
pub fn total(order: &Order) -> common::Money {
    money(order.total_minor, &order.currency)
}

pub fn items(order: &Order) -> Vec<pb::OrderItem> {
    order
        .items
        .iter()
        .map(|line| pb::OrderItem {
            product_id: line.product_id.clone(),
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price: Some(money(line.unit_price_minor, &line.currency)),
            quantity: line.quantity,
            line_total: Some(money(line.line_total().unwrap_or_default(), &line.currency)),
        })
        .collect()
}

/// A history actor label (`employee:<sub>`, `client:<sub>`, `service:<name>`, `system`) as the
/// proto actor; anything else is this service acting on its own.
pub fn actor(label: &str) -> common::Actor {
    let (kind, id) = match label.split_once(':') {
        Some(("employee", id)) => (ActorKind::Employee, id),
        Some(("client", id)) => (ActorKind::Customer, id),
        Some(("service", id)) => (ActorKind::Service, id),
        _ => (ActorKind::System, SERVICE_ACTOR),
    };
    (&Actor::new(kind, id, [])).into()
}

pub fn history_entry(entry: &HistoryEntry) -> pb::StatusHistoryEntry {
    pb::StatusHistoryEntry {
        from_status: entry.from.map(|s| proto_status(s) as i32).unwrap_or_default(),
        to_status: proto_status(entry.to) as i32,
        reason: entry.reason.clone().unwrap_or_default(),
        actor: Some(actor(&entry.actor)),
        change_time: Some(timestamp(entry.changed_at)),
        cause_event_id: entry.cause_event_id.clone().unwrap_or_default(),
    }
}

/// The order as the API serves it; the history only where the RPC returns it.
pub fn order(order: &Order, with_history: bool) -> pb::Order {
    pb::Order {
        id: order.id.to_string(),
        customer_id: order.customer_id.to_string(),
        items: items(order),
        total: Some(total(order)),
        status: proto_status(order.status) as i32,
        rejection_code: rejection_code(order.rejection_code.as_deref()) as i32,
        rejection_reason: order.rejection_reason.clone().unwrap_or_default(),
        cancellation_reason: order.cancellation_reason.clone().unwrap_or_default(),
        payment_id: order.payment_id.clone().unwrap_or_default(),
        shipping_address: order
            .shipping_address
            .as_deref()
            .and_then(|bytes| common::Address::decode(bytes).ok()),
        shipment: order.carrier.as_ref().map(|carrier| pb::Shipment {
            carrier: carrier.clone(),
            tracking_number: order.tracking_number.clone().unwrap_or_default(),
            ship_time: optional_timestamp(order.shipped_at),
            deliver_time: optional_timestamp(order.delivered_at),
        }),
        correlation_id: order.correlation_id.clone(),
        history: if with_history {
            order.history.iter().map(history_entry).collect()
        } else {
            Vec::new()
        },
        create_time: Some(timestamp(order.created_at)),
        update_time: Some(timestamp(order.updated_at)),
    }
}

/// The answer of GetOrderAnalytics.
pub fn order_analytics(figures: &OrderFigures) -> pb::GetOrderAnalyticsResponse {
    let sales = |list: &[ProductSales]| -> Vec<pb::ProductSales> {
        list.iter()
            .map(|s| pb::ProductSales {
                product_id: s.product_id.to_string(),
                sku: s.sku.clone(),
                name: s.name.clone(),
                units: s.units,
                revenue: Some(common::Money {
                    amount_minor: s.revenue_minor,
                    currency_code: s.currency.clone(),
                }),
            })
            .collect()
    };
    let duration = |seconds: Option<f64>| {
        seconds.map(|s| prost_types::Duration {
            seconds: s.trunc() as i64,
            nanos: (s.fract() * 1e9) as i32,
        })
    };
    pb::GetOrderAnalyticsResponse {
        orders: figures.orders,
        orders_by_status: figures
            .by_status
            .iter()
            .map(|(status, count)| pb::OrderStatusCount {
                status: proto_status(*status) as i32,
                count: *count,
            })
            .collect(),
        orders_by_day: figures
            .by_day
            .iter()
            .map(|(day, count)| pb::DayCount {
                date: ordermesh_platform::analytics::date_text(*day),
                count: *count,
            })
            .collect(),
        top_products_by_units: sales(&figures.top_by_units),
        top_products_by_revenue: sales(&figures.top_by_revenue),
        time_to_confirm: Some(pb::ConfirmationTimes {
            count: figures.time_to_confirm.count,
            mean: duration(figures.time_to_confirm.mean_seconds),
            p95: duration(figures.time_to_confirm.p95_seconds),
        }),
        rejections: figures
            .rejections
            .iter()
            .map(|(code, count)| pb::RejectionCount {
                code: rejection_code(Some(code)) as i32,
                count: *count,
            })
            .collect(),
    }
}
