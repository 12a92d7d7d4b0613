//! `/api/v1/customers`: the client's own profile (`/me`), profiles by id, search (employees)
//! and a customer's order history.

use axum::Json;
use axum::response::Response;
use ordermesh_platform::auth::Principal;
use ordermesh_proto::customer as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::orders::{ListOrders, list_for};
use super::{Shared, check_version, created, expected_version, next_token};
use crate::auth::{Caller, forget_customer, own_customer};
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size};
use crate::models::{
    CreateProfile, Customer, CustomerPage, CustomerSegment, CustomerStatus, OrderPage, UpdateCustomer,
};
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListCustomers {
    /// Text matched against display name and e-mail, at most 200 characters.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Only customers in this state (`unspecified`: any).
    pub status: Option<CustomerStatus>,
    /// Only customers in every one of these segments, comma-separated
    /// (`new`, `repeat`, `high_value`, `dormant`; rules in the README).
    #[param(
        pattern = "^(new|repeat|high_value|dormant)(,(new|repeat|high_value|dormant))*$",
        example = "repeat,high_value"
    )]
    pub segments: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// The segments of a `segments` filter, as the service takes them.
fn segments(list: Option<&str>) -> Result<Vec<i32>, Problem> {
    list.map(|list| {
        list.split(',')
            .enumerate()
            .map(|(i, name)| {
                CustomerSegment::parse(name)
                    .map(|s| s.to_proto() as i32)
                    .ok_or_else(|| {
                        Problem::invalid_field(format!("segments[{i}]"), "must be new, repeat, high_value or dormant")
                    })
            })
            .collect()
    })
    .transpose()
    .map(Option::unwrap_or_default)
}

async fn fetch(state: &crate::AppState, caller: &Caller, id: String) -> ApiResult<Customer> {
    let customer = state
        .clients
        .customer
        .read
        .clone()
        .get_customer(caller.ctx().request(pb::GetCustomerRequest { customer_id: id }))
        .await?
        .into_inner()
        .customer
        .ok_or_else(Problem::internal)?;
    // Employees' reads of customer data are audited (GDPR accountability). Fail closed: without
    // its audit record the read is not served.
    if matches!(caller.principal, Principal::Employee { .. }) {
        let record = ordermesh_proto::audit::RecordAuditEventRequest {
            action: "customer.read".into(),
            entity_type: "customer".into(),
            entity_id: customer.id.clone(),
            data_subject_id: customer.id.clone(),
            correlation_id: caller.correlation_id.clone(),
            ..Default::default()
        };
        state
            .clients
            .audit
            .write
            .clone()
            .record_audit_event(caller.ctx().request(record))
            .await?;
    }
    Ok(Customer::from_proto(customer))
}

/// The signed-in client's own profile.
///
/// 404 with type `https://ordermesh.dev/problems/customer-profile-missing` on the first
/// sign-in, before the profile was created with `POST /api/v1/customers/me`.
#[utoipa::path(get, path = "/api/v1/customers/me", tag = "customers",
    responses((status = 200, description = "The caller's profile", body = Customer)))]
pub async fn me(state: Shared, caller: Caller) -> ApiResult<Json<Customer>> {
    let id = own_customer(&state, &caller).await?;
    Ok(Json(fetch(&state, &caller, id).await?))
}

/// Create the signed-in client's profile, linked to its sign-in.
#[utoipa::path(post, path = "/api/v1/customers/me", tag = "customers", request_body = CreateProfile,
    responses((status = 201, description = "Created", body = Customer,
        headers(("Location" = String, description = "URL of the customer")))))]
pub async fn create_me(state: Shared, caller: Caller, ApiJson(body): ApiJson<CreateProfile>) -> ApiResult<Response> {
    let Principal::Client { issuer, subject } = &caller.principal else {
        return Err(Problem::forbidden("only clients have an own profile"));
    };
    let request = pb::CreateCustomerRequest {
        display_name: body.display_name,
        email: body.email,
        phone: body.phone,
        addresses: body.addresses.iter().map(|a| a.to_proto()).collect(),
        identity: Some(pb::IdentityLink {
            issuer: issuer.clone(),
            subject: subject.clone(),
        }),
        preferences: body.preferences.map(|p| p.to_proto()),
        idempotency_key: String::new(),
    };
    let customer = state
        .clients
        .customer
        .write
        .clone()
        .create_customer(caller.ctx().request(request))
        .await?
        .into_inner()
        .customer
        .ok_or_else(Problem::internal)?;
    forget_customer(&state, &caller).await;
    let location = format!("/api/v1/customers/{}", customer.id);
    Ok(created(&location, Customer::from_proto(customer)))
}

/// Search customers (employees).
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(ListCustomers),
    responses((status = 200, description = "A page of customers", body = CustomerPage)))]
pub async fn list(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListCustomers>,
) -> ApiResult<Json<CustomerPage>> {
    use pb::CustomerStatus as P;
    let request = pb::ListCustomersRequest {
        query: q.q.unwrap_or_default(),
        status: match q.status {
            None | Some(CustomerStatus::Unspecified) => P::Unspecified,
            Some(CustomerStatus::Active) => P::Active,
            Some(CustomerStatus::Suspended) => P::Suspended,
            Some(CustomerStatus::Erasing) => P::Erasing,
            Some(CustomerStatus::Erased) => P::Erased,
        } as i32,
        segments: segments(q.segments.as_deref())?,
        page_size: page_size(q.page_size)?,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .customer
        .read
        .clone()
        .list_customers(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(CustomerPage {
        items: response.customers.into_iter().map(Customer::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Get a customer (a client: only its own).
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    responses((status = 200, description = "The customer", body = Customer)))]
pub async fn get(state: Shared, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Customer>> {
    Ok(Json(fetch(&state, &caller, id).await?))
}

/// Update a customer profile: the fields present are replaced (none: nothing changes; a
/// client: only its own).
#[utoipa::path(put, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id")), request_body = UpdateCustomer,
    responses((status = 200, description = "The updated customer", body = Customer)))]
pub async fn update(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateCustomer>,
) -> ApiResult<Json<Customer>> {
    let expected_version = expected_version(body.expected_version)?;
    let mut paths = Vec::new();
    let mut customer = pb::Customer {
        id: id.clone(),
        ..Default::default()
    };
    if let Some(v) = body.display_name {
        customer.display_name = v;
        paths.push("display_name");
    }
    if let Some(v) = body.email {
        customer.email = v;
        paths.push("email");
    }
    if let Some(v) = body.phone {
        customer.phone = v;
        paths.push("phone");
    }
    if let Some(v) = body.addresses {
        customer.addresses = v.iter().map(|a| a.to_proto()).collect();
        paths.push("addresses");
    }
    if let Some(v) = body.preferences {
        customer.preferences = Some(v.to_proto());
        paths.push("preferences");
    }
    if paths.is_empty() {
        // Nothing to replace: the answer is the profile as it is, if at the expected version.
        let current = fetch(&state, &caller, id).await?;
        check_version(expected_version, current.version)?;
        return Ok(Json(current));
    }
    let request = pb::UpdateCustomerRequest {
        customer: Some(customer),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }),
        expected_version,
    };
    let customer = state
        .clients
        .customer
        .write
        .clone()
        .update_customer(caller.ctx().request(request))
        .await?
        .into_inner()
        .customer
        .ok_or_else(Problem::internal)?;
    Ok(Json(Customer::from_proto(customer)))
}

/// A customer's order history, newest first (a client: only its own).
#[utoipa::path(get, path = "/api/v1/customers/{id}/orders", tag = "customers",
    params(("id" = uuid::Uuid, Path, description = "Customer id"), ListOrders),
    responses((status = 200, description = "A page of orders", body = OrderPage)))]
pub async fn orders(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListOrders>,
) -> ApiResult<Json<OrderPage>> {
    if caller.is_client() && own_customer(&state, &caller).await? != id {
        return Err(Problem::not_found("customer not found"));
    }
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(Problem::invalid_field("id", "must be a UUID"));
    }
    list_for(&state, &caller, id, ListOrders { customer_id: None, ..q }).await
}
