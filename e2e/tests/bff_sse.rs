//! Live notifications over Server-Sent Events through the BFF (issue 7), with the real services
//! (PostgreSQL, NATS, the order saga) behind it: status events of an order in order, the
//! order-manager group's new-order event, resume with `Last-Event-ID` without loss or
//! duplicates, stream tickets, the per-user stream cap, heartbeats and shutdown.

mod bff_common;

use std::time::Duration;

use bff::Surface;
use bff_common::{Api, SseEvent, SseStream, order_body};
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::Shutdown;
use ordermesh_platform::auth::Role;
use ordermesh_proto::order::OrderStatus;
use serde_json::json;

const SAGA: Duration = Duration::from_secs(30);

/// Places an order through the BFF; returns its id.
async fn place(api: &Api, token: &str, product_id: &str) -> String {
    let placed = api
        .post("/api/v1/orders", token, &order_body(product_id, 1, "tok_approved"))
        .await;
    placed.assert_status(202);
    placed.body["id"].as_str().unwrap().to_owned()
}

/// Reads the client's events until its order's CONFIRMED status event; returns them all.
async fn until_confirmed(stream: &mut SseStream, order_id: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    loop {
        let event = stream.next_data().await;
        let body = event.json();
        assert_eq!(body["data"]["order_id"], order_id, "{event:?}");
        let done = event.event.as_deref() == Some("order_status") && body["data"]["status"] == "CONFIRMED";
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The ids of the client's notifications (from the list route), ascending.
async fn listed_ids(api: &Api, token: &str) -> Vec<i64> {
    let list = api.get("/api/v1/notifications?pageSize=200", token).await;
    list.assert_status(200);
    let mut ids: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Asserts that no data event arrives within `quiet` (heartbeat comments are fine).
async fn assert_no_more_data(stream: &mut SseStream, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match stream.try_next(left).await {
            Err(()) | Ok(None) => return,
            Ok(Some(event)) => assert!(!event.is_data(), "unexpected event {event:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_streams_its_status_events_to_the_client_in_order_and_the_new_order_to_order_managers() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(1200, 5).await.unwrap();
    let (alice, _customer) = platform.client("sse-alice").await.unwrap();
    let manager = platform.auth.employee("sse-mgr", &[Role::OrderManager]);

    let mut client_stream = SseStream::notifications(&api, Some(&alice), "", &[]).await;
    // Personal data, like every authenticated answer: never stored (which also keeps any proxy
    // from serving a stream from a cache).
    assert_eq!(client_stream.headers["cache-control"], "no-store");
    let mut manager_stream = SseStream::notifications(&api, Some(&manager), "", &[]).await;

    let order_id = place(&api, &alice, &product.id).await;
    let events = until_confirmed(&mut client_stream, &order_id).await;

    let ids: Vec<i64> = events.iter().map(SseEvent::id_number).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let statuses: Vec<String> = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("order_status"))
        .map(|e| e.json()["data"]["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    let reserved = statuses
        .iter()
        .position(|s| s == "RESERVED")
        .unwrap_or_else(|| panic!("RESERVED notified: {statuses:?}"));
    let confirmed = statuses.iter().position(|s| s == "CONFIRMED").unwrap();
    assert!(reserved < confirmed, "{statuses:?}");
    // The data is the notification as the list route shows it (camelCase, `id` = event id).
    let last = events.last().unwrap().json();
    assert_eq!(last["id"], events.last().unwrap().id.clone().unwrap());
    assert_eq!(last["type"], "order_status");
    assert!(last["createdAt"].is_string() && last["title"].is_string(), "{last}");

    // The order-manager group hears about the new order.
    let n = manager_stream.next_data().await;
    assert_eq!(n.json()["data"]["order_id"], order_id.as_str(), "{n:?}");
    platform
        .wait_for(&order_id, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(800, 5).await.unwrap();
    let (bob, _customer) = platform.client("sse-bob").await.unwrap();

    let mut stream = SseStream::notifications(&api, Some(&bob), "", &[]).await;
    let order_id = place(&api, &bob, &product.id).await;
    // Mid-flow: the first event arrives, then the connection drops.
    let first = stream.next_data().await;
    assert_eq!(first.json()["data"]["order_id"], order_id.as_str());
    drop(stream);

    platform
        .wait_for(&order_id, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();
    // Let the last notifications of the saga land, then take the store's view.
    let mut expected = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = listed_ids(&api, &bob).await;
        if now == expected && !now.is_empty() {
            break;
        }
        expected = now;
    }
    let missed: Vec<i64> = expected.iter().copied().filter(|id| *id > first.id_number()).collect();
    assert!(!missed.is_empty(), "events after the first: {expected:?}");

    let last_id = first.id.clone().unwrap();
    let mut resumed = SseStream::notifications(&api, Some(&bob), "", &[("last-event-id", &last_id)]).await;
    let mut got = Vec::new();
    for _ in &missed {
        got.push(resumed.next_data().await.id_number());
    }
    assert_eq!(got, missed, "exactly the missed events, in order");
    assert_no_more_data(&mut resumed, Duration::from_secs(2)).await;
    drop(resumed);

    // The same through a ticket and the `lastEventId` parameter (EventSource's way).
    let ticket = api.post("/api/v1/notifications/stream-ticket", &bob, &json!({})).await;
    ticket.assert_status(200);
    let ticket = ticket.body["ticket"].as_str().unwrap().to_owned();
    let mut by_ticket =
        SseStream::notifications(&api, None, &format!("?ticket={ticket}&lastEventId={}", missed[0]), &[]).await;
    let mut got = Vec::new();
    for _ in &missed[1..] {
        got.push(by_ticket.next_data().await.id_number());
    }
    assert_eq!(got, missed[1..]);
    assert_no_more_data(&mut by_ticket, Duration::from_secs(1)).await;

    // A resume point that is not an id is a 400 problem.
    let bad = SseStream::open(
        &api,
        "/api/v1/notifications/stream",
        Some(&bob),
        &[("last-event-id", "x1")],
    )
    .await
    .err()
    .expect("refused");
    bad.assert_problem(400, Some("validation-error"));
}

/// The BFF serves every stream from one feed of its own; when notification-svc restarts, the
/// feed resumes where it was, so an open stream stays open and gets what was stored meanwhile,
/// in order and once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_outlives_a_notification_svc_restart_and_gets_what_was_stored_meanwhile() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(900, 5).await.unwrap();
    let (dave, _customer) = platform.client("sse-dave").await.unwrap();
    let mut stream = SseStream::notifications(&api, Some(&dave), "", &[]).await;
    let before = place(&api, &dave, &product.id).await;
    let mut events = until_confirmed(&mut stream, &before).await;

    platform.stop("notification").await.unwrap();
    let during = place(&api, &dave, &product.id).await;
    platform
        .wait_for(&during, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();
    platform.restart("notification").await.unwrap();
    // Late notifications of the first order may come first.
    loop {
        let event = stream.next_data().await;
        let body = event.json();
        let done = body["data"]["order_id"] == during.as_str() && body["data"]["status"] == "CONFIRMED";
        events.push(event);
        if done {
            break;
        }
    }

    // Once the store is quiet, the stream has carried exactly what it holds.
    let mut listed = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = listed_ids(&api, &dave).await;
        if now == listed {
            break;
        }
        listed = now;
    }
    while events.len() < listed.len() {
        events.push(stream.next_data().await);
    }
    let ids: Vec<i64> = events.iter().map(SseEvent::id_number).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, none twice: {ids:?}");
    assert_eq!(ids, listed, "every stored notification streamed once");
    assert_no_more_data(&mut stream, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tickets_work_once_and_expire_and_a_stream_needs_credentials() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    // A short gRPC deadline: a stream must outlive it (the deadline bounds each call's start,
    // not the stream).
    let mut external = platform.bff_config(Surface::External);
    external.grpc_timeout = Duration::from_secs(1);
    let api = Api::new(&platform.start_bff_with(external).await.unwrap());
    let mut short = platform.bff_config(Surface::Both);
    short.streams.ticket_ttl = Duration::from_secs(1);
    let short_api = Api::new(&platform.start_bff_with(short).await.unwrap());
    let (carol, customer) = platform.client("sse-carol").await.unwrap();
    let path = "/api/v1/notifications/stream";

    let issued = api
        .post("/api/v1/notifications/stream-ticket", &carol, &json!({}))
        .await;
    issued.assert_status(200);
    assert_eq!(issued.body["expiresIn"], 30);
    let ticket = issued.body["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.len() >= 43, "at least 128 random bits: {ticket}");

    // Works once, carrying the client's identity to notification-svc.
    let mut stream = SseStream::notifications(&api, None, &format!("?ticket={ticket}"), &[]).await;
    let cs = platform.auth.employee("sse-cs", &[Role::CustomerService]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // (The external surface does not route sending: the employee uses the other BFF.)
    let sent = send_message(&short_api, &cs, &customer, "ticket works").await;
    let event = stream.next_data().await;
    assert_eq!(event.id.as_deref(), Some(sent.as_str()));
    assert_eq!(event.event.as_deref(), Some("message"));
    assert_eq!(event.json()["title"], "ticket works");

    // A second use is 401.
    SseStream::open(&api, &format!("{path}?ticket={ticket}"), None, &[])
        .await
        .err()
        .expect("second use refused")
        .assert_problem(401, Some("unauthorized"));
    // An expired ticket is 401.
    let expiring = short_api
        .post("/api/v1/notifications/stream-ticket", &carol, &json!({}))
        .await;
    assert_eq!(expiring.body["expiresIn"], 1);
    let expiring = expiring.body["ticket"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    SseStream::open(&short_api, &format!("{path}?ticket={expiring}"), None, &[])
        .await
        .err()
        .expect("expired ticket refused")
        .assert_problem(401, Some("unauthorized"));
    // No token and no ticket, or a made-up ticket: 401 problems.
    let none = SseStream::open(&api, path, None, &[]).await.err().expect("refused");
    none.assert_problem(401, Some("unauthorized"));
    assert!(none.header("www-authenticate").is_some());
    SseStream::open(&api, &format!("{path}?ticket=not-a-ticket"), None, &[])
        .await
        .err()
        .expect("refused")
        .assert_problem(401, Some("unauthorized"));
    // Tickets open the stream only, not other routes.
    let other = api
        .post("/api/v1/notifications/stream-ticket", &carol, &json!({}))
        .await;
    let other = other.body["ticket"].as_str().unwrap().to_owned();
    api.send(
        reqwest::Method::GET,
        &format!("/api/v1/notifications?ticket={other}"),
        None,
        None,
        &[],
    )
    .await
    .assert_problem(401, Some("unauthorized"));
    // Tickets need authentication themselves.
    api.send(
        reqwest::Method::POST,
        "/api/v1/notifications/stream-ticket",
        None,
        None,
        &[],
    )
    .await
    .assert_problem(401, Some("unauthorized"));
}

/// Sends a message notification to `customer` through the BFF as `employee`; returns its id.
async fn send_message(api: &Api, employee: &str, customer: &str, title: &str) -> String {
    let sent = api
        .post(
            "/api/v1/notifications",
            employee,
            &json!({"recipient": {"customerId": customer}, "type": "message", "title": title, "body": "hello"}),
        )
        .await;
    sent.assert_status(201);
    sent.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_gets_at_most_the_stream_cap_with_heartbeats_and_a_closed_stream_frees_its_slot() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let mut config = platform.bff_config(Surface::Both);
    config.streams.max_per_principal = 2;
    config.streams.heartbeat = Duration::from_secs(1);
    let api = Api::new(&platform.start_bff_with(config).await.unwrap());
    let (dave, _) = platform.client("sse-dave").await.unwrap();
    let (erin, _) = platform.client("sse-erin").await.unwrap();

    let mut first = SseStream::notifications(&api, Some(&dave), "", &[]).await;
    let _second = SseStream::notifications(&api, Some(&dave), "", &[]).await;
    let refused = SseStream::open(&api, "/api/v1/notifications/stream", Some(&dave), &[])
        .await
        .err()
        .expect("over the cap");
    refused.assert_problem(429, Some("too-many-streams"));
    assert!(refused.header("retry-after").is_some());
    // Per user: another client still gets a stream.
    let _other = SseStream::notifications(&api, Some(&erin), "", &[]).await;

    // Idle streams get comment heartbeats at the configured interval.
    let heartbeat = first.next(Duration::from_secs(5)).await.expect("open");
    assert!(heartbeat.comments.iter().any(|c| c == "heartbeat"), "{heartbeat:?}");
    assert!(!heartbeat.is_data());

    // Closing a stream frees its slot (noticed at the latest with the next heartbeat).
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        match SseStream::open(&api, "/api/v1/notifications/stream", Some(&dave), &[]).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(answer) => {
                answer.assert_problem(429, Some("too-many-streams"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(reopened.is_some(), "the closed stream's slot is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_the_bff_shuts_down() {
    let platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    ordermesh_platform::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(bff::run(platform.bff_config(Surface::Both), listener, shutdown.clone()));
    let api = Api::new(&base);
    let (frank, _) = platform.client("sse-frank").await.unwrap();
    let mut ready = false;
    for _ in 0..250 {
        if api.http.get(format!("{base}/healthz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready);
    let mut a = SseStream::notifications(&api, Some(&frank), "", &[]).await;
    let mut b = SseStream::notifications(&api, Some(&platform.admin), "", &[]).await;

    shutdown.trigger();
    assert!(a.next(Duration::from_secs(5)).await.is_none(), "stream a ended");
    assert!(b.next(Duration::from_secs(5)).await.is_none(), "stream b ended");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("graceful shutdown does not hang on streams")
        .unwrap()
        .unwrap();
}
