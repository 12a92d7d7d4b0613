use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::json;

use super::{AuthConfig, IssuerConfig, IssuerKind, Role};

/// The development identity provider of the embedded profile: one ES256 key (generated at run
/// time, never committed), a JWKS and OIDC discovery documents, and token minting for
/// `ordermesh token`. It exercises the same JWKS flow as Entra ID in production. It stands in for
/// three issuers, `<base>/employees`, `<base>/clients` and `<base>/services`, sharing one key set
/// at `<base>/jwks.json`.
pub struct DevIssuer {
    base_url: String,
    kid: String,
    secret: SecretKey,
    encoding: EncodingKey,
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct DevTokenRequest {
    pub kind: IssuerKind,
    pub subject: String,
    pub roles: Vec<Role>,
    pub audience: String,
    pub ttl: Duration,
}

impl DevIssuer {
    /// A fresh key pair for the issuer served at `base_url`.
    pub fn generate(base_url: impl Into<String>) -> anyhow::Result<Self> {
        Self::from_secret(base_url.into(), SecretKey::random(&mut rand::rngs::OsRng))
    }

    /// Loads the key kept at `path`, or generates one and keeps it there (mode 0600), so tokens
    /// minted before a restart stay valid.
    pub fn load_or_generate(base_url: impl Into<String>, path: &Path) -> anyhow::Result<Self> {
        let issuer = base_url.into();
        if path.exists() {
            let pem = std::fs::read_to_string(path)?;
            return Self::from_secret(issuer, SecretKey::from_pkcs8_pem(&pem)?);
        }
        let this = Self::generate(issuer)?;
        let pem = this.secret.to_pkcs8_pem(LineEnding::LF)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, pem.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(this)
    }

    fn from_secret(base_url: String, secret: SecretKey) -> anyhow::Result<Self> {
        let pem = secret.to_pkcs8_pem(LineEnding::LF)?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())?;
        let point = secret.public_key().to_encoded_point(false);
        // The kid is derived from the public key, so it changes exactly when the key does.
        let kid = URL_SAFE_NO_PAD.encode(&sha256(point.as_bytes())[..12]);
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            kid,
            secret,
            encoding,
        })
    }

    /// The `iss` of tokens of `kind`.
    pub fn issuer(&self, kind: IssuerKind) -> String {
        let path = match kind {
            IssuerKind::Employee => "employees",
            IssuerKind::Client => "clients",
            IssuerKind::Service => "services",
        };
        format!("{}/{path}", self.base_url)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.base_url)
    }

    /// Validation settings trusting this issuer's three populations with `audience`.
    pub fn auth_config(&self, audience: &str) -> AuthConfig {
        AuthConfig {
            issuers: [IssuerKind::Employee, IssuerKind::Client, IssuerKind::Service]
                .into_iter()
                .map(|kind| IssuerConfig {
                    kind,
                    issuer: self.issuer(kind),
                    audience: audience.to_owned(),
                    jwks_url: Some(self.jwks_url()),
                })
                .collect(),
            ..AuthConfig::default()
        }
    }

    /// The public key set, as served at `<issuer>/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let point = self.secret.public_key().to_encoded_point(false);
        let (x, y) = (
            point.x().expect("uncompressed point"),
            point.y().expect("uncompressed point"),
        );
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// The OIDC discovery document of the `kind` issuer.
    pub fn discovery(&self, kind: IssuerKind) -> serde_json::Value {
        json!({
            "issuer": self.issuer(kind),
            "jwks_uri": self.jwks_url(),
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// Mints a signed token.
    pub fn mint(&self, request: &DevTokenRequest) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.issuer(request.kind), "sub": request.subject, "aud": request.audience,
            "iat": now, "nbf": now, "exp": now + request.ttl.as_secs() as i64,
        });
        if request.kind == IssuerKind::Employee {
            claims["roles"] = json!(request.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Routes serving the JWKS and the three discovery documents, to be mounted at the base URL.
    pub fn router(&self) -> axum::Router {
        use axum::{Json, routing::get};
        let jwks = self.jwks();
        let mut router = axum::Router::new().route("/jwks.json", get(move || async move { Json(jwks) }));
        for kind in [IssuerKind::Employee, IssuerKind::Client, IssuerKind::Service] {
            let discovery = self.discovery(kind);
            let path = self.issuer(kind).trim_start_matches(&self.base_url).to_owned();
            router = router.route(
                &format!("{path}/.well-known/openid-configuration"),
                get(move || async move { Json(discovery) }),
            );
        }
        router
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
