//! The one behaviour suite of the customer store, run against PostgreSQL and SQLite.

use customer_svc::domain::{
    self, Address, Consent, ConsentInput, Customer, CustomerFilter, CustomerInput, CustomerPatch, CustomerStatus,
    Identity, Preferences, PreferencesPatch,
};
use customer_svc::store::{self, Store};
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::{Actor, ActorKind, ServiceError};
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

async fn behaviour(store: Store) {
    // Create and read back, by id and by identity.
    let ada = customer("Ada Lovelace", "ada@example.com", Some("sub-ada"));
    assert_eq!(store.create_customer(&ada, None).await.unwrap(), ada);
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
        .create_customer(&customer("Other", "other@example.com", Some("sub-ada")), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::AlreadyExists { field: "identity", .. }),
        "{err}"
    );
    let err = store
        .create_customer(&customer("Other", "ADA@example.com", None), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::AlreadyExists { field: "email", .. }),
        "{err}"
    );
    let grace = customer("Grace Hopper", "grace@example.com", None);
    store.create_customer(&grace, None).await.unwrap();

    // Idempotency key: a repeat returns the first customer.
    let alan = customer("Alan Turing", "alan@example.com", None);
    store.create_customer(&alan, Some("key-1")).await.unwrap();
    let again = customer("Alan Turing", "alan2@example.com", None);
    assert_eq!(store.create_customer(&again, Some("key-1")).await.unwrap().id, alan.id);

    // Update: masked fields, preferences merged, version check, e-mail collision, authorization hook.
    let patch = CustomerPatch {
        display_name: Some("Ada King".into()),
        preferences: PreferencesPatch {
            time_zone: Some("Europe/London".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let updated = store.update_customer(ada.id, &patch, Some(1), &everyone).await.unwrap();
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
        .update_customer(ada.id, &patch, Some(1), &everyone)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Aborted(_)), "{err}");
    let steal = CustomerPatch {
        email: Some("Grace@Example.com".into()),
        ..Default::default()
    };
    let err = store
        .update_customer(ada.id, &steal, None, &everyone)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::AlreadyExists { field: "email", .. }),
        "{err}"
    );
    let err = store
        .update_customer(ada.id, &patch, None, &|_| false)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound { .. }), "{err}");
    let err = store
        .update_customer(Uuid::now_v7(), &patch, None, &everyone)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound { .. }), "{err}");
    let suspend = CustomerPatch {
        status: Some(CustomerStatus::Suspended),
        ..Default::default()
    };
    store
        .update_customer(grace.id, &suspend, None, &everyone)
        .await
        .unwrap();

    // List: by display name, paged, searchable by name or e-mail substring, filtered by status.
    let all = CustomerFilter::default();
    let mut names = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_customers(&all, after, 2).await.unwrap();
        names.extend(page.iter().map(|c| c.display_name.clone()));
        if page.len() < 2 {
            break;
        }
        after = Some(page.last().unwrap().sort_key());
    }
    assert_eq!(names, ["Ada King", "Alan Turing", "Grace Hopper"]);
    let search = |q: &str| CustomerFilter {
        query: Some(q.into()),
        status: None,
    };
    let found = store.list_customers(&search("hopper"), None, 10).await.unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [grace.id]);
    let found = store.list_customers(&search("alan@"), None, 10).await.unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [alan.id]);
    assert!(
        store.list_customers(&search("%"), None, 10).await.unwrap().is_empty(),
        "wildcards are literal"
    );
    let suspended = CustomerFilter {
        query: None,
        status: Some(CustomerStatus::Suspended),
    };
    assert_eq!(store.list_customers(&suspended, None, 10).await.unwrap().len(), 1);

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
        store.record_consent(&consent).await.unwrap();
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
        store.record_consent(&orphan).await.unwrap_err(),
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
