//! The ordermesh gRPC contracts: messages and tonic clients/servers generated from
//! `proto/ordermesh/**`, plus the encoded descriptor set that the servers register for
//! reflection so grpcurl works without .proto files.

#![allow(clippy::all, missing_docs)]

/// Every package under `ordermesh.*`, nested as the generated code expects.
pub mod ordermesh {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("ordermesh.common.v1");
        }
    }
    pub mod product {
        pub mod v1 {
            tonic::include_proto!("ordermesh.product.v1");
        }
    }
    pub mod customer {
        pub mod v1 {
            tonic::include_proto!("ordermesh.customer.v1");
        }
    }
    pub mod order {
        pub mod v1 {
            tonic::include_proto!("ordermesh.order.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("ordermesh.payment.v1");
        }
    }
    pub mod audit {
        pub mod v1 {
            tonic::include_proto!("ordermesh.audit.v1");
        }
    }
    pub mod notification {
        pub mod v1 {
            tonic::include_proto!("ordermesh.notification.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("ordermesh.events.v1");
        }
    }
    pub mod gdpr {
        pub mod v1 {
            tonic::include_proto!("ordermesh.gdpr.v1");
        }
    }
    pub mod ops {
        pub mod v1 {
            tonic::include_proto!("ordermesh.ops.v1");
        }
    }
}

pub use ordermesh::{
    audit::v1 as audit, common::v1 as common, customer::v1 as customer, events::v1 as events, gdpr::v1 as gdpr,
    notification::v1 as notification, ops::v1 as ops, order::v1 as order, payment::v1 as payment,
    product::v1 as product,
};

pub mod event_types;

/// Encoded `FileDescriptorSet` of every ordermesh file and its imports, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ordermesh_descriptor.bin"));

/// Encoded `FileDescriptorSet` of `google/rpc/error_details.proto` (and its import), so reflection
/// describes the details of our error statuses.
pub const GOOGLE_RPC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));
