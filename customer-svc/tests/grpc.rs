//! gRPC integration tests of the customer service: in-process on 127.0.0.1:0, a fresh
//! database per test, real JWTs from a dev issuer.

use ordermesh_platform::auth::{IssuerKind, Role};
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, violated_fields, with_token};
use ordermesh_proto::common::Address;
use ordermesh_proto::customer as pb;
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

struct Harness {
    auth: TestAuth,
    client: CustomerServiceClient<Channel>,
    _service: RunningService,
    _db: TestDatabase,
}

impl Harness {
    async fn start(db: TestDatabase) -> Self {
        let auth = TestAuth::start().await.unwrap();
        let config = testing::service_config(customer_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        let service = RunningService::start(config, customer_svc::run).await.unwrap();
        let client = CustomerServiceClient::new(service.channel());
        Self {
            auth,
            client,
            _service: service,
            _db: db,
        }
    }

    async fn postgres() -> Self {
        Self::start(TestDatabase::postgres().await.unwrap()).await
    }

    fn c(&self) -> CustomerServiceClient<Channel> {
        self.client.clone()
    }

    fn agent(&self) -> String {
        self.auth.employee("agent-1", &[Role::CustomerService])
    }

    fn client_issuer(&self) -> String {
        self.auth.issuer(IssuerKind::Client)
    }

    async fn create(&self, req: pb::CreateCustomerRequest, token: &str) -> Result<pb::Customer, tonic::Status> {
        Ok(self
            .c()
            .create_customer(with_token(req, token))
            .await?
            .into_inner()
            .customer
            .unwrap())
    }

    async fn get(&self, id: &str, token: &str) -> Result<pb::Customer, tonic::Status> {
        let req = pb::GetCustomerRequest { customer_id: id.into() };
        Ok(self
            .c()
            .get_customer(with_token(req, token))
            .await?
            .into_inner()
            .customer
            .unwrap())
    }
}

fn new_customer(name: &str, email: &str) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        display_name: name.into(),
        email: email.into(),
        phone: "+4915112345678".into(),
        addresses: vec![Address {
            line1: "Hauptstr. 1".into(),
            city: "Berlin".into(),
            country_code: "DE".into(),
            ..Default::default()
        }],
        preferences: Some(pb::CustomerPreferences {
            language_code: "de-AT".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn crud(h: Harness) {
    let agent = h.agent();
    let created = h
        .create(new_customer("Ada Lovelace", "ada@example.com"), &agent)
        .await
        .unwrap();
    assert_eq!(
        (created.status, created.version),
        (pb::CustomerStatus::Active as i32, 1)
    );
    assert!(created.identity.is_none());
    // Employees see the segments: just registered, no orders yet.
    assert_eq!(created.segments, [pb::CustomerSegment::New as i32]);
    assert_eq!(h.get(&created.id, &agent).await.unwrap(), created);
    // Order managers and services read; services without the segments (they are for staff).
    assert_eq!(
        h.get(&created.id, &h.auth.employee("om", &[Role::OrderManager]))
            .await
            .unwrap(),
        created
    );
    let without_segments = pb::Customer {
        segments: Vec::new(),
        ..created.clone()
    };
    assert_eq!(
        h.get(&created.id, &h.auth.service("order-svc")).await.unwrap(),
        without_segments
    );

    let mut change = created.clone();
    change.display_name = "Ada King".into();
    change.email = "ignored@example.com".into();
    change.preferences = Some(pb::CustomerPreferences {
        time_zone: "Europe/London".into(),
        ..Default::default()
    });
    change.status = pb::CustomerStatus::Suspended as i32;
    let req = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["display_name", "preferences.time_zone", "status"]),
        expected_version: Some(1),
    };
    let updated = h
        .c()
        .update_customer(with_token(req.clone(), &agent))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(
        (updated.display_name.as_str(), updated.email.as_str(), updated.version),
        ("Ada King", "ada@example.com", 2)
    );
    let prefs = updated.preferences.clone().unwrap();
    assert_eq!(
        (prefs.language_code.as_str(), prefs.time_zone.as_str()),
        ("de-AT", "Europe/London")
    );
    assert_eq!(updated.status, pb::CustomerStatus::Suspended as i32);
    assert_eq!(h.get(&created.id, &agent).await.unwrap(), updated);
    assert_eq!(
        h.c().update_customer(with_token(req, &agent)).await.unwrap_err().code(),
        Code::Aborted
    );

    // Preferences and consents.
    let req = pb::UpdatePreferencesRequest {
        customer_id: created.id.clone(),
        preferences: Some(pb::CustomerPreferences {
            currency_code: "EUR".into(),
            ..Default::default()
        }),
        update_mask: mask(&["currency_code"]),
    };
    let prefs = h
        .c()
        .update_preferences(with_token(req, &agent))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(
        (prefs.currency_code.as_str(), prefs.language_code.as_str()),
        ("EUR", "de-AT")
    );
    let req = pb::GetPreferencesRequest {
        customer_id: created.id.clone(),
    };
    assert_eq!(
        h.c()
            .get_preferences(with_token(req, &agent))
            .await
            .unwrap()
            .into_inner()
            .preferences
            .unwrap(),
        prefs
    );
    let req = pb::RecordConsentRequest {
        customer_id: created.id.clone(),
        purpose: "marketing_email".into(),
        granted: true,
        policy_version: "2026-01".into(),
        source: "phone".into(),
    };
    let consent = h
        .c()
        .record_consent(with_token(req, &agent))
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    let actor = consent.recorded_by.clone().unwrap();
    assert_eq!(
        (actor.id.as_str(), actor.roles.as_slice()),
        ("agent-1", &["customer-service".to_owned()][..])
    );
    let req = pb::ListConsentsRequest {
        customer_id: created.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        h.c()
            .list_consents(with_token(req, &agent))
            .await
            .unwrap()
            .into_inner()
            .consents,
        [consent]
    );

    // An export starts at once (its parts come from the other services, absent here) and a
    // second request while it is pending returns the same job; another id is NOT_FOUND.
    let req = pb::ExportCustomerDataRequest {
        customer_id: created.id.clone(),
    };
    let first = h
        .c()
        .export_customer_data(with_token(req.clone(), &agent))
        .await
        .unwrap()
        .into_inner();
    let export = first.export.unwrap();
    assert_eq!(export.state, pb::ExportState::Pending as i32);
    assert!(export.json_document.is_empty());
    let again = h
        .c()
        .export_customer_data(with_token(req, &agent))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.export.unwrap().export_id, export.export_id);
    let unknown = pb::GetCustomerDataExportRequest {
        customer_id: created.id.clone(),
        export_id: uuid::Uuid::now_v7().to_string(),
    };
    let status = h
        .c()
        .get_customer_data_export(with_token(unknown, &agent))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // Erasure: bad input changes nothing; an unknown customer is NOT_FOUND.
    let get = pb::GetCustomerRequest {
        customer_id: created.id.clone(),
    };
    let before = h
        .c()
        .get_customer(with_token(get.clone(), &agent))
        .await
        .unwrap()
        .into_inner();
    let no_reason = pb::EraseCustomerRequest {
        customer_id: created.id.clone(),
        reason: " ".into(),
    };
    let status = h.c().erase_customer(with_token(no_reason, &agent)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let unknown = pb::EraseCustomerRequest {
        customer_id: uuid::Uuid::now_v7().to_string(),
        reason: "data subject request".into(),
    };
    let status = h.c().erase_customer(with_token(unknown, &agent)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let after = h.c().get_customer(with_token(get, &agent)).await.unwrap().into_inner();
    assert_eq!(after, before);
}

#[tokio::test]
async fn crud_on_postgres() {
    crud(Harness::postgres().await).await;
}

#[tokio::test]
async fn crud_on_sqlite() {
    crud(Harness::start(TestDatabase::sqlite().unwrap()).await).await;
}

#[tokio::test]
async fn a_client_sees_and_changes_only_its_own_customer() {
    let h = Harness::postgres().await;
    let alice = h.auth.client("alice");
    let bob = h.auth.client("bob");
    // A client creates its own customer; the identity link defaults to its token.
    let mine = h
        .create(new_customer("Alice", "alice@example.com"), &alice)
        .await
        .unwrap();
    let link = mine.identity.clone().unwrap();
    assert_eq!(
        (link.issuer.as_str(), link.subject.as_str()),
        (h.client_issuer().as_str(), "alice")
    );
    let theirs = h.create(new_customer("Bob", "bob@example.com"), &bob).await.unwrap();

    assert_eq!(h.get(&mine.id, &alice).await.unwrap(), mine);
    let status = h.get(&theirs.id, &alice).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "another customer's id is NOT_FOUND");
    let req = pb::GetCustomerByIdentityRequest {
        issuer: h.client_issuer(),
        subject: "alice".into(),
    };
    assert_eq!(
        h.c()
            .get_customer_by_identity(with_token(req, &alice))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap(),
        mine
    );
    let req = pb::GetCustomerByIdentityRequest {
        issuer: h.client_issuer(),
        subject: "bob".into(),
    };
    assert_eq!(
        h.c()
            .get_customer_by_identity(with_token(req, &alice))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let mut change = theirs.clone();
    change.display_name = "Hacked".into();
    let req = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["display_name"]),
        expected_version: None,
    };
    assert_eq!(
        h.c().update_customer(with_token(req, &alice)).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(h.get(&theirs.id, &bob).await.unwrap().display_name, "Bob");

    let mut change = mine.clone();
    change.phone = "+441234567890".into();
    let req = pb::UpdateCustomerRequest {
        customer: Some(change.clone()),
        update_mask: mask(&["phone"]),
        expected_version: None,
    };
    let updated = h
        .c()
        .update_customer(with_token(req, &alice))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(updated.phone, "+441234567890");
    // ... but not its status.
    change.status = pb::CustomerStatus::Suspended as i32;
    let req = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["status"]),
        expected_version: None,
    };
    assert_eq!(
        h.c().update_customer(with_token(req, &alice)).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // A client may not link another identity or list customers.
    let mut req = new_customer("Mallory", "mallory@example.com");
    req.identity = Some(pb::IdentityLink {
        issuer: h.client_issuer(),
        subject: "bob2".into(),
    });
    assert_eq!(h.create(req, &alice).await.unwrap_err().code(), Code::PermissionDenied);
    let status = h
        .c()
        .list_customers(with_token(pb::ListCustomersRequest::default(), &alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let req = pb::ListConsentsRequest {
        customer_id: theirs.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        h.c().list_consents(with_token(req, &alice)).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn missing_or_insufficient_credentials() {
    let h = Harness::postgres().await;
    let created = h
        .create(new_customer("Ada", "ada@example.com"), &h.agent())
        .await
        .unwrap();
    let status = h
        .c()
        .get_customer(pb::GetCustomerRequest {
            customer_id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let forged = TestAuth::start().await.unwrap().employee("agent-1", &[Role::Admin]);
    assert_eq!(
        h.get(&created.id, &forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let no_roles = h.auth.employee("nobody", &[]);
    assert_eq!(
        h.get(&created.id, &no_roles).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let order_manager = h.auth.employee("om", &[Role::OrderManager]);
    let service = h.auth.service("order-svc");
    for token in [&order_manager, &service, &no_roles] {
        let status = h.create(new_customer("X", "x@example.com"), token).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let req = pb::UpdateCustomerRequest {
            customer: Some(created.clone()),
            update_mask: mask(&["display_name"]),
            expected_version: None,
        };
        assert_eq!(
            h.c().update_customer(with_token(req, token)).await.unwrap_err().code(),
            Code::PermissionDenied
        );
    }
    let status = h
        .c()
        .list_customers(with_token(pb::ListCustomersRequest::default(), &service))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let list = h
        .c()
        .list_customers(with_token(pb::ListCustomersRequest::default(), &order_manager))
        .await
        .unwrap();
    assert_eq!(list.into_inner().customers.len(), 1);
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_with_field_violations() {
    let h = Harness::postgres().await;
    let mut req = new_customer("", "not-an-email");
    req.phone = "0151 123".into();
    req.addresses[0].country_code = "Germany".into();
    req.preferences = Some(pb::CustomerPreferences {
        currency_code: "euro".into(),
        ..Default::default()
    });
    let status = h.create(req, &h.agent()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "display_name",
            "email",
            "phone",
            "addresses[0].country_code",
            "preferences.currency_code"
        ]
    );
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "INVALID_ARGUMENT"
    );

    let created = h
        .create(new_customer("Ada", "ada@example.com"), &h.agent())
        .await
        .unwrap();
    let mut change = created.clone();
    change.email = "bad@".into();
    let req = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["email", "id"]),
        expected_version: None,
    };
    let status = h.c().update_customer(with_token(req, &h.agent())).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["update_mask", "customer.email"]);

    let status = h.get("42", &h.agent()).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["customer_id"]);
    let req = pb::ListCustomersRequest {
        page_token: "bogus".into(),
        ..Default::default()
    };
    let status = h.c().list_customers(with_token(req, &h.agent())).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_duplicate_identities_already_exist() {
    let h = Harness::postgres().await;
    let agent = h.agent();
    assert_eq!(
        h.get(&Uuid::now_v7().to_string(), &agent).await.unwrap_err().code(),
        Code::NotFound
    );
    let req = pb::GetCustomerByIdentityRequest {
        issuer: h.client_issuer(),
        subject: "nobody".into(),
    };
    assert_eq!(
        h.c()
            .get_customer_by_identity(with_token(req, &agent))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let ghost = pb::Customer {
        id: Uuid::now_v7().to_string(),
        display_name: "X".into(),
        ..Default::default()
    };
    let req = pb::UpdateCustomerRequest {
        customer: Some(ghost),
        update_mask: mask(&["display_name"]),
        expected_version: None,
    };
    assert_eq!(
        h.c().update_customer(with_token(req, &agent)).await.unwrap_err().code(),
        Code::NotFound
    );

    let identity = pb::IdentityLink {
        issuer: h.client_issuer(),
        subject: "carol".into(),
    };
    let mut req = new_customer("Carol", "carol@example.com");
    req.identity = Some(identity.clone());
    h.create(req, &agent).await.unwrap();
    let mut req = new_customer("Carol Two", "carol2@example.com");
    req.identity = Some(identity);
    let status = h.create(req, &agent).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "ALREADY_EXISTS"
    );
    assert!(
        !status.message().contains("carol"),
        "the colliding value is not echoed: {}",
        status.message()
    );
    // The same client signing up twice.
    let carol = h.auth.client("carol");
    assert_eq!(
        h.create(new_customer("Carol", "carol3@example.com"), &carol)
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    // The same e-mail.
    assert_eq!(
        h.create(new_customer("Carol", "CAROL@example.com"), &agent)
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    // An idempotent repeat is not a duplicate.
    let mut req = new_customer("Dan", "dan@example.com");
    req.idempotency_key = "signup-dan".into();
    let first = h.create(req.clone(), &agent).await.unwrap();
    assert_eq!(h.create(req, &agent).await.unwrap(), first);
}

#[tokio::test]
async fn pagination_is_stable_across_pages_and_search_finds_by_name_or_email() {
    let h = Harness::postgres().await;
    let agent = h.agent();
    let names = ["Alice", "bob", "Carol", "Dave", "Eve", "Frank", "Grace"];
    for name in names {
        h.create(
            new_customer(name, &format!("{}@example.com", name.to_lowercase())),
            &agent,
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let req = pb::ListCustomersRequest {
            page_size: 3,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = h
            .c()
            .list_customers(with_token(req, &agent))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.customers.into_iter().map(|c| c.display_name));
        if pages == 1 {
            // Inserted before the cursor: it never appears on a later page, nothing repeats.
            h.create(new_customer("Aaron", "aaron@example.com"), &agent)
                .await
                .unwrap();
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);

    let search = |query: &str| pb::ListCustomersRequest {
        query: query.into(),
        ..Default::default()
    };
    let found = h
        .c()
        .list_customers(with_token(search("CAROL"), &agent))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(
        found.iter().map(|c| c.display_name.as_str()).collect::<Vec<_>>(),
        ["Carol"]
    );
    let found = h
        .c()
        .list_customers(with_token(search("eve@example"), &agent))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(
        found.iter().map(|c| c.display_name.as_str()).collect::<Vec<_>>(),
        ["Eve"]
    );

    // A token is bound to its query.
    let req = pb::ListCustomersRequest {
        page_size: 1,
        ..Default::default()
    };
    let first = h
        .c()
        .list_customers(with_token(req, &agent))
        .await
        .unwrap()
        .into_inner();
    let req = pb::ListCustomersRequest {
        page_size: 1,
        page_token: first.next_page_token,
        query: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        h.c().list_customers(with_token(req, &agent)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}
