//! The tonic handlers of `ordermesh.product.v1.ProductService`: decode, authorize, call the
//! domain and the store, map errors through `ServiceError`.
//!
//! Authorization:
//! - Every RPC needs an authenticated principal; anonymous calls are UNAUTHENTICATED. The
//!   catalogue is public in the portals, but the portals reach it through the BFF, which always
//!   forwards a token, and inside the mesh only known callers exist, so there is no anonymous
//!   caller to serve and refusing them keeps the service's surface uniform.
//! - Reads (products, categories, stock levels) are open to every authenticated principal.
//!   Clients only ever see active products and only the `available` figure of stock levels.
//! - Catalogue writes (CreateProduct, UpdateProduct, CreateCategory) and AdjustStock require
//!   the employee role `admin`.
//! - ReserveStock, CommitStock and ReleaseStock belong to the order saga: they accept service
//!   principals (order-svc) and admins, never clients.
//!
//! Product reads (GetProduct, BatchGetProducts) are cache-aside: the encoded `Product` message
//! is cached for [`PRODUCT_CACHE_TTL`] and deleted after every UpdateProduct. Stock levels are
//! not part of the cached message and are never cached, so AdjustStock and reservations need
//! no invalidation.

mod decode;

use std::collections::HashMap;
use std::time::Duration;

use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::grpc::principal;
use ordermesh_platform::{Cache, Origin, ServiceError, Violations, pagination, validate};
use ordermesh_proto::product as pb;
use ordermesh_proto::product::product_service_server::ProductService;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert;
use crate::domain::{self, ProductFilter};
use crate::store::Store;

/// How long a product stays in the cache (an update deletes it sooner).
pub const PRODUCT_CACHE_TTL: Duration = Duration::from_secs(60);

type Reply<T> = Result<Response<T>, Status>;

pub struct ProductApi {
    store: Store,
    cache: Cache,
}

impl ProductApi {
    pub fn new(store: Store, cache: Cache) -> Self {
        Self { store, cache }
    }

    fn cache_key(id: Uuid) -> String {
        format!("product:v1:{id}")
    }

    /// The products among `ids` (cache first, then one database query for the misses), in the
    /// order of `ids`.
    async fn products(&self, ids: &[Uuid]) -> Result<Vec<pb::Product>, ServiceError> {
        let cached = futures::future::join_all(ids.iter().map(|id| {
            let key = Self::cache_key(*id);
            async move { self.cache.get(&key).await }
        }))
        .await;
        let mut found: HashMap<Uuid, pb::Product> = HashMap::new();
        let mut missing = Vec::new();
        for (id, bytes) in ids.iter().zip(cached) {
            match bytes.and_then(|b| pb::Product::decode(b.as_slice()).ok()) {
                Some(product) => {
                    found.insert(*id, product);
                }
                None => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            let loaded = self.store.get_products(&missing).await?;
            futures::future::join_all(loaded.iter().map(|p| {
                let bytes = pb::Product::from(p).encode_to_vec();
                let key = Self::cache_key(p.id);
                let cache = self.cache.clone();
                async move { cache.set_with_ttl(&key, &bytes, PRODUCT_CACHE_TTL).await }
            }))
            .await;
            found.extend(loaded.iter().map(|p| (p.id, pb::Product::from(p))));
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }
}

fn is_client(p: &Principal) -> bool {
    matches!(p, Principal::Client { .. })
}

fn require_admin(p: &Principal) -> Result<(), Status> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied("this call requires the admin role".into()).into())
    }
}

/// Stock and categories are kept by admins and order managers.
fn require_stock_keeper(p: &Principal) -> Result<(), Status> {
    if p.has_any_role(&[Role::Admin, Role::OrderManager]) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied("this call requires the admin or order-manager role".into()).into())
    }
}

fn require_saga_caller(p: &Principal) -> Result<(), Status> {
    if matches!(p, Principal::Service { .. }) || p.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied("stock reservations are made by services of the order saga".into()).into())
    }
}

/// Clients see active products only.
fn visible_filter(p: &Principal, mut filter: ProductFilter) -> ProductFilter {
    if is_client(p) {
        filter.active = Some(true);
    }
    filter
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn list_products(&self, request: Request<pb::ListProductsRequest>) -> Reply<pb::ListProductsResponse> {
        let caller = principal(&request)?.clone();
        let req = request.into_inner();
        let mut v = Violations::new();
        let filter = decode::product_filter(
            &mut v,
            &req.category_id,
            req.active,
            req.min_price.as_ref(),
            req.max_price.as_ref(),
        );
        v.into_result()?;
        let filter = visible_filter(&caller, filter);
        let limit = pagination::page_size(req.page_size)?;
        let (rows, next_page_token) = pagination::fetch_page(
            limit,
            &req.page_token,
            &filter,
            |p: &domain::Product| p.list_key(),
            |after, n| self.store.list_products(&filter, after, n),
        )
        .await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: rows.iter().map(pb::Product::from).collect(),
            next_page_token,
        }))
    }

    async fn get_product(&self, request: Request<pb::GetProductRequest>) -> Reply<pb::GetProductResponse> {
        let caller = principal(&request)?.clone();
        let id = decode::id("product_id", &request.get_ref().product_id)?;
        let product = self
            .products(&[id])
            .await?
            .into_iter()
            .find(|p| p.active || !is_client(&caller))
            .ok_or_else(|| ServiceError::not_found("product", id))?;
        Ok(Response::new(pb::GetProductResponse { product: Some(product) }))
    }

    async fn batch_get_products(
        &self,
        request: Request<pb::BatchGetProductsRequest>,
    ) -> Reply<pb::BatchGetProductsResponse> {
        let caller = principal(&request)?.clone();
        let ids = decode::id_list(&request.get_ref().product_ids, "product_ids")?;
        let products: Vec<pb::Product> = self
            .products(&ids)
            .await?
            .into_iter()
            .filter(|p| p.active || !is_client(&caller))
            .collect();
        let missing_ids = ids
            .iter()
            .map(Uuid::to_string)
            .filter(|id| !products.iter().any(|p| &p.id == id))
            .collect();
        Ok(Response::new(pb::BatchGetProductsResponse { products, missing_ids }))
    }

    async fn search_products(&self, request: Request<pb::SearchProductsRequest>) -> Reply<pb::SearchProductsResponse> {
        let caller = principal(&request)?.clone();
        let req = request.into_inner();
        let mut v = Violations::new();
        let words = domain::search_words(&mut v, &req.query);
        let filter = decode::product_filter(&mut v, &req.category_id, req.active, None, None);
        v.into_result()?;
        let filter = visible_filter(&caller, filter);
        let limit = pagination::page_size(req.page_size)?;
        // Relevance order has no stable keyset; the token holds the offset of the next page and
        // is bound to the query and filters.
        let scope = (&words, &filter);
        let offset: usize = pagination::decode(&req.page_token, &scope)?.unwrap_or(0);
        let mut rows = self.store.search_products(&words, &filter, offset, limit + 1).await?;
        let next_page_token = if rows.len() > limit {
            rows.truncate(limit);
            pagination::encode(&(offset + limit), &scope)
        } else {
            String::new()
        };
        Ok(Response::new(pb::SearchProductsResponse {
            products: rows.iter().map(pb::Product::from).collect(),
            next_page_token,
        }))
    }

    async fn create_product(&self, request: Request<pb::CreateProductRequest>) -> Reply<pb::CreateProductResponse> {
        let origin = origin(&request)?;
        require_admin(principal(&request)?)?;
        let product = decode::new_product(request.get_ref().product.as_ref())?;
        self.store.create_product(&product, &origin).await?;
        tracing::info!(product_id = %product.id, "product created");
        Ok(Response::new(pb::CreateProductResponse {
            product: Some(pb::Product::from(&product)),
        }))
    }

    async fn update_product(&self, request: Request<pb::UpdateProductRequest>) -> Reply<pb::UpdateProductResponse> {
        let origin = origin(&request)?;
        require_admin(principal(&request)?)?;
        let req = request.into_inner();
        let (id, patch) = decode::product_patch(req.product.as_ref(), req.update_mask.as_ref())?;
        let product = self
            .store
            .update_product(id, &patch, req.expected_version, &origin)
            .await?;
        self.cache.delete(&Self::cache_key(id)).await;
        tracing::info!(product_id = %id, version = product.version, "product updated");
        Ok(Response::new(pb::UpdateProductResponse {
            product: Some(pb::Product::from(&product)),
        }))
    }

    async fn list_categories(&self, request: Request<pb::ListCategoriesRequest>) -> Reply<pb::ListCategoriesResponse> {
        principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let parent_id = validate::optional_uuid(&mut v, "parent_id", &req.parent_id);
        v.into_result()?;
        let limit = pagination::page_size(req.page_size)?;
        let (rows, next_page_token) = pagination::fetch_page(
            limit,
            &req.page_token,
            &parent_id,
            |c: &domain::Category| (c.name.clone(), c.id),
            |after, n| self.store.list_categories(parent_id, after, n),
        )
        .await?;
        Ok(Response::new(pb::ListCategoriesResponse {
            categories: rows.iter().map(pb::Category::from).collect(),
            next_page_token,
        }))
    }

    async fn create_category(&self, request: Request<pb::CreateCategoryRequest>) -> Reply<pb::CreateCategoryResponse> {
        require_stock_keeper(principal(&request)?)?;
        let category = decode::new_category(request.get_ref())?;
        self.store.create_category(&category).await?;
        Ok(Response::new(pb::CreateCategoryResponse {
            category: Some(pb::Category::from(&category)),
        }))
    }

    async fn get_stock_level(&self, request: Request<pb::GetStockLevelRequest>) -> Reply<pb::GetStockLevelResponse> {
        let full = !is_client(principal(&request)?);
        let id = decode::id("product_id", &request.get_ref().product_id)?;
        let level = self
            .store
            .stock_levels(&[id])
            .await?
            .pop()
            .ok_or_else(|| ServiceError::not_found("product", id))?;
        Ok(Response::new(pb::GetStockLevelResponse {
            stock_level: Some(convert::stock_level(&level, full, self.store.low_stock())),
        }))
    }

    async fn batch_get_stock_levels(
        &self,
        request: Request<pb::BatchGetStockLevelsRequest>,
    ) -> Reply<pb::BatchGetStockLevelsResponse> {
        let full = !is_client(principal(&request)?);
        let ids = decode::id_list(&request.get_ref().product_ids, "product_ids")?;
        let levels = self.store.stock_levels(&ids).await?;
        let stock_levels = ids
            .iter()
            .filter_map(|id| levels.iter().find(|l| l.product_id == *id))
            .map(|l| convert::stock_level(l, full, self.store.low_stock()))
            .collect();
        let missing_ids = ids
            .iter()
            .filter(|id| !levels.iter().any(|l| l.product_id == **id))
            .map(Uuid::to_string)
            .collect();
        Ok(Response::new(pb::BatchGetStockLevelsResponse {
            stock_levels,
            missing_ids,
        }))
    }

    async fn adjust_stock(&self, request: Request<pb::AdjustStockRequest>) -> Reply<pb::AdjustStockResponse> {
        let origin = origin(&request)?;
        require_stock_keeper(principal(&request)?)?;
        let adjustment = decode::adjustment(request.get_ref())?;
        let level = self.store.adjust_stock(&adjustment, &origin).await?;
        tracing::info!(product_id = %adjustment.product_id, delta = adjustment.delta, "stock adjusted");
        Ok(Response::new(pb::AdjustStockResponse {
            stock_level: Some(convert::stock_level(&level, true, self.store.low_stock())),
        }))
    }

    async fn reserve_stock(&self, request: Request<pb::ReserveStockRequest>) -> Reply<pb::ReserveStockResponse> {
        require_saga_caller(principal(&request)?)?;
        let (order_id, lines) = decode::reservation_request(request.get_ref())?;
        let correlation_id = Origin::of_request(&request)?.correlation_id;
        let reservation = self.store.reserve_stock(order_id, &lines, &correlation_id).await?;
        tracing::info!(%order_id, status = reservation.status.as_str(), "stock reservation");
        Ok(Response::new(pb::ReserveStockResponse {
            reservation: Some(pb::StockReservation::from(&reservation)),
        }))
    }

    async fn commit_stock(&self, request: Request<pb::CommitStockRequest>) -> Reply<pb::CommitStockResponse> {
        require_saga_caller(principal(&request)?)?;
        let order_id = decode::id("order_id", &request.get_ref().order_id)?;
        let reservation = self.store.commit_stock(order_id).await?;
        Ok(Response::new(pb::CommitStockResponse {
            reservation: Some(pb::StockReservation::from(&reservation)),
        }))
    }

    async fn release_stock(&self, request: Request<pb::ReleaseStockRequest>) -> Reply<pb::ReleaseStockResponse> {
        require_saga_caller(principal(&request)?)?;
        let req = request.get_ref();
        let mut v = Violations::new();
        let order_id = validate::uuid(&mut v, "order_id", &req.order_id);
        validate::length(&mut v, "reason", &req.reason, 0, 500);
        v.into_result()?;
        let reservation = self
            .store
            .release_stock(order_id.expect("validated"), &req.reason)
            .await?;
        Ok(Response::new(pb::ReleaseStockResponse {
            reservation: reservation.as_ref().map(pb::StockReservation::from),
        }))
    }
}

/// The caller and the correlation id of `request`, for the events a write publishes.
fn origin<T>(request: &Request<T>) -> Result<domain::Origin, Status> {
    domain::Origin::of_request(request)
}
