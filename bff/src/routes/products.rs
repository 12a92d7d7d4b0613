//! `/api/v1/products`: the catalogue (read by everyone, written by admins), its categories, and
//! the inventory: everyone sees whether a product is available (`availability`), employees who
//! manage stock see and adjust the counts.

use axum::Json;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordermesh_proto::product as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, check_version, created, expected_version, next_token};
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size};
use crate::models::{
    Availability, Category, CategoryPage, CreateCategory, CreateProduct, Product, ProductPage, StockAdjustment,
    StockLevel, StockLevels, UpdateProduct,
};
use crate::problem::{ApiResult, Problem};
use crate::product_tier::CachedProduct;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListProducts {
    /// Only products of this category.
    pub category_id: Option<uuid::Uuid>,
    /// Only active (true) or inactive (false) products; clients always see active ones only.
    pub active: Option<bool>,
    /// 1-200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SearchProducts {
    /// Text matched word by word (letters and digits) against SKU, name and description; a
    /// text without a letter or digit matches nothing.
    #[param(min_length = 1, max_length = 200)]
    pub q: String,
    pub category_id: Option<uuid::Uuid>,
    pub active: Option<bool>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// List products.
#[utoipa::path(get, path = "/api/v1/products", tag = "products", params(ListProducts),
    responses((status = 200, description = "A page of products", body = ProductPage)))]
pub async fn list(state: Shared, caller: Caller, ApiQuery(q): ApiQuery<ListProducts>) -> ApiResult<Json<ProductPage>> {
    let request = pb::ListProductsRequest {
        category_id: q.category_id.map(|c| c.to_string()).unwrap_or_default(),
        active: q.active,
        page_size: page_size(q.page_size)?,
        page_token: q.page_token.unwrap_or_default(),
        ..Default::default()
    };
    let response = state
        .clients
        .product
        .read
        .clone()
        .list_products(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(ProductPage {
        items: with_availability(&state, &caller, response.products).await,
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Search products.
#[utoipa::path(get, path = "/api/v1/products/search", tag = "products", params(SearchProducts),
    responses((status = 200, description = "Matching products", body = ProductPage)))]
pub async fn search(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchProducts>,
) -> ApiResult<Json<ProductPage>> {
    let page_size = page_size(q.page_size)?;
    if q.q.is_empty() {
        return Err(Problem::invalid_field("q", "must not be empty"));
    }
    if !q.q.chars().any(char::is_alphanumeric) {
        // No word to match (product-svc refuses such a text): nothing matches.
        return Ok(Json(ProductPage {
            items: Vec::new(),
            next_page_token: None,
        }));
    }
    let request = pb::SearchProductsRequest {
        query: q.q,
        category_id: q.category_id.map(|c| c.to_string()).unwrap_or_default(),
        active: q.active,
        page_size,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .product
        .read
        .clone()
        .search_products(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(ProductPage {
        items: with_availability(&state, &caller, response.products).await,
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Get a product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = Product)))]
pub async fn get(state: Shared, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    if let Some(cached) = state.products.get(&id)
        && (cached.active || !caller.is_client())
    {
        return Ok(json_answer(cached.body));
    }
    let mut products = state.clients.product.read.clone();
    let request = caller.ctx().request(pb::GetProductRequest { product_id: id.clone() });
    let (response, availability) = tokio::join!(
        products.get_product(request),
        availability_of(&state, &caller, std::slice::from_ref(&id))
    );
    let mut product = Product::from_proto(response?.into_inner().product.ok_or_else(Problem::internal)?);
    product.availability = availability.get(&id).copied();
    let body = Bytes::from(serde_json::to_vec(&product).map_err(|_| Problem::internal())?);
    state.products.put(
        &id,
        CachedProduct {
            body: body.clone(),
            active: product.active,
        },
    );
    Ok(json_answer(body))
}

/// `products` with their availability (one stock lookup per 100 products).
async fn with_availability(state: &crate::AppState, caller: &Caller, products: Vec<pb::Product>) -> Vec<Product> {
    let ids: Vec<String> = products.iter().map(|p| p.id.clone()).collect();
    let availability = availability_of(state, caller, &ids).await;
    products
        .into_iter()
        .map(|p| {
            let mut product = Product::from_proto(p);
            product.availability = availability.get(&product.id).copied();
            product
        })
        .collect()
}

/// The availability of the products `ids` that have a stock record. A failed lookup leaves
/// the catalogue readable, without availability (and is logged).
async fn availability_of(
    state: &crate::AppState,
    caller: &Caller,
    ids: &[String],
) -> std::collections::HashMap<String, Availability> {
    let mut known = std::collections::HashMap::new();
    for chunk in ids.chunks(100).filter(|c| !c.is_empty()) {
        let request = caller.ctx().request(pb::BatchGetStockLevelsRequest {
            product_ids: chunk.to_vec(),
        });
        match state.clients.product.read.clone().batch_get_stock_levels(request).await {
            Ok(answer) => {
                known.extend(
                    answer.into_inner().stock_levels.into_iter().filter_map(|level| {
                        Availability::from_proto(level.availability).map(|a| (level.product_id, a))
                    }),
                )
            }
            Err(status) => tracing::warn!(code = ?status.code(), "product availability not read"),
        }
    }
    known
}

/// `200` with a JSON body already encoded, as `Json` would answer it.
fn json_answer(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Create a product (admin).
#[utoipa::path(post, path = "/api/v1/products", tag = "products", request_body = CreateProduct,
    responses((status = 201, description = "Created", body = Product,
        headers(("Location" = String, description = "URL of the product")))))]
pub async fn create(state: Shared, caller: Caller, ApiJson(body): ApiJson<CreateProduct>) -> ApiResult<Response> {
    let request = pb::CreateProductRequest {
        product: Some(pb::Product {
            sku: body.sku,
            name: body.name,
            description: body.description,
            category_id: body.category_id.to_string(),
            price: Some(body.price.to_proto()),
            active: body.active,
            attributes: body.attributes.into_iter().collect(),
            ..Default::default()
        }),
    };
    let product = state
        .clients
        .product
        .write
        .clone()
        .create_product(caller.ctx().request(request))
        .await
        .map_err(|status| unknown_category(&status, "product.categoryId"))?
        .into_inner()
        .product
        .ok_or_else(Problem::internal)?;
    let location = format!("/api/v1/products/{}", product.id);
    Ok(created(&location, Product::from_proto(product)))
}

/// Update a product (admin): the fields present are changed (none: nothing changes).
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")), request_body = UpdateProduct,
    responses((status = 200, description = "The updated product", body = Product)))]
pub async fn update(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateProduct>,
) -> ApiResult<Json<Product>> {
    let expected_version = expected_version(body.expected_version)?;
    let mut paths = Vec::new();
    let mut product = pb::Product {
        id: id.clone(),
        ..Default::default()
    };
    if let Some(name) = body.name {
        product.name = name;
        paths.push("name");
    }
    if let Some(description) = body.description {
        product.description = description;
        paths.push("description");
    }
    if let Some(category_id) = body.category_id {
        product.category_id = category_id.to_string();
        paths.push("category_id");
    }
    if let Some(price) = body.price {
        product.price = Some(price.to_proto());
        paths.push("price");
    }
    if let Some(active) = body.active {
        product.active = active;
        paths.push("active");
    }
    if let Some(attributes) = body.attributes {
        product.attributes = attributes.into_iter().collect();
        paths.push("attributes");
    }
    if paths.is_empty() {
        // Nothing to change: the answer is the product as it is, if at the expected version.
        let request = caller.ctx().request(pb::GetProductRequest { product_id: id });
        let current = state
            .clients
            .product
            .read
            .clone()
            .get_product(request)
            .await?
            .into_inner();
        let current = Product::from_proto(current.product.ok_or_else(Problem::internal)?);
        check_version(expected_version, current.version)?;
        return Ok(Json(current));
    }
    let request = pb::UpdateProductRequest {
        product: Some(product),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }),
        expected_version,
    };
    let changed = state
        .clients
        .product
        .write
        .clone()
        .update_product(caller.ctx().request(request))
        .await;
    // Also after a failure: a timeout may hide a change that was made.
    state.products.forget(&id);
    let changed = changed.map_err(|status| unknown_category(&status, "product.categoryId"))?;
    let product = changed.into_inner().product.ok_or_else(Problem::internal)?;
    Ok(Json(Product::from_proto(product)))
}

/// The categories, by name (every caller: clients browse by category).
#[utoipa::path(get, path = "/api/v1/products/categories", tag = "products", params(ListCategories),
    responses((status = 200, description = "A page of categories", body = CategoryPage)))]
pub async fn categories(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListCategories>,
) -> ApiResult<Json<CategoryPage>> {
    let request = pb::ListCategoriesRequest {
        parent_id: q.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        page_size: page_size(q.page_size)?,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .product
        .read
        .clone()
        .list_categories(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(CategoryPage {
        items: response.categories.into_iter().map(Category::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCategories {
    /// Only the direct children of this category.
    pub parent_id: Option<uuid::Uuid>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// Create a category (admin).
#[utoipa::path(post, path = "/api/v1/products/categories", tag = "products", request_body = CreateCategory,
    responses((status = 201, description = "Created", body = Category)))]
pub async fn create_category(
    state: Shared,
    caller: Caller,
    ApiJson(body): ApiJson<CreateCategory>,
) -> ApiResult<(StatusCode, Json<Category>)> {
    let request = pb::CreateCategoryRequest {
        name: body.name,
        parent_id: body.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        description: body.description,
    };
    let category = state
        .clients
        .product
        .write
        .clone()
        .create_category(caller.ctx().request(request))
        .await
        .map_err(|status| unknown_category(&status, "parentId"))?
        .into_inner()
        .category
        .ok_or_else(Problem::internal)?;
    Ok((StatusCode::CREATED, Json(Category::from_proto(category))))
}

/// A product's stock: on hand, reserved, available (employees who manage stock).
#[utoipa::path(get, path = "/api/v1/products/{id}/stock", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")),
    responses((status = 200, description = "The stock level", body = StockLevel)))]
pub async fn stock(state: Shared, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Json<StockLevel>> {
    let level = state
        .clients
        .product
        .read
        .clone()
        .get_stock_level(caller.ctx().request(pb::GetStockLevelRequest { product_id: id }))
        .await?
        .into_inner()
        .stock_level
        .ok_or_else(Problem::internal)?;
    Ok(Json(StockLevel::from_proto(level)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchStock {
    /// Product ids, comma-separated, 1-100.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}){0,99}$",
        example = "0190a0b0-0000-7000-8000-000000000001,0190a0b0-0000-7000-8000-000000000002"
    )]
    pub product_ids: String,
}

/// The stock of several products at once (employees who manage stock).
#[utoipa::path(get, path = "/api/v1/products/stock", tag = "products", params(BatchStock),
    responses((status = 200, description = "Their stock levels", body = StockLevels)))]
pub async fn batch_stock(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<BatchStock>,
) -> ApiResult<Json<StockLevels>> {
    let product_ids: Vec<String> = q
        .product_ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    let response = state
        .clients
        .product
        .read
        .clone()
        .batch_get_stock_levels(caller.ctx().request(pb::BatchGetStockLevelsRequest { product_ids }))
        .await?
        .into_inner();
    Ok(Json(StockLevels {
        items: response.stock_levels.into_iter().map(StockLevel::from_proto).collect(),
        missing_ids: response.missing_ids,
    }))
}

/// Adjust a product's on-hand stock, with a reason (audited). An `Idempotency-Key` makes a
/// retry safe: a repeat answers with the first result and adjusts nothing.
#[utoipa::path(post, path = "/api/v1/products/{id}/stock/adjustments", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id"),
           ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Repeat-safe key of 1-128 visible ASCII characters; a repeat with the same key and body gives the first answer")),
    request_body = StockAdjustment,
    responses((status = 200, description = "The stock level after the adjustment", body = StockLevel)))]
pub async fn adjust_stock(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<StockAdjustment>,
) -> ApiResult<Json<StockLevel>> {
    let idempotency_key = crate::idempotency::key(&headers)?.unwrap_or_default();
    let request = pb::AdjustStockRequest {
        product_id: id,
        delta: body.delta,
        reason: body.reason,
        idempotency_key,
    };
    let level = state
        .clients
        .product
        .write
        .clone()
        .adjust_stock(caller.ctx().request(request))
        .await?
        .into_inner()
        .stock_level
        .ok_or_else(Problem::internal)?;
    Ok(Json(StockLevel::from_proto(level)))
}

/// The problem of a product-svc refusal where a category id of the body (a UUID, so well formed)
/// is the only complaint: no such category exists, which the catalogue's state refuses (409), not
/// the body's shape.
fn unknown_category(status: &tonic::Status, field: &str) -> Problem {
    let problem = Problem::from_status(status);
    let only_the_category = !problem.errors.is_empty() && problem.errors.iter().all(|e| e.field == field);
    if status.code() == tonic::Code::InvalidArgument && only_the_category {
        Problem::new(StatusCode::CONFLICT, "unknown-category", "Unknown category")
            .detail(format!("{field}: no such category"))
    } else {
        problem
    }
}
