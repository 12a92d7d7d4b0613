//! Customer segments, on PostgreSQL and SQLite: the store's `ListCustomers` filter agrees with the
//! domain's rules on every boundary; and the service, fed `order-events` on an in-process bus as
//! order-svc publishes them, lists each segment, absorbs redeliveries and forgets an erased
//! customer's orders.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use customer_svc::domain::{
    self, Customer, CustomerFilter, CustomerInput, OrderHistory, Sale, Segment, SegmentBounds, SegmentRules,
};
use customer_svc::store::{self, SaleChange, Store};
use ordermesh_platform::auth::Role;
use ordermesh_platform::convert::timestamp;
use ordermesh_platform::db::Database;
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::events::{EventBus, EventMessage, MemoryBus, OutgoingEvent, Tx};
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, violated_fields, with_token};
use ordermesh_platform::{Origin, on_pool};
use ordermesh_proto::common::Money;
use ordermesh_proto::customer as pb;
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::events as ev;
use ordermesh_proto::order::OrderStatus;
use tonic::Code;
use uuid::Uuid;

async fn open(test_db: &TestDatabase) -> (Database, Store) {
    let db = Database::connect(test_db.url(), customer_svc::SERVICE).await.unwrap();
    db.migrate(&store::migrations()).await.unwrap();
    (db.clone(), Store::new(&db))
}

fn origin() -> Origin {
    Origin::system("segments-test")
}

fn customer(name: &str) -> Customer {
    let input = CustomerInput {
        display_name: name.into(),
        email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        ..Default::default()
    };
    domain::new_customer(&input, None, "").unwrap()
}

async fn backdate(db: &Database, id: Uuid, at: DateTime<Utc>) {
    on_pool!(db, |pool| {
        sqlx::query("UPDATE customers SET create_time = $1 WHERE id = $2")
            .bind(Time(at))
            .bind(Id(id))
            .execute(pool)
            .await
            .map(drop)
    })
    .unwrap();
}

fn sale(customer_id: Uuid, currency: &str, amount_minor: i64, at: DateTime<Utc>) -> Sale {
    Sale {
        order_id: Uuid::now_v7(),
        customer_id,
        currency_code: currency.into(),
        amount_minor,
        sold_time: at,
    }
}

async fn record(db: &Database, store: &Store, sale: &Sale) -> SaleChange {
    let mut tx = Tx::begin(db).await.unwrap();
    let change = store.record_sale(&mut tx, sale).await.unwrap();
    tx.commit().await.unwrap();
    change
}

async fn cancel(db: &Database, store: &Store, sale: &Sale) -> SaleChange {
    let mut tx = Tx::begin(db).await.unwrap();
    let change = store
        .cancel_sale(&mut tx, sale.customer_id, sale.order_id, domain::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    change
}

/// The ids `ListCustomers` finds in all of `segments` under `bounds`, every page of 2 read.
async fn listed(store: &Store, segments: &[Segment], bounds: &SegmentBounds) -> BTreeSet<Uuid> {
    let filter = CustomerFilter {
        segments: segments.to_vec(),
        ..Default::default()
    };
    let mut ids = BTreeSet::new();
    let mut after = None;
    loop {
        let page = store.list_customers(&filter, bounds, after, 2).await.unwrap();
        ids.extend(page.iter().map(|c| c.id));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.sort_key()),
            _ => return ids,
        }
    }
}

async fn agreement(test_db: TestDatabase) {
    let (db, store) = open(&test_db).await;
    // One instant for everything, on the microsecond both stores keep: the boundaries are exact.
    let now = Utc::now().trunc_subsecs(6);
    let rules = SegmentRules::default();
    let bounds = rules.at(now);
    let day = TimeDelta::days(1);
    let tick = TimeDelta::microseconds(1);
    let long_ago = now - day * 1000;

    let mut customers = Vec::new();
    let mut add = async |name: &str, created: DateTime<Utc>, sales: &[(&str, i64, DateTime<Utc>)]| {
        let c = customer(name);
        store.create_customer(&c, None, &origin()).await.unwrap();
        backdate(&db, c.id, created).await;
        for (currency, amount, at) in sales {
            assert_eq!(
                record(&db, &store, &sale(c.id, currency, *amount, *at)).await,
                SaleChange::Applied
            );
        }
        customers.push(c.id);
        c.id
    };
    add("New Today", now, &[]).await;
    add("New At The Boundary", bounds.new_since, &[("EUR", 500, now)]).await;
    add("Old Just Past The Boundary", bounds.new_since - tick, &[]).await;
    add("New With Two", now, &[("EUR", 100, now), ("EUR", 100, now)]).await;
    add("Repeat Old", long_ago, &[("EUR", 100, now - day), ("EUR", 100, now)]).await;
    add("High At Threshold", long_ago, &[("EUR", 100_000, now)]).await;
    add("High Just Below", long_ago, &[("EUR", 99_999, now)]).await;
    add(
        "Two Currencies Not Added",
        long_ago,
        &[("EUR", 60_000, now), ("USD", 60_000, now)],
    )
    .await;
    add(
        "High In Sum",
        long_ago,
        &[("EUR", 60_000, now), ("EUR", 40_000, now - day)],
    )
    .await;
    add("Dormant", long_ago, &[("EUR", 100, bounds.dormant_before - tick)]).await;
    add(
        "Recent At The Boundary",
        long_ago,
        &[("EUR", 100, bounds.dormant_before)],
    )
    .await;
    add(
        "Dormant Repeat High",
        long_ago,
        &[
            ("EUR", 150_000, now - day * 400),
            ("EUR", 10, bounds.dormant_before - day),
        ],
    )
    .await;
    add(
        "Recent In Another Currency",
        long_ago,
        &[("EUR", 100, now - day * 400), ("USD", 100, now)],
    )
    .await;
    add("Never Ordered", long_ago, &[]).await;
    // Erased: in no segment, whatever it was.
    let erased = add("Erased Repeat", now, &[("EUR", 200_000, now), ("EUR", 1, now)]).await;
    store
        .erase_customer(erased, "data subject request".into(), &|_| true, &origin())
        .await
        .unwrap();

    // What the domain says of each customer...
    let histories = store.order_histories(&customers).await.unwrap();
    assert!(
        !histories.contains_key(&erased),
        "an erasure deletes the record of its orders"
    );
    let none = OrderHistory::default();
    let mut expected: Vec<(Uuid, Vec<Segment>)> = Vec::new();
    for id in &customers {
        let c = store.get_customer(*id).await.unwrap().unwrap();
        expected.push((*id, bounds.segments(&c, histories.get(id).unwrap_or(&none))));
    }
    // ... the rules' boundaries as the unit tests state them (so that the comparison below
    // compares something).
    let of = |i: usize| expected[i].1.clone();
    assert_eq!(of(0), [Segment::New]);
    assert_eq!(of(1), [Segment::New]);
    assert_eq!(of(2), []);
    assert_eq!(of(3), [Segment::Repeat]);
    assert_eq!(of(5), [Segment::HighValue]);
    assert_eq!(of(6), []);
    assert_eq!(of(7), [Segment::Repeat]);
    assert_eq!(of(8), [Segment::Repeat, Segment::HighValue]);
    assert_eq!(of(9), [Segment::Dormant]);
    assert_eq!(of(10), []);
    assert_eq!(of(11), [Segment::Repeat, Segment::HighValue, Segment::Dormant]);
    assert_eq!(of(12), [Segment::Repeat]);
    assert_eq!(of(14), []);

    // ... and the SQL filter finds exactly those, one segment or several (all of them) at once.
    let mut filters: Vec<Vec<Segment>> = Segment::ALL.iter().map(|s| vec![*s]).collect();
    filters.push(vec![Segment::Repeat, Segment::HighValue]);
    filters.push(vec![Segment::Repeat, Segment::HighValue, Segment::Dormant]);
    filters.push(vec![Segment::New, Segment::Dormant]);
    for filter in filters {
        let want: BTreeSet<Uuid> = expected
            .iter()
            .filter(|(_, segments)| filter.iter().all(|s| segments.contains(s)))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(listed(&store, &filter, &bounds).await, want, "{filter:?}");
    }

    // A sale recorded twice counts once; a cancellation takes it back, and the last order time
    // with it; a second cancellation and a late confirmation change nothing.
    let c = customer("Cancelling");
    store.create_customer(&c, None, &origin()).await.unwrap();
    let first = sale(c.id, "EUR", 70_000, now - day * 200);
    let second = sale(c.id, "EUR", 50_000, now - day);
    assert_eq!(record(&db, &store, &first).await, SaleChange::Applied);
    assert_eq!(record(&db, &store, &second).await, SaleChange::Applied);
    assert_eq!(record(&db, &store, &second).await, SaleChange::Unchanged);
    let history = |h: &OrderHistory| (h.sold_orders, h.sold_value.clone(), h.last_order_time);
    let read = async || store.order_histories(&[c.id]).await.unwrap().remove(&c.id);
    assert_eq!(
        history(&read().await.unwrap()),
        (2, [("EUR".to_owned(), 120_000)].into(), Some(second.sold_time))
    );
    assert_eq!(cancel(&db, &store, &second).await, SaleChange::Applied);
    assert_eq!(cancel(&db, &store, &second).await, SaleChange::Unchanged);
    assert_eq!(record(&db, &store, &second).await, SaleChange::Unchanged);
    assert_eq!(
        history(&read().await.unwrap()),
        (1, [("EUR".to_owned(), 70_000)].into(), Some(first.sold_time))
    );
    assert!(
        listed(&store, &[Segment::Dormant], &bounds).await.contains(&c.id),
        "the cancelled order was the recent one"
    );
    assert_eq!(cancel(&db, &store, &first).await, SaleChange::Applied);
    assert_eq!(read().await, None, "no sales, no history");

    // Orders of unknown or erased customers are not recorded.
    assert_eq!(
        record(&db, &store, &sale(Uuid::now_v7(), "EUR", 1, now)).await,
        SaleChange::NoCustomer
    );
    assert_eq!(
        record(&db, &store, &sale(erased, "EUR", 1, now)).await,
        SaleChange::NoCustomer
    );
    assert!(store.order_histories(&[erased]).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_sql_filter_agrees_with_the_rules_on_postgres() {
    agreement(TestDatabase::postgres().await.unwrap()).await;
}

#[tokio::test]
async fn the_sql_filter_agrees_with_the_rules_on_sqlite() {
    agreement(TestDatabase::sqlite().unwrap()).await;
}

/// customer-svc running on an in-process bus that the test publishes `order-events` on.
struct Service {
    bus: MemoryBus,
    auth: TestAuth,
    client: CustomerServiceClient<tonic::transport::Channel>,
    db: Database,
    _service: RunningService,
    _test_db: TestDatabase,
}

impl Service {
    async fn start(test_db: TestDatabase) -> Self {
        let auth = TestAuth::start().await.unwrap();
        let mut config = testing::service_config(customer_svc::SERVICE, test_db.url(), auth.auth_config()).unwrap();
        let bus = MemoryBus::new();
        config.bus = Some(Arc::new(bus.clone()));
        let service = RunningService::start(config, customer_svc::run).await.unwrap();
        let db = Database::connect(test_db.url(), customer_svc::SERVICE).await.unwrap();
        Self {
            bus,
            client: CustomerServiceClient::new(service.channel()),
            auth,
            db,
            _service: service,
            _test_db: test_db,
        }
    }

    fn agent(&self) -> String {
        self.auth.employee("agent-1", &[Role::CustomerService])
    }

    async fn create(&self, name: &str) -> Uuid {
        let req = pb::CreateCustomerRequest {
            display_name: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            ..Default::default()
        };
        let created = self
            .client
            .clone()
            .create_customer(with_token(req, &self.agent()))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        created.id.parse().unwrap()
    }

    async fn publish(&self, event: &OutgoingEvent) {
        self.bus.publish(event).await.unwrap();
    }

    async fn list(&self, segments: &[pb::CustomerSegment], page_size: i32) -> Result<Vec<pb::Customer>, tonic::Status> {
        let mut customers = Vec::new();
        let mut page_token = String::new();
        loop {
            let req = pb::ListCustomersRequest {
                segments: segments.iter().map(|s| *s as i32).collect(),
                page_size,
                page_token,
                ..Default::default()
            };
            let page = self
                .client
                .clone()
                .list_customers(with_token(req, &self.agent()))
                .await?
                .into_inner();
            customers.extend(page.customers);
            if page.next_page_token.is_empty() {
                return Ok(customers);
            }
            page_token = page.next_page_token;
        }
    }

    /// The display names listed in all of `segments`, every page of one read.
    async fn names(&self, segments: &[pb::CustomerSegment]) -> Vec<String> {
        let listed = self.list(segments, 1).await.unwrap();
        listed.into_iter().map(|c| c.display_name).collect()
    }

    /// Waits until the names listed in `segments` are `want` (the consumer runs behind the bus).
    async fn eventually(&self, segments: &[pb::CustomerSegment], want: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let names = self.names(segments).await;
            if names == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{segments:?}: listed {names:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Service {
    /// Waits until the consumer has processed event `id` (its inbox row is committed).
    async fn processed(&self, id: Uuid) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rows: i64 = on_pool!(&self.db, |pool| {
                sqlx::query_scalar("SELECT COUNT(*) FROM event_inbox WHERE event_id = $1")
                    .bind(Id(id))
                    .fetch_one(pool)
                    .await
            })
            .unwrap();
            if rows == 1 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "event {id} not processed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An `order-events` event as order-svc publishes it (aggregate id = order id).
fn order_event<E: EventMessage>(order_id: Uuid, message: &E) -> OutgoingEvent {
    OutgoingEvent::of("order-svc", &order_id.to_string(), &format!("corr-{order_id}"), message)
}

fn confirmed(order_id: Uuid, customer_id: Uuid, amount_minor: i64, at: DateTime<Utc>) -> OutgoingEvent {
    let message = ev::OrderConfirmed {
        order_id: order_id.to_string(),
        customer_id: customer_id.to_string(),
        payment_id: Uuid::now_v7().to_string(),
        total: Some(Money {
            amount_minor,
            currency_code: "EUR".into(),
        }),
        occur_time: Some(timestamp(at)),
    };
    order_event(order_id, &message)
}

fn cancelled(order_id: Uuid, customer_id: Uuid) -> OutgoingEvent {
    let message = ev::OrderCancelled {
        order_id: order_id.to_string(),
        customer_id: customer_id.to_string(),
        reason: "changed my mind".into(),
        was_paid: true,
        previous_status: OrderStatus::Confirmed as i32,
        occur_time: Some(timestamp(Utc::now())),
        ..Default::default()
    };
    order_event(order_id, &message)
}

async fn service(h: Service) {
    use pb::CustomerSegment::{Dormant, HighValue, New, Repeat};
    let now = Utc::now();
    let day = TimeDelta::days(1);
    let newbie = h.create("Newbie").await;
    let regular = h.create("Regular").await;
    let whale = h.create("Whale").await;
    let sleeper = h.create("Sleeper").await;
    for id in [regular, whale, sleeper] {
        backdate(&h.db, id, now - day * 365).await;
    }
    h.eventually(&[New], &["Newbie"]).await;

    // The orders, as order-svc publishes their confirmations.
    let (r1, r2) = (Uuid::now_v7(), Uuid::now_v7());
    h.publish(&confirmed(r1, regular, 2_500, now - day * 3)).await;
    h.publish(&confirmed(r2, regular, 4_000, now - day)).await;
    h.publish(&confirmed(Uuid::now_v7(), whale, 100_000, now - day * 10))
        .await;
    h.publish(&confirmed(Uuid::now_v7(), sleeper, 9_900, now - day * 200))
        .await;
    h.publish(&confirmed(Uuid::now_v7(), newbie, 1_000, now)).await;

    h.eventually(&[Repeat], &["Regular"]).await;
    h.eventually(&[HighValue], &["Whale"]).await;
    h.eventually(&[Dormant], &["Sleeper"]).await;
    h.eventually(&[New], &["Newbie"]).await;
    h.eventually(&[Repeat, HighValue], &[]).await;

    // Each customer shows its segments to employees, on the list and alone.
    let all = h.list(&[], 2).await.unwrap();
    let shown: Vec<(&str, &[i32])> = all
        .iter()
        .map(|c| (c.display_name.as_str(), c.segments.as_slice()))
        .collect();
    assert_eq!(
        shown,
        [
            ("Newbie", &[New as i32][..]),
            ("Regular", &[Repeat as i32][..]),
            ("Sleeper", &[Dormant as i32][..]),
            ("Whale", &[HighValue as i32][..]),
        ]
    );
    let alone = h
        .client
        .clone()
        .get_customer(with_token(
            pb::GetCustomerRequest {
                customer_id: whale.to_string(),
            },
            &h.agent(),
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(alone.segments, [HighValue as i32]);

    // Redeliveries change nothing: the same confirmation again (the inbox), and under a new event
    // id (the record of the order). Then r1 is cancelled after confirmation: one sold order is
    // left, and Regular is no longer a repeat customer. The cancellation is of the same order, so
    // the consumer handles it after the repeats; had they counted, two orders would be left.
    let again = confirmed(r1, regular, 2_500, now - day * 3);
    h.publish(&again).await;
    h.bus.publish_duplicate(&again);
    h.publish(&confirmed(r1, regular, 2_500, now - day * 3)).await;
    h.publish(&cancelled(r1, regular)).await;
    h.eventually(&[Repeat], &[]).await;
    let store = Store::new(&h.db);
    let history = store
        .order_histories(&[regular])
        .await
        .unwrap()
        .remove(&regular)
        .unwrap();
    assert_eq!(
        (history.sold_orders, history.sold_value),
        (1, [("EUR".to_owned(), 4_000)].into())
    );
    // A cancellation of an order that was never confirmed takes nothing back.
    h.publish(&cancelled(Uuid::now_v7(), regular)).await;
    h.publish(&confirmed(Uuid::now_v7(), regular, 1, now)).await;
    h.eventually(&[Repeat], &["Regular"]).await;

    // An erased customer leaves every segment, and its later orders are not recorded.
    h.client
        .clone()
        .erase_customer(with_token(
            pb::EraseCustomerRequest {
                customer_id: whale.to_string(),
                reason: "data subject request".into(),
            },
            &h.agent(),
        ))
        .await
        .unwrap();
    h.eventually(&[HighValue], &[]).await;
    let late = confirmed(Uuid::now_v7(), whale, 500_000, now);
    h.publish(&late).await;
    h.publish(&confirmed(Uuid::now_v7(), sleeper, 1, now - day * 190)).await;
    h.eventually(&[Repeat, Dormant], &["Sleeper"]).await;
    h.processed(late.id).await;
    assert!(store.order_histories(&[whale]).await.unwrap().is_empty());

    // Unknown and unspecified segments are invalid arguments, each named.
    let status = h.list(&[Repeat], 10).await.map(drop);
    assert!(status.is_ok());
    let req = pb::ListCustomersRequest {
        segments: vec![Repeat as i32, 0, 42],
        ..Default::default()
    };
    let status = h
        .client
        .clone()
        .list_customers(with_token(req, &h.agent()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["segments[1]", "segments[2]"]);
    // A page token is bound to its segments.
    let req = pb::ListCustomersRequest {
        page_size: 1,
        ..Default::default()
    };
    let first = h
        .client
        .clone()
        .list_customers(with_token(req, &h.agent()))
        .await
        .unwrap()
        .into_inner();
    let req = pb::ListCustomersRequest {
        page_size: 1,
        page_token: first.next_page_token,
        segments: vec![Repeat as i32],
        ..Default::default()
    };
    let status = h
        .client
        .clone()
        .list_customers(with_token(req, &h.agent()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn order_events_make_the_segments_on_postgres() {
    service(Service::start(TestDatabase::postgres().await.unwrap()).await).await;
}

#[tokio::test]
async fn order_events_make_the_segments_on_sqlite() {
    service(Service::start(TestDatabase::sqlite().unwrap()).await).await;
}
