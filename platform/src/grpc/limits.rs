//! The message-size limit of the configuration, applied to every generated server by the
//! service host (tonic sets it per generated service, not per server).

use ordermesh_proto::{audit, customer, gdpr, notification, ops, order, payment, product};

/// A generated server whose message sizes can be limited.
pub trait MessageLimits {
    /// Limits decoded and encoded messages to `max` bytes.
    fn limit_messages(self, max: usize) -> Self;
}

macro_rules! message_limits {
    ($($server:ty : $service:path),+ $(,)?) => {
        $(
            impl<T: $service> MessageLimits for $server {
                fn limit_messages(self, max: usize) -> Self {
                    self.max_decoding_message_size(max).max_encoding_message_size(max)
                }
            }
        )+
    };
}

message_limits! {
    product::product_service_server::ProductServiceServer<T>: product::product_service_server::ProductService,
    customer::customer_service_server::CustomerServiceServer<T>: customer::customer_service_server::CustomerService,
    order::order_service_server::OrderServiceServer<T>: order::order_service_server::OrderService,
    payment::payment_service_server::PaymentServiceServer<T>: payment::payment_service_server::PaymentService,
    audit::audit_service_server::AuditServiceServer<T>: audit::audit_service_server::AuditService,
    notification::notification_service_server::NotificationServiceServer<T>:
        notification::notification_service_server::NotificationService,
    gdpr::personal_data_service_server::PersonalDataServiceServer<T>:
        gdpr::personal_data_service_server::PersonalDataService,
    ops::ops_service_server::OpsServiceServer<T>: ops::ops_service_server::OpsService,
}
