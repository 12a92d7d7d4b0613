//! The tonic handlers of `ordermesh.customer.v1.CustomerService`.
//!
//! Authorization (DESIGN §5):
//! - Every RPC needs an authenticated principal (anonymous → UNAUTHENTICATED).
//! - A client may read and update only its own customer: the one whose identity link equals
//!   the token's issuer and subject. Any other id is NOT_FOUND, exactly as an unknown id, so a
//!   client cannot probe which ids exist. A client may not change `status` and may not list.
//! - Employees: `customer-service` and `admin` read and write; `order-manager` reads (and lists).
//!   Other employees are PERMISSION_DENIED.
//! - Service principals (other ordermesh services) may read, never write.
//!
//! Personal data (names, e-mails, phones, addresses, identity subjects) is never logged: log
//! lines carry customer ids only.

use chrono::DateTime;
use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::gdpr::ERASURE_PARTICIPANTS;
use ordermesh_platform::grpc::principal;
use ordermesh_platform::{Actor, Origin, ServiceError, Violations, pagination, validate};
use ordermesh_proto::customer as pb;
use ordermesh_proto::customer::customer_service_server::CustomerService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert;
use crate::domain::{
    self, Consent, Customer, CustomerPatch, DataExport, Identity, OrderHistory, SegmentBounds, SegmentRules,
};
use crate::export::ExportWake;
use crate::store::{ConsentCursor, Erased, Store};

type Reply<T> = Result<Response<T>, Status>;

const READ_ROLES: [Role; 3] = [Role::CustomerService, Role::Admin, Role::OrderManager];
const WRITE_ROLES: [Role; 2] = [Role::CustomerService, Role::Admin];

/// What a caller may see or change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// Only the customer linked to this identity.
    Own { issuer: String, subject: String },
    /// Any customer.
    All,
}

impl Scope {
    fn permits(&self, customer: &Customer) -> bool {
        match self {
            Scope::All => true,
            Scope::Own { issuer, subject } => customer.is_linked_to(issuer, subject),
        }
    }
}

fn denied(message: &str) -> Status {
    ServiceError::PermissionDenied(message.to_owned()).into()
}

fn read_scope(p: &Principal) -> Result<Scope, Status> {
    match p {
        Principal::Client { issuer, subject } => Ok(Scope::Own {
            issuer: issuer.clone(),
            subject: subject.clone(),
        }),
        Principal::Service { .. } => Ok(Scope::All),
        employee if employee.has_any_role(&READ_ROLES) => Ok(Scope::All),
        _ => Err(denied(
            "reading customers requires the customer-service, order-manager or admin role",
        )),
    }
}

fn write_scope(p: &Principal) -> Result<Scope, Status> {
    match p {
        Principal::Client { issuer, subject } => Ok(Scope::Own {
            issuer: issuer.clone(),
            subject: subject.clone(),
        }),
        employee if employee.has_any_role(&WRITE_ROLES) => Ok(Scope::All),
        _ => Err(denied("changing customers requires the customer-service or admin role")),
    }
}

/// Who may export or erase: a client its own customer; `customer-service` and `admin` anyone.
/// Services may not: these are the data subject's rights, exercised by the subject or by staff.
fn gdpr_scope(p: &Principal) -> Result<Scope, Status> {
    match p {
        Principal::Service { .. } => Err(denied(
            "GDPR exports and erasures are requested by the customer or by customer-service or admin staff",
        )),
        other => write_scope(other),
    }
}

/// Who records a consent for `customer_id`: a client is recorded as that customer.
fn actor(p: &Principal, customer_id: Uuid) -> Actor {
    let actor = Actor::of(p);
    match p {
        Principal::Client { .. } => Actor {
            id: customer_id.to_string(),
            ..actor
        },
        _ => actor,
    }
}

/// Who writes customer `customer_id`'s data, and the request's correlation id, for the event the
/// write publishes.
fn origin<T>(request: &Request<T>, customer_id: Uuid) -> Result<Origin, Status> {
    let origin = Origin::of_request(request)?;
    Ok(Origin {
        actor: actor(principal(request)?, customer_id),
        ..origin
    })
}

fn parse_id(field: &str, value: &str) -> Result<Uuid, ServiceError> {
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, field, value);
    v.into_result()?;
    Ok(id.expect("validated"))
}

/// A `ListConsents` page token holds the record time as integer microseconds.
type ConsentPageKey = (i64, Uuid);

fn consent_page_key(consent: &Consent) -> ConsentPageKey {
    let (time, id) = consent.list_key();
    (time.timestamp_micros(), id)
}

fn consent_cursor((micros, id): ConsentPageKey) -> Result<ConsentCursor, ServiceError> {
    let time =
        DateTime::from_timestamp_micros(micros).ok_or_else(|| ServiceError::invalid("page_token", "is not valid"))?;
    Ok((time, id))
}

pub struct CustomerApi {
    store: Store,
    exports: ExportWake,
    segments: SegmentRules,
}

impl CustomerApi {
    pub fn new(store: Store, exports: ExportWake, segments: SegmentRules) -> Self {
        Self {
            store,
            exports,
            segments,
        }
    }

    /// `customers` as the API shows them to `caller`: employees see each one's segments under
    /// `bounds`; clients and services do not (segments describe a customer to staff).
    async fn shown(
        &self,
        caller: &Principal,
        customers: &[Customer],
        bounds: &SegmentBounds,
    ) -> Result<Vec<pb::Customer>, ServiceError> {
        let mut shown: Vec<pb::Customer> = customers.iter().map(pb::Customer::from).collect();
        if !matches!(caller, Principal::Employee { .. }) {
            return Ok(shown);
        }
        let ids: Vec<Uuid> = customers.iter().map(|c| c.id).collect();
        let histories = self.store.order_histories(&ids).await?;
        let none = OrderHistory::default();
        for (customer, out) in customers.iter().zip(&mut shown) {
            let history = histories.get(&customer.id).unwrap_or(&none);
            out.segments = bounds
                .segments(customer, history)
                .into_iter()
                .map(|s| pb::CustomerSegment::from(s) as i32)
                .collect();
        }
        Ok(shown)
    }

    /// One customer as [`Self::shown`] shows it, with the segments as they are now.
    async fn shown_one(&self, caller: &Principal, customer: &Customer) -> Result<pb::Customer, ServiceError> {
        let bounds = self.segments.at(domain::now());
        let shown = self.shown(caller, std::slice::from_ref(customer), &bounds).await?;
        Ok(shown.into_iter().next().expect("one customer shown"))
    }

    /// The customer `id` if the scope may see it; NOT_FOUND otherwise (also for clients asking
    /// for someone else's id).
    async fn visible(&self, scope: &Scope, id: Uuid) -> Result<Customer, ServiceError> {
        match self.store.get_customer(id).await? {
            Some(c) if scope.permits(&c) => Ok(c),
            _ => Err(ServiceError::not_found("customer", id)),
        }
    }
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(&self, request: Request<pb::CreateCustomerRequest>) -> Reply<pb::CreateCustomerResponse> {
        let scope = write_scope(principal(&request)?)?;
        let req = request.get_ref();
        let requested = req.identity.as_ref().map(|i| Identity {
            issuer: i.issuer.clone(),
            subject: i.subject.clone(),
        });
        let identity = match (&scope, requested) {
            (Scope::All, requested) => requested,
            (Scope::Own { issuer, subject }, None) => Some(Identity {
                issuer: issuer.clone(),
                subject: subject.clone(),
            }),
            (Scope::Own { issuer, subject }, Some(requested)) => {
                if requested.issuer != *issuer || requested.subject != *subject {
                    return Err(denied(
                        "a client may only create the customer linked to its own identity",
                    ));
                }
                Some(requested)
            }
        };
        let customer = domain::new_customer(&req.into(), identity, &req.idempotency_key)?;
        let key = (!req.idempotency_key.is_empty()).then_some(req.idempotency_key.as_str());
        let origin = origin(&request, customer.id)?;
        let created = self.store.create_customer(&customer, key, &origin).await?;
        if !scope.permits(&created) {
            // An idempotency key reused by another client: do not reveal that customer.
            return Err(ServiceError::AlreadyExists {
                resource: "customer",
                field: "idempotency_key",
            }
            .into());
        }
        tracing::info!(customer_id = %created.id, "customer created");
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(self.shown_one(principal(&request)?, &created).await?),
        }))
    }

    async fn get_customer(&self, request: Request<pb::GetCustomerRequest>) -> Reply<pb::GetCustomerResponse> {
        let caller = principal(&request)?;
        let scope = read_scope(caller)?;
        let id = parse_id("customer_id", &request.get_ref().customer_id)?;
        let customer = self.visible(&scope, id).await?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(self.shown_one(caller, &customer).await?),
        }))
    }

    async fn get_customer_by_identity(
        &self,
        request: Request<pb::GetCustomerByIdentityRequest>,
    ) -> Reply<pb::GetCustomerByIdentityResponse> {
        let scope = read_scope(principal(&request)?)?;
        let req = request.get_ref();
        let mut v = Violations::new();
        validate::length(&mut v, "issuer", &req.issuer, 1, 512);
        validate::length(&mut v, "subject", &req.subject, 1, 256);
        v.into_result()?;
        let not_found = || ServiceError::NotFound {
            resource: "customer",
            id: "for this identity".into(),
        };
        let found = self.store.get_customer_by_identity(&req.issuer, &req.subject).await;
        let customer = match found? {
            Some(c) if scope.permits(&c) => c,
            _ => return Err(not_found().into()),
        };
        // A client resolving its own identity is signing in: the activity that keeps the
        // customer from being erased for inactivity (written at most once a day, so most
        // sign-ins and orders write nothing).
        let now = domain::now();
        if matches!(scope, Scope::Own { .. })
            && customer.activity_is_stale(now)
            && let Err(error) = self.store.touch_activity(customer.id, now).await
        {
            tracing::warn!(customer_id = %customer.id, %error, "recording a sign-in failed");
        }
        Ok(Response::new(pb::GetCustomerByIdentityResponse {
            customer: Some((&customer).into()),
        }))
    }

    async fn update_customer(&self, request: Request<pb::UpdateCustomerRequest>) -> Reply<pb::UpdateCustomerResponse> {
        let scope = write_scope(principal(&request)?)?;
        let req = request.get_ref();
        let (id, patch) = convert::customer_update(req)?;
        if patch.status.is_some() && scope != Scope::All {
            return Err(denied(
                "changing the status requires the customer-service or admin role",
            ));
        }
        let allowed = move |c: &Customer| scope.permits(c);
        let origin = origin(&request, id)?;
        let customer = self
            .store
            .update_customer(id, &patch, req.expected_version, &allowed, &origin)
            .await?;
        tracing::info!(customer_id = %id, version = customer.version, "customer updated");
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(self.shown_one(principal(&request)?, &customer).await?),
        }))
    }

    async fn list_customers(&self, request: Request<pb::ListCustomersRequest>) -> Reply<pb::ListCustomersResponse> {
        let caller = principal(&request)?;
        if !caller.has_any_role(&READ_ROLES) {
            return Err(denied(
                "listing customers requires the customer-service, order-manager or admin role",
            ));
        }
        let req = request.get_ref();
        let filter = convert::customer_filter(req)?;
        let limit = pagination::page_size(req.page_size)?;
        // One instant for the filter and the segments shown: every customer listed is shown in
        // the segments it was selected by.
        let bounds = self.segments.at(domain::now());
        let (rows, next_page_token) =
            pagination::fetch_page(limit, &req.page_token, &filter, Customer::sort_key, |after, n| {
                self.store.list_customers(&filter, &bounds, after, n)
            })
            .await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: self.shown(caller, &rows, &bounds).await?,
            next_page_token,
        }))
    }

    async fn get_preferences(&self, request: Request<pb::GetPreferencesRequest>) -> Reply<pb::GetPreferencesResponse> {
        let scope = read_scope(principal(&request)?)?;
        let id = parse_id("customer_id", &request.get_ref().customer_id)?;
        let customer = self.visible(&scope, id).await?;
        Ok(Response::new(pb::GetPreferencesResponse {
            preferences: Some((&customer.preferences).into()),
        }))
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Reply<pb::UpdatePreferencesResponse> {
        let scope = write_scope(principal(&request)?)?;
        let (id, preferences) = convert::preferences_update(request.get_ref())?;
        let patch = CustomerPatch {
            preferences,
            ..Default::default()
        };
        let allowed = move |c: &Customer| scope.permits(c);
        let origin = origin(&request, id)?;
        let customer = self.store.update_customer(id, &patch, None, &allowed, &origin).await?;
        tracing::info!(customer_id = %id, "customer preferences updated");
        Ok(Response::new(pb::UpdatePreferencesResponse {
            preferences: Some((&customer.preferences).into()),
        }))
    }

    async fn record_consent(&self, request: Request<pb::RecordConsentRequest>) -> Reply<pb::RecordConsentResponse> {
        let caller = principal(&request)?;
        let scope = write_scope(caller)?;
        let req = request.get_ref();
        let id = parse_id("customer_id", &req.customer_id)?;
        let consent = domain::new_consent(&req.into(), id, actor(caller, id))?;
        self.visible(&scope, id).await?;
        let origin = origin(&request, id)?;
        self.store.record_consent(&consent, &origin.correlation_id).await?;
        tracing::info!(customer_id = %id, purpose = %consent.purpose, granted = consent.granted, "consent recorded");
        Ok(Response::new(pb::RecordConsentResponse {
            consent: Some((&consent).into()),
        }))
    }

    async fn list_consents(&self, request: Request<pb::ListConsentsRequest>) -> Reply<pb::ListConsentsResponse> {
        let scope = read_scope(principal(&request)?)?;
        let req = request.get_ref();
        let id = parse_id("customer_id", &req.customer_id)?;
        let mut v = Violations::new();
        v.check(
            req.purpose.is_empty() || domain::is_valid_purpose(&req.purpose),
            "purpose",
            "must be 1-64 characters of a-z, 0-9 and '_'",
        );
        v.into_result()?;
        self.visible(&scope, id).await?;
        let purpose = (!req.purpose.is_empty()).then_some(req.purpose.as_str());
        let filters = (id, purpose);
        let limit = pagination::page_size(req.page_size)?;
        let (rows, next_page_token) = pagination::fetch_page(
            limit,
            &req.page_token,
            &filters,
            consent_page_key,
            |after: Option<ConsentPageKey>, n| async move {
                let after = after.map(consent_cursor).transpose()?;
                Ok::<_, ServiceError>(self.store.list_consents(id, purpose, after, n).await?)
            },
        )
        .await?;
        Ok(Response::new(pb::ListConsentsResponse {
            consents: rows.iter().map(pb::Consent::from).collect(),
            next_page_token,
        }))
    }

    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Reply<pb::ExportCustomerDataResponse> {
        let caller = principal(&request)?;
        let scope = gdpr_scope(caller)?;
        let id = parse_id("customer_id", &request.get_ref().customer_id)?;
        self.visible(&scope, id).await?;
        let origin = origin(&request, id)?;
        let requested = DataExport::new(id, origin.actor, origin.correlation_id, domain::now());
        let export = self.store.request_export(&requested).await?;
        self.exports.wake();
        tracing::info!(customer_id = %id, export_id = %export.id, "export requested");
        Ok(Response::new(pb::ExportCustomerDataResponse {
            export: Some((&export).into()),
        }))
    }

    async fn get_customer_data_export(
        &self,
        request: Request<pb::GetCustomerDataExportRequest>,
    ) -> Reply<pb::GetCustomerDataExportResponse> {
        let scope = gdpr_scope(principal(&request)?)?;
        let req = request.get_ref();
        let id = parse_id("customer_id", &req.customer_id)?;
        let export_id = parse_id("export_id", &req.export_id)?;
        // The customer is checked first: after an erasure a client's export is gone with it.
        self.visible(&scope, id).await?;
        let export = match self.store.get_export(export_id).await? {
            Some(export) if export.customer_id == id => export,
            _ => return Err(ServiceError::not_found("export", export_id).into()),
        };
        Ok(Response::new(pb::GetCustomerDataExportResponse {
            export: Some((&export).into()),
        }))
    }

    async fn erase_customer(&self, request: Request<pb::EraseCustomerRequest>) -> Reply<pb::EraseCustomerResponse> {
        let scope = gdpr_scope(principal(&request)?)?;
        let req = request.get_ref();
        let id = parse_id("customer_id", &req.customer_id)?;
        let reason = domain::erasure_reason(&req.reason)?;
        let allowed = move |c: &Customer| scope.permits(c);
        let origin = origin(&request, id)?;
        let Erased { customer, erasure, .. } = self.store.erase_customer(id, reason, &allowed, &origin).await?;
        let participants = ERASURE_PARTICIPANTS.map(|w| w.service());
        let pending = erasure.pending(&participants);
        tracing::info!(customer_id = %id, erasure_request_id = %erasure.id, pending = ?pending, "erasure requested");
        Ok(Response::new(pb::EraseCustomerResponse {
            customer: Some((&customer).into()),
            erasure_request_id: erasure.id.to_string(),
            confirmed_services: erasure.confirmed.clone(),
            pending_services: pending.into_iter().map(str::to_owned).collect(),
        }))
    }
}
