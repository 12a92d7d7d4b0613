//! audit-svc end to end: the service runs in-process (`audit_svc::run`) with its consumers of
//! every topic, against real PostgreSQL and real NATS JetStream at 127.0.0.1:4222 (or
//! `NATS_URL`; an isolated set of streams per test), and with SQLite on the in-process bus. The
//! tests publish events as the other services' relays would, and call the gRPC API with real
//! JWTs.

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::auth::Role;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::{EventBus, EventsConfig, MemoryBus, NatsBus, OutgoingEvent};
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, violated_fields, with_token};
use ordermesh_proto::audit as pb;
use ordermesh_proto::audit::audit_service_client::AuditServiceClient;
use ordermesh_proto::common::{Actor, ActorKind, Money};
use ordermesh_proto::events as ev;
use ordermesh_proto::order::{OrderItem, OrderStatus};
use ordermesh_proto::product::StockLine;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Profile {
    /// PostgreSQL + NATS JetStream.
    Production,
    /// SQLite + in-process bus.
    Embedded,
}

struct Harness {
    bus: Arc<dyn EventBus>,
    /// The in-process bus of the embedded profile.
    memory: Option<MemoryBus>,
    auth: TestAuth,
    db: TestDatabase,
    services: Vec<RunningService>,
}

impl Harness {
    async fn start(profile: Profile) -> Self {
        Self::start_instances(profile, 1).await
    }

    /// `instances` audit-svc instances on one database and one bus.
    async fn start_instances(profile: Profile, instances: usize) -> Self {
        let auth = TestAuth::start().await.unwrap();
        let db = match profile {
            Profile::Production => TestDatabase::postgres().await.unwrap(),
            Profile::Embedded => TestDatabase::sqlite().unwrap(),
        };
        let mut config = testing::service_config(audit_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        let (bus, memory): (Arc<dyn EventBus>, _) = match profile {
            Profile::Production => {
                config.events = EventsConfig::isolated();
                config.nats_url = Some(nats_url());
                let bus = NatsBus::connect(&nats_url(), config.events.clone()).await.unwrap();
                (Arc::new(bus), None)
            }
            Profile::Embedded => {
                let bus = MemoryBus::new();
                config.bus = Some(Arc::new(bus.clone()));
                (Arc::new(bus.clone()), Some(bus))
            }
        };
        let mut services = Vec::new();
        for _ in 0..instances {
            services.push(RunningService::start(config.clone(), audit_svc::run).await.unwrap());
        }
        Self {
            bus,
            memory,
            auth,
            db,
            services,
        }
    }

    fn client(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.services[0].channel())
    }

    fn admin(&self) -> String {
        self.auth.employee("admin-1", &[Role::Admin])
    }

    async fn query(&self, request: pb::QueryAuditLogsRequest) -> Result<pb::QueryAuditLogsResponse, tonic::Status> {
        self.client()
            .query_audit_logs(with_token(request, &self.admin()))
            .await
            .map(|r| r.into_inner())
    }

    async fn verify(&self) -> pb::VerifyChainResponse {
        self.client()
            .verify_chain(with_token(pb::VerifyChainRequest::default(), &self.admin()))
            .await
            .unwrap()
            .into_inner()
    }

    async fn record(&self, request: pb::RecordAuditEventRequest, token: &str) -> Result<pb::AuditEntry, tonic::Status> {
        self.client()
            .record_audit_event(with_token(request, token))
            .await
            .map(|r| r.into_inner().entry.unwrap())
    }

    /// Waits until the query by `correlation_id` returns `n` entries; returns them oldest first.
    async fn wait_for_trail(&self, correlation_id: &str, n: usize) -> Vec<pb::AuditEntry> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = self
                .query(pb::QueryAuditLogsRequest {
                    correlation_id: correlation_id.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.entries.len() >= n {
                let mut entries = page.entries;
                entries.reverse();
                return entries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: {} of {n} entries",
                page.entries.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Direct access to the service's database, as its owner.
    async fn database(&self) -> Database {
        Database::connect(self.db.url(), audit_svc::SERVICE).await.unwrap()
    }
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency_code: "EUR".into(),
    })
}

struct Order {
    order_id: String,
    customer_id: String,
    payment_id: String,
    correlation_id: String,
}

impl Order {
    fn new() -> Self {
        Self {
            order_id: Uuid::now_v7().to_string(),
            customer_id: Uuid::now_v7().to_string(),
            payment_id: Uuid::now_v7().to_string(),
            correlation_id: format!("corr-{}", Uuid::now_v7()),
        }
    }

    fn status_changed(&self, from: OrderStatus, to: OrderStatus) -> OutgoingEvent {
        OutgoingEvent::new(
            "order-svc",
            "order-events",
            "OrderStatusChanged",
            &self.order_id,
            &self.correlation_id,
            &ev::OrderStatusChanged {
                order_id: self.order_id.clone(),
                customer_id: self.customer_id.clone(),
                from_status: from as i32,
                to_status: to as i32,
                reason: "Jane Doe called about it".into(),
                actor: None,
                occur_time: None,
            },
        )
    }

    /// The saga's events, in the order they happen (each created a little after the previous, so
    /// their times differ).
    async fn saga(&self) -> Vec<OutgoingEvent> {
        let product_id = Uuid::now_v7().to_string();
        let mut events = Vec::new();
        let pause = || tokio::time::sleep(Duration::from_millis(3));
        events.push(OutgoingEvent::new(
            "order-svc",
            "order-events",
            "OrderPlaced",
            &self.order_id,
            &self.correlation_id,
            &ev::OrderPlaced {
                order_id: self.order_id.clone(),
                customer_id: self.customer_id.clone(),
                items: vec![OrderItem {
                    product_id: product_id.clone(),
                    sku: "MUG-1".into(),
                    name: "Personalised mug for Jane Doe".into(),
                    unit_price: eur(1_250),
                    quantity: 2,
                    line_total: eur(2_500),
                }],
                total: eur(2_500),
                actor: Some(Actor {
                    kind: ActorKind::Customer as i32,
                    id: self.customer_id.clone(),
                    roles: vec![],
                }),
                occur_time: None,
            },
        ));
        pause().await;
        events.push(OutgoingEvent::new(
            "product-svc",
            "inventory-events",
            "StockReserved",
            &self.order_id,
            &self.correlation_id,
            &ev::StockReserved {
                order_id: self.order_id.clone(),
                lines: vec![StockLine {
                    product_id,
                    quantity: 2,
                }],
                occur_time: None,
            },
        ));
        pause().await;
        events.push(self.status_changed(OrderStatus::Pending, OrderStatus::Reserved));
        pause().await;
        events.push(OutgoingEvent::new(
            "payment-svc",
            "payment-events",
            "PaymentCaptured",
            &self.order_id,
            &self.correlation_id,
            &ev::PaymentCaptured {
                payment_id: self.payment_id.clone(),
                order_id: self.order_id.clone(),
                customer_id: self.customer_id.clone(),
                amount: eur(2_500),
                occur_time: None,
            },
        ));
        pause().await;
        events.push(OutgoingEvent::new(
            "order-svc",
            "order-events",
            "OrderConfirmed",
            &self.order_id,
            &self.correlation_id,
            &ev::OrderConfirmed {
                order_id: self.order_id.clone(),
                customer_id: self.customer_id.clone(),
                payment_id: self.payment_id.clone(),
                total: eur(2_500),
                occur_time: None,
            },
        ));
        pause().await;
        events.push(self.status_changed(OrderStatus::Reserved, OrderStatus::Confirmed));
        events
    }
}

fn actions(entries: &[pb::AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.action.as_str()).collect()
}

const TRAIL: [&str; 6] = [
    "order.placed",
    "stock.reserved",
    "order.status_changed",
    "payment.captured",
    "order.confirmed",
    "order.status_changed",
];

async fn order_trail(profile: Profile) {
    let h = Harness::start(profile).await;
    let order = Order::new();
    let events = order.saga().await;
    // Published out of order (topics are consumed independently): the trail is ordered by when
    // things happened, not by arrival.
    for i in [3, 0, 5, 1, 4, 2] {
        h.bus.publish(&events[i]).await.unwrap();
    }
    // Noise of another workflow.
    let other = Order::new();
    h.bus.publish(&other.saga().await[0]).await.unwrap();

    // Redeliveries of an event already recorded add nothing.
    if let Some(memory) = &h.memory {
        memory.publish_duplicate(&events[0]);
        memory.publish_duplicate(&events[3]);
    } else {
        h.bus.publish(&events[0]).await.unwrap();
    }

    let trail = h.wait_for_trail(&order.correlation_id, 6).await;
    assert_eq!(actions(&trail), TRAIL, "{profile:?}");
    for (entry, event) in trail.iter().zip(&events) {
        assert_eq!(entry.event_id, event.id.to_string());
        assert_eq!(entry.correlation_id, order.correlation_id);
        assert_eq!(entry.source_service, event.source);
        assert_eq!(entry.hash.len(), 32);
    }
    let placed = &trail[0];
    assert_eq!(placed.entity_type, "order");
    assert_eq!(placed.entity_id, order.order_id);
    assert_eq!(placed.data_subject_id, order.customer_id);
    let actor = placed.actor.as_ref().unwrap();
    assert_eq!(
        (actor.kind, actor.id.as_str()),
        (ActorKind::Customer as i32, order.customer_id.as_str())
    );
    // No actor in the event: the source service is the actor.
    let reserved = trail[1].actor.as_ref().unwrap();
    assert_eq!(
        (reserved.kind, reserved.id.as_str()),
        (ActorKind::Service as i32, "product-svc")
    );
    assert_eq!(trail[3].entity_type, "payment");
    assert_eq!(trail[3].entity_id, order.payment_id);
    // Details hold ids, statuses and amounts — never the free text of the events.
    let details = format!("{:?}", trail.iter().map(|e| e.details.clone()).collect::<Vec<_>>());
    assert!(
        !details.contains("Jane"),
        "personal data leaked into details: {details}"
    );
    assert!(details.contains("ORDER_STATUS_CONFIRMED"));
    assert!(details.contains("MUG-1"));

    // The same trail by entity, and page by page (stable keyset pages).
    let by_order = h
        .query(pb::QueryAuditLogsRequest {
            entity_type: "order".into(),
            entity_id: order.order_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_order.entries.len(), 5);
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = h
            .query(pb::QueryAuditLogsRequest {
                correlation_id: order.correlation_id.clone(),
                page_size: 4,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap();
        paged.extend(page.entries);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    paged.reverse();
    assert_eq!(paged, trail);
    // A token with other filters is refused.
    let wrong = h
        .query(pb::QueryAuditLogsRequest {
            correlation_id: other.correlation_id.clone(),
            page_size: 4,
            page_token: {
                let page = h
                    .query(pb::QueryAuditLogsRequest {
                        correlation_id: order.correlation_id.clone(),
                        page_size: 4,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                page.next_page_token
            },
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
    // Time range: from the reservation (inclusive) to the confirmation (exclusive).
    let window = h
        .query(pb::QueryAuditLogsRequest {
            correlation_id: order.correlation_id.clone(),
            start_time: trail[1].occur_time,
            end_time: trail[4].occur_time,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut window = window.entries;
    window.reverse();
    assert_eq!(window, trail[1..4]);
    // Action prefix filter.
    let payments = h
        .query(pb::QueryAuditLogsRequest {
            action: "payment.*".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(actions(&payments.entries), ["payment.captured"]);

    // The customer's GDPR trail: every entry naming them as data subject, oldest first.
    let gdpr = h
        .client()
        .get_gdpr_trail(with_token(
            pb::GetGdprTrailRequest {
                customer_id: order.customer_id.clone(),
                ..Default::default()
            },
            &h.admin(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        actions(&gdpr.entries),
        [
            "order.placed",
            "order.status_changed",
            "payment.captured",
            "order.confirmed",
            "order.status_changed"
        ]
    );

    let verified = h.verify().await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries_checked, 7);
    assert_eq!(verified.last_sequence, 7);
}

#[tokio::test]
async fn an_orders_trail_under_one_correlation_id_on_nats_and_postgres() {
    order_trail(Profile::Production).await;
}

#[tokio::test]
async fn an_orders_trail_under_one_correlation_id_embedded() {
    order_trail(Profile::Embedded).await;
}

#[tokio::test]
async fn two_instances_consuming_every_topic_append_to_one_chain() {
    let h = Harness::start_instances(Profile::Production, 2).await;
    let mut published = 0;
    let mut correlation_ids = Vec::new();
    for _ in 0..6 {
        let order = Order::new();
        for event in order.saga().await {
            h.bus.publish(&event).await.unwrap();
            published += 1;
        }
        correlation_ids.push(order.correlation_id);
    }
    let customer = Uuid::now_v7().to_string();
    for (topic, event) in [
        ("customer-events", "CustomerCreated"),
        ("gdpr-events", "CustomerDataExported"),
        ("notification-events", "NotificationCreated"),
    ] {
        let payload = match event {
            "CustomerCreated" => prost::Message::encode_to_vec(&ev::CustomerCreated {
                customer_id: customer.clone(),
                identity_linked: true,
                ..Default::default()
            }),
            "CustomerDataExported" => prost::Message::encode_to_vec(&ev::CustomerDataExported {
                customer_id: customer.clone(),
                export_id: "exp-1".into(),
                ..Default::default()
            }),
            _ => prost::Message::encode_to_vec(&ev::NotificationCreated {
                notification_id: Uuid::now_v7().to_string(),
                recipient: Some(ordermesh_proto::notification::Recipient {
                    target: Some(ordermesh_proto::notification::recipient::Target::CustomerId(
                        customer.clone(),
                    )),
                }),
                ..Default::default()
            }),
        };
        let source = if topic == "notification-events" {
            "notification-svc"
        } else {
            "customer-svc"
        };
        h.bus
            .publish(&OutgoingEvent::from_bytes(
                source,
                topic,
                event,
                &customer,
                "corr-customer",
                payload,
            ))
            .await
            .unwrap();
        published += 1;
    }
    for id in &correlation_ids {
        h.wait_for_trail(id, 6).await;
    }
    h.wait_for_trail("corr-customer", 3).await;
    let verified = h.verify().await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.entries_checked, published);
    let gdpr = h
        .client()
        .get_gdpr_trail(with_token(
            pb::GetGdprTrailRequest {
                customer_id: customer.clone(),
                ..Default::default()
            },
            &h.admin(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        actions(&gdpr.entries),
        ["customer.created", "customer.data_exported", "notification.created"]
    );
}

fn read_request(customer_id: &str) -> pb::RecordAuditEventRequest {
    pb::RecordAuditEventRequest {
        actor: Some(Actor {
            kind: ActorKind::Employee as i32,
            id: "cs-agent-7".into(),
            roles: vec!["customer-service".into()],
        }),
        action: "customer.read".into(),
        entity_type: "customer".into(),
        entity_id: customer_id.into(),
        data_subject_id: customer_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn changing_or_deleting_a_stored_row_makes_verify_chain_report_it() {
    let h = Harness::start(Profile::Production).await;
    let bff = h.auth.service("bff");
    let mut entries = Vec::new();
    for _ in 0..5 {
        entries.push(h.record(read_request(&Uuid::now_v7().to_string()), &bff).await.unwrap());
    }
    assert!(h.verify().await.ok);
    let db = h.database().await;
    let Database::Postgres(pool) = &db else { unreachable!() };
    // The application's role cannot change entries: the trigger refuses.
    let refused = sqlx::query("UPDATE audit_entries SET action = 'customer.deleted' WHERE sequence = 2")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    // The table owner can disable the trigger; the chain still gives the change away.
    sqlx::query("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_update_delete")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_entries SET entity_id = $1 WHERE sequence = 2")
        .bind(Uuid::now_v7().to_string())
        .execute(pool)
        .await
        .unwrap();
    let verified = h.verify().await;
    assert!(!verified.ok);
    assert_eq!(verified.first_broken_sequence, Some(2));
    assert_eq!(verified.first_broken_id, entries[1].id);
    assert_eq!(verified.reason, "hash mismatch");
    assert_eq!(verified.entries_checked, 2);
    assert_eq!(verified.last_sequence, 1);
    assert_eq!(verified.last_hash, entries[0].hash);

    // Put it back: the chain verifies again (the hash covers content, nothing else).
    sqlx::query("UPDATE audit_entries SET entity_id = $1 WHERE sequence = 2")
        .bind(&entries[1].entity_id)
        .execute(pool)
        .await
        .unwrap();
    assert!(h.verify().await.ok);

    // Deleting a row is detected too.
    sqlx::query("DELETE FROM audit_entries WHERE sequence = 4")
        .execute(pool)
        .await
        .unwrap();
    let verified = h.verify().await;
    assert!(!verified.ok);
    assert_eq!(verified.first_broken_sequence, Some(4));
    assert_eq!(verified.first_broken_id, "");
    assert!(verified.reason.starts_with("sequence gap"), "{}", verified.reason);
    // The part before the hole still verifies on its own.
    let head = h
        .client()
        .verify_chain(with_token(
            pb::VerifyChainRequest {
                from_sequence: Some(1),
                to_sequence: Some(3),
            },
            &h.admin(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(head.ok, "{head:?}");
    assert_eq!(
        (head.entries_checked, head.last_hash.clone()),
        (3, entries[2].hash.clone())
    );
    db.close().await;
}

#[tokio::test]
async fn only_admins_and_services_read_and_only_services_and_employees_record() {
    let h = Harness::start(Profile::Embedded).await;
    let mut client = h.client();
    let customer = Uuid::now_v7().to_string();
    let tokens = [
        ("order manager", h.auth.employee("om-1", &[Role::OrderManager])),
        ("client", h.auth.client("client-1")),
    ];
    for (who, token) in &tokens {
        let denied = [
            client
                .query_audit_logs(with_token(pb::QueryAuditLogsRequest::default(), token))
                .await
                .unwrap_err(),
            client
                .get_gdpr_trail(with_token(
                    pb::GetGdprTrailRequest {
                        customer_id: customer.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .unwrap_err(),
            client
                .verify_chain(with_token(pb::VerifyChainRequest::default(), token))
                .await
                .unwrap_err(),
        ];
        for status in denied {
            assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
        }
    }
    // Customer service answers data subjects: the GDPR trail, and nothing else of the log.
    let agent = h.auth.employee("cs-1", &[Role::CustomerService]);
    let trail = pb::GetGdprTrailRequest {
        customer_id: customer.clone(),
        ..Default::default()
    };
    client.get_gdpr_trail(with_token(trail, &agent)).await.unwrap();
    let logs = client
        .query_audit_logs(with_token(pb::QueryAuditLogsRequest::default(), &agent))
        .await
        .unwrap_err();
    assert_eq!(logs.code(), Code::PermissionDenied);
    let client_record = h.record(read_request(&customer), &tokens[1].1).await.unwrap_err();
    assert_eq!(client_record.code(), Code::PermissionDenied);

    // No token at all.
    let anonymous = [
        client
            .query_audit_logs(pb::QueryAuditLogsRequest::default())
            .await
            .unwrap_err(),
        client
            .verify_chain(pb::VerifyChainRequest::default())
            .await
            .unwrap_err(),
        client
            .get_gdpr_trail(pb::GetGdprTrailRequest::default())
            .await
            .unwrap_err(),
        client.record_audit_event(read_request(&customer)).await.unwrap_err(),
    ];
    for status in anonymous {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }

    // A service records for the employee it names; an employee records as itself, whatever the
    // request claims.
    let by_bff = h.record(read_request(&customer), &h.auth.service("bff")).await.unwrap();
    let actor = by_bff.actor.unwrap();
    assert_eq!(
        (actor.kind, actor.id.as_str()),
        (ActorKind::Employee as i32, "cs-agent-7")
    );
    assert_eq!(by_bff.source_service, "bff");
    let by_employee = h.record(read_request(&customer), &tokens[0].1).await.unwrap();
    let actor = by_employee.actor.unwrap();
    assert_eq!((actor.kind, actor.id.as_str()), (ActorKind::Employee as i32, "om-1"));
    assert_eq!(actor.roles, ["order-manager"]);

    // Admins and services read.
    for token in [h.admin(), h.auth.service("bff")] {
        let trail = client
            .get_gdpr_trail(with_token(
                pb::GetGdprTrailRequest {
                    customer_id: customer.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(actions(&trail.entries), ["customer.read", "customer.read"]);
        let by_actor = client
            .query_audit_logs(with_token(
                pb::QueryAuditLogsRequest {
                    actor_id: "om-1".into(),
                    actor_kind: ActorKind::Employee as i32,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_actor.entries.len(), 1);
        assert!(
            client
                .verify_chain(with_token(pb::VerifyChainRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .ok
        );
    }
}

#[tokio::test]
async fn record_audit_event_validates_its_fields() {
    let h = Harness::start(Profile::Embedded).await;
    let bff = h.auth.service("bff");
    let struct_of = |json: &str| {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        prost_types::Struct {
            fields: value
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let kind = match v {
                        serde_json::Value::String(s) => prost_types::value::Kind::StringValue(s.clone()),
                        serde_json::Value::Number(n) => prost_types::value::Kind::NumberValue(n.as_f64().unwrap()),
                        other => prost_types::value::Kind::StringValue(other.to_string()),
                    };
                    (k.clone(), prost_types::Value { kind: Some(kind) })
                })
                .collect(),
        }
    };
    let bad = pb::RecordAuditEventRequest {
        actor: Some(Actor {
            kind: ActorKind::Unspecified as i32,
            id: String::new(),
            roles: vec![],
        }),
        action: "Customer Read!".into(),
        entity_type: String::new(),
        entity_id: "x".repeat(129),
        data_subject_id: "not-a-uuid".into(),
        correlation_id: "c".repeat(129),
        occur_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        details: Some(struct_of(r#"{"order_id":"o-1","customer_email":"jane@example.com"}"#)),
        event_id: "e".repeat(129),
    };
    let status = h.record(bad, &bff).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "action",
            "actor.id",
            "actor.kind",
            "correlation_id",
            "data_subject_id",
            "details.customer_email",
            "entity_id",
            "entity_type",
            "event_id",
            "occur_time",
        ]
    );
    // A service must say who acted.
    let mut no_actor = read_request(&Uuid::now_v7().to_string());
    no_actor.actor = None;
    assert_eq!(violated_fields(&h.record(no_actor, &bff).await.unwrap_err()), ["actor"]);
    // Details are bounded.
    let mut big = read_request(&Uuid::now_v7().to_string());
    big.details = Some(struct_of(&format!(r#"{{"blob":"{}"}}"#, "x".repeat(9 * 1024))));
    assert_eq!(violated_fields(&h.record(big, &bff).await.unwrap_err()), ["details"]);

    // A valid record with an event id is idempotent; the correlation id defaults to the
    // request's.
    let mut ok = read_request(&Uuid::now_v7().to_string());
    ok.event_id = "bff-read-1".into();
    ok.details = Some(struct_of(r#"{"fields":"profile","count":3}"#));
    let mut request = with_token(ok.clone(), &bff);
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-read-1".parse().unwrap());
    let first = h
        .client()
        .record_audit_event(request)
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(first.correlation_id, "corr-read-1");
    assert_eq!(first.sequence, 1);
    let details = first.details.clone().unwrap();
    assert_eq!(
        details.fields["count"].kind,
        Some(prost_types::value::Kind::NumberValue(3.0))
    );
    let again = h.record(ok, &bff).await.unwrap();
    assert_eq!(again, first);
    assert!(h.verify().await.ok);

    // Query filters are validated too.
    let status = h
        .query(pb::QueryAuditLogsRequest {
            action: "Order!".into(),
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert!(fields.contains(&"action".to_owned()), "{fields:?}");
}
