//! The proto form of the domain types, written once for the gRPC answers and the published
//! events.

use ordermesh_platform::convert::timestamp;
use ordermesh_proto::product as pb;

use crate::domain::{
    Availability, Category, LowStock, Product, Reservation, ReservationStatus, Shortfall, StockLevel, StockLine,
};

impl From<&Product> for pb::Product {
    fn from(product: &Product) -> Self {
        Self {
            id: product.id.to_string(),
            sku: product.sku.clone(),
            name: product.name.clone(),
            description: product.description.clone(),
            category_id: product.category_id.to_string(),
            price: Some((&product.price).into()),
            active: product.active,
            attributes: product.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            create_time: Some(timestamp(product.create_time)),
            update_time: Some(timestamp(product.update_time)),
            version: product.version,
            // Not part of the product (and not of its cached form): see `stock_level`.
            availability: pb::StockAvailability::Unspecified as i32,
        }
    }
}

impl From<&Category> for pb::Category {
    fn from(category: &Category) -> Self {
        Self {
            id: category.id.to_string(),
            name: category.name.clone(),
            parent_id: category.parent_id.map(|p| p.to_string()).unwrap_or_default(),
            description: category.description.clone(),
            create_time: Some(timestamp(category.create_time)),
        }
    }
}

/// The level as shown to a caller: with `full` false (clients) only its availability, never a
/// count.
pub fn stock_level(level: &StockLevel, full: bool, low: LowStock) -> pb::StockLevel {
    let availability = match low.availability(level.available()) {
        Availability::InStock => pb::StockAvailability::InStock,
        Availability::Low => pb::StockAvailability::Low,
        Availability::OutOfStock => pb::StockAvailability::OutOfStock,
    };
    pb::StockLevel {
        product_id: level.product_id.to_string(),
        sku: level.sku.clone(),
        on_hand: if full { level.on_hand } else { 0 },
        reserved: if full { level.reserved } else { 0 },
        available: if full { level.available() } else { 0 },
        update_time: Some(timestamp(level.update_time)),
        availability: availability as i32,
    }
}

impl From<&StockLine> for pb::StockLine {
    fn from(line: &StockLine) -> Self {
        Self {
            product_id: line.product_id.to_string(),
            quantity: line.quantity,
        }
    }
}

impl From<&Shortfall> for pb::StockShortfall {
    fn from(shortfall: &Shortfall) -> Self {
        Self {
            product_id: shortfall.product_id.to_string(),
            requested: shortfall.requested,
            available: shortfall.available,
            reason: shortfall.reason.clone(),
        }
    }
}

impl From<ReservationStatus> for pb::StockReservationStatus {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Reserved => Self::Reserved,
            ReservationStatus::Rejected => Self::Rejected,
            ReservationStatus::Released => Self::Released,
            ReservationStatus::Committed => Self::Committed,
        }
    }
}

/// The lines of a reservation.
pub fn stock_lines(reservation: &Reservation) -> Vec<pb::StockLine> {
    reservation.lines.iter().map(pb::StockLine::from).collect()
}

/// The shortfalls of a reservation.
pub fn shortfalls(reservation: &Reservation) -> Vec<pb::StockShortfall> {
    reservation.shortfalls.iter().map(pb::StockShortfall::from).collect()
}

impl From<&Reservation> for pb::StockReservation {
    fn from(reservation: &Reservation) -> Self {
        Self {
            order_id: reservation.order_id.to_string(),
            status: pb::StockReservationStatus::from(reservation.status) as i32,
            lines: stock_lines(reservation),
            shortfalls: shortfalls(reservation),
            create_time: Some(timestamp(reservation.create_time)),
            update_time: Some(timestamp(reservation.update_time)),
        }
    }
}
