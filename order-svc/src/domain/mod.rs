//! Order domain: the status machine of the saga, pricing, and request validation. No I/O.

mod order;
mod pricing;
mod status;
mod validation;

pub mod analytics;
pub mod rollup;

pub use order::{HistoryEntry, Order, OrderFilter, Placement, TransitionFields};
pub use pricing::{PricedLine, PricingError, price_lines};
pub use status::{Compensation, OrderStatus, SagaInput, Transition, TransitionError, transition};
pub use validation::{NewOrder, NewOrderLine, RawLine, validate_new_order};
