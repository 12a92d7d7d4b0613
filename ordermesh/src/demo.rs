//! Demo data for `ordermesh up`: a small catalogue with stock, two client customers. Created
//! through the services' own gRPC APIs with dev tokens, and idempotent: a restart on the same
//! data directory finds everything in place and creates nothing twice.

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::auth::{DevIssuer, DevTokenRequest, IssuerKind, Role};
use ordermesh_platform::client::{ClientConfig, ResilientChannel, channel};
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::tls::WorkloadTls;
use ordermesh_proto::common::Money;
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::customer::{CreateCustomerRequest, GetCustomerByIdentityRequest, IdentityLink};
use ordermesh_proto::product::product_service_client::ProductServiceClient;
use ordermesh_proto::product::{
    AdjustStockRequest, CreateCategoryRequest, CreateProductRequest, ListCategoriesRequest, Product,
    SearchProductsRequest,
};

use crate::up::DEV_AUDIENCE;

/// The demo clients' identity subjects (tokens: `ordermesh token client --subject demo-client-1`).
pub const DEMO_CLIENTS: [(&str, &str); 2] = [("demo-client-1", "Ada Demo"), ("demo-client-2", "Brian Demo")];

/// (SKU, name, description, price in cents, stock).
const CATALOGUE: [(&str, &str, &str, i64, i64); 4] = [
    (
        "DEMO-KETTLE",
        "Electric kettle",
        "1.7 litre stainless steel kettle",
        3999,
        50,
    ),
    (
        "DEMO-GRINDER",
        "Coffee grinder",
        "Conical burr grinder with 40 settings",
        8950,
        20,
    ),
    ("DEMO-MUG", "Ceramic mug", "Hand-glazed 350 ml mug", 1250, 200),
    (
        "DEMO-PRESS",
        "French press",
        "Borosilicate glass press for four cups",
        2990,
        0,
    ),
];

fn token(issuer: &DevIssuer, kind: IssuerKind, subject: &str, roles: Vec<Role>) -> anyhow::Result<String> {
    issuer.mint(&DevTokenRequest {
        kind,
        subject: subject.to_owned(),
        roles,
        audience: DEV_AUDIENCE.to_owned(),
        ttl: Duration::from_secs(300),
    })
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ASCII token"));
    request
}

/// The demo seed's client of `callee` (as the `demo-seed` workload under `--tls`).
fn client(callee: Workload, url: &str, tls: Option<Arc<WorkloadTls>>) -> anyhow::Result<ResilientChannel> {
    Ok(channel(&ClientConfig::between(Workload::DemoSeed, callee, url, tls))?.0)
}

/// Creates what is missing of the demo data. Returns the demo customers' ids.
pub async fn seed(
    issuer: &DevIssuer,
    product_url: &str,
    customer_url: &str,
    tls: Option<Arc<WorkloadTls>>,
) -> anyhow::Result<Vec<String>> {
    let admin = token(issuer, IssuerKind::Employee, "demo-admin", vec![Role::Admin])?;
    let mut products = ProductServiceClient::new(client(Workload::Product, product_url, tls.clone())?);
    let category_name = "Kitchen";
    let existing = products
        .list_categories(with_token(
            ListCategoriesRequest {
                page_size: 200,
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .categories;
    let category_id = match existing.into_iter().find(|c| c.name == category_name) {
        Some(category) => category.id,
        None => {
            let request = CreateCategoryRequest {
                name: category_name.into(),
                ..Default::default()
            };
            products
                .create_category(with_token(request, &admin))
                .await?
                .into_inner()
                .category
                .expect("category")
                .id
        }
    };
    for (sku, name, description, price, stock) in CATALOGUE {
        let found = products
            .search_products(with_token(
                SearchProductsRequest {
                    query: sku.into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await?
            .into_inner()
            .products
            .into_iter()
            .find(|p| p.sku == sku);
        let product = match found {
            Some(product) => product,
            None => {
                let product = Product {
                    sku: sku.into(),
                    name: name.into(),
                    description: description.into(),
                    category_id: category_id.clone(),
                    price: Some(Money {
                        amount_minor: price,
                        currency_code: "EUR".into(),
                    }),
                    active: true,
                    ..Default::default()
                };
                let request = CreateProductRequest { product: Some(product) };
                products
                    .create_product(with_token(request, &admin))
                    .await?
                    .into_inner()
                    .product
                    .expect("product")
            }
        };
        if stock > 0 {
            // The key makes the initial stock a one-time adjustment, whatever the restarts.
            let request = AdjustStockRequest {
                product_id: product.id,
                delta: stock,
                reason: "demo stock".into(),
                idempotency_key: format!("demo-initial-stock-{sku}"),
            };
            products.adjust_stock(with_token(request, &admin)).await?;
        }
    }

    let mut customers = CustomerServiceClient::new(client(Workload::Customer, customer_url, tls)?);
    let mut ids = Vec::new();
    for (subject, display_name) in DEMO_CLIENTS {
        let client = token(issuer, IssuerKind::Client, subject, vec![])?;
        let identity = IdentityLink {
            issuer: issuer.issuer(IssuerKind::Client),
            subject: subject.into(),
        };
        let lookup = GetCustomerByIdentityRequest {
            issuer: identity.issuer.clone(),
            subject: subject.into(),
        };
        let customer = match customers.get_customer_by_identity(with_token(lookup, &client)).await {
            Ok(found) => found.into_inner().customer.expect("customer"),
            Err(status) if status.code() == tonic::Code::NotFound => {
                let request = CreateCustomerRequest {
                    display_name: display_name.into(),
                    email: format!("{subject}@example.test"),
                    identity: Some(identity),
                    ..Default::default()
                };
                customers
                    .create_customer(with_token(request, &client))
                    .await?
                    .into_inner()
                    .customer
                    .expect("customer")
            }
            Err(status) => return Err(status.into()),
        };
        ids.push(customer.id);
    }
    Ok(ids)
}
