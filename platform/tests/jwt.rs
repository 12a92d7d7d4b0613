//! JWT validation against a JWKS served by the test on a local port: the accepted tokens give
//! the right principal, and every attack of DESIGN §5 is rejected with a clear reason.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::{Json, Router, routing::get};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ordermesh_platform::auth::{AuthConfig, AuthError, IssuerConfig, IssuerKind, JwtValidator, Principal, Role};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const EMPLOYEE_ISS: &str = "https://login.test/employees/v2.0";
const CLIENT_ISS: &str = "https://login.test/clients/v2.0";
const AUDIENCE: &str = "api://ordermesh";

struct Keys {
    rsa_pem: String,
    rsa_public_pem: String,
    rsa_jwk: Value,
    ec_pem: String,
    ec_jwk: Value,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let public = rsa.to_public_key();
        let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = ec.public_key().to_encoded_point(false);
        Keys {
            rsa_pem: rsa.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            rsa_public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
            rsa_jwk: json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())}),
            ec_pem: ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            ec_jwk: json!({"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())}),
        }
    })
}

/// A JWKS endpoint per issuer that counts how often it is fetched.
struct Harness {
    validator: JwtValidator,
    employee_fetches: Arc<AtomicUsize>,
}

async fn harness() -> Harness {
    let employee_fetches = Arc::new(AtomicUsize::new(0));
    let counter = employee_fetches.clone();
    let employee_jwks = json!({"keys": [keys().rsa_jwk]});
    let client_jwks = json!({"keys": [keys().ec_jwk]});
    let app = Router::new()
        .route(
            "/employees/jwks",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = employee_jwks.clone();
                async move { Json(body) }
            }),
        )
        .route("/clients/jwks", get(move || async move { Json(client_jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = AuthConfig {
        issuers: vec![
            IssuerConfig {
                kind: IssuerKind::Employee,
                issuer: EMPLOYEE_ISS.into(),
                audience: AUDIENCE.into(),
                jwks_url: Some(format!("{base}/employees/jwks")),
            },
            IssuerConfig {
                kind: IssuerKind::Client,
                issuer: CLIENT_ISS.into(),
                audience: AUDIENCE.into(),
                jwks_url: Some(format!("{base}/clients/jwks")),
            },
        ],
        leeway: Duration::from_secs(60),
        jwks_refetch_cooldown: Duration::from_secs(300),
        ..AuthConfig::default()
    };
    Harness {
        validator: JwtValidator::new(config),
        employee_fetches,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn employee_claims() -> Value {
    json!({"iss": EMPLOYEE_ISS, "aud": AUDIENCE, "sub": "emp-42", "exp": now() + 600, "nbf": now() - 10,
           "roles": ["admin", "order-manager", "not-a-role"]})
}

fn rs256(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(keys().rsa_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn es256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(keys().ec_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = employee_claims();
    claims[name] = value;
    claims
}

async fn rejects(token: &str) -> AuthError {
    harness()
        .await
        .validator
        .validate(token)
        .await
        .expect_err("token must be rejected")
}

#[tokio::test]
async fn employee_token_yields_employee_with_known_roles() {
    let principal = harness()
        .await
        .validator
        .validate(&rs256(&employee_claims(), "rsa-1"))
        .await
        .unwrap();
    assert_eq!(
        principal,
        Principal::Employee {
            subject: "emp-42".into(),
            roles: BTreeSet::from([Role::Admin, Role::OrderManager])
        }
    );
}

#[tokio::test]
async fn client_token_yields_client_subject() {
    let claims = json!({"iss": CLIENT_ISS, "aud": AUDIENCE, "sub": "client-7", "exp": now() + 600});
    let principal = harness().await.validator.validate(&es256(&claims)).await.unwrap();
    assert_eq!(
        principal,
        Principal::Client {
            issuer: CLIENT_ISS.into(),
            subject: "client-7".into()
        }
    );
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted_beyond_it_rejected() {
    let h = harness().await;
    assert!(
        h.validator
            .validate(&rs256(&with_claim("exp", json!(now() - 30)), "rsa-1"))
            .await
            .is_ok()
    );
    let err = h
        .validator
        .validate(&rs256(&with_claim("exp", json!(now() - 120)), "rsa-1"))
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::Expired);
}

#[tokio::test]
async fn not_before_in_the_future_is_rejected() {
    let err = rejects(&rs256(&with_claim("nbf", json!(now() + 600)), "rsa-1")).await;
    assert_eq!(err, AuthError::NotYetValid);
}

#[tokio::test]
async fn untrusted_issuer_is_rejected() {
    let err = rejects(&rs256(&with_claim("iss", json!("https://evil.test/v2.0")), "rsa-1")).await;
    assert_eq!(err, AuthError::UnknownIssuer);
}

#[tokio::test]
async fn token_of_one_issuer_signed_with_anothers_key_is_rejected() {
    // A client-issuer token signed with the employee key: the client JWKS has no such kid.
    let err = rejects(&rs256(&with_claim("iss", json!(CLIENT_ISS)), "rsa-1")).await;
    assert_eq!(err, AuthError::UnknownKeyId("rsa-1".into()));
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let err = rejects(&rs256(&with_claim("aud", json!("api://someone-else")), "rsa-1")).await;
    assert_eq!(err, AuthError::WrongAudience);
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(employee_claims().to_string());
    let err = rejects(&format!("{header}.{payload}.")).await;
    assert_eq!(err, AuthError::AlgorithmNotAllowed("none".into()));
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_secret(keys().rsa_public_pem.as_bytes());
    let token = jsonwebtoken::encode(&header, &employee_claims(), &key).unwrap();
    assert_eq!(rejects(&token).await, AuthError::AlgorithmNotAllowed("HS256".into()));
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_exactly_once_then_rejects() {
    let h = harness().await;
    h.validator.validate(&rs256(&employee_claims(), "rsa-1")).await.unwrap();
    assert_eq!(h.employee_fetches.load(Ordering::SeqCst), 1, "initial fetch");

    let err = h
        .validator
        .validate(&rs256(&employee_claims(), "rotated-away"))
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::UnknownKeyId("rotated-away".into()));
    assert_eq!(
        h.employee_fetches.load(Ordering::SeqCst),
        2,
        "one refetch on the unknown kid"
    );

    // Within the cooldown more unknown kids do not hammer the issuer.
    for kid in ["rotated-away", "another"] {
        assert!(h.validator.validate(&rs256(&employee_claims(), kid)).await.is_err());
    }
    assert_eq!(h.employee_fetches.load(Ordering::SeqCst), 2);
    // Known keys keep working from the cache.
    h.validator.validate(&rs256(&employee_claims(), "rsa-1")).await.unwrap();
    assert_eq!(h.employee_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let token = rs256(&with_claim("roles", json!(["customer-service"])), "rsa-1");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with_claim("roles", json!(["admin"])).to_string());
    let err = rejects(&format!("{}.{}.{}", parts[0], forged, parts[2])).await;
    assert_eq!(err, AuthError::BadSignature);
}

#[tokio::test]
async fn exp_as_a_string_is_rejected() {
    let err = rejects(&rs256(&with_claim("exp", json!((now() + 600).to_string())), "rsa-1")).await;
    assert!(matches!(&err, AuthError::InvalidClaim(_)), "{err:?}");
}

#[tokio::test]
async fn missing_exp_is_rejected() {
    let mut claims = employee_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        rejects(&rs256(&claims, "rsa-1")).await,
        AuthError::MissingClaim("exp".into())
    );
}

#[tokio::test]
async fn rsa_kid_with_es256_header_is_rejected() {
    // The algorithm comes from the key, never from the token header.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &employee_claims(),
        &EncodingKey::from_ec_pem(keys().ec_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(rejects(&token).await, AuthError::AlgorithmMismatch);
}

#[tokio::test]
async fn garbage_is_malformed() {
    assert!(matches!(rejects("not-a-jwt").await, AuthError::Malformed(_)));
    assert!(matches!(rejects("a.b.c").await, AuthError::Malformed(_)));
}

/// A validator of one employee issuer whose JWKS the test changes, with no leeway and no refetch
/// cooldown.
async fn rotating_issuer(initial: Value) -> (JwtValidator, Arc<std::sync::Mutex<Value>>) {
    let jwks = Arc::new(std::sync::Mutex::new(initial));
    let served = jwks.clone();
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let body = served.lock().unwrap().clone();
            async move { Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = AuthConfig {
        issuers: vec![IssuerConfig {
            kind: IssuerKind::Employee,
            issuer: EMPLOYEE_ISS.into(),
            audience: AUDIENCE.into(),
            jwks_url: Some(format!("{base}/jwks")),
        }],
        leeway: Duration::ZERO,
        jwks_refetch_cooldown: Duration::ZERO,
        ..AuthConfig::default()
    };
    (JwtValidator::new(config), jwks)
}

#[tokio::test]
async fn a_token_is_verified_once_then_answered_from_memory() {
    let h = harness().await;
    let token = rs256(&employee_claims(), "rsa-1");
    let first = h.validator.validate(&token).await.unwrap();
    let second = h.validator.validate(&token).await.unwrap();
    assert_eq!(first, second);
    let stats = h.validator.cache_stats();
    assert_eq!((stats.misses, stats.hits, stats.entries), (1, 1, 1));
}

#[tokio::test]
async fn an_expired_token_is_refused_on_a_cache_hit() {
    let (validator, _jwks) = rotating_issuer(json!({"keys": [keys().rsa_jwk]})).await;
    let token = rs256(&with_claim("exp", json!(now() + 1)), "rsa-1");
    validator.validate(&token).await.unwrap();
    assert_eq!(validator.cache_stats().entries, 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(validator.validate(&token).await, Err(AuthError::Expired));
    assert_eq!(validator.cache_stats().hits, 1, "refused from memory, not re-verified");
    assert_eq!(validator.cache_stats().entries, 0, "and forgotten");
}

#[tokio::test]
async fn a_token_whose_key_left_the_key_set_is_refused_after_the_refetch() {
    let (validator, jwks) = rotating_issuer(json!({"keys": [keys().rsa_jwk]})).await;
    let old = rs256(&employee_claims(), "rsa-1");
    validator.validate(&old).await.unwrap();

    // The issuer rotates: only the EC key is left. A token signed with it makes the validator
    // refetch the key set.
    *jwks.lock().unwrap() = json!({"keys": [keys().ec_jwk]});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let new = jsonwebtoken::encode(
        &header,
        &employee_claims(),
        &EncodingKey::from_ec_pem(keys().ec_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    validator.validate(&new).await.unwrap();

    assert_eq!(
        validator.validate(&old).await,
        Err(AuthError::UnknownKeyId("rsa-1".into())),
        "the remembered token is verified again against the new key set"
    );
}

#[tokio::test]
async fn a_token_that_failed_is_never_remembered() {
    let (validator, jwks) = rotating_issuer(json!({"keys": []})).await;
    let token = rs256(&employee_claims(), "rsa-1");
    assert_eq!(
        validator.validate(&token).await,
        Err(AuthError::UnknownKeyId("rsa-1".into()))
    );
    let tampered = format!("{}x", rs256(&employee_claims(), "rsa-1"));
    *jwks.lock().unwrap() = json!({"keys": [keys().rsa_jwk]});
    assert!(validator.validate(&tampered).await.is_err());
    assert!(validator.validate(&tampered).await.is_err());
    assert_eq!(validator.cache_stats().entries, 0);
    assert_eq!(
        validator.cache_stats().hits,
        0,
        "failures are verified in full every time"
    );

    // The same token passes once its key is published: its failure was not kept.
    validator.validate(&token).await.unwrap();
    assert_eq!(validator.cache_stats().entries, 1);
}

#[tokio::test]
async fn validators_of_one_configuration_are_shared_in_a_process() {
    let config = AuthConfig {
        issuers: vec![IssuerConfig {
            kind: IssuerKind::Client,
            issuer: "https://shared.test".into(),
            audience: AUDIENCE.into(),
            jwks_url: Some("http://127.0.0.1:9/jwks".into()),
        }],
        ..AuthConfig::default()
    };
    let a = JwtValidator::shared(config.clone());
    let b = JwtValidator::shared(config.clone());
    assert!(Arc::ptr_eq(&a, &b));
    let other = JwtValidator::shared(AuthConfig {
        leeway: Duration::from_secs(1),
        ..config
    });
    assert!(!Arc::ptr_eq(&a, &other));
}
