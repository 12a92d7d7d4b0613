//! notification-svc end to end: events → notifications, Subscribe replay/live/resume, fan-out
//! across two instances, authorization and validation. PostgreSQL + real NATS unless the test
//! says "embedded" (SQLite + in-process bus).

mod common;

use std::time::Duration;

use common::{Harness, Profile, assert_quiet, next_notification, order_event};
use futures::StreamExt as _;
use notification_svc::Options;
use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::{violated_fields, with_token};
use ordermesh_proto::common::Money;
use ordermesh_proto::events as ev;
use ordermesh_proto::notification as pb;
use ordermesh_proto::order::{OrderItem, OrderStatus};
use tonic::Code;
use uuid::Uuid;

fn placed(order: Uuid, customer: Uuid) -> ev::OrderPlaced {
    ev::OrderPlaced {
        order_id: order.to_string(),
        customer_id: customer.to_string(),
        items: vec![OrderItem::default()],
        total: Some(Money {
            amount_minor: 2599,
            currency_code: "EUR".into(),
        }),
        ..Default::default()
    }
}

fn changed(order: Uuid, customer: Uuid, from: OrderStatus, to: OrderStatus, reason: &str) -> ev::OrderStatusChanged {
    ev::OrderStatusChanged {
        order_id: order.to_string(),
        customer_id: customer.to_string(),
        from_status: from as i32,
        to_status: to as i32,
        reason: reason.into(),
        ..Default::default()
    }
}

fn ids(list: &[pb::Notification]) -> Vec<i64> {
    list.iter().map(|n| n.id.parse().unwrap()).collect()
}

#[tokio::test]
async fn order_events_notify_the_customer_and_the_order_managers() {
    let h = Harness::start(Profile::Production).await;
    let (client, customer) = h.client();
    let manager = h.employee(&[Role::OrderManager]);
    let agent = h.employee(&[Role::CustomerService]);
    let order = Uuid::now_v7();

    let place = order_event(order, "OrderPlaced", &placed(order, customer));
    h.publish(&place).await;
    use OrderStatus::*;
    for (from, to) in [(Pending, Reserved), (Reserved, Confirmed), (Confirmed, Shipped)] {
        h.publish(&order_event(
            order,
            "OrderStatusChanged",
            &changed(order, customer, from, to, ""),
        ))
        .await;
    }
    h.publish(&order_event(
        order,
        "OrderShipped",
        &ev::OrderShipped {
            order_id: order.to_string(),
            customer_id: customer.to_string(),
            carrier: "DHL".into(),
            tracking_number: "TRACK-1".into(),
            ..Default::default()
        },
    ))
    .await;

    // Received, reserved, confirmed, shipped (SHIPPED comes from OrderShipped, with tracking).
    let list = h.wait_for(&client, 4).await;
    let statuses: Vec<&str> = list.iter().rev().map(|n| n.data["status"].as_str()).collect();
    assert_eq!(statuses, ["PENDING", "RESERVED", "CONFIRMED", "SHIPPED"]);
    assert!(list.iter().all(|n| n.data["order_id"] == order.to_string()));
    assert!(list.iter().all(|n| n.correlation_id == format!("corr-{order}")));
    assert_eq!(list[0].data["tracking_number"], "TRACK-1");
    assert!(list[0].body.contains("TRACK-1"));
    let mut sorted = ids(&list);
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(&list), sorted, "newest first");

    let staff = h.wait_for(&manager, 1).await;
    assert_eq!(staff.len(), 1);
    assert_eq!(staff[0].title, "New order");
    assert_eq!(
        staff[0].recipient.as_ref().unwrap().target,
        Some(pb::recipient::Target::Role("order-manager".into()))
    );
    assert!(
        h.list(&agent).await.is_empty(),
        "customer-service is not in the order-manager group"
    );

    // A redelivered OrderPlaced (same event id) stores nothing twice.
    h.nats.as_ref().unwrap().publish_duplicate(&place).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.list(&client).await.len(), 4);
    assert_eq!(h.list(&manager).await.len(), 1);

    // Rejection carries its reason; payments notify the customer.
    let other = Uuid::now_v7();
    h.publish(&order_event(other, "OrderPlaced", &placed(other, customer)))
        .await;
    for (from, to, reason) in [(Pending, Reserved, ""), (Reserved, Rejected, "payment declined")] {
        h.publish(&order_event(
            other,
            "OrderStatusChanged",
            &changed(other, customer, from, to, reason),
        ))
        .await;
    }
    h.publish(&ordermesh_platform::events::OutgoingEvent::new(
        "payment-svc",
        "payment-events",
        "PaymentFailed",
        &other.to_string(),
        "corr",
        &ev::PaymentFailed {
            payment_id: Uuid::now_v7().to_string(),
            order_id: other.to_string(),
            customer_id: customer.to_string(),
            ..Default::default()
        },
    ))
    .await;
    let list = h.wait_for(&client, 8).await;
    let rejected = list.iter().find(|n| n.data["status"] == "REJECTED").unwrap();
    assert!(rejected.body.contains("payment declined"));
    assert!(
        list.iter()
            .any(|n| n.data.get("status").map(String::as_str) == Some("DECLINED"))
    );
    h.cleanup().await;
}

/// Replicas side by side, or a redelivery after a crash, can bring a change before the one it
/// follows: it waits for its turn, and the customer is told in the order things happened.
#[tokio::test]
async fn a_status_change_that_arrives_early_waits_for_the_one_it_follows() {
    use OrderStatus::*;
    let h = Harness::start(Profile::Production).await;
    let (client, customer) = h.client();
    let order = Uuid::now_v7();
    let confirmed = changed(order, customer, Reserved, Confirmed, "");
    h.publish(&order_event(order, "OrderStatusChanged", &confirmed)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.list(&client).await.is_empty(), "told before the changes it follows");
    h.publish(&order_event(order, "OrderPlaced", &placed(order, customer)))
        .await;
    let reserved = changed(order, customer, Pending, Reserved, "");
    h.publish(&order_event(order, "OrderStatusChanged", &reserved)).await;
    let mut list = h.wait_for(&client, 3).await;
    // In the order told: the order of the ids, which the feed and the live stream follow.
    list.sort_by_key(|n| n.id.parse::<i64>().unwrap_or_default());
    let statuses: Vec<Option<&str>> = list.iter().map(|n| n.data.get("status").map(String::as_str)).collect();
    assert_eq!(
        statuses,
        [Some("PENDING"), Some("RESERVED"), Some("CONFIRMED")],
        "{list:?}"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn subscribe_replays_after_id_then_streams_live_and_resumes_without_loss() {
    let h = Harness::start(Profile::Production).await;
    let (client, customer) = h.client();
    let first = h.send_to(0, customer, "one").await;
    let second = h.send_to(0, customer, "two").await;
    let third = h.send_to(0, customer, "three").await;

    let mut stream = h.subscribe(0, &client, &first).await;
    assert_eq!(next_notification(&mut stream).await.id, second);
    assert_eq!(next_notification(&mut stream).await.id, third);
    let fourth = h.send_to(0, customer, "four").await;
    let fifth = h.send_to(0, customer, "five").await;
    assert_eq!(next_notification(&mut stream).await.id, fourth);
    assert_eq!(next_notification(&mut stream).await.id, fifth);
    assert_quiet(&mut stream, Duration::from_millis(300)).await;
    drop(stream);

    // Missed while disconnected: replayed exactly once, then live continues.
    let sixth = h.send_to(0, customer, "six").await;
    let seventh = h.send_to(0, customer, "seven").await;
    let mut stream = h.subscribe(0, &client, &fifth).await;
    assert_eq!(next_notification(&mut stream).await.id, sixth);
    assert_eq!(next_notification(&mut stream).await.id, seventh);
    let eighth = h.send_to(0, customer, "eight").await;
    assert_eq!(next_notification(&mut stream).await.id, eighth);
    assert_quiet(&mut stream, Duration::from_millis(300)).await;

    // Without after_id: only new ones.
    let mut fresh = h.subscribe(0, &client, "").await;
    assert_quiet(&mut fresh, Duration::from_millis(200)).await;
    let ninth = h.send_to(0, customer, "nine").await;
    assert_eq!(next_notification(&mut fresh).await.id, ninth);
    assert_eq!(next_notification(&mut stream).await.id, ninth);
    h.cleanup().await;
}

#[tokio::test]
async fn catch_up_replays_in_pages_after_the_cursor_and_names_the_callers_scope() {
    let h = Harness::start(Profile::Production).await;
    let catch_up = async |token: &str, after_id: &str, page_size: i32| {
        h.api(0)
            .catch_up(with_token(
                pb::CatchUpRequest {
                    after_id: after_id.into(),
                    page_size,
                },
                token,
            ))
            .await
    };
    let (client, customer) = h.client();
    let service = h.auth.service("bff");
    // An empty store: the cursor is the point before the first notification.
    let start = catch_up(&service, "", 0).await.unwrap().into_inner();
    assert_eq!((start.cursor.as_str(), start.more, start.all), ("0", false, true));
    assert!(start.notifications.is_empty() && start.scope.is_empty());

    let (other_client, other) = h.client();
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(h.send_to(0, customer, &format!("n{i}")).await);
        h.send_to(0, other, "not hers").await;
    }
    // From the start, in pages of two: only her notifications, oldest first, each once.
    let mut seen = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = catch_up(&client, &after, 2).await.unwrap().into_inner();
        assert!(page.notifications.len() <= 2);
        let expected = pb::Recipient {
            target: Some(pb::recipient::Target::CustomerId(customer.to_string())),
        };
        assert_eq!((page.scope.as_slice(), page.all), ([expected].as_slice(), false));
        seen.extend(page.notifications.iter().map(|n| n.id.clone()));
        after = page.cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, sent);
    assert_eq!(after, sent[4], "the cursor is the last id read");
    // Without a resume point: nothing replayed, the newest id overall as the cursor.
    let now = catch_up(&other_client, "", 0).await.unwrap().into_inner();
    assert!(now.notifications.is_empty());
    assert!(now.cursor.parse::<i64>().unwrap() > sent[4].parse::<i64>().unwrap());
    // An employee's scope is its role groups.
    let employee = h.employee(&[Role::OrderManager, Role::Admin]);
    let roles = catch_up(&employee, "", 0).await.unwrap().into_inner().scope;
    let roles: Vec<_> = roles.into_iter().filter_map(|r| r.target).collect();
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert!(roles.contains(&pb::recipient::Target::Role("order-manager".into())));
    // Bad resume points and sizes are field violations; no token is UNAUTHENTICATED.
    for (after_id, page_size, field) in [("x", 0, "after_id"), ("01", 0, "after_id"), ("", -1, "page_size")] {
        let status = catch_up(&client, after_id, page_size).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
    let anonymous = h.api(0).catch_up(pb::CatchUpRequest::default()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    h.cleanup().await;
}

#[tokio::test]
async fn concurrent_writers_during_subscribe_give_every_id_once_in_order() {
    let h = Harness::with(Profile::Production, 2, Options::default()).await;
    let (client, customer) = h.client();
    let start = h.send_to(0, customer, "start").await;
    let mut stream = h.subscribe(0, &client, &start).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let api = h.api(w % 2);
        let token = h.auth.employee("cs-agent", &[Role::CustomerService]);
        writers.push(tokio::spawn(async move {
            let mut api = api;
            for i in 0..10 {
                let request = pb::SendNotificationRequest {
                    recipient: Some(pb::Recipient {
                        target: Some(pb::recipient::Target::CustomerId(customer.to_string())),
                    }),
                    title: format!("w{w} n{i}"),
                    body: "b".into(),
                    ..Default::default()
                };
                api.send_notification(with_token(request, &token)).await.unwrap();
            }
        }));
    }
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(next_notification(&mut stream).await.id.parse::<i64>().unwrap());
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly increasing: {seen:?}");
    let stored: Vec<i64> = ids(&h.list(&client).await).into_iter().rev().skip(1).collect();
    assert_eq!(seen, stored, "every stored notification exactly once");
    assert_quiet(&mut stream, Duration::from_millis(300)).await;
    h.cleanup().await;
}

#[tokio::test]
async fn a_subscriber_on_one_instance_receives_what_another_instance_stored() {
    let h = Harness::with(Profile::Production, 2, Options::default()).await;
    let (client, customer) = h.client();
    let manager = h.employee(&[Role::OrderManager]);
    let mut on_a = h.subscribe(0, &client, "").await;
    let mut managers_on_a = h.subscribe(0, &manager, "").await;
    // Give the stream a moment to be registered before writing on the other instance.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let id = h.send_to(1, customer, "from B").await;
    let got = next_notification(&mut on_a).await;
    assert_eq!(got.id, id);
    assert_eq!(got.title, "from B");

    // Consumer-created notifications (whichever instance consumes) reach both streams.
    let order = Uuid::now_v7();
    h.publish(&order_event(order, "OrderPlaced", &placed(order, customer)))
        .await;
    let got = next_notification(&mut on_a).await;
    assert_eq!(got.title, "Order received");
    let got = next_notification(&mut managers_on_a).await;
    assert_eq!(got.title, "New order");
    assert_eq!(got.data["order_id"], order.to_string());
    h.cleanup().await;
}

#[tokio::test]
async fn clients_see_only_their_own_notifications() {
    let h = Harness::start(Profile::Production).await;
    let (alice, alice_id) = h.client();
    let (bob, bob_id) = h.client();
    let for_alice = h.send_to(0, alice_id, "for alice").await;
    let for_bob = h.send_to(0, bob_id, "for bob").await;

    let listed = h.list(&alice).await;
    assert_eq!(
        listed.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        [for_alice.as_str()]
    );
    // customer_id is ignored for clients.
    let listed = h
        .api(0)
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                customer_id: bob_id.to_string(),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.notifications.iter().all(|n| n.id != for_bob));
    // Marking another customer's notification read changes nothing and reveals nothing.
    let marked = h
        .api(0)
        .mark_read(with_token(
            pb::MarkReadRequest {
                notification_ids: vec![for_bob.clone()],
                all: false,
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(marked.updated_count, 0);
    assert!(!h.list(&bob).await[0].read);
    // Alice's stream never carries Bob's notifications.
    let mut stream = h.subscribe(0, &alice, &for_alice).await;
    h.send_to(0, bob_id, "bob again").await;
    assert_quiet(&mut stream, Duration::from_millis(400)).await;

    // A client without a linked customer: NOT_FOUND. No token: UNAUTHENTICATED.
    let stranger = h.auth.client("nobody");
    let status = h
        .api(0)
        .list_notifications(with_token(pb::ListNotificationsRequest::default(), &stranger))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = h
        .api(0)
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = h.api(0).subscribe(pb::SubscribeRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Clients and services cannot send; order managers cannot view a customer's list.
    let send = pb::SendNotificationRequest {
        recipient: Some(pb::Recipient {
            target: Some(pb::recipient::Target::CustomerId(bob_id.to_string())),
        }),
        title: "t".into(),
        body: "b".into(),
        ..Default::default()
    };
    let status = h
        .api(0)
        .send_notification(with_token(send.clone(), &alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let service = h.auth.service("order-svc");
    let status = h
        .api(0)
        .send_notification(with_token(send, &service))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let manager = h.employee(&[Role::OrderManager]);
    let status = h
        .api(0)
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                customer_id: bob_id.to_string(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Customer service may view Bob's list; services read anything.
    let agent = h.employee(&[Role::CustomerService]);
    let viewed = h
        .api(0)
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                customer_id: bob_id.to_string(),
                ..Default::default()
            },
            &agent,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(viewed.notifications.len(), 2);
    assert_eq!(h.list(&service).await.len(), 3);
    h.cleanup().await;
}

#[tokio::test]
async fn employees_see_their_role_groups() {
    let h = Harness::start(Profile::Production).await;
    let sender = h.employee(&[Role::Admin]);
    let to_role = |role: &str, title: &str| pb::SendNotificationRequest {
        recipient: Some(pb::Recipient {
            target: Some(pb::recipient::Target::Role(role.into())),
        }),
        notification_type: pb::NotificationType::System as i32,
        title: title.into(),
        body: "b".into(),
        ..Default::default()
    };
    for (role, title) in [("order-manager", "om"), ("customer-service", "cs"), ("admin", "adm")] {
        h.api(0)
            .send_notification(with_token(to_role(role, title), &sender))
            .await
            .unwrap();
    }
    let both = h.employee(&[Role::OrderManager, Role::CustomerService]);
    let titles: Vec<String> = h.list(&both).await.into_iter().map(|n| n.title).collect();
    assert_eq!(titles, ["cs", "om"]);
    let manager = h.employee(&[Role::OrderManager]);
    assert_eq!(h.list(&manager).await.len(), 1);

    // Read state is per employee.
    let marked = h
        .api(0)
        .mark_read(with_token(
            pb::MarkReadRequest {
                notification_ids: vec![],
                all: true,
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((marked.updated_count, marked.unread_count), (1, 0));
    assert!(h.list(&manager).await[0].read);
    assert!(h.list(&both).await.iter().all(|n| !n.read));
    h.cleanup().await;
}

#[tokio::test]
async fn list_unread_filter_pagination_mark_read_and_idempotent_send() {
    let h = Harness::start(Profile::Production).await;
    let (client, customer) = h.client();
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(h.send_to(0, customer, &format!("n{i}")).await);
    }
    let mut api = h.api(0);
    let page = |token: String| pb::ListNotificationsRequest {
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let response = api
            .list_notifications(with_token(page(token), &client))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.unread_count, 5);
        seen.extend(response.notifications.into_iter().map(|n| n.id));
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
    }
    let mut expected = sent.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let marked = api
        .mark_read(with_token(
            pb::MarkReadRequest {
                notification_ids: vec![sent[0].clone(), sent[1].clone(), sent[1].clone()],
                all: false,
            },
            &client,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((marked.updated_count, marked.unread_count), (2, 3));
    let unread = api
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                unread_only: true,
                ..Default::default()
            },
            &client,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unread.notifications.len(), 3);
    assert!(unread.notifications.iter().all(|n| !n.read && n.read_time.is_none()));
    let all = h.list(&client).await;
    assert!(all.iter().find(|n| n.id == sent[0]).unwrap().read);

    // A page token used with other filters is rejected.
    let first = api
        .list_notifications(with_token(page(String::new()), &client))
        .await
        .unwrap()
        .into_inner();
    let status = api
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                page_size: 2,
                unread_only: true,
                page_token: first.next_page_token,
                ..Default::default()
            },
            &client,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);

    // Idempotent send: the same key returns the first notification.
    let agent = h.auth.employee("agent-7", &[Role::CustomerService]);
    let request = pb::SendNotificationRequest {
        recipient: Some(pb::Recipient {
            target: Some(pb::recipient::Target::CustomerId(customer.to_string())),
        }),
        title: "once".into(),
        body: "b".into(),
        idempotency_key: "k-1".into(),
        ..Default::default()
    };
    let a = api
        .send_notification(with_token(request.clone(), &agent))
        .await
        .unwrap()
        .into_inner();
    let b = api
        .send_notification(with_token(request, &agent))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.notification.as_ref().unwrap().id, b.notification.as_ref().unwrap().id);
    assert_eq!(a.notification.unwrap().sender_id, "agent-7");
    assert_eq!(h.list(&client).await.len(), 6);
    h.cleanup().await;
}

#[tokio::test]
async fn muted_types_are_not_stored_and_preferences_round_trip() {
    let h = Harness::start(Profile::Production).await;
    let (client, customer) = h.client();
    let mut api = h.api(0);
    let defaults = api
        .get_preferences(with_token(pb::GetPreferencesRequest::default(), &client))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert!(defaults.channels.is_empty() && defaults.muted_types.is_empty());
    let updated = api
        .update_preferences(with_token(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::NotificationPreferences {
                    channels: vec![pb::Channel::Email as i32, pb::Channel::Email as i32],
                    muted_types: vec![pb::NotificationType::Payment as i32],
                    update_time: None,
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["channels".into(), "muted_types".into()],
                }),
                customer_id: String::new(),
            },
            &client,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(updated.channels, [pb::Channel::Email as i32]);
    assert_eq!(updated.muted_types, [pb::NotificationType::Payment as i32]);
    assert!(updated.update_time.is_some());
    // Customer service sees the customer's preferences.
    let agent = h.employee(&[Role::CustomerService]);
    let seen = api
        .get_preferences(with_token(
            pb::GetPreferencesRequest {
                customer_id: customer.to_string(),
            },
            &agent,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(seen.muted_types, updated.muted_types);

    let order = Uuid::now_v7();
    h.publish(&ordermesh_platform::events::OutgoingEvent::new(
        "payment-svc",
        "payment-events",
        "PaymentCaptured",
        &order.to_string(),
        "corr",
        &ev::PaymentCaptured {
            payment_id: Uuid::now_v7().to_string(),
            order_id: order.to_string(),
            customer_id: customer.to_string(),
            ..Default::default()
        },
    ))
    .await;
    h.publish(&order_event(order, "OrderPlaced", &placed(order, customer)))
        .await;
    for (from, to) in [
        (OrderStatus::Pending, OrderStatus::Reserved),
        (OrderStatus::Reserved, OrderStatus::Confirmed),
    ] {
        h.publish(&order_event(
            order,
            "OrderStatusChanged",
            &changed(order, customer, from, to, ""),
        ))
        .await;
    }
    let list = h.wait_for(&client, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list2 = h.list(&client).await;
    assert_eq!(list2.len(), 3, "{list:?}");
    assert!(
        list2
            .iter()
            .all(|n| n.notification_type == pb::NotificationType::OrderStatus as i32),
        "{list2:?}"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn invalid_requests_report_field_violations() {
    let h = Harness::start(Profile::Production).await;
    let (client, _) = h.client();
    let agent = h.employee(&[Role::CustomerService]);
    let mut api = h.api(0);

    let status = api
        .send_notification(with_token(
            pb::SendNotificationRequest {
                recipient: None,
                notification_type: 99,
                title: String::new(),
                body: "x".repeat(4001),
                data: [("".to_owned(), "v".to_owned())].into(),
                idempotency_key: "k".repeat(129),
            },
            &agent,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "body",
            "data",
            "idempotency_key",
            "notification_type",
            "recipient",
            "title"
        ]
    );
    let status = api
        .send_notification(with_token(
            pb::SendNotificationRequest {
                recipient: Some(pb::Recipient {
                    target: Some(pb::recipient::Target::Role("janitor".into())),
                }),
                title: "t".into(),
                body: "b".into(),
                ..Default::default()
            },
            &agent,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["recipient.role"]);

    let status = api
        .list_notifications(with_token(
            pb::ListNotificationsRequest {
                page_size: -1,
                notification_types: vec![0],
                customer_id: "not-a-uuid".into(),
                ..Default::default()
            },
            &client,
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["customer_id", "notification_types[0]", "page_size"]);

    let status = api
        .subscribe(with_token(
            pb::SubscribeRequest {
                after_id: "abc".into(),
                notification_types: vec![42],
            },
            &client,
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["after_id", "notification_types[0]"]);

    let status = api
        .mark_read(with_token(
            pb::MarkReadRequest {
                notification_ids: vec!["1".into(), "x".into()],
                all: true,
            },
            &client,
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["notification_ids", "notification_ids[1]"]);

    let status = api
        .update_preferences(with_token(
            pb::UpdatePreferencesRequest {
                preferences: Some(pb::NotificationPreferences {
                    channels: vec![0],
                    muted_types: vec![pb::NotificationType::Account as i32],
                    update_time: None,
                }),
                update_mask: None,
                customer_id: String::new(),
            },
            &client,
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        ["preferences.channels[0]", "preferences.muted_types[0]", "update_mask"]
    );
    h.cleanup().await;
}

#[tokio::test]
async fn idle_streams_get_heartbeats_outlive_the_request_timeout_and_end_on_shutdown() {
    let options = Options {
        heartbeat: Duration::from_millis(200),
        ..Options::default()
    };
    // A unary deadline of 1 s must not cut a long-lived stream.
    let mut h = Harness::with_config(Profile::Embedded, 1, options, |config| {
        config.grpc.request_timeout = Duration::from_secs(1);
    })
    .await;
    let (client, customer) = h.client();
    let mut stream = h.subscribe(0, &client, "").await;
    let started = tokio::time::Instant::now();
    let mut beats = 0;
    while started.elapsed() < Duration::from_millis(1800) {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(item.event, Some(pb::subscribe_response::Event::Heartbeat(_))));
        beats += 1;
    }
    assert!(beats >= 5, "{beats} heartbeats");
    let id = h.send_to(0, customer, "still here").await;
    assert_eq!(next_notification(&mut stream).await.id, id);

    // Shutdown closes the stream cleanly (no error status).
    h.instances.clear();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends on shutdown");
    assert!(end.is_none(), "{end:?}");
    h.cleanup().await;
}

#[tokio::test]
async fn embedded_profile_consumes_once_and_streams_live() {
    let h = Harness::start(Profile::Embedded).await;
    let (client, customer) = h.client();
    let manager = h.employee(&[Role::OrderManager]);
    let mut stream = h.subscribe(0, &client, "").await;
    let mut staff = h.subscribe(0, &manager, "").await;
    let order = Uuid::now_v7();
    let place = order_event(order, "OrderPlaced", &placed(order, customer));
    h.publish(&place).await;
    h.memory.as_ref().unwrap().publish_duplicate(&place);
    h.publish(&order_event(
        order,
        "OrderStatusChanged",
        &changed(order, customer, OrderStatus::Pending, OrderStatus::Reserved, ""),
    ))
    .await;
    let first = next_notification(&mut stream).await;
    let second = next_notification(&mut stream).await;
    assert_eq!(
        (first.data["status"].as_str(), second.data["status"].as_str()),
        ("PENDING", "RESERVED")
    );
    assert_eq!(next_notification(&mut staff).await.title, "New order");
    assert_quiet(&mut stream, Duration::from_millis(300)).await;
    assert_quiet(&mut staff, Duration::from_millis(100)).await;
    assert_eq!(h.list(&client).await.len(), 2);
    h.cleanup().await;
}

#[tokio::test]
async fn a_lagging_subscriber_is_cut_off_and_can_resume() {
    let options = Options {
        live_buffer: 4,
        stream_buffer: 1,
        ..Options::default()
    };
    let h = Harness::with(Profile::Embedded, 1, options).await;
    let (client, customer) = h.client();
    // The subscriber's connection grants a 1 KiB stream window and the client reads nothing
    // while notifications are written: HTTP/2 flow control stops the server's stream, which
    // falls behind the instance's live feed (capacity 4).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.instances[0].addr))
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut stream =
        ordermesh_proto::notification::notification_service_client::NotificationServiceClient::new(channel)
            .subscribe(with_token(pb::SubscribeRequest::default(), &client))
            .await
            .unwrap()
            .into_inner();
    let total = 40;
    let mut last = String::new();
    for i in 0..total {
        last = h.send_to(0, customer, &format!("n{i:04} {}", "x".repeat(150))).await;
    }
    let mut received = Vec::new();
    let status = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let next = next.unwrap_or_else(|_| panic!("stalled after {} of {total}", received.len()));
        match next {
            Some(Ok(pb::SubscribeResponse {
                event: Some(pb::subscribe_response::Event::Notification(n)),
            })) => received.push(n.id),
            Some(Ok(_)) => {}
            Some(Err(status)) => break status,
            None => panic!("stream ended without an error"),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("after_id"));
    // Resume after the last one received: the rest, exactly once.
    let after = received.last().cloned().unwrap_or_default();
    let mut resumed = h.subscribe(0, &client, &after).await;
    let mut rest = Vec::new();
    if received.last() != Some(&last) {
        while rest.last() != Some(&last) {
            rest.push(next_notification(&mut resumed).await.id);
        }
    }
    assert_quiet(&mut resumed, Duration::from_millis(200)).await;
    assert_eq!(received.len() + rest.len(), total);
    assert!(received.len() < total, "the stream was cut off before the end");
    h.cleanup().await;
}

#[tokio::test]
async fn notification_requests_are_stored_and_sends_publish_notification_created() {
    use ordermesh_platform::events::{OutgoingEvent, SubscriptionSpec};
    let h = Harness::start(Profile::Production).await;
    let mut events = h
        .bus
        .subscribe(&SubscriptionSpec {
            service: "notify-test".into(),
            topic: "notification-events".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 64,
        })
        .await
        .unwrap();
    let requested = |title: &str| ev::NotificationRequested {
        request_id: Uuid::now_v7().to_string(),
        recipient: Some(pb::Recipient {
            target: Some(pb::recipient::Target::Role("customer-service".into())),
        }),
        notification_type: pb::NotificationType::System as i32,
        title: title.into(),
        body: "3 dead letters in order-events".into(),
        data: [("topic".to_owned(), "order-events".to_owned())].into(),
        occur_time: None,
    };
    let request = |message: &ev::NotificationRequested| {
        OutgoingEvent::new(
            "audit-svc",
            "notification-events",
            "NotificationRequested",
            &message.request_id,
            "corr-req",
            message,
        )
    };
    // Invalid: dead-lettered, nothing stored.
    let invalid = request(&requested(""));
    h.publish(&invalid).await;
    h.publish(&request(&requested("Dead letters"))).await;
    let agent = h.employee(&[Role::CustomerService]);
    let list = h.wait_for(&agent, 1).await;
    assert_eq!(list[0].title, "Dead letters");
    assert_eq!(list[0].notification_type, pb::NotificationType::System as i32);
    assert_eq!(list[0].data["topic"], "order-events");
    assert_eq!(list[0].correlation_id, "corr-req");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let letters = h.bus.dead_letters().await.unwrap();
        if letters.iter().any(|l| l.event.id == invalid.id) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "invalid request not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.list(&agent).await.len(), 1);

    // SendNotification publishes NotificationCreated through the outbox.
    let (_, customer) = h.client();
    let id = h.send_to(0, customer, "hello").await;
    let created = loop {
        let delivery = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("an event within 20 s")
            .expect("subscription open");
        delivery.acker.ack().await.unwrap();
        if delivery.event.short_type() == "NotificationCreated" {
            break delivery.event.decode::<ev::NotificationCreated>().unwrap();
        }
    };
    assert_eq!(created.notification_id, id);
    assert_eq!(created.sender_id, "cs-agent");
    assert_eq!(
        created.recipient.unwrap().target,
        Some(pb::recipient::Target::CustomerId(customer.to_string()))
    );
    h.cleanup().await;
}
