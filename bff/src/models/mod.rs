//! The JSON shapes of the REST API (camelCase, ids as strings, money as `{amount, currency}`
//! in minor units, times as RFC 3339) and their conversions from the service contracts, one
//! module per resource; what they share is in [`common`]. Request bodies reject unknown fields.
//! Every type is re-exported here, so `crate::models::Order` and the like name them.

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod common;
pub mod customers;
pub mod gdpr;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod products;

pub use admin::{DeadLetter, DeadLetterPage, DiscardDeadLetter, ServiceStatus, SystemStatus};
pub use analytics::{AnalyticsSummary, OrderFigures, RevenueFigures};
pub use audit::{AuditEntry, AuditPage, RecordAuditEvent};
pub use common::{Actor, Address, Money, required, time};
pub use customers::{
    ContactChannel, CreateProfile, Customer, CustomerPage, CustomerSegment, CustomerStatus, Preferences, UpdateCustomer,
};
pub use gdpr::{
    Channel, Consent, ConsentPage, DataExport, Erasure, ExportStatus, NotificationPreferences, RecordConsent,
    UpdateNotificationPreferences,
};
pub use notifications::{
    MarkRead, MarkReadResult, Notification, NotificationPage, NotificationType, Recipient, SendNotification,
    StreamTicket,
};
pub use orders::{
    CreateOrder, NewOrderItem, Order, OrderItem, OrderPage, OrderStatus, Shipment, StatusChange, UpdateOrderStatus,
};
pub use payments::{CreatePayment, CreateRefund, Payment, PaymentPage, PaymentStatus, Refund, RefundResult};
pub use products::{
    Availability, Category, CategoryPage, CreateCategory, CreateProduct, Product, ProductPage, StockAdjustment,
    StockLevel, StockLevels, UpdateProduct,
};
