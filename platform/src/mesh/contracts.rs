//! The RPCs of the platform's contracts, read from the compiled descriptors: their paths, and
//! whether each is a read (`option idempotency_level = NO_SIDE_EFFECTS` in the `.proto`). The
//! mesh's retries and the `ops` workload's rights follow that option, so a method's contract
//! says once whether repeating it is safe.

use std::sync::OnceLock;

use prost::Message;
use prost_types::method_options::IdempotencyLevel;

/// Health and reflection: served by every service.
pub const HEALTH: &str = "grpc.health.v1.Health";
pub const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
pub const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// One RPC of a service's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// `ordermesh.order.v1.OrderService`.
    pub service: String,
    /// `PlaceOrder`.
    pub name: String,
    /// Declared free of side effects: safe to repeat, open to operators.
    pub read: bool,
    /// A server- or client-streaming call (never retried by the mesh).
    pub streaming: bool,
    /// `/ordermesh.order.v1.OrderService/PlaceOrder`, as in HTTP/2's `:path`.
    pub path: String,
}

/// Every RPC of the ordermesh contracts, in descriptor order.
pub fn methods() -> &'static [Method] {
    static METHODS: OnceLock<Vec<Method>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let set = prost_types::FileDescriptorSet::decode(ordermesh_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set decodes");
        let mut methods = Vec::new();
        for file in set.file.iter().filter(|f| f.package().starts_with("ordermesh.")) {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    let level = method
                        .options
                        .as_ref()
                        .map(|o| o.idempotency_level())
                        .unwrap_or(IdempotencyLevel::IdempotencyUnknown);
                    methods.push(Method {
                        path: format!("/{full}/{}", method.name()),
                        service: full.clone(),
                        name: method.name().to_owned(),
                        read: level == IdempotencyLevel::NoSideEffects,
                        streaming: method.client_streaming() || method.server_streaming(),
                    });
                }
            }
        }
        methods
    })
}

/// The method at `path`, if it is one of ours.
pub fn method(path: &str) -> Option<&'static Method> {
    methods().iter().find(|m| m.path == path)
}

/// The paths of the health and reflection services a workload serves besides its own.
pub fn infrastructure_paths() -> [&'static str; 4] {
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_marked_in_the_contracts() {
        let place = method("/ordermesh.order.v1.OrderService/PlaceOrder").unwrap();
        assert!(!place.read && !place.streaming);
        let get = method("/ordermesh.order.v1.OrderService/GetOrder").unwrap();
        assert!(get.read);
        let subscribe = method("/ordermesh.notification.v1.NotificationService/Subscribe").unwrap();
        assert!(subscribe.read && subscribe.streaming);
        assert!(method("/ordermesh.order.v1.OrderService/Nope").is_none());
        // Every write the issue names stays a write.
        for path in [
            "/ordermesh.payment.v1.PaymentService/AuthorizePayment",
            "/ordermesh.payment.v1.PaymentService/RefundPayment",
            "/ordermesh.order.v1.OrderService/CancelOrder",
            "/ordermesh.order.v1.OrderService/UpdateOrderStatus",
            "/ordermesh.customer.v1.CustomerService/EraseCustomer",
        ] {
            assert!(!method(path).unwrap().read, "{path} is marked a read");
        }
    }
}
