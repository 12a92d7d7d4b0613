//! The BFF's in-process product tier: a change made elsewhere (here straight at product-svc, as
//! another BFF instance would) is served within `BFF_PRODUCT_CACHE_MILLIS`; a change through this
//! BFF is served at once; authentication and the rate limit still run on every request; a
//! product clients may not see is never answered to a client from memory.

mod bff_common;

use std::time::Duration;

use bff::Surface;
use bff_common::Api;
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::testing::with_token;
use ordermesh_proto::common::Money;
use ordermesh_proto::product::{Product, UpdateProductRequest};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn product_reads_are_fresh_within_the_bound_and_still_authenticated_and_limited() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let mut config = platform.bff_config(Surface::Both);
    config.product_cache = Duration::from_secs(1);
    config.rate_limits.external = 6;
    let api = Api::new(&platform.start_bff_with(config).await.unwrap());
    let product = platform.product(1000, 0).await.unwrap();
    let path = format!("/api/v1/products/{}", product.id);
    let alice = platform.auth.client("alice");
    let admin = platform.admin.clone();

    let first = api.get(&path, &alice).await; // 1 of alice's 6
    first.assert_status(200);
    assert_eq!(first.body["price"]["amount"], 1000);

    // Changed behind the BFF's back: served once the bound has passed.
    platform
        .products()
        .update_product(with_token(
            UpdateProductRequest {
                product: Some(Product {
                    id: product.id.clone(),
                    price: Some(Money {
                        amount_minor: 1200,
                        currency_code: "EUR".into(),
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["price".into()],
                }),
                expected_version: None,
            },
            &admin,
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = api.get(&path, &alice).await; // 2
    assert_eq!(later.body["price"]["amount"], 1200, "{later:?}");

    // Changed through this BFF: served at once.
    api.put(&path, &admin, &json!({"price": {"amount": 1300, "currency": "EUR"}}))
        .await
        .assert_status(200);
    assert_eq!(api.get(&path, &alice).await.body["price"]["amount"], 1300); // 3

    // Authentication runs on a cached product too.
    api.send(Method::GET, &path, None, None, &[])
        .await
        .assert_problem(401, Some("unauthorized"));
    api.send(Method::GET, &path, Some("not-a-token"), None, &[])
        .await
        .assert_problem(401, Some("unauthorized"));

    // So does the rate limit: alice has 3 requests left of 6.
    for _ in 0..3 {
        api.get(&path, &alice).await.assert_status(200);
    }
    api.get(&path, &alice).await.assert_problem(429, Some("rate-limited"));

    // Deactivated through this BFF: an employee still reads it (and the tier keeps that
    // answer), a client gets product-svc's 404, never the kept answer.
    api.put(&path, &admin, &json!({"active": false}))
        .await
        .assert_status(200);
    api.get(&path, &admin).await.assert_status(200);
    let bob = platform.auth.client("bob");
    api.get(&path, &bob).await.assert_problem(404, Some("not-found"));
}
