//! The one behaviour suite of the customer store, run against PostgreSQL and SQLite.

use customer_svc::domain::{
    self, Address, Consent, ConsentInput, Customer, CustomerFilter, CustomerInput, CustomerPatch, CustomerStatus,
    Identity, Preferences, PreferencesPatch,
};
use customer_svc::store::{self, Store};
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::{Actor, ActorKind, Origin, ServiceError};
use uuid::Uuid;

async fn open(db: &TestDatabase) -> Store {
    let database = Database::connect(db.url(), customer_svc::SERVICE)
        .await
        .expect("connect");
    database.migrate(&store::migrations()).await.expect("migrate");
    Store::new(&database)
}

fn customer(name: &str, email: &str, subject: Option<&str>) -> Customer {
    let input = CustomerInput {
        display_name: name.into(),
        email: email.into(),
        phone: "+4915112345678".into(),
        addresses: vec![Address {
            line1: "Hauptstr. 1".into(),
            city: "Berlin".into(),
            country_code: "DE".into(),
            ..Default::default()
        }],
        preferences: Preferences {
            language_code: "de".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let identity = subject.map(|s| Identity {
        issuer: "https://login.example/clients".into(),
        subject: s.into(),
    });
    domain::new_customer(&input, identity, "").unwrap()
}

fn everyone(_: &Customer) -> bool {
    true
}

fn origin() -> Origin {
    Origin::system("store-test")
}

async fn behaviour(store: Store) {
    // Create and read back, by id and by identity.
    let ada = customer("Ada Lovelace", "ada@example.com", Some("sub-ada"));
    assert_eq!(store.create_customer(&ada, None, &origin()).await.unwrap(), ada);
    assert_eq!(store.get_customer(ada.id).await.unwrap(), Some(ada.clone()));
    assert_eq!(
        store
            .get_customer_by_identity("https://login.example/clients", "sub-ada")
            .await
            .unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        store
            .get_customer_by_identity("https://other", "sub-ada")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_customer(Uuid::now_v7()).await.unwrap(), None);

    // Identity and e-mail (case-insensitive) are unique; customers without identity coexist.
    let err = store
        .create_customer(
            &customer("Other", "other@example.com", Some("sub-ada")),
            None,
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::AlreadyExists { field: "identity", .. }),
        "{err}"
    );
    let err = store
        .create_customer(&customer("Other", "ADA@example.com", None), None, &origin())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::AlreadyExists { field: "email", .. }),
        "{err}"
    );
    let grace = customer("Grace Hopper", "grace@example.com", None);
    store.create_customer(&grace, None, &origin()).await.unwrap();

    // Idempotency key: a repeat returns the first customer.
    let alan = customer("Alan Turing", "alan@example.com", None);
    store.create_customer(&alan, Some("key-1"), &origin()).await.unwrap();
    let again = customer("Alan Turing", "alan2@example.com", None);
    assert_eq!(
        store
            .create_customer(&again, Some("key-1"), &origin())
            .await
            .unwrap()
            .id,
        alan.id
    );

    // Update: masked fields, preferences merged, version check, e-mail collision, authorization hook.
    let patch = CustomerPatch {
        display_name: Some("Ada King".into()),
        preferences: PreferencesPatch {
            time_zone: Some("Europe/London".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let updated = store
        .update_customer(ada.id, &patch, Some(1), &everyone, &origin())
        .await
        .unwrap();
    assert_eq!((updated.display_name.as_str(), updated.version), ("Ada King", 2));
    assert_eq!(
        (
            updated.preferences.language_code.as_str(),
            updated.preferences.time_zone.as_str()
        ),
        ("de", "Europe/London")
    );
    assert_eq!(store.get_customer(ada.id).await.unwrap(), Some(updated.clone()));
    let err = store
        .update_customer(ada.id, &patch, Some(1), &everyone, &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Aborted(_)), "{err}");
    let steal = CustomerPatch {
        email: Some("Grace@Example.com".into()),
        ..Default::default()
    };
    let err = store
        .update_customer(ada.id, &steal, None, &everyone, &origin())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::AlreadyExists { field: "email", .. }),
        "{err}"
    );
    let err = store
        .update_customer(ada.id, &patch, None, &|_| false, &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound { .. }), "{err}");
    let err = store
        .update_customer(Uuid::now_v7(), &patch, None, &everyone, &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound { .. }), "{err}");
    let suspend = CustomerPatch {
        status: Some(CustomerStatus::Suspended),
        ..Default::default()
    };
    store
        .update_customer(grace.id, &suspend, None, &everyone, &origin())
        .await
        .unwrap();

    // List: by display name, paged, searchable by name or e-mail substring, filtered by status.
    let now = domain::SegmentRules::default().at(domain::now());
    let all = CustomerFilter::default();
    let mut names = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_customers(&all, &now, after, 2).await.unwrap();
        names.extend(page.iter().map(|c| c.display_name.clone()));
        if page.len() < 2 {
            break;
        }
        after = Some(page.last().unwrap().sort_key());
    }
    assert_eq!(names, ["Ada King", "Alan Turing", "Grace Hopper"]);
    let search = |q: &str| CustomerFilter {
        query: Some(q.into()),
        ..Default::default()
    };
    let found = store.list_customers(&search("hopper"), &now, None, 10).await.unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [grace.id]);
    let found = store.list_customers(&search("alan@"), &now, None, 10).await.unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [alan.id]);
    assert!(
        store
            .list_customers(&search("%"), &now, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "wildcards are literal"
    );
    let suspended = CustomerFilter {
        status: Some(CustomerStatus::Suspended),
        ..Default::default()
    };
    assert_eq!(store.list_customers(&suspended, &now, None, 10).await.unwrap().len(), 1);

    // Consents: append-only history, newest first, paged, filtered by purpose.
    let by = Actor {
        kind: ActorKind::Customer,
        id: ada.id.to_string(),
        roles: vec![],
    };
    let mut recorded = Vec::new();
    for (purpose, granted) in [
        ("marketing_email", true),
        ("profiling", false),
        ("marketing_email", false),
    ] {
        let req = ConsentInput {
            purpose: purpose.into(),
            granted,
            policy_version: "2026-01".into(),
            ..Default::default()
        };
        let consent: Consent = domain::new_consent(&req, ada.id, by.clone()).unwrap();
        store.record_consent(&consent, "corr-1").await.unwrap();
        recorded.insert(0, consent);
    }
    let first = store.list_consents(ada.id, None, None, 2).await.unwrap();
    let rest = store
        .list_consents(ada.id, None, Some(first[1].list_key()), 2)
        .await
        .unwrap();
    assert_eq!([first, rest].concat(), recorded);
    let marketing = store
        .list_consents(ada.id, Some("marketing_email"), None, 10)
        .await
        .unwrap();
    assert_eq!(marketing.iter().map(|c| c.granted).collect::<Vec<_>>(), [false, true]);
    let req = ConsentInput {
        purpose: "x".into(),
        policy_version: "1".into(),
        ..Default::default()
    };
    let orphan = domain::new_consent(&req, Uuid::now_v7(), by).unwrap();
    assert!(matches!(
        store.record_consent(&orphan, "corr-1").await.unwrap_err(),
        ServiceError::NotFound { .. }
    ));
}

#[tokio::test]
async fn store_behaviour_on_postgres() {
    let db = TestDatabase::postgres().await.unwrap();
    behaviour(open(&db).await).await;
}

#[tokio::test]
async fn store_behaviour_on_sqlite() {
    let db = TestDatabase::sqlite().unwrap();
    behaviour(open(&db).await).await;
}

/// `(event_type, aggregate_id, payload)` of the outbox, oldest first.
async fn outbox(db: &Database) -> Vec<(String, String, Vec<u8>)> {
    ordermesh_platform::on_pool!(db, |pool| {
        sqlx::query_as::<_, (String, String, Vec<u8>)>(
            "SELECT event_type, aggregate_id, payload FROM event_outbox ORDER BY seq",
        )
        .fetch_all(pool)
        .await
    })
    .unwrap()
}

async fn events_behaviour(db: &TestDatabase) {
    use ordermesh_platform::events::TopicEvents;
    use ordermesh_proto::event_types::CustomerEvent;
    let database = Database::connect(db.url(), customer_svc::SERVICE).await.unwrap();
    database.migrate(&store::migrations()).await.unwrap();
    let store = Store::new(&database);
    let decoded = |(kind, _, payload): &(String, String, Vec<u8>)| {
        CustomerEvent::decode(kind, payload).unwrap().expect("a customer event")
    };

    // One CustomerCreated per customer, however often its idempotency key is replayed.
    let ada = customer("Ada Lovelace", "ada@example.com", Some("sub-ada"));
    store.create_customer(&ada, Some("k-ada"), &origin()).await.unwrap();
    let again = customer("Ada Lovelace", "ada@example.com", Some("sub-ada"));
    store.create_customer(&again, Some("k-ada"), &origin()).await.unwrap();
    let events = outbox(&database).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1, ada.id.to_string());
    let CustomerEvent::CustomerCreated(created) = decoded(&events[0]) else {
        panic!("not CustomerCreated")
    };
    assert!(created.identity_linked);

    // An update that changes nothing publishes nothing; a change names its fields, not values.
    let same = CustomerPatch {
        display_name: Some("Ada Lovelace".into()),
        ..Default::default()
    };
    store
        .update_customer(ada.id, &same, None, &everyone, &origin())
        .await
        .unwrap();
    assert_eq!(outbox(&database).await.len(), 1);
    let email = CustomerPatch {
        email: Some("ada.king@example.com".into()),
        ..Default::default()
    };
    store
        .update_customer(ada.id, &email, None, &everyone, &origin())
        .await
        .unwrap();
    let events = outbox(&database).await;
    assert_eq!(events.len(), 2);
    let CustomerEvent::CustomerUpdated(updated) = decoded(&events[1]) else {
        panic!("not CustomerUpdated")
    };
    assert_eq!(updated.changed_fields, ["email"]);
    for (_, _, payload) in &events {
        let text = String::from_utf8_lossy(payload);
        for personal in ["Ada", "ada@example.com", "ada.king", "Hauptstr", "+4915112345678"] {
            assert!(!text.contains(personal), "an event carries personal data: {personal}");
        }
    }

    // A refused write publishes nothing.
    let taken = customer("Other", "other@example.com", Some("sub-ada"));
    store.create_customer(&taken, None, &origin()).await.unwrap_err();
    assert_eq!(outbox(&database).await.len(), 2);

    // A consent, with its purpose and decision.
    let consent = domain::new_consent(
        &ConsentInput {
            purpose: "marketing_email".into(),
            granted: true,
            policy_version: "2026-01".into(),
            source: "web".into(),
        },
        ada.id,
        Actor::new(ActorKind::Customer, ada.id.to_string(), []),
    )
    .unwrap();
    store.record_consent(&consent, "corr-1").await.unwrap();
    let events = outbox(&database).await;
    let CustomerEvent::ConsentRecorded(recorded) = decoded(&events[2]) else {
        panic!("not ConsentRecorded")
    };
    assert_eq!((recorded.purpose.as_str(), recorded.granted), ("marketing_email", true));
    assert_eq!(recorded.consent_id, consent.id.to_string());
}

#[tokio::test]
async fn writes_publish_their_events_through_the_outbox_on_postgres() {
    events_behaviour(&TestDatabase::postgres().await.unwrap()).await;
}

#[tokio::test]
async fn writes_publish_their_events_through_the_outbox_on_sqlite() {
    events_behaviour(&TestDatabase::sqlite().unwrap()).await;
}
