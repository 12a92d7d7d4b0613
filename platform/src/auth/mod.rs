//! Authentication: JWT validation against each issuer's JWKS, and the principals it yields.

mod credentials;
mod dev;
mod jwt;
mod verified;

use std::collections::BTreeSet;
use std::time::Duration;

pub use credentials::ServiceCredentials;
pub use dev::{DevIssuer, DevTokenRequest};
pub use jwt::{AuthError, JwtValidator};
pub use verified::TokenCacheStats;

/// Which population an issuer's tokens belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssuerKind {
    /// Entra ID: employees, with app roles in the `roles` claim.
    Employee,
    /// Entra External ID: clients; the subject maps to one customer.
    Client,
    /// Workload identity of another ordermesh service; the subject is the service name.
    Service,
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub kind: IssuerKind,
    /// Exact `iss` value.
    pub issuer: String,
    /// Required `aud` value.
    pub audience: String,
    /// JWKS document; when absent it is found through `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// An unknown `kid` refetches the JWKS at most once per this interval.
    pub jwks_refetch_cooldown: Duration,
    /// Verified tokens remembered per process (0: every token is verified in full each time).
    pub token_cache_size: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            leeway: Duration::from_secs(60),
            jwks_refetch_cooldown: Duration::from_secs(30),
            token_cache_size: 10_000,
        }
    }
}

/// Employee app roles (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    OrderManager,
    CustomerService,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::OrderManager => "order-manager",
            Role::CustomerService => "customer-service",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Role::Admin),
            "order-manager" => Some(Role::OrderManager),
            "customer-service" => Some(Role::CustomerService),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling, as established from a validated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Employee {
        subject: String,
        roles: BTreeSet<Role>,
    },
    /// A client of the client portal; `issuer` + `subject` is the identity linked to a customer.
    Client {
        issuer: String,
        subject: String,
    },
    Service {
        name: String,
    },
}

impl Principal {
    /// Whether this is an employee holding any of `roles`.
    pub fn has_any_role(&self, roles: &[Role]) -> bool {
        matches!(self, Principal::Employee { roles: held, .. } if roles.iter().any(|r| held.contains(r)))
    }

    pub fn is_admin(&self) -> bool {
        self.has_any_role(&[Role::Admin])
    }

    /// What kind of principal it is (`client`, `employee`, `service`), never who: for span
    /// attributes and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Client { .. } => "client",
            Principal::Employee { .. } => "employee",
            Principal::Service { .. } => "service",
        }
    }

    /// A short, non-personal label for logs and audit (`employee:<sub>`, `client:<sub>`, `service:<name>`).
    pub fn actor(&self) -> String {
        match self {
            Principal::Employee { subject, .. } => format!("employee:{subject}"),
            Principal::Client { subject, .. } => format!("client:{subject}"),
            Principal::Service { name } => format!("service:{name}"),
        }
    }
}
