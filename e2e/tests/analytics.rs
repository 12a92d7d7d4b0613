//! The employee portal's analytics add up: known orders are placed (confirmed, rejected for
//! stock and for payment, confirmed then cancelled and refunded), and every figure of
//! `GET /api/v1/analytics/summary` is checked — by status, by day, best sellers, confirmation
//! times, rejection reasons and revenue net of the refund — on both profiles.

mod bff_common;

use std::time::Duration;

use bff::Surface;
use bff_common::Api;
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::with_token;
use ordermesh_proto::order::{CancelOrderRequest, OrderStatus};
use serde_json::{Value, json};

const SAGA: Duration = Duration::from_secs(30);

async fn analytics_add_up(embedded: bool) {
    let gateway = CountingGateway::sandbox();
    let mut platform = if embedded {
        Platform::start_embedded(gateway).await.unwrap()
    } else {
        Platform::start(gateway).await.unwrap()
    };
    let api = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let manager = platform.auth.employee("om-analytics", &[Role::OrderManager]);
    let kettle = platform.product(1000, 100).await.unwrap();
    let lamp = platform.product(2500, 1).await.unwrap();
    let (token, customer) = platform.client("analytics-client").await.unwrap();
    let place = |lines: Vec<(String, i32)>, payment: &'static str, settled: OrderStatus| {
        let (platform, token, customer) = (&platform, &token, &customer);
        async move {
            let lines: Vec<(&str, i32)> = lines.iter().map(|(id, q)| (id.as_str(), *q)).collect();
            let placed = platform.place(token, customer, &lines, payment, "").await.unwrap();
            let id = placed.order.unwrap().id;
            platform.wait_for(&id, &[settled], SAGA).await.unwrap();
            id
        }
    };
    place(vec![(kettle.id.clone(), 3)], "tok_approved", OrderStatus::Confirmed).await;
    place(
        vec![(kettle.id.clone(), 1), (lamp.id.clone(), 1)],
        "tok_approved",
        OrderStatus::Confirmed,
    )
    .await;
    place(vec![(lamp.id.clone(), 1)], "tok_approved", OrderStatus::Rejected).await;
    place(vec![(kettle.id.clone(), 2)], "tok_declined", OrderStatus::Rejected).await;
    let cancelled = place(vec![(kettle.id.clone(), 1)], "tok_approved", OrderStatus::Confirmed).await;
    platform
        .orders()
        .cancel_order(with_token(
            CancelOrderRequest {
                order_id: cancelled.clone(),
                reason: "changed my mind".into(),
            },
            &token,
        ))
        .await
        .unwrap();

    // The days around today in Berlin.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive();
    let from = today.pred_opt().unwrap();
    let path = format!("/api/v1/analytics/summary?from={from}&days=3&timeZone=Europe/Berlin&top=5");
    // The refund follows the cancellation through the bus: wait for it.
    let deadline = tokio::time::Instant::now() + SAGA;
    let summary = loop {
        let answer = api.get(&path, &manager).await;
        answer.assert_status(200);
        if answer.body["revenue"]["totals"][0]["refunded"] == 1000 {
            break answer.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let orders = &summary["orders"];
    assert_eq!(orders["total"], 5, "{summary}");
    let by_status: Vec<(String, i64)> = orders["byStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["status"].as_str().unwrap().to_owned(), s["count"].as_i64().unwrap()))
        .collect();
    for (status, count) in [("confirmed", 2), ("rejected", 2), ("cancelled", 1)] {
        assert!(by_status.contains(&(status.to_owned(), count)), "{by_status:?}");
    }
    assert_eq!(by_status.len(), 3, "{by_status:?}");
    assert_eq!(
        orders["byDay"],
        json!([
            {"date": from.to_string(), "count": 0},
            {"date": today.to_string(), "count": 5},
            {"date": today.succ_opt().unwrap().to_string(), "count": 0},
        ])
    );
    // Sold: the two orders still confirmed (the cancelled one is not a sale).
    let top = |list: &Value| -> Vec<(String, i64, i64)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["sku"].as_str().unwrap().to_owned(),
                    p["units"].as_i64().unwrap(),
                    p["revenue"]["amount"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        top(&orders["topProductsByUnits"]),
        [(kettle.sku.clone(), 4, 4000), (lamp.sku.clone(), 1, 2500)]
    );
    assert_eq!(
        top(&orders["topProductsByRevenue"]),
        [(kettle.sku.clone(), 4, 4000), (lamp.sku.clone(), 1, 2500)]
    );
    let times = &orders["timeToConfirm"];
    assert_eq!(times["count"], 3, "three orders were confirmed: {times}");
    let (mean, p95) = (
        times["meanSeconds"].as_f64().unwrap(),
        times["p95Seconds"].as_f64().unwrap(),
    );
    assert!(mean > 0.0 && mean < 30.0 && p95 >= mean * 0.99, "{times}");
    let mut rejections: Vec<(String, i64)> = orders["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["code"].as_str().unwrap().to_owned(), r["count"].as_i64().unwrap()))
        .collect();
    rejections.sort();
    assert_eq!(
        rejections,
        [("out_of_stock".to_owned(), 1), ("payment_declined".to_owned(), 1)]
    );
    // Captured 3000 + 3500 + 1000, refunded the cancelled order's 1000.
    let revenue = &summary["revenue"];
    assert_eq!(
        revenue["totals"],
        json!([{"currency": "EUR", "captured": 7500, "refunded": 1000, "net": 6500}])
    );
    assert_eq!(
        revenue["byDay"],
        json!([{"date": today.to_string(), "currency": "EUR", "captured": 7500, "refunded": 1000, "net": 6500}])
    );

    // Another zone's day, a range with nothing in it, and refusals.
    let tokyo = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let there = api
        .get(
            &format!("/api/v1/analytics/summary?from={tokyo}&days=1&timeZone=Asia/Tokyo"),
            &manager,
        )
        .await;
    assert_eq!(there.body["orders"]["byDay"][0]["count"], 5, "{there:?}");
    let empty = api
        .get("/api/v1/analytics/summary?from=2020-01-01&days=31", &manager)
        .await;
    assert_eq!(empty.body["orders"]["total"], 0);
    assert_eq!(empty.body["orders"]["byDay"].as_array().unwrap().len(), 31);
    assert_eq!(empty.body["revenue"]["totals"], json!([]));
    let too_long = api
        .get("/api/v1/analytics/summary?from=2024-01-01&days=731", &manager)
        .await;
    too_long.assert_problem(400, Some("validation-error"));
    assert!(too_long.body.to_string().contains("366"), "{too_long:?}");
    for bad in [
        "from=2026-02-01&days=0",
        "from=2026-02-01&to=2026-01-01",
        "from=2026-01-01&days=31&timeZone=Mars/Olympus",
        "from=2026-01-01&days=31&colour=red",
        "from=January&days=31",
        "from=2026-01-01&days=31&top=99",
        "from=9999-12-31&days=2",
    ] {
        let answer = api.get(&format!("/api/v1/analytics/summary?{bad}"), &manager).await;
        answer.assert_problem(400, None);
    }
    let service = platform.auth.employee("cs-analytics", &[Role::CustomerService]);
    api.get(&path, &service).await.assert_problem(403, Some("forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_add_up_on_the_production_profile() {
    analytics_add_up(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_add_up_on_the_embedded_profile() {
    analytics_add_up(true).await;
}
