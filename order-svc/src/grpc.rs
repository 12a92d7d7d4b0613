//! `ordermesh.order.v1.OrderService`: decode, authorize, call the domain and store, map errors.
//!
//! Who may do what (checked here again, whatever the BFF did):
//! - clients act only on their own customer's orders; their customer is resolved through
//!   customer-svc from the token's issuer and subject, and any other order is NOT_FOUND;
//! - employees: order-manager, customer-service and admin place, read and cancel (cancel:
//!   customer-service and admin); order-manager and admin ship and deliver;
//! - services (saga steps) may read.
//!
//! Calls to customer-svc and product-svc forward the caller's token, so those services apply
//! their own rules too.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ordermesh_platform::analytics::{self, DayRange};
use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::client::{CallContext, client_customer, peer_error};
use ordermesh_platform::convert::from_timestamp;
use ordermesh_platform::grpc::{CorrelationId, caller, principal};
use ordermesh_platform::validate::Address;
use ordermesh_platform::{ServiceError, Violations, pagination};
use ordermesh_proto::customer::{Customer, CustomerStatus, GetCustomerByIdentityRequest, GetCustomerRequest};
use ordermesh_proto::order::order_service_server::OrderService;
use ordermesh_proto::order::{self as pb, OrderStatus as ProtoStatus};
use ordermesh_proto::product::BatchGetProductsRequest;
use prost::Message as _;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app::{self, Placed};
use crate::convert::{self, domain_status, history_entry};
use crate::domain::{
    NewOrder, Order, OrderFilter, Placement, PricedLine, PricingError, RawLine, SagaInput, validate_new_order,
};
use crate::peers::Peers;
use crate::store::Store;

const READ_ROLES: [Role; 3] = [Role::OrderManager, Role::CustomerService, Role::Admin];
const CANCEL_ROLES: [Role; 3] = [Role::OrderManager, Role::CustomerService, Role::Admin];
const FULFIL_ROLES: [Role; 2] = [Role::OrderManager, Role::Admin];
const ANALYTICS_ROLES: [Role; 2] = [Role::OrderManager, Role::Admin];

pub struct OrderApi {
    store: Store,
    peers: Arc<Peers>,
}

impl OrderApi {
    pub fn new(store: Store, peers: Arc<Peers>) -> Self {
        Self { store, peers }
    }

    /// The order if `principal` may see it; NOT_FOUND otherwise (never another customer's data).
    async fn readable_order(
        &self,
        principal: &Principal,
        context: &CallContext,
        raw_id: &str,
    ) -> Result<Order, ServiceError> {
        let id = Uuid::parse_str(raw_id).map_err(|_| ServiceError::invalid("order_id", "must be a UUID"))?;
        let order = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("order", id))?;
        match principal {
            Principal::Client { issuer, subject } => {
                match client_customer(&self.peers.customer, context, issuer, subject).await {
                    Ok(customer) if customer == order.customer_id => Ok(order),
                    Ok(_) | Err(ServiceError::NotFound { .. }) => Err(ServiceError::not_found("order", id)),
                    Err(error) => Err(error),
                }
            }
            Principal::Employee { .. } if principal.has_any_role(&READ_ROLES) => Ok(order),
            Principal::Service { .. } => Ok(order),
            Principal::Employee { .. } => Err(ServiceError::PermissionDenied(
                "reading orders needs an order role".into(),
            )),
        }
    }

    /// The profile of the client `issuer`/`subject` (the customer-svc call of
    /// [`client_customer`], keeping the whole answer): NOT_FOUND when it has none yet.
    async fn client_profile(
        &self,
        context: &CallContext,
        issuer: &str,
        subject: &str,
    ) -> Result<(Uuid, Customer), ServiceError> {
        let request = context.request(GetCustomerByIdentityRequest {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        });
        match self.peers.customer.clone().get_customer_by_identity(request).await {
            Ok(response) => response
                .into_inner()
                .customer
                .and_then(|c| Some((Uuid::parse_str(&c.id).ok()?, c)))
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("customer-svc answered without a customer"))),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(ServiceError::not_found("customer", "of caller"))
            }
            Err(status) => Err(peer_error("customer-svc", status)),
        }
    }

    /// Whether `principal` may place an order for `customer_id`: a client only for its own
    /// customer (NOT_FOUND otherwise), an employee with an order role. A client's profile comes
    /// with the answer and is returned, so customer-svc is asked once per order.
    async fn authorize_placing(
        &self,
        principal: &Principal,
        context: &CallContext,
        customer_id: Uuid,
    ) -> Result<Option<Customer>, ServiceError> {
        match principal {
            Principal::Client { issuer, subject } => match self.client_profile(context, issuer, subject).await {
                Ok((own, profile)) if own == customer_id => Ok(Some(profile)),
                Ok(_) | Err(ServiceError::NotFound { .. }) => Err(ServiceError::not_found("customer", customer_id)),
                Err(error) => Err(error),
            },
            Principal::Employee { .. } if principal.has_any_role(&READ_ROLES) => Ok(None),
            _ => Err(ServiceError::PermissionDenied(
                "placing orders needs a client or an order role".into(),
            )),
        }
    }

    /// Checks that the customer exists and is active: the client's own `profile`, or asked of
    /// customer-svc for an employee (with the caller's token, so its rights apply too).
    async fn check_active(
        &self,
        context: &CallContext,
        customer_id: Uuid,
        profile: Option<Customer>,
    ) -> Result<(), ServiceError> {
        let customer = match profile {
            Some(profile) => profile,
            None => self
                .peers
                .customer
                .clone()
                .get_customer(context.request(GetCustomerRequest {
                    customer_id: customer_id.to_string(),
                }))
                .await
                .map_err(|status| match status.code() {
                    tonic::Code::NotFound => ServiceError::invalid("customer_id", "no such customer"),
                    _ => peer_error("customer-svc", status),
                })?
                .into_inner()
                .customer
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("customer-svc answered without a customer")))?,
        };
        if customer.status != CustomerStatus::Active as i32 {
            return Err(ServiceError::precondition(
                "CUSTOMER_NOT_ACTIVE",
                "the customer account is not active",
            ));
        }
        Ok(())
    }

    /// The lines of `request` at the current prices of their products, which must exist and be
    /// active (every problem reported as a field violation).
    async fn price(&self, context: &CallContext, request: &NewOrder) -> Result<Vec<PricedLine>, ServiceError> {
        let ids: Vec<String> = request.lines.iter().map(|l| l.product_id.to_string()).collect();
        let products = self
            .peers
            .product
            .clone()
            .batch_get_products(context.request(BatchGetProductsRequest { product_ids: ids }))
            .await
            .map_err(|status| peer_error("product-svc", status))?
            .into_inner()
            .products;
        // A well-formed line whose product the catalogue does not (or no longer) sell is refused
        // by the catalogue's state, not by its shape: FAILED_PRECONDITION, not INVALID_ARGUMENT.
        let mut unavailable = Vec::new();
        let mut lines = Vec::with_capacity(request.lines.len());
        for (i, line) in request.lines.iter().enumerate() {
            let id = line.product_id.to_string();
            match products.iter().find(|p| p.id == id) {
                None => unavailable.push(format!("items[{i}].product_id: no such product")),
                Some(product) if !product.active => {
                    unavailable.push(format!("items[{i}].product_id: product is not available"));
                }
                Some(product) => {
                    let price = product.price.clone().unwrap_or_default();
                    lines.push(PricedLine {
                        product_id: id,
                        sku: product.sku.clone(),
                        name: product.name.clone(),
                        unit_price_minor: price.amount_minor,
                        currency: price.currency_code,
                        quantity: line.quantity,
                    });
                }
            }
        }
        if !unavailable.is_empty() {
            return Err(ServiceError::precondition(
                "PRODUCT_UNAVAILABLE",
                unavailable.join("; "),
            ));
        }
        Ok(lines)
    }

    async fn place(&self, request: Request<pb::PlaceOrderRequest>) -> Result<pb::PlaceOrderResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        let message = request.into_inner();
        let raw_lines: Vec<RawLine<'_>> = message
            .items
            .iter()
            .map(|i| RawLine {
                product_id: &i.product_id,
                quantity: i.quantity,
            })
            .collect();
        let shipping_address = message.shipping_address.as_ref().map(Address::from);
        let new_order = validate_new_order(
            &message.customer_id,
            &raw_lines,
            shipping_address.as_ref(),
            &message.payment_method_token,
            &message.idempotency_key,
        )?;
        let profile = self
            .authorize_placing(&principal, &context, new_order.customer_id)
            .await?;
        let key = new_order.idempotency_key.as_deref();
        if let Some(existing) = app::placed_earlier(&self.store, new_order.customer_id, key).await? {
            return Ok(replayed(existing));
        }
        self.check_active(&context, new_order.customer_id, profile).await?;
        let lines = self.price(&context, &new_order).await?;

        let actor = principal.actor();
        let placement = Placement {
            shipping_address: message.shipping_address.map(|a| a.encode_to_vec()),
            correlation_id: correlation_id.clone(),
            actor: actor.clone(),
            at: Utc::now(),
        };
        let order = Order::pending(Uuid::now_v7(), new_order, lines, placement).map_err(pricing_refused)?;
        match app::place(&self.store, order, &actor).await? {
            Placed::Replay(existing) => Ok(replayed(existing)),
            Placed::New(order) => {
                tracing::info!(order_id = %order.id, lines = order.items.len(), "order placed");
                Ok(pb::PlaceOrderResponse {
                    order: Some(convert::order(&order, true)),
                    correlation_id,
                    idempotent_replay: false,
                })
            }
        }
    }

    async fn list(&self, request: Request<pb::ListOrdersRequest>) -> Result<pb::ListOrdersResponse, ServiceError> {
        let principal = caller(&request)?;
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let customer_id =
            ordermesh_platform::validate::optional_uuid(&mut violations, "customer_id", &message.customer_id);
        let mut statuses = Vec::new();
        for (i, raw) in message.statuses.iter().enumerate() {
            match ProtoStatus::try_from(*raw).ok().and_then(domain_status) {
                Some(status) => statuses.push(status.as_str().to_owned()),
                None => {
                    violations.add(format!("statuses[{i}]"), "unknown order status");
                }
            }
        }
        let limit = pagination::page_size(message.page_size)?;
        violations.into_result()?;
        let mut filter = OrderFilter {
            customer_id,
            statuses,
            created_after: message.created_after.as_ref().and_then(from_timestamp),
            created_before: message.created_before.as_ref().and_then(from_timestamp),
        };
        match &principal {
            Principal::Client { issuer, subject } => {
                match client_customer(&self.peers.customer, &context, issuer, subject).await {
                    Ok(own) if filter.customer_id.is_none_or(|c| c == own) => filter.customer_id = Some(own),
                    Ok(_) | Err(ServiceError::NotFound { .. }) => {
                        return Ok(pb::ListOrdersResponse {
                            orders: Vec::new(),
                            next_page_token: String::new(),
                        });
                    }
                    Err(error) => return Err(error),
                }
            }
            Principal::Employee { .. } if principal.has_any_role(&READ_ROLES) => {}
            Principal::Service { .. } => {}
            Principal::Employee { .. } => {
                return Err(ServiceError::PermissionDenied(
                    "listing orders needs an order role".into(),
                ));
            }
        }
        let after = pagination::decode::<(i64, Uuid)>(&message.page_token, &filter)?
            .and_then(|(micros, id)| DateTime::from_timestamp_micros(micros).map(|at| (at, id)));
        let rows = self.store.list(&filter, after, limit + 1).await?;
        let (page, next_page_token) =
            pagination::finish(rows, limit, &filter, |o| (o.created_at.timestamp_micros(), o.id));
        Ok(pb::ListOrdersResponse {
            orders: page.iter().map(|o| convert::order(o, false)).collect(),
            next_page_token,
        })
    }

    /// Applies a command to an order the caller may see, in a transaction with its events.
    async fn command(
        &self,
        principal: &Principal,
        context: &CallContext,
        order_id: &str,
        input: SagaInput,
    ) -> Result<Order, ServiceError> {
        let order = self.readable_order(principal, context, order_id).await?;
        app::command(&self.store, order.id, &input, &principal.actor()).await
    }
}

/// The answer to a PlaceOrder repeated with the idempotency key of `order`.
fn replayed(order: Order) -> pb::PlaceOrderResponse {
    pb::PlaceOrderResponse {
        correlation_id: order.correlation_id.clone(),
        order: Some(convert::order(&order, true)),
        idempotent_replay: true,
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        Ok(Response::new(self.place(request).await?))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::GetOrderResponse>, Status> {
        let principal = principal(&request)?.clone();
        let context = CallContext::from_request(&request);
        let order = self
            .readable_order(&principal, &context, &request.get_ref().order_id)
            .await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(convert::order(&order, true)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn update_order_status(
        &self,
        request: Request<pb::UpdateOrderStatusRequest>,
    ) -> Result<Response<pb::UpdateOrderStatusResponse>, Status> {
        let principal = principal(&request)?.clone();
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        let input = match ProtoStatus::try_from(message.status) {
            Ok(ProtoStatus::Shipped) => {
                violations.check(
                    (1..=64).contains(&message.carrier.trim().chars().count()),
                    "carrier",
                    "must be 1 to 64 characters",
                );
                violations.check(
                    (1..=128).contains(&message.tracking_number.trim().chars().count()),
                    "tracking_number",
                    "must be 1 to 128 characters",
                );
                Some(SagaInput::Ship {
                    carrier: message.carrier.trim().to_owned(),
                    tracking_number: message.tracking_number.trim().to_owned(),
                })
            }
            Ok(ProtoStatus::Delivered) => Some(SagaInput::Deliver),
            _ => {
                violations.add("status", "must be ORDER_STATUS_SHIPPED or ORDER_STATUS_DELIVERED");
                None
            }
        };
        violations.check(
            message.note.chars().count() <= 500,
            "note",
            "must be at most 500 characters",
        );
        violations.into_result().map_err(Status::from)?;
        if !principal.has_any_role(&FULFIL_ROLES) {
            return Err(
                ServiceError::PermissionDenied("shipping and delivery need the order-manager role".into()).into(),
            );
        }
        let order = self
            .command(&principal, &context, &message.order_id, input.expect("validated"))
            .await?;
        Ok(Response::new(pb::UpdateOrderStatusResponse {
            order: Some(convert::order(&order, true)),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let principal = principal(&request)?.clone();
        let context = CallContext::from_request(&request);
        let message = request.into_inner();
        let mut violations = Violations::new();
        violations.check(message.reason.len() <= 500, "reason", "must be at most 500 characters");
        violations.into_result().map_err(Status::from)?;
        let allowed = matches!(principal, Principal::Client { .. }) || principal.has_any_role(&CANCEL_ROLES);
        if !allowed {
            return Err(
                ServiceError::PermissionDenied("cancelling orders needs a client or an order role".into()).into(),
            );
        }
        let reason = if message.reason.trim().is_empty() {
            "cancelled on request".to_owned()
        } else {
            message.reason
        };
        let order = self
            .command(&principal, &context, &message.order_id, SagaInput::Cancel { reason })
            .await?;
        Ok(Response::new(pb::CancelOrderResponse {
            order: Some(convert::order(&order, true)),
        }))
    }

    async fn get_order_analytics(
        &self,
        request: Request<pb::GetOrderAnalyticsRequest>,
    ) -> Result<Response<pb::GetOrderAnalyticsResponse>, Status> {
        if !principal(&request)?.has_any_role(&ANALYTICS_ROLES) {
            return Err(ServiceError::PermissionDenied("analytics need the admin or order-manager role".into()).into());
        }
        let message = request.get_ref();
        let range = DayRange::parse(message.range.as_ref(), "range", analytics::MAX_DAYS)?;
        let top = match message.top_products {
            0 => 10,
            n @ 1..=50 => n as usize,
            _ => return Err(ServiceError::invalid("top_products", "must be between 1 and 50 (0 for 10)").into()),
        };
        let figures = self.store.analytics(&range, top).await?;
        Ok(Response::new(convert::order_analytics(&figures)))
    }

    async fn get_order_history(
        &self,
        request: Request<pb::GetOrderHistoryRequest>,
    ) -> Result<Response<pb::GetOrderHistoryResponse>, Status> {
        let principal = principal(&request)?.clone();
        let context = CallContext::from_request(&request);
        let order = self
            .readable_order(&principal, &context, &request.get_ref().order_id)
            .await?;
        Ok(Response::new(pb::GetOrderHistoryResponse {
            entries: order.history.iter().map(history_entry).collect(),
        }))
    }
}

/// Prices and currencies are the catalogue's: an order its products' current prices cannot
/// make is a conflict with the catalogue's state, like an unknown product, not a bad request
/// (nothing in the request's shape could have said so).
fn pricing_refused(error: PricingError) -> ServiceError {
    match error {
        PricingError::Empty => ServiceError::invalid("items", error.to_string()),
        PricingError::MixedCurrencies { .. } => ServiceError::precondition("MIXED_CURRENCIES", error.to_string()),
        PricingError::Overflow => ServiceError::precondition("ORDER_TOTAL_TOO_LARGE", error.to_string()),
        // product-svc holds no negative price: a peer that sends one is broken.
        PricingError::NegativePrice { .. } => ServiceError::internal(anyhow::anyhow!(error)),
    }
}
