//! Each event message bound once to its topic and its type name (the `event-type` header), and
//! one enum per topic that consumers dispatch on. Producers and consumers use these bindings
//! instead of spelling topics and type names as strings.

use prost::Message;

use crate::events;

/// The topics of DESIGN §3; on JetStream each is one stream.
pub mod topics {
    pub const ORDER_EVENTS: &str = "order-events";
    pub const INVENTORY_EVENTS: &str = "inventory-events";
    pub const PAYMENT_EVENTS: &str = "payment-events";
    pub const CUSTOMER_EVENTS: &str = "customer-events";
    pub const NOTIFICATION_EVENTS: &str = "notification-events";
    pub const GDPR_EVENTS: &str = "gdpr-events";
    pub const OPS_EVENTS: &str = "ops-events";
    /// Every topic, in a fixed order.
    pub const ALL: [&str; 7] = [
        ORDER_EVENTS,
        INVENTORY_EVENTS,
        PAYMENT_EVENTS,
        CUSTOMER_EVENTS,
        NOTIFICATION_EVENTS,
        GDPR_EVENTS,
        OPS_EVENTS,
    ];
}

/// Protobuf package of the event messages; type names are `PACKAGE.<Message>`.
pub const EVENT_PACKAGE: &str = "ordermesh.events.v1";

/// An event message with its topic and fully qualified type name.
pub trait EventMessage: Message + Default + Clone + Send + Sync + 'static {
    /// The topic it is published on.
    const TOPIC: &'static str;
    /// Its fully qualified protobuf name, e.g. `ordermesh.events.v1.OrderPlaced`.
    const TYPE: &'static str;
}

/// The event messages of one topic, as one enum a consumer matches on.
pub trait TopicEvents: Sized + Send + Sync + 'static {
    const TOPIC: &'static str;
    /// The type names this build knows.
    const TYPES: &'static [&'static str];
    /// Decodes `payload` as the message named `event_type`; `Ok(None)` for a type this build
    /// does not know (a newer producer).
    fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, prost::DecodeError>;
    /// The fully qualified type name of this event.
    fn type_name(&self) -> &'static str;
}

macro_rules! topic_events {
    ($(#[$doc:meta])* $name:ident = $topic:path { $($message:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($message(events::$message)),+
        }

        $(
            impl EventMessage for events::$message {
                const TOPIC: &'static str = $topic;
                const TYPE: &'static str = concat!("ordermesh.events.v1.", stringify!($message));
            }

            impl From<events::$message> for $name {
                fn from(message: events::$message) -> Self {
                    Self::$message(message)
                }
            }
        )+

        impl TopicEvents for $name {
            const TOPIC: &'static str = $topic;
            const TYPES: &'static [&'static str] = &[$(<events::$message as EventMessage>::TYPE),+];

            fn decode(event_type: &str, payload: &[u8]) -> Result<Option<Self>, prost::DecodeError> {
                $(
                    if event_type == <events::$message as EventMessage>::TYPE {
                        return events::$message::decode(payload).map(|m| Some(Self::$message(m)));
                    }
                )+
                Ok(None)
            }

            fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$message(_) => <events::$message as EventMessage>::TYPE),+
                }
            }
        }
    };
}

topic_events! {
    /// `order-events`: the order's lifecycle, published by order-svc.
    OrderEvent = topics::ORDER_EVENTS {
        OrderPlaced, OrderStatusChanged, OrderConfirmed, OrderRejected, OrderCancelled, OrderShipped,
        OrderDelivered,
    }
}

topic_events! {
    /// `inventory-events`: stock and catalogue changes, published by product-svc.
    InventoryEvent = topics::INVENTORY_EVENTS {
        StockReserved, StockRejected, StockReleased, StockCommitted, StockAdjusted, ProductCreated,
        ProductUpdated, StockLow,
    }
}

topic_events! {
    /// `payment-events`: payment outcomes, published by payment-svc.
    PaymentEvent = topics::PAYMENT_EVENTS {
        PaymentAuthorized, PaymentCaptured, PaymentDeclined, PaymentFailed, PaymentRefunded, PaymentVoided,
    }
}

topic_events! {
    /// `customer-events`: profile and consent changes, published by customer-svc.
    CustomerEvent = topics::CUSTOMER_EVENTS {
        CustomerCreated, CustomerUpdated, ConsentRecorded,
    }
}

topic_events! {
    /// `notification-events`: notification requests and deliveries.
    NotificationEvent = topics::NOTIFICATION_EVENTS {
        NotificationRequested, NotificationCreated,
    }
}

topic_events! {
    /// `gdpr-events`: export and erasure of a customer's data.
    GdprEvent = topics::GDPR_EVENTS {
        CustomerDataExported, ErasureRequested, ErasureCompleted, CustomerErased,
    }
}

topic_events! {
    /// `ops-events`: operators' actions on a service's dead letters, published by that service.
    OpsEvent = topics::OPS_EVENTS {
        DeadLetterReplayed, DeadLetterDiscarded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_type_decodes_to_its_variant() {
        let placed = events::OrderPlaced {
            order_id: "o-1".into(),
            ..Default::default()
        };
        let decoded = OrderEvent::decode(events::OrderPlaced::TYPE, &placed.encode_to_vec()).unwrap();
        assert_eq!(decoded, Some(OrderEvent::OrderPlaced(placed)));
        assert_eq!(events::OrderPlaced::TYPE, "ordermesh.events.v1.OrderPlaced");
        assert_eq!(events::OrderPlaced::TOPIC, "order-events");
    }

    #[test]
    fn an_unknown_type_is_none_and_a_bad_payload_an_error() {
        assert_eq!(
            OrderEvent::decode("ordermesh.events.v1.OrderTeleported", b"").unwrap(),
            None
        );
        assert!(OrderEvent::decode(events::OrderPlaced::TYPE, &[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn every_message_is_bound_to_the_topic_of_its_enum() {
        for (topic, types) in [
            (OrderEvent::TOPIC, OrderEvent::TYPES),
            (InventoryEvent::TOPIC, InventoryEvent::TYPES),
            (PaymentEvent::TOPIC, PaymentEvent::TYPES),
            (CustomerEvent::TOPIC, CustomerEvent::TYPES),
            (NotificationEvent::TOPIC, NotificationEvent::TYPES),
            (GdprEvent::TOPIC, GdprEvent::TYPES),
            (OpsEvent::TOPIC, OpsEvent::TYPES),
        ] {
            assert!(topics::ALL.contains(&topic));
            assert!(types.iter().all(|t| t.starts_with(EVENT_PACKAGE)));
        }
    }
}
