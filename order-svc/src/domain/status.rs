//! The order saga's state machine (DESIGN §2):
//!
//! ```text
//! PENDING ─StockReserved→ RESERVED ─PaymentCaptured→ CONFIRMED → SHIPPED → DELIVERED
//!    └─StockRejected→ REJECTED       └─PaymentDeclined→ REJECTED (stock released)
//! PENDING / RESERVED / CONFIRMED ─Cancel→ CANCELLED (refund if paid, stock released)
//! ```
//!
//! Events that arrive for an order that has already moved on (a stock reservation for an order
//! cancelled meanwhile, a redelivered event) are not errors: they are `Ignored` with the
//! compensations still owed, so consumers can ack them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Reserved,
    Confirmed,
    Shipped,
    Delivered,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Self::Pending,
        Self::Reserved,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Rejected,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Reserved => "RESERVED",
            Self::Confirmed => "CONFIRMED",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Rejected | Self::Cancelled)
    }

    /// Whether the customer has been charged in this status.
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Confirmed | Self::Shipped | Self::Delivered)
    }
}

/// Recorded by name (a rollup delta waiting to be folded).
impl serde::Serialize for OrderStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for OrderStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown order status {name:?}")))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to an order: saga events from other services and commands from people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaInput {
    StockReserved,
    StockRejected { reason: String },
    PaymentCaptured { payment_id: String },
    PaymentDeclined { reason: String },
    Ship { carrier: String, tracking_number: String },
    Deliver,
    Cancel { reason: String },
}

/// Work owed to other services because of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compensation {
    /// Give the reserved stock back.
    ReleaseStock,
    /// Refund what was captured.
    Refund,
    /// Charge the customer (the forward step after a reservation).
    RequestPayment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The order moves to `to`; `then` lists what must follow.
    Moved {
        to: OrderStatus,
        reason: Option<String>,
        then: Vec<Compensation>,
    },
    /// Late or repeated input for an order that has moved on; nothing changes except the
    /// compensations listed (e.g. stock reserved for an already cancelled order is released).
    Ignored { then: Vec<Compensation> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot be {action}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub action: &'static str,
}

impl TransitionError {
    /// Stable reason code for the API's ErrorInfo.
    pub fn reason(&self) -> &'static str {
        "ORDER_STATUS_CONFLICT"
    }
}

/// Decides what `input` does to an order in status `from`.
pub fn transition(from: OrderStatus, input: &SagaInput) -> Result<Transition, TransitionError> {
    use Compensation::*;
    use OrderStatus::*;
    let moved = |to, reason: Option<&String>, then: Vec<Compensation>| {
        Ok(Transition::Moved {
            to,
            reason: reason.cloned(),
            then,
        })
    };
    let ignored = |then| Ok(Transition::Ignored { then });
    match (from, input) {
        (Pending, SagaInput::StockReserved) => moved(Reserved, None, vec![RequestPayment]),
        (Pending, SagaInput::StockRejected { reason }) => moved(Rejected, Some(reason), vec![]),
        (Reserved, SagaInput::PaymentCaptured { .. }) => moved(Confirmed, None, vec![]),
        (Reserved, SagaInput::PaymentDeclined { reason }) => moved(Rejected, Some(reason), vec![ReleaseStock]),
        // Stock reserved after the order was cancelled: give it back.
        (Cancelled, SagaInput::StockReserved) => ignored(vec![ReleaseStock]),
        // A charge that completed after the order was cancelled: refund it.
        (Cancelled, SagaInput::PaymentCaptured { .. }) => ignored(vec![Refund]),
        // Redeliveries and late answers for an order that has already moved on.
        (_, SagaInput::StockReserved | SagaInput::StockRejected { .. }) if from != Pending => ignored(vec![]),
        (_, SagaInput::PaymentCaptured { .. } | SagaInput::PaymentDeclined { .. }) if from != Reserved => {
            ignored(vec![])
        }
        (Confirmed, SagaInput::Ship { .. }) => moved(Shipped, None, vec![]),
        (Shipped, SagaInput::Deliver) => moved(Delivered, None, vec![]),
        (Pending, SagaInput::Cancel { reason }) => moved(Cancelled, Some(reason), vec![ReleaseStock]),
        (Reserved, SagaInput::Cancel { reason }) => moved(Cancelled, Some(reason), vec![ReleaseStock]),
        (Confirmed, SagaInput::Cancel { reason }) => moved(Cancelled, Some(reason), vec![ReleaseStock, Refund]),
        (_, SagaInput::Ship { .. }) => Err(TransitionError {
            from,
            action: "shipped",
        }),
        (_, SagaInput::Deliver) => Err(TransitionError {
            from,
            action: "delivered",
        }),
        (_, SagaInput::Cancel { .. }) => Err(TransitionError {
            from,
            action: "cancelled",
        }),
        _ => Err(TransitionError {
            from,
            action: "changed this way",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Compensation::*;
    use OrderStatus::*;

    fn to(from: OrderStatus, input: SagaInput) -> OrderStatus {
        match transition(from, &input).unwrap() {
            Transition::Moved { to, .. } => to,
            Transition::Ignored { .. } => from,
        }
    }

    fn cancel() -> SagaInput {
        SagaInput::Cancel {
            reason: "changed my mind".into(),
        }
    }

    #[test]
    fn happy_path_reaches_delivered() {
        let mut status = Pending;
        for input in [
            SagaInput::StockReserved,
            SagaInput::PaymentCaptured { payment_id: "p".into() },
            SagaInput::Ship {
                carrier: "DHL".into(),
                tracking_number: "1".into(),
            },
            SagaInput::Deliver,
        ] {
            status = to(status, input);
        }
        assert_eq!(status, Delivered);
    }

    #[test]
    fn reservation_asks_for_payment_and_decline_releases_stock() {
        assert_eq!(
            transition(Pending, &SagaInput::StockReserved).unwrap(),
            Transition::Moved {
                to: Reserved,
                reason: None,
                then: vec![RequestPayment]
            }
        );
        assert_eq!(
            transition(
                Reserved,
                &SagaInput::PaymentDeclined {
                    reason: "insufficient_funds".into()
                }
            )
            .unwrap(),
            Transition::Moved {
                to: Rejected,
                reason: Some("insufficient_funds".into()),
                then: vec![ReleaseStock]
            }
        );
    }

    #[test]
    fn cancelling_a_paid_order_refunds_and_releases() {
        assert_eq!(
            transition(Confirmed, &cancel()).unwrap(),
            Transition::Moved {
                to: Cancelled,
                reason: Some("changed my mind".into()),
                then: vec![ReleaseStock, Refund]
            }
        );
    }

    #[test]
    fn shipped_delivered_rejected_and_cancelled_orders_cannot_be_cancelled() {
        for from in [Shipped, Delivered, Rejected, Cancelled] {
            let err = transition(from, &cancel()).unwrap_err();
            assert_eq!(err.from, from);
        }
    }

    #[test]
    fn shipping_needs_a_confirmed_order() {
        for from in [Pending, Reserved, Shipped, Delivered, Rejected, Cancelled] {
            assert!(
                transition(
                    from,
                    &SagaInput::Ship {
                        carrier: "c".into(),
                        tracking_number: "t".into()
                    }
                )
                .is_err()
            );
        }
        assert!(
            transition(Confirmed, &SagaInput::Deliver).is_err(),
            "deliver needs shipped first"
        );
    }

    #[test]
    fn late_saga_events_are_ignored_with_owed_compensation() {
        assert_eq!(
            transition(Cancelled, &SagaInput::StockReserved).unwrap(),
            Transition::Ignored {
                then: vec![ReleaseStock]
            }
        );
        assert_eq!(
            transition(Cancelled, &SagaInput::PaymentCaptured { payment_id: "p".into() }).unwrap(),
            Transition::Ignored { then: vec![Refund] }
        );
        // A redelivered reservation for an order already confirmed changes nothing.
        assert_eq!(
            transition(Confirmed, &SagaInput::StockReserved).unwrap(),
            Transition::Ignored { then: vec![] }
        );
        assert_eq!(
            transition(Rejected, &SagaInput::PaymentDeclined { reason: "x".into() }).unwrap(),
            Transition::Ignored { then: vec![] }
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }
}
