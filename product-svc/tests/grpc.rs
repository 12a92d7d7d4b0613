//! gRPC integration tests of the product service: the service runs in-process on
//! 127.0.0.1:0 with a fresh database per test, real JWTs from a dev issuer, and a real Redis.

use ordermesh_platform::Cache;
use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, violated_fields, with_token};
use ordermesh_proto::common::Money;
use ordermesh_proto::product as pb;
use ordermesh_proto::product::product_service_client::ProductServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

struct Harness {
    auth: TestAuth,
    cache: Cache,
    client: ProductServiceClient<Channel>,
    _service: RunningService,
    _db: TestDatabase,
}

impl Harness {
    async fn start(db: TestDatabase, cache: Cache) -> Self {
        let auth = TestAuth::start().await.unwrap();
        let config = testing::service_config(product_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        let service_cache = cache.clone();
        let service = RunningService::start(config, move |c, l, s| {
            product_svc::run_with_cache(c, l, s, service_cache)
        })
        .await
        .unwrap();
        let client = ProductServiceClient::new(service.channel());
        Self {
            auth,
            cache,
            client,
            _service: service,
            _db: db,
        }
    }

    async fn postgres() -> Self {
        Self::start(
            TestDatabase::postgres().await.unwrap(),
            Cache::in_memory(testing::unique_prefix("product")),
        )
        .await
    }

    fn admin(&self) -> String {
        self.auth.employee("admin-1", &[Role::Admin])
    }

    fn order_svc(&self) -> String {
        self.auth.service("order-svc")
    }

    fn client(&self) -> ProductServiceClient<Channel> {
        self.client.clone()
    }

    async fn category(&self, name: &str) -> String {
        let req = pb::CreateCategoryRequest {
            name: name.into(),
            ..Default::default()
        };
        self.client()
            .create_category(with_token(req, &self.admin()))
            .await
            .unwrap()
            .into_inner()
            .category
            .unwrap()
            .id
    }

    async fn product(&self, category_id: &str, sku: &str, description: &str) -> pb::Product {
        let product = new_product(category_id, sku, description);
        let req = pb::CreateProductRequest { product: Some(product) };
        self.client()
            .create_product(with_token(req, &self.admin()))
            .await
            .unwrap()
            .into_inner()
            .product
            .unwrap()
    }

    async fn get(&self, id: &str, token: &str) -> Result<pb::Product, tonic::Status> {
        let req = pb::GetProductRequest { product_id: id.into() };
        Ok(self
            .client()
            .get_product(with_token(req, token))
            .await?
            .into_inner()
            .product
            .unwrap())
    }
}

fn new_product(category_id: &str, sku: &str, description: &str) -> pb::Product {
    pb::Product {
        sku: sku.into(),
        name: format!("Product {sku}"),
        description: description.into(),
        category_id: category_id.into(),
        price: Some(Money {
            amount_minor: 1250,
            currency_code: "EUR".into(),
        }),
        active: true,
        attributes: [("color".to_owned(), "blue".to_owned())].into(),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn crud(h: Harness) {
    let cat = h.category("Kitchen").await;
    let created = h.product(&cat, "KETTLE-1", "Stainless steel kettle").await;
    assert_eq!(created.version, 1);
    assert!(Uuid::parse_str(&created.id).unwrap().get_version_num() == 7);

    let reader = h.auth.employee("cs-1", &[Role::CustomerService]);
    assert_eq!(h.get(&created.id, &reader).await.unwrap(), created);

    let mut change = created.clone();
    change.name = "Kettle Pro".into();
    change.price = Some(Money {
        amount_minor: 1999,
        currency_code: "EUR".into(),
    });
    change.description = "ignored: not in the mask".into();
    let req = pb::UpdateProductRequest {
        product: Some(change),
        update_mask: mask(&["name", "price"]),
        expected_version: Some(1),
    };
    let updated = h
        .client()
        .update_product(with_token(req, &h.admin()))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.price.as_ref().unwrap().amount_minor,
            updated.version
        ),
        ("Kettle Pro", 1999, 2)
    );
    assert_eq!(updated.description, created.description);
    assert_eq!(h.get(&created.id, &reader).await.unwrap(), updated);

    let req = pb::UpdateProductRequest {
        product: Some(updated.clone()),
        update_mask: mask(&["name"]),
        expected_version: Some(1),
    };
    assert_eq!(
        h.client()
            .update_product(with_token(req, &h.admin()))
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );

    let req = pb::BatchGetProductsRequest {
        product_ids: vec![created.id.clone(), Uuid::now_v7().to_string()],
    };
    let batch = h
        .client()
        .batch_get_products(with_token(req, &reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.products, std::slice::from_ref(&updated));
    assert_eq!(batch.missing_ids.len(), 1);

    let list = h
        .client()
        .list_products(with_token(pb::ListProductsRequest::default(), &reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.products, [updated]);
    assert!(list.next_page_token.is_empty());

    let cats = h
        .client()
        .list_categories(with_token(pb::ListCategoriesRequest::default(), &reader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cats.categories.len(), 1);
}

#[tokio::test]
async fn crud_on_postgres() {
    crud(Harness::postgres().await).await;
}

#[tokio::test]
async fn crud_on_sqlite() {
    crud(
        Harness::start(
            TestDatabase::sqlite().unwrap(),
            Cache::in_memory(testing::unique_prefix("product")),
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_with_field_violations() {
    let h = Harness::postgres().await;
    let mut bad = new_product("not-a-uuid", "bad sku", "");
    bad.name = String::new();
    bad.price = Some(Money {
        amount_minor: -5,
        currency_code: "euro".into(),
    });
    let status = h
        .client()
        .create_product(with_token(pb::CreateProductRequest { product: Some(bad) }, &h.admin()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "product.sku",
            "product.name",
            "product.category_id",
            "product.price.currency_code",
            "product.price.amount_minor"
        ]
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "INVALID_ARGUMENT"
    );

    let req = pb::UpdateProductRequest {
        product: Some(pb::Product {
            id: Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = h
        .client()
        .update_product(with_token(req, &h.admin()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask"]);

    let svc = h.order_svc();
    let req = pb::ReserveStockRequest {
        order_id: "x".into(),
        lines: vec![pb::StockLine {
            product_id: Uuid::now_v7().to_string(),
            quantity: 0,
        }],
    };
    let status = h.client().reserve_stock(with_token(req, &svc)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["order_id", "lines[0].quantity"]);

    let req = pb::ListProductsRequest {
        page_token: "garbage".into(),
        ..Default::default()
    };
    let status = h.client().list_products(with_token(req, &svc)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);

    let status = h.get("nope", &svc).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["product_id"]);
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_duplicates_already_exist() {
    let h = Harness::postgres().await;
    let token = h.order_svc();
    assert_eq!(
        h.get(&Uuid::now_v7().to_string(), &token).await.unwrap_err().code(),
        Code::NotFound
    );
    let req = pb::GetStockLevelRequest {
        product_id: Uuid::now_v7().to_string(),
    };
    assert_eq!(
        h.client()
            .get_stock_level(with_token(req, &token))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let req = pb::AdjustStockRequest {
        product_id: Uuid::now_v7().to_string(),
        delta: 1,
        reason: "count".into(),
        ..Default::default()
    };
    assert_eq!(
        h.client()
            .adjust_stock(with_token(req, &h.admin()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let req = pb::UpdateProductRequest {
        product: Some(pb::Product {
            id: Uuid::now_v7().to_string(),
            name: "x".into(),
            ..Default::default()
        }),
        update_mask: mask(&["name"]),
        expected_version: None,
    };
    assert_eq!(
        h.client()
            .update_product(with_token(req, &h.admin()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let cat = h.category("Kitchen").await;
    h.product(&cat, "DUP-1", "").await;
    let req = pb::CreateProductRequest {
        product: Some(new_product(&cat, "DUP-1", "")),
    };
    let status = h
        .client()
        .create_product(with_token(req, &h.admin()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "ALREADY_EXISTS"
    );
    let req = pb::CreateCategoryRequest {
        name: "kitchen".into(),
        ..Default::default()
    };
    assert_eq!(
        h.client()
            .create_category(with_token(req, &h.admin()))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
}

#[tokio::test]
async fn missing_or_insufficient_credentials() {
    let h = Harness::postgres().await;
    let cat = h.category("Kitchen").await;
    let product = h.product(&cat, "AUTH-1", "").await;

    // No token, and a forged token.
    let status = h
        .client()
        .get_product(pb::GetProductRequest {
            product_id: product.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let forged = TestAuth::start().await.unwrap().employee("admin-1", &[Role::Admin]);
    assert_eq!(
        h.get(&product.id, &forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Products are written by admins; stock is kept by admins and order managers.
    let manager = h.auth.employee("om", &[Role::OrderManager]);
    let req = pb::AdjustStockRequest {
        product_id: product.id.clone(),
        delta: 1,
        reason: "recount".into(),
        ..Default::default()
    };
    h.client().adjust_stock(with_token(req, &manager)).await.unwrap();
    for token in [manager, h.auth.client("client-1"), h.order_svc()] {
        let req = pb::CreateProductRequest {
            product: Some(new_product(&cat, "AUTH-2", "")),
        };
        assert_eq!(
            h.client()
                .create_product(with_token(req, &token))
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }
    for token in [h.auth.client("client-1"), h.order_svc()] {
        let req = pb::AdjustStockRequest {
            product_id: product.id.clone(),
            delta: 1,
            reason: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            h.client()
                .adjust_stock(with_token(req, &token))
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }
    // Reservations are for the saga, not for clients or ordinary employees.
    for token in [
        h.auth.client("client-1"),
        h.auth.employee("cs", &[Role::CustomerService]),
    ] {
        let req = pb::ReserveStockRequest {
            order_id: Uuid::now_v7().to_string(),
            lines: vec![pb::StockLine {
                product_id: product.id.clone(),
                quantity: 1,
            }],
        };
        assert_eq!(
            h.client()
                .reserve_stock(with_token(req, &token))
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }

    // Clients read active products only, and of the stock only whether it is available.
    let client = h.auth.client("client-1");
    assert_eq!(h.get(&product.id, &client).await.unwrap().id, product.id);
    let req = pb::AdjustStockRequest {
        product_id: product.id.clone(),
        delta: 7,
        reason: "restock".into(),
        ..Default::default()
    };
    h.client().adjust_stock(with_token(req, &h.admin())).await.unwrap();
    let req = pb::GetStockLevelRequest {
        product_id: product.id.clone(),
    };
    let level = h
        .client()
        .get_stock_level(with_token(req, &client))
        .await
        .unwrap()
        .into_inner()
        .stock_level
        .unwrap();
    assert_eq!(
        (level.available, level.on_hand, level.reserved),
        (0, 0, 0),
        "no count for clients"
    );
    assert_eq!(level.availability(), pb::StockAvailability::InStock, "8 units, above 5");
    let mut inactive = product.clone();
    inactive.active = false;
    let req = pb::UpdateProductRequest {
        product: Some(inactive),
        update_mask: mask(&["active"]),
        expected_version: None,
    };
    h.client().update_product(with_token(req, &h.admin())).await.unwrap();
    assert_eq!(h.get(&product.id, &client).await.unwrap_err().code(), Code::NotFound);
    assert!(!h.get(&product.id, &h.admin()).await.unwrap().active);
    let list = h
        .client()
        .list_products(with_token(pb::ListProductsRequest::default(), &client))
        .await
        .unwrap()
        .into_inner();
    assert!(list.products.is_empty());
}

#[tokio::test]
async fn pagination_is_stable_across_pages() {
    let h = Harness::postgres().await;
    let cat = h.category("Kitchen").await;
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.insert(0, h.product(&cat, &format!("PAGE-{i}"), "").await.id);
    }
    let token = h.order_svc();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let req = pb::ListProductsRequest {
            page_size: 3,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = h
            .client()
            .list_products(with_token(req, &token))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.products.into_iter().map(|p| p.id));
        if pages == 1 {
            // A product created between pages neither shifts nor repeats later pages.
            h.product(&cat, "PAGE-NEW", "").await;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // The token belongs to its filters.
    let req = pb::ListProductsRequest {
        page_size: 3,
        ..Default::default()
    };
    let first = h
        .client()
        .list_products(with_token(req, &token))
        .await
        .unwrap()
        .into_inner();
    let req = pb::ListProductsRequest {
        page_size: 3,
        page_token: first.next_page_token,
        active: Some(false),
        ..Default::default()
    };
    assert_eq!(
        h.client()
            .list_products(with_token(req, &token))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn search_finds_a_product_by_a_word_of_its_description() {
    let h = Harness::postgres().await;
    let cat = h.category("Kitchen").await;
    let kettle = h
        .product(&cat, "KETTLE-9", "Cordless kettle with a whistling lid")
        .await;
    h.product(&cat, "TOASTER-9", "Two-slot toaster").await;
    let token = h.auth.client("client-1");
    let req = pb::SearchProductsRequest {
        query: "whistling".into(),
        ..Default::default()
    };
    let found = h
        .client()
        .search_products(with_token(req, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.products.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        [kettle.id.as_str()]
    );
    let req = pb::SearchProductsRequest {
        query: "toaster".into(),
        page_size: 1,
        ..Default::default()
    };
    let found = h
        .client()
        .search_products(with_token(req, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.products.len(), 1);
    assert!(found.next_page_token.is_empty());
    let req = pb::SearchProductsRequest {
        query: "  ".into(),
        ..Default::default()
    };
    let status = h.client().search_products(with_token(req, &token)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["query"]);
}

async fn concurrent_reservations(h: Harness) {
    let cat = h.category("Bulk").await;
    let product = h.product(&cat, "BULK-9", "").await;
    let req = pb::AdjustStockRequest {
        product_id: product.id.clone(),
        delta: 100,
        reason: "restock".into(),
        ..Default::default()
    };
    h.client().adjust_stock(with_token(req, &h.admin())).await.unwrap();

    let token = h.order_svc();
    let reserve = |order_id: String| {
        let mut client = h.client();
        let req = pb::ReserveStockRequest {
            order_id,
            lines: vec![pb::StockLine {
                product_id: product.id.clone(),
                quantity: 3,
            }],
        };
        let req = with_token(req, &token);
        async move {
            client
                .reserve_stock(req)
                .await
                .unwrap()
                .into_inner()
                .reservation
                .unwrap()
        }
    };
    let orders: Vec<String> = (0..50).map(|_| Uuid::now_v7().to_string()).collect();
    let outcomes = futures::future::join_all(orders.iter().cloned().map(reserve)).await;
    let reserved = pb::StockReservationStatus::Reserved as i32;
    assert_eq!(outcomes.iter().filter(|r| r.status == reserved).count(), 33);
    let rejected: Vec<_> = outcomes.iter().filter(|r| r.status != reserved).collect();
    assert_eq!(rejected.len(), 17);
    assert!(
        rejected
            .iter()
            .all(|r| r.shortfalls[0].reason == "INSUFFICIENT_STOCK" && r.shortfalls[0].available < 3)
    );

    let level = |h: &Harness| {
        let mut client = h.client();
        let req = with_token(
            pb::GetStockLevelRequest {
                product_id: product.id.clone(),
            },
            &token,
        );
        async move {
            client
                .get_stock_level(req)
                .await
                .unwrap()
                .into_inner()
                .stock_level
                .unwrap()
        }
    };
    let after = level(&h).await;
    assert_eq!((after.on_hand, after.reserved, after.available), (100, 99, 1));

    // Repeating every reservation returns the first outcome and changes nothing.
    let repeats = futures::future::join_all(orders.iter().cloned().map(reserve)).await;
    for (first, again) in outcomes.iter().zip(&repeats) {
        assert_eq!((first.status, &first.lines), (again.status, &again.lines));
    }
    assert_eq!(level(&h).await.available, 1);

    // Release is idempotent and gives the stock back once.
    let first_reserved = outcomes.iter().find(|r| r.status == reserved).unwrap().order_id.clone();
    for _ in 0..2 {
        let req = pb::ReleaseStockRequest {
            order_id: first_reserved.clone(),
            reason: "cancelled".into(),
        };
        let released = h
            .client()
            .release_stock(with_token(req, &token))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(released.status, pb::StockReservationStatus::Released as i32);
    }
    assert_eq!(level(&h).await.available, 4);
    // Commit of a released reservation is refused.
    let req = pb::CommitStockRequest {
        order_id: first_reserved,
    };
    assert_eq!(
        h.client()
            .commit_stock(with_token(req, &token))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_oversell_on_postgres() {
    concurrent_reservations(Harness::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_oversell_on_sqlite() {
    concurrent_reservations(
        Harness::start(
            TestDatabase::sqlite().unwrap(),
            Cache::in_memory(testing::unique_prefix("product")),
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn product_reads_are_cached_in_redis_and_updates_invalidate() {
    let cache = Cache::connect(Some(&testing::redis_url()), None, testing::unique_prefix("product"))
        .await
        .unwrap();
    assert_eq!(cache.backend_name(), "redis");
    let h = Harness::start(TestDatabase::postgres().await.unwrap(), cache).await;
    let cat = h.category("Kitchen").await;
    let product = h.product(&cat, "CACHE-1", "").await;
    let token = h.order_svc();

    let before = h.cache.stats();
    let first = h.get(&product.id, &token).await.unwrap();
    let after_first = h.cache.stats();
    assert_eq!(
        (after_first.hits, after_first.misses),
        (before.hits, before.misses + 1),
        "first read misses"
    );
    let second = h.get(&product.id, &token).await.unwrap();
    let after_second = h.cache.stats();
    assert_eq!(
        after_second.hits,
        after_first.hits + 1,
        "second read is served from Redis"
    );
    assert_eq!(first, second);
    assert_eq!(after_second.errors, 0);

    let mut change = product.clone();
    change.name = "Renamed".into();
    let req = pb::UpdateProductRequest {
        product: Some(change),
        update_mask: mask(&["name"]),
        expected_version: None,
    };
    h.client().update_product(with_token(req, &h.admin())).await.unwrap();
    let third = h.get(&product.id, &token).await.unwrap();
    assert_eq!(third.name, "Renamed", "the update invalidated the cached copy");
    assert_eq!(h.cache.stats().misses, after_second.misses + 1);

    // BatchGet uses the same entries.
    let req = pb::BatchGetProductsRequest {
        product_ids: vec![product.id.clone()],
    };
    let batch = h
        .client()
        .batch_get_products(with_token(req, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.products, [third]);
    assert_eq!(h.cache.stats().hits, after_second.hits + 1);
}

#[tokio::test]
async fn reads_succeed_when_redis_is_unreachable() {
    let cache = Cache::connect(Some("redis://127.0.0.1:1"), None, testing::unique_prefix("product"))
        .await
        .unwrap();
    let h = Harness::start(TestDatabase::postgres().await.unwrap(), cache).await;
    let cat = h.category("Kitchen").await;
    let product = h.product(&cat, "DEAD-1", "").await;
    let token = h.order_svc();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(h.get(&product.id, &token).await.unwrap().id, product.id);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "a dead Redis does not stall reads"
    );
    let stats = h.cache.stats();
    assert_eq!(stats.hits, 0);
    assert!(stats.errors >= 5, "{stats:?}");
}

#[tokio::test]
async fn run_with_an_unreachable_redis_url_still_serves_reads() {
    let auth = TestAuth::start().await.unwrap();
    let db = TestDatabase::postgres().await.unwrap();
    let mut config = testing::service_config(product_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
    config.redis_url = Some("redis://127.0.0.1:1".into());
    let service = RunningService::start(config, product_svc::run).await.unwrap();
    let mut client = ProductServiceClient::new(service.channel());
    let admin = auth.employee("admin-1", &[Role::Admin]);
    let req = pb::CreateCategoryRequest {
        name: "Kitchen".into(),
        ..Default::default()
    };
    let cat = client
        .create_category(with_token(req, &admin))
        .await
        .unwrap()
        .into_inner()
        .category
        .unwrap();
    let req = pb::CreateProductRequest {
        product: Some(new_product(&cat.id, "DEAD-2", "")),
    };
    let product = client
        .create_product(with_token(req, &admin))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    let req = pb::GetProductRequest {
        product_id: product.id.clone(),
    };
    assert_eq!(
        client
            .get_product(with_token(req, &admin))
            .await
            .unwrap()
            .into_inner()
            .product
            .unwrap(),
        product
    );
}
