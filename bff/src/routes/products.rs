//! `/api/v1/products`: the catalogue (read by everyone, written by admins).

use axum::Json;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ordermesh_proto::product as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, created, next_token};
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size};
use crate::models::{CreateProduct, Product, ProductPage, UpdateProduct};
use crate::problem::{ApiResult, Problem};
use crate::product_tier::CachedProduct;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListProducts {
    /// Only products of this category.
    pub category_id: Option<String>,
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
    /// Text matched against SKU, name and description.
    pub q: String,
    pub category_id: Option<String>,
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
        category_id: q.category_id.unwrap_or_default(),
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
        items: response.products.into_iter().map(Product::from_proto).collect(),
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
    let request = pb::SearchProductsRequest {
        query: q.q,
        category_id: q.category_id.unwrap_or_default(),
        active: q.active,
        page_size: page_size(q.page_size)?,
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
        items: response.products.into_iter().map(Product::from_proto).collect(),
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
    let response = state
        .clients
        .product
        .read
        .clone()
        .get_product(caller.ctx().request(pb::GetProductRequest { product_id: id.clone() }))
        .await?
        .into_inner();
    let product = Product::from_proto(response.product.ok_or_else(Problem::internal)?);
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
            category_id: body.category_id,
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
        .await?
        .into_inner()
        .product
        .ok_or_else(Problem::internal)?;
    let location = format!("/api/v1/products/{}", product.id);
    Ok(created(&location, Product::from_proto(product)))
}

/// Update a product (admin): the fields present are changed.
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")), request_body = UpdateProduct,
    responses((status = 200, description = "The updated product", body = Product)))]
pub async fn update(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateProduct>,
) -> ApiResult<Json<Product>> {
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
        product.category_id = category_id;
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
        return Err(Problem::bad_request("the body changes nothing"));
    }
    let request = pb::UpdateProductRequest {
        product: Some(product),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }),
        expected_version: body.expected_version,
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
    let product = changed?.into_inner().product.ok_or_else(Problem::internal)?;
    Ok(Json(Product::from_proto(product)))
}
