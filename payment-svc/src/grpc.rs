//! The tonic handlers of `ordermesh.payment.v1.PaymentService`: decode, authorize, call
//! [`Payments`], map errors through `ServiceError`.
//!
//! Authorization:
//! - Every RPC needs an authenticated principal; anonymous calls are UNAUTHENTICATED.
//! - AuthorizePayment, CapturePayment and VoidPayment: service principals (order-svc in the
//!   saga) and employees with the `admin` or `order-manager` role.
//! - RefundPayment: service principals (order-svc) and employees with `admin`,
//!   `order-manager` or `customer-service`.
//! - GetPayment and ListPayments: service principals and employees with `admin`,
//!   `order-manager` or `customer-service`.
//! - Clients (the client portal's users) get PERMISSION_DENIED on every RPC of this service,
//!   reads included: payments are shown to clients by the BFF, which looks up the client's
//!   customer, calls this service with its own credentials filtered to that customer, and
//!   answers NOT_FOUND for anything else (DESIGN §5). Keeping clients out here means a client
//!   token that reaches the service directly can never read another customer's payments.
//!
//! Idempotency: every write carries an idempotency key. A repeat with the same request returns
//! the first result and changes nothing; the same key with a different request is
//! FAILED_PRECONDITION (`IDEMPOTENCY_KEY_REUSED`). A second AuthorizePayment for an order that
//! already has a payment that is not DECLINED or FAILED, under another key, is ALREADY_EXISTS
//! (the order is never charged twice; the saga always uses `order-<order_id>-charge`). A gateway
//! decline is not an error (the payment is returned DECLINED with its reason); a transient
//! gateway failure or an open circuit is UNAVAILABLE with nothing declined recorded.

use std::sync::Arc;

use ordermesh_platform::analytics::{self, DayRange};
use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::grpc::{CorrelationId, principal};
use ordermesh_platform::{Actor, ServiceError, Violations, pagination, validate};
use ordermesh_proto::payment as pb;
use ordermesh_proto::payment::payment_service_server::PaymentService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert;
use crate::domain::{Authorize, FollowUp, PaymentFilter};
use crate::service::Payments;

type Reply<T> = Result<Response<T>, Status>;

pub struct PaymentApi {
    payments: Arc<Payments>,
}

impl PaymentApi {
    pub fn new(payments: Arc<Payments>) -> Self {
        Self { payments }
    }
}

fn allow(p: &Principal, roles: &[Role], what: &str) -> Result<(), Status> {
    match p {
        Principal::Service { .. } => Ok(()),
        Principal::Employee { .. } if p.has_any_role(roles) => Ok(()),
        Principal::Employee { .. } => Err(ServiceError::PermissionDenied(format!(
            "{what} requires one of the roles {}",
            roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .into()),
        Principal::Client { .. } => Err(ServiceError::PermissionDenied(
            "clients reach payments through the client portal API, not this service".into(),
        )
        .into()),
    }
}

fn can_charge(p: &Principal) -> Result<(), Status> {
    allow(p, &[Role::Admin, Role::OrderManager], "this operation")
}

fn can_refund(p: &Principal) -> Result<(), Status> {
    allow(
        p,
        &[Role::Admin, Role::OrderManager, Role::CustomerService],
        "refunding a payment",
    )
}

fn can_read(p: &Principal) -> Result<(), Status> {
    allow(
        p,
        &[Role::Admin, Role::OrderManager, Role::CustomerService],
        "reading payments",
    )
}

fn correlation_id<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| Uuid::now_v7().to_string())
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn authorize_payment(
        &self,
        request: Request<pb::AuthorizePaymentRequest>,
    ) -> Reply<pb::AuthorizePaymentResponse> {
        can_charge(principal(&request)?)?;
        let correlation = correlation_id(&request);
        let cmd = Authorize::try_from(request.get_ref())?;
        let view = self.payments.authorize(&cmd, &correlation).await?;
        Ok(Response::new(pb::AuthorizePaymentResponse {
            payment: Some(convert::payment(&view)),
        }))
    }

    async fn capture_payment(&self, request: Request<pb::CapturePaymentRequest>) -> Reply<pb::CapturePaymentResponse> {
        let caller = principal(&request)?.clone();
        can_charge(&caller)?;
        let correlation = correlation_id(&request);
        let op = FollowUp::try_from(request.get_ref())?;
        let (view, _) = self.payments.follow_up(&op, &Actor::of(&caller), &correlation).await?;
        Ok(Response::new(pb::CapturePaymentResponse {
            payment: Some(convert::payment(&view)),
        }))
    }

    async fn void_payment(&self, request: Request<pb::VoidPaymentRequest>) -> Reply<pb::VoidPaymentResponse> {
        let caller = principal(&request)?.clone();
        can_charge(&caller)?;
        let correlation = correlation_id(&request);
        let op = FollowUp::try_from(request.get_ref())?;
        let (view, _) = self.payments.follow_up(&op, &Actor::of(&caller), &correlation).await?;
        Ok(Response::new(pb::VoidPaymentResponse {
            payment: Some(convert::payment(&view)),
        }))
    }

    async fn get_revenue_analytics(
        &self,
        request: Request<pb::GetRevenueAnalyticsRequest>,
    ) -> Reply<pb::GetRevenueAnalyticsResponse> {
        allow(principal(&request)?, &[Role::Admin, Role::OrderManager], "analytics")?;
        let range = DayRange::parse(request.get_ref().range.as_ref(), "range", analytics::MAX_DAYS)?;
        let (days, totals) = self.payments.revenue(&range).await?;
        Ok(Response::new(pb::GetRevenueAnalyticsResponse {
            days: days
                .iter()
                .map(|d| pb::DayRevenue {
                    date: analytics::date_text(d.day),
                    revenue: Some(convert::revenue(d)),
                })
                .collect(),
            totals: totals.iter().map(convert::revenue).collect(),
        }))
    }

    async fn get_payment(&self, request: Request<pb::GetPaymentRequest>) -> Reply<pb::GetPaymentResponse> {
        can_read(principal(&request)?)?;
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "payment_id", &request.get_ref().payment_id);
        v.into_result()?;
        let view = self.payments.get(id.expect("validated")).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(convert::payment(&view)),
        }))
    }

    async fn list_payments(&self, request: Request<pb::ListPaymentsRequest>) -> Reply<pb::ListPaymentsResponse> {
        can_read(principal(&request)?)?;
        let req = request.into_inner();
        let filter = PaymentFilter::try_from(&req)?;
        let limit = pagination::page_size(req.page_size)?;
        let (page, next_page_token) = pagination::fetch_page(
            limit,
            &req.page_token,
            &filter,
            |v: &crate::domain::PaymentView| v.payment.id,
            |after, n| self.payments.list(&filter, after, n),
        )
        .await?;
        Ok(Response::new(pb::ListPaymentsResponse {
            payments: page.iter().map(convert::payment).collect(),
            next_page_token,
        }))
    }

    async fn refund_payment(&self, request: Request<pb::RefundPaymentRequest>) -> Reply<pb::RefundPaymentResponse> {
        let caller = principal(&request)?.clone();
        can_refund(&caller)?;
        let correlation = correlation_id(&request);
        let op = FollowUp::try_from(request.get_ref())?;
        let (view, refund) = self.payments.follow_up(&op, &Actor::of(&caller), &correlation).await?;
        let currency = view.payment.amount.currency_code.clone();
        Ok(Response::new(pb::RefundPaymentResponse {
            payment: Some(convert::payment(&view)),
            refund: refund.map(|r| convert::refund(&r, &currency)),
        }))
    }
}
