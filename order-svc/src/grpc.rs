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
use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::client::CallContext;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::Tx;
use ordermesh_platform::grpc::{CorrelationId, principal};
use ordermesh_platform::{ServiceError, Violations, pagination};
use ordermesh_proto::customer::{CustomerStatus, GetCustomerByIdentityRequest, GetCustomerRequest};
use ordermesh_proto::order::order_service_server::OrderService;
use ordermesh_proto::order::{self as pb, OrderStatus as ProtoStatus};
use ordermesh_proto::product::BatchGetProductsRequest;
use prost::Message as _;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::app;
use crate::domain::{
    HistoryEntry, Order, OrderFilter, OrderStatus, PricedLine, RawLine, SagaInput, price_lines, validate_new_order,
};
use crate::events::{self, money, proto_status};
use crate::peers::{Peers, peer_error};
use crate::store;

const READ_ROLES: [Role; 3] = [Role::OrderManager, Role::CustomerService, Role::Admin];
const CANCEL_ROLES: [Role; 3] = [Role::OrderManager, Role::CustomerService, Role::Admin];
const FULFIL_ROLES: [Role; 2] = [Role::OrderManager, Role::Admin];

pub struct OrderApi {
    db: Database,
    peers: Arc<Peers>,
}

impl OrderApi {
    pub fn new(db: Database, peers: Arc<Peers>) -> Self {
        Self { db, peers }
    }

    /// The customer a client principal is linked to, or NOT_FOUND if it has none yet.
    async fn client_customer(&self, context: &CallContext, issuer: &str, subject: &str) -> Result<Uuid, ServiceError> {
        let request = context.request(GetCustomerByIdentityRequest {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        });
        match self.peers.customer.clone().get_customer_by_identity(request).await {
            Ok(response) => response
                .into_inner()
                .customer
                .and_then(|c| Uuid::parse_str(&c.id).ok())
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("customer-svc answered without a customer"))),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(ServiceError::not_found("customer", "of caller"))
            }
            Err(status) => Err(peer_error("customer-svc", status)),
        }
    }

    /// The order if `principal` may see it; NOT_FOUND otherwise (never another customer's data).
    async fn readable_order(
        &self,
        principal: &Principal,
        context: &CallContext,
        raw_id: &str,
    ) -> Result<Order, ServiceError> {
        let id = Uuid::parse_str(raw_id).map_err(|_| ServiceError::invalid("order_id", "must be a UUID"))?;
        let order = store::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("order", id))?;
        match principal {
            Principal::Client { issuer, subject } => {
                let own = self.client_customer(context, issuer, subject).await;
                match own {
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
        let new_order = validate_new_order(
            &message.customer_id,
            &raw_lines,
            &message.payment_method_token,
            &message.idempotency_key,
        )?;

        match &principal {
            Principal::Client { issuer, subject } => {
                let own = self.client_customer(&context, issuer, subject).await;
                match own {
                    Ok(customer) if customer == new_order.customer_id => {}
                    Ok(_) | Err(ServiceError::NotFound { .. }) => {
                        return Err(ServiceError::not_found("customer", new_order.customer_id));
                    }
                    Err(error) => return Err(error),
                }
            }
            Principal::Employee { .. } if principal.has_any_role(&READ_ROLES) => {}
            _ => {
                return Err(ServiceError::PermissionDenied(
                    "placing orders needs a client or an order role".into(),
                ));
            }
        }

        if let Some(key) = &new_order.idempotency_key
            && let Some(existing) = store::find_by_idempotency_key(&self.db, new_order.customer_id, key).await?
        {
            return self.replay(existing).await;
        }

        // The customer must exist and be active (customer-svc applies the caller's rights too).
        let customer = self
            .peers
            .customer
            .clone()
            .get_customer(context.request(GetCustomerRequest {
                customer_id: new_order.customer_id.to_string(),
            }))
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => ServiceError::invalid("customer_id", "no such customer"),
                _ => peer_error("customer-svc", status),
            })?
            .into_inner()
            .customer
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("customer-svc answered without a customer")))?;
        if customer.status != CustomerStatus::Active as i32 {
            return Err(ServiceError::precondition(
                "CUSTOMER_NOT_ACTIVE",
                "the customer account is not active",
            ));
        }

        // Products must exist and be active; their current prices are snapshotted.
        let ids: Vec<String> = new_order.lines.iter().map(|l| l.product_id.to_string()).collect();
        let products = self
            .peers
            .product
            .clone()
            .batch_get_products(context.request(BatchGetProductsRequest { product_ids: ids }))
            .await
            .map_err(|status| peer_error("product-svc", status))?
            .into_inner()
            .products;
        let mut violations = Violations::new();
        let mut lines = Vec::with_capacity(new_order.lines.len());
        for (i, line) in new_order.lines.iter().enumerate() {
            let id = line.product_id.to_string();
            match products.iter().find(|p| p.id == id) {
                None => {
                    violations.add(format!("items[{i}].product_id"), "no such product");
                }
                Some(product) if !product.active => {
                    violations.add(format!("items[{i}].product_id"), "product is not available");
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
        violations.into_result()?;
        let (total_minor, currency) = price_lines(&lines).map_err(|e| ServiceError::invalid("items", e.to_string()))?;

        let now = Utc::now();
        let actor = principal.actor();
        let order = Order {
            id: Uuid::now_v7(),
            customer_id: new_order.customer_id,
            status: OrderStatus::Pending,
            items: lines,
            total_minor,
            currency,
            payment_method_token: new_order.payment_method_token,
            idempotency_key: new_order.idempotency_key.clone(),
            rejection_code: None,
            rejection_reason: None,
            cancellation_reason: None,
            payment_id: None,
            shipping_address: message.shipping_address.map(|a| a.encode_to_vec()),
            carrier: None,
            tracking_number: None,
            correlation_id: correlation_id.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
            shipped_at: None,
            delivered_at: None,
            history: vec![HistoryEntry {
                seq: 1,
                from: None,
                to: OrderStatus::Pending,
                reason: None,
                actor: actor.clone(),
                cause_event_id: None,
                changed_at: now,
            }],
        };
        let mut tx = Tx::begin(&self.db).await?;
        let inserted = store::insert(&mut tx, &order).await;
        if let Err(error) = inserted {
            let _ = tx.rollback().await;
            // A concurrent request with the same key won the race: answer with its order.
            if let (Some(key), sqlx::Error::Database(db)) = (&new_order.idempotency_key, &error)
                && db.is_unique_violation()
                && let Some(existing) = store::find_by_idempotency_key(&self.db, order.customer_id, key).await?
            {
                return self.replay(existing).await;
            }
            return Err(error.into());
        }
        tx.enqueue(&events::placed(&order, &actor)).await?;
        tx.commit().await?;
        tracing::info!(order_id = %order.id, lines = order.items.len(), "order placed");
        Ok(pb::PlaceOrderResponse {
            order: Some(to_proto(&order, true)),
            correlation_id,
            idempotent_replay: false,
        })
    }

    async fn replay(&self, id: Uuid) -> Result<pb::PlaceOrderResponse, ServiceError> {
        let order = store::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("order", id))?;
        Ok(pb::PlaceOrderResponse {
            correlation_id: order.correlation_id.clone(),
            order: Some(to_proto(&order, true)),
            idempotent_replay: true,
        })
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
            created_after: message.created_after.and_then(timestamp),
            created_before: message.created_before.and_then(timestamp),
        };
        match &principal {
            Principal::Client { issuer, subject } => match self.client_customer(&context, issuer, subject).await {
                Ok(own) if filter.customer_id.is_none_or(|c| c == own) => filter.customer_id = Some(own),
                Ok(_) | Err(ServiceError::NotFound { .. }) => {
                    return Ok(pb::ListOrdersResponse {
                        orders: Vec::new(),
                        next_page_token: String::new(),
                    });
                }
                Err(error) => return Err(error),
            },
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
        let rows = store::list(&self.db, &filter, after, limit + 1).await?;
        let (page, next_page_token) =
            pagination::finish(rows, limit, &filter, |o| (o.created_at.timestamp_micros(), o.id));
        Ok(pb::ListOrdersResponse {
            orders: page.iter().map(|o| to_proto(o, false)).collect(),
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
        let mut tx = Tx::begin(&self.db).await?;
        let applied = app::apply(&mut tx, order.id, &input, &principal.actor(), None).await;
        match applied {
            Ok(applied) => {
                tx.commit().await?;
                Ok(applied.order().clone())
            }
            Err(error) => {
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }
}

/// The authenticated caller (owned, so handler futures stay `Send`).
fn caller<T>(request: &Request<T>) -> Result<Principal, ServiceError> {
    principal(request)
        .cloned()
        .map_err(|status| ServiceError::Unauthenticated(status.message().to_owned()))
}

fn domain_status(status: ProtoStatus) -> Option<OrderStatus> {
    OrderStatus::ALL.into_iter().find(|s| proto_status(*s) == status)
}

fn timestamp(ts: prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
}

fn proto_time(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn history_entry(entry: &HistoryEntry) -> pb::StatusHistoryEntry {
    pb::StatusHistoryEntry {
        from_status: entry.from.map(|s| proto_status(s) as i32).unwrap_or_default(),
        to_status: proto_status(entry.to) as i32,
        reason: entry.reason.clone().unwrap_or_default(),
        actor: Some(events::actor(&entry.actor)),
        change_time: Some(proto_time(entry.changed_at)),
        cause_event_id: entry.cause_event_id.clone().unwrap_or_default(),
    }
}

pub fn to_proto(order: &Order, with_history: bool) -> pb::Order {
    let rejection_code = match order.rejection_code.as_deref() {
        Some("OUT_OF_STOCK") => pb::RejectionCode::OutOfStock,
        Some("PAYMENT_DECLINED") => pb::RejectionCode::PaymentDeclined,
        Some("PAYMENT_FAILED") => pb::RejectionCode::PaymentFailed,
        Some("PRODUCT_UNAVAILABLE") => pb::RejectionCode::ProductUnavailable,
        _ => pb::RejectionCode::Unspecified,
    };
    pb::Order {
        id: order.id.to_string(),
        customer_id: order.customer_id.to_string(),
        items: events::items(order),
        total: Some(money(order.total_minor, &order.currency)),
        status: proto_status(order.status) as i32,
        rejection_code: rejection_code as i32,
        rejection_reason: order.rejection_reason.clone().unwrap_or_default(),
        cancellation_reason: order.cancellation_reason.clone().unwrap_or_default(),
        payment_id: order.payment_id.clone().unwrap_or_default(),
        shipping_address: order
            .shipping_address
            .as_deref()
            .and_then(|bytes| ordermesh_proto::common::Address::decode(bytes).ok()),
        shipment: order.carrier.as_ref().map(|carrier| pb::Shipment {
            carrier: carrier.clone(),
            tracking_number: order.tracking_number.clone().unwrap_or_default(),
            ship_time: order.shipped_at.map(proto_time),
            deliver_time: order.delivered_at.map(proto_time),
        }),
        correlation_id: order.correlation_id.clone(),
        history: if with_history {
            order.history.iter().map(history_entry).collect()
        } else {
            Vec::new()
        },
        create_time: Some(proto_time(order.created_at)),
        update_time: Some(proto_time(order.updated_at)),
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
            order: Some(to_proto(&order, true)),
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
                    (1..=64).contains(&message.carrier.trim().len()),
                    "carrier",
                    "must be 1 to 64 characters",
                );
                violations.check(
                    (1..=128).contains(&message.tracking_number.trim().len()),
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
        violations.check(message.note.len() <= 500, "note", "must be at most 500 characters");
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
            order: Some(to_proto(&order, true)),
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
            order: Some(to_proto(&order, true)),
        }))
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
