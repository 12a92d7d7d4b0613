//! The BFF's protections at the HTTP level, with the real services behind it: the JWT attack
//! suite, BOLA (another client's ids), function-level authorization on both surfaces, mass
//! assignment, rate limits and idempotent order placement.

mod bff_common;

use std::time::Duration;

use axum::{Json, Router, routing::get};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bff::Surface;
use bff::policy::{Employees, MATRIX};
use bff_common::{Api, address, order_body};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::auth::{IssuerConfig, IssuerKind, Role};
use ordermesh_platform::testing::TEST_AUDIENCE;
use ordermesh_proto::order::OrderStatus;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use reqwest::Method;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const SAGA: Duration = Duration::from_secs(30);

/// An issuer of this test (trusted by the BFF as a client issuer) whose keys the test holds,
/// so it can sign tokens with any claims: an RS256 key (`rsa-1`) and an ES256 key (`ec-1`).
struct TestIssuer {
    iss: String,
    rsa_pem: String,
    rsa_public_pem: String,
    ec_pem: String,
}

impl TestIssuer {
    async fn start() -> (Self, IssuerConfig) {
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = rsa.to_public_key();
        let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = ec.public_key().to_encoded_point(false);
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
             "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
             "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())},
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
             "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
             "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())},
        ]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/jwks.json", get(move || async move { Json(jwks) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let iss = format!("{base}/attack-clients");
        let config = IssuerConfig {
            kind: IssuerKind::Client,
            issuer: iss.clone(),
            audience: TEST_AUDIENCE.to_owned(),
            jwks_url: Some(format!("{base}/jwks.json")),
        };
        let this = Self {
            iss,
            rsa_pem: rsa.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            rsa_public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
            ec_pem: ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        };
        (this, config)
    }

    fn claims(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": self.iss, "sub": "mallory", "aud": TEST_AUDIENCE, "iat": now, "nbf": now, "exp": now + 600})
    }

    fn es256(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ec_pem(self.ec_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn rs256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".to_owned());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(self.rsa_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn jwt_attacks_are_rejected_with_401_problems() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let (issuer, issuer_config) = TestIssuer::start().await;
    let mut config = platform.bff_config(Surface::Both);
    config.auth.issuers.push(issuer_config);
    let api = Api::new(&platform.start_bff_with(config).await.unwrap());

    // A malformed body is rejected only after authentication: 400 proves the token passed.
    let probe = |token: String| {
        let api = &api;
        async move {
            api.http
                .post(format!("{}/api/v1/orders", api.base))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{")
                .send()
                .await
                .unwrap()
        }
    };
    let good = issuer.claims();
    assert_eq!(probe(issuer.es256("ec-1", &good)).await.status(), 400, "ES256 control");
    assert_eq!(probe(issuer.rs256(&good)).await.status(), 400, "RS256 control");

    let now = chrono::Utc::now().timestamp();
    let with = |key: &str, value: Value| {
        let mut claims = issuer.claims();
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = issuer.claims();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    let valid = issuer.es256("ec-1", &good);
    let mut parts: Vec<&str> = valid.split('.').collect();
    let tampered_payload = segment(&with("sub", json!("admin")));
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    let alg_none = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT", "kid": "ec-1"})),
        segment(&good)
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        jsonwebtoken::encode(
            &header,
            &good,
            &EncodingKey::from_secret(issuer.rsa_public_pem.as_bytes()),
        )
        .unwrap()
    };
    let attacks = [
        ("expired", issuer.es256("ec-1", &with("exp", json!(now - 3600)))),
        (
            "nbf in the future",
            issuer.es256("ec-1", &with("nbf", json!(now + 3600))),
        ),
        (
            "wrong iss",
            issuer.es256("ec-1", &with("iss", json!("https://evil.example/clients"))),
        ),
        ("wrong aud", issuer.es256("ec-1", &with("aud", json!("someone-else")))),
        ("alg none", alg_none),
        ("HS256 with the RSA public key as secret", hs256_with_public_key),
        ("unknown kid", issuer.es256("no-such-key", &good)),
        ("tampered payload", tampered),
        (
            "exp as a string",
            issuer.es256("ec-1", &with("exp", json!((now + 600).to_string()))),
        ),
        ("missing exp", issuer.es256("ec-1", &without("exp"))),
        ("not a JWT", "abc".to_owned()),
    ];
    for (name, token) in attacks {
        let answer = api
            .send(Method::POST, "/api/v1/orders", Some(&token), Some(&json!({})), &[])
            .await;
        assert_eq!(answer.status, 401, "{name}: {answer:?}");
        answer.assert_problem(401, Some("unauthorized"));
        assert!(answer.header("www-authenticate").is_some(), "{name}");
        // Also on a read route.
        let read = api.get("/api/v1/products", &token).await;
        assert_eq!(read.status, 401, "{name} (GET): {read:?}");
    }
    // The scheme must be Bearer.
    let basic = api
        .send(
            Method::GET,
            "/api/v1/products",
            None,
            None,
            &[("authorization", "Basic YTpi")],
        )
        .await;
    basic.assert_problem(401, Some("unauthorized"));
}

#[tokio::test]
async fn another_clients_ids_are_404_and_their_data_unchanged() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::External).await.unwrap());
    let product = platform.product(1200, 10).await.unwrap();
    let (alice, _) = platform.client("alice").await.unwrap();
    let (bob, bob_customer) = platform.client("bob").await.unwrap();

    let placed = api
        .post("/api/v1/orders", &bob, &order_body(&product.id, 1, "tok_approved"))
        .await;
    placed.assert_status(202);
    let bob_order = placed.body["id"].as_str().unwrap().to_owned();
    platform
        .wait_for(&bob_order, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();
    let bob_payment = api
        .get(&format!("/api/v1/payments?orderId={bob_order}"), &bob)
        .await
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_before = api.get("/api/v1/customers/me", &bob).await.body;

    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/orders/{bob_order}"), None),
        (Method::DELETE, format!("/api/v1/orders/{bob_order}"), None),
        (Method::GET, format!("/api/v1/orders?customerId={bob_customer}"), None),
        (Method::GET, format!("/api/v1/customers/{bob_customer}"), None),
        (
            Method::PUT,
            format!("/api/v1/customers/{bob_customer}"),
            Some(json!({"displayName": "pwned", "email": "mallory@example.test"})),
        ),
        (Method::GET, format!("/api/v1/customers/{bob_customer}/orders"), None),
        (Method::GET, format!("/api/v1/payments/{bob_payment}"), None),
        (Method::GET, format!("/api/v1/payments?customerId={bob_customer}"), None),
    ];
    for (method, path, body) in &attempts {
        let answer = api.send(method.clone(), path, Some(&alice), body.as_ref(), &[]).await;
        assert_eq!(answer.status, 404, "{method} {path}: {answer:?}");
        answer.assert_problem(404, Some("not-found"));
    }
    // Another client's id and an unknown id are indistinguishable.
    let unknown = api
        .get(&format!("/api/v1/payments/{}", uuid::Uuid::now_v7()), &alice)
        .await;
    let bobs = api.get(&format!("/api/v1/payments/{bob_payment}"), &alice).await;
    assert_eq!(unknown.body["detail"], bobs.body["detail"]);
    let unknown = api
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::now_v7()), &alice)
        .await;
    let bobs = api.get(&format!("/api/v1/orders/{bob_order}"), &alice).await;
    assert_eq!(unknown.status, bobs.status);
    assert_eq!(
        unknown.body["detail"]
            .as_str()
            .unwrap()
            .replace(unknown_id(&unknown), ""),
        bobs.body["detail"].as_str().unwrap().replace(&bob_order, ""),
    );

    // Lists never leak: Alice's payments for Bob's order are empty.
    let listed = api.get(&format!("/api/v1/payments?orderId={bob_order}"), &alice).await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"], json!([]));

    // Bob's data is unchanged.
    let order = platform.order(&bob_order).await.unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed as i32);
    let bob_after = api.get("/api/v1/customers/me", &bob).await.body;
    assert_eq!(bob_after, bob_before);
}

/// The id an order-svc "not found" detail names.
fn unknown_id(answer: &bff_common::Answer) -> &str {
    answer.body["detail"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| uuid::Uuid::parse_str(w).is_ok())
        .unwrap_or("")
}

/// A path of `rule` with a random id.
fn concrete(path: &str) -> String {
    path.replace("{id}", &uuid::Uuid::now_v7().to_string())
}

#[tokio::test]
async fn employee_routes_are_403_for_clients_internally_absent_externally_and_need_their_roles() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let internal = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let external = Api::new(&platform.start_bff(Surface::External).await.unwrap());
    let (alice, _) = platform.client("alice").await.unwrap();
    let body = json!({});

    let mut employee_only = 0;
    for rule in MATRIX.iter().filter(|r| !r.clients) {
        employee_only += 1;
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        let path = concrete(rule.path);
        let answer = internal
            .send(method.clone(), &path, Some(&alice), Some(&body), &[])
            .await;
        answer.assert_problem(403, Some("forbidden"));
        let answer = external
            .send(method.clone(), &path, Some(&alice), Some(&body), &[])
            .await;
        // Not there: a path only employees use is unknown (404); on a path clients use, the
        // method is not allowed (405) and `Allow` names only the clients' methods.
        let shared_path = MATRIX.iter().any(|r| r.clients && r.path == rule.path);
        if shared_path {
            answer.assert_problem(405, Some("method-not-allowed"));
            let allow = answer
                .headers
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                !allow.contains(rule.method),
                "external {method} {path}: Allow {allow:?}"
            );
        } else {
            answer.assert_problem(404, Some("not-found"));
        }
    }
    assert!(employee_only >= 6);
    // The external document does not even describe them.
    let doc = external
        .send(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await
        .body;
    assert!(doc["paths"]["/api/v1/audit/logs"].is_null());
    assert!(doc["paths"]["/api/v1/products"]["post"].is_null());
    assert!(doc["paths"]["/api/v1/products"]["get"].is_object());

    // Employees without the role a route needs: 403, for every role-restricted route.
    let no_roles = platform.auth.employee("nobody", &[]);
    let mut checked = 0;
    for rule in MATRIX {
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        let path = concrete(rule.path);
        let lacking: Vec<Role> = match rule.employees {
            Employees::Any => continue,
            Employees::None => vec![Role::Admin, Role::OrderManager, Role::CustomerService],
            Employees::Roles(roles) => [Role::Admin, Role::OrderManager, Role::CustomerService]
                .into_iter()
                .filter(|r| !roles.contains(r))
                .collect(),
        };
        let mut tokens: Vec<String> = lacking
            .iter()
            .map(|r| platform.auth.employee(&format!("emp-{r}"), &[*r]))
            .collect();
        tokens.push(no_roles.clone());
        for token in &tokens {
            let answer = internal
                .send(method.clone(), &path, Some(token), Some(&body), &[])
                .await;
            assert_eq!(answer.status, 403, "{method} {path}: {answer:?}");
            answer.assert_problem(403, Some("forbidden"));
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
    // Service tokens are not portal users.
    let service = platform.auth.service("order-svc");
    internal
        .get("/api/v1/products", &service)
        .await
        .assert_problem(403, Some("forbidden"));
}

#[tokio::test]
async fn extra_fields_in_create_bodies_are_400_and_nothing_is_written() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(1000, 10).await.unwrap();
    let (alice, alice_customer) = platform.client("alice").await.unwrap();
    let (_, bob_customer) = platform.client("bob").await.unwrap();

    for (field, value) in [
        ("status", json!("confirmed")),
        ("price", json!({"amount": 1, "currency": "EUR"})),
        ("customerId", json!(bob_customer)),
        ("total", json!({"amount": 1, "currency": "EUR"})),
        ("id", json!(uuid::Uuid::now_v7().to_string())),
    ] {
        let mut body = order_body(&product.id, 1, "tok_approved");
        body[field] = value;
        api.post("/api/v1/orders", &alice, &body)
            .await
            .assert_problem(400, Some("invalid-body"));
    }
    let mut body = order_body(&product.id, 1, "tok_approved");
    body["items"][0]["price"] = json!({"amount": 1, "currency": "EUR"});
    api.post("/api/v1/orders", &alice, &body)
        .await
        .assert_problem(400, Some("invalid-body"));
    for customer in [&alice_customer, &bob_customer] {
        let orders = api
            .get(&format!("/api/v1/customers/{customer}/orders"), &platform.admin)
            .await;
        assert_eq!(orders.body["items"], json!([]), "no order was written");
    }

    // Products: ids, versions and timestamps are the server's.
    let sku = format!("SKU-{}", uuid::Uuid::now_v7().simple()).to_uppercase();
    for (field, value) in [
        ("id", json!("x")),
        ("version", json!(7)),
        ("createdAt", json!("2020-01-01T00:00:00Z")),
    ] {
        let mut body = json!({"sku": sku, "name": "Grinder", "categoryId": product.category_id,
                              "price": {"amount": 100, "currency": "EUR"}});
        body[field] = value;
        api.post("/api/v1/products", &platform.admin, &body)
            .await
            .assert_problem(400, Some("invalid-body"));
    }
    let found = api
        .get(&format!("/api/v1/products/search?q={sku}"), &platform.admin)
        .await;
    assert_eq!(found.body["items"], json!([]), "no product was written");

    // Customer profiles: no status, no id, no identity of the client's choosing.
    let carol = platform.auth.client("carol");
    for (field, value) in [
        ("status", json!("active")),
        ("customerId", json!(bob_customer)),
        ("identity", json!({"issuer": "x", "subject": "y"})),
    ] {
        let mut body = json!({"displayName": "Carol", "email": "carol@example.test"});
        body[field] = value;
        api.post("/api/v1/customers/me", &carol, &body)
            .await
            .assert_problem(400, Some("invalid-body"));
    }
    api.get("/api/v1/customers/me", &carol)
        .await
        .assert_problem(404, Some("customer-profile-missing"));
    let before = api.get("/api/v1/customers/me", &alice).await.body;
    api.put(
        &format!("/api/v1/customers/{alice_customer}"),
        &alice,
        &json!({"displayName": "Alice", "status": "active"}),
    )
    .await
    .assert_problem(400, Some("invalid-body"));
    assert_eq!(api.get("/api/v1/customers/me", &alice).await.body, before);
    let _ = address();
}

#[tokio::test]
async fn the_request_over_the_limit_is_429_with_retry_after() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let mut config = platform.bff_config(Surface::Both);
    config.rate_limits.external = 5;
    config.rate_limits.internal = 8;
    let api = Api::new(&platform.start_bff_with(config).await.unwrap());
    let (alice, _) = platform.client("alice").await.unwrap();
    let (bob, _) = platform.client("bob").await.unwrap();

    let mut remaining = Vec::new();
    for _ in 0..5 {
        let answer = api.get("/api/v1/products", &alice).await;
        answer.assert_status(200);
        assert_eq!(answer.header("ratelimit-limit"), Some("5"));
        remaining.push(answer.header("ratelimit-remaining").unwrap().parse::<u64>().unwrap());
    }
    assert!(remaining.windows(2).all(|w| w[0] >= w[1]), "{remaining:?}");
    let over = api.get("/api/v1/products", &alice).await;
    over.assert_problem(429, Some("rate-limited"));
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(over.header("ratelimit-remaining"), Some("0"));
    // Per principal: Bob has his own budget; employees the internal one.
    api.get("/api/v1/products", &bob).await.assert_status(200);
    for _ in 0..8 {
        api.get("/api/v1/products", &platform.admin).await.assert_status(200);
    }
    api.get("/api/v1/products", &platform.admin)
        .await
        .assert_problem(429, Some("rate-limited"));
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_rejects_another_body() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::External).await.unwrap());
    let product = platform.product(1000, 10).await.unwrap();
    let (alice, customer) = platform.client("alice").await.unwrap();
    let body = order_body(&product.id, 1, "tok_approved");
    let key = [("idempotency-key", "order-2026-0001")];

    let first = api
        .send(Method::POST, "/api/v1/orders", Some(&alice), Some(&body), &key)
        .await;
    first.assert_status(202);
    let order_id = first.body["id"].as_str().unwrap().to_owned();
    platform
        .wait_for(&order_id, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();

    let again = api
        .send(Method::POST, "/api/v1/orders", Some(&alice), Some(&body), &key)
        .await;
    again.assert_status(202);
    assert_eq!(again.body, first.body, "the first answer, replayed (still pending)");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("x-correlation-id"), first.header("x-correlation-id"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let mut other = body.clone();
    other["items"][0]["quantity"] = json!(3);
    api.send(Method::POST, "/api/v1/orders", Some(&alice), Some(&other), &key)
        .await
        .assert_problem(422, Some("idempotency-key-reused"));

    let orders = api.get(&format!("/api/v1/customers/{customer}/orders"), &alice).await;
    assert_eq!(orders.body["items"].as_array().unwrap().len(), 1, "one order placed");
    assert_eq!(platform.stock(&product.id).await.unwrap().available, 9);

    // Another key is another order; a malformed key is rejected.
    let next = api
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&alice),
            Some(&body),
            &[("idempotency-key", "order-2026-0002")],
        )
        .await;
    next.assert_status(202);
    assert_ne!(next.body["id"], first.body["id"]);
    let long = "k".repeat(129);
    api.send(
        Method::POST,
        "/api/v1/orders",
        Some(&alice),
        Some(&body),
        &[("idempotency-key", &long)],
    )
    .await
    .assert_problem(400, Some("validation-error"));
}

/// OWASP's REST headers on every route of the matrix, whatever the answer: `nosniff` always,
/// `Cache-Control: no-store` on every authenticated answer and every problem (also 401s); the
/// public OpenAPI document and health checks are not personal, but still not sniffed.
#[tokio::test]
async fn every_answer_is_nosniff_and_no_authenticated_answer_or_problem_is_stored() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let base = platform.start_bff(Surface::Internal).await.unwrap();
    let api = Api::new(&base);
    let (alice, _) = platform.client("headers-alice").await.unwrap();
    let admin = platform.admin.clone();
    let check = |what: &str, answer: &bff_common::Answer| {
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{what}: {answer:?}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{what}: {answer:?}");
    };
    let mut checked = 0;
    for rule in MATRIX {
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        let path = concrete(rule.path).replace("{customerId}", &uuid::Uuid::now_v7().to_string());
        if path.ends_with("/stream") {
            // An open stream never ends: its headers, then drop it.
            let response = reqwest::Client::new()
                .get(format!("{base}{path}"))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-content-type-options"], "nosniff");
            assert_eq!(response.headers()["cache-control"], "no-store");
            checked += 1;
            continue;
        }
        for token in [&alice, &admin] {
            let answer = api
                .send(method.clone(), &path, Some(token), Some(&json!({})), &[])
                .await;
            check(&format!("{method} {path}"), &answer);
            checked += 1;
        }
        let anonymous = api.send(method.clone(), &path, None, None, &[]).await;
        assert_eq!(anonymous.status, 401);
        check(&format!("anonymous {method} {path}"), &anonymous);
    }
    assert!(checked > 2 * 30, "{checked}");
    for path in ["/healthz", "/api/v1/openapi.json"] {
        let answer = api.send(Method::GET, path, None, None, &[]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    let missing = api.send(Method::GET, "/nothing-here", None, None, &[]).await;
    check("unknown path", &missing);
}
