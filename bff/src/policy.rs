//! The role matrix: who may call which route. This table is the ONE place authorization of
//! the BFF is decided (the services check again with the forwarded token). It also decides
//! which routes the external surface serves: a route no client may call is not routed there.
//! The README's role table is generated from it (`cargo test -p bff readme_role_matrix` checks
//! that the README is current).

use axum::http::Method;
use ordermesh_platform::auth::{Principal, Role};

use crate::problem::Problem;

/// Which employees may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Employees {
    None,
    /// Any authenticated employee, with or without roles.
    Any,
    /// Employees holding at least one of these roles.
    Roles(&'static [Role]),
}

/// Access rule of one route.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// The axum route path.
    pub path: &'static str,
    /// Whether clients may call it (only on their own data).
    pub clients: bool,
    pub employees: Employees,
}

use Employees::{Any, Roles};
use Role::{Admin, CustomerService, OrderManager};

const ORDER_STAFF: &[Role] = &[Admin, OrderManager, CustomerService];
const CUSTOMER_READERS: &[Role] = &[Admin, CustomerService, OrderManager];
const CUSTOMER_WRITERS: &[Role] = &[Admin, CustomerService];
/// Who keeps the catalogue's categories and the stock (as product-svc allows).
const STOCK_KEEPERS: &[Role] = &[Admin, OrderManager];

const fn rule(method: &'static str, path: &'static str, clients: bool, employees: Employees) -> Rule {
    Rule {
        method,
        path,
        clients,
        employees,
    }
}

/// Every authenticated route of the BFF.
pub const MATRIX: &[Rule] = &[
    rule("GET", "/api/v1/products", true, Any),
    rule("GET", "/api/v1/products/search", true, Any),
    rule("GET", "/api/v1/products/{id}", true, Any),
    rule("POST", "/api/v1/products", false, Roles(&[Admin])),
    rule("PUT", "/api/v1/products/{id}", false, Roles(&[Admin])),
    rule("GET", "/api/v1/products/categories", true, Any),
    rule("POST", "/api/v1/products/categories", false, Roles(STOCK_KEEPERS)),
    rule("GET", "/api/v1/products/{id}/stock", false, Roles(STOCK_KEEPERS)),
    rule("GET", "/api/v1/products/stock", false, Roles(STOCK_KEEPERS)),
    rule(
        "POST",
        "/api/v1/products/{id}/stock/adjustments",
        false,
        Roles(STOCK_KEEPERS),
    ),
    rule("POST", "/api/v1/orders", true, Employees::None),
    rule("GET", "/api/v1/orders", true, Roles(ORDER_STAFF)),
    rule("GET", "/api/v1/orders/{id}", true, Roles(ORDER_STAFF)),
    rule("DELETE", "/api/v1/orders/{id}", true, Roles(ORDER_STAFF)),
    rule(
        "PUT",
        "/api/v1/orders/{id}/status",
        false,
        Roles(&[Admin, OrderManager]),
    ),
    rule("GET", "/api/v1/customers/me", true, Employees::None),
    rule("POST", "/api/v1/customers/me", true, Employees::None),
    rule("GET", "/api/v1/customers", false, Roles(CUSTOMER_READERS)),
    rule("GET", "/api/v1/customers/{id}", true, Roles(CUSTOMER_READERS)),
    rule("PUT", "/api/v1/customers/{id}", true, Roles(CUSTOMER_WRITERS)),
    rule("GET", "/api/v1/customers/{id}/orders", true, Roles(ORDER_STAFF)),
    rule("DELETE", "/api/v1/customers/{id}", true, Roles(CUSTOMER_WRITERS)),
    rule(
        "POST",
        "/api/v1/customers/{id}/gdpr/export",
        true,
        Roles(CUSTOMER_WRITERS),
    ),
    rule(
        "GET",
        "/api/v1/customers/{id}/gdpr/export/{exportId}",
        true,
        Roles(CUSTOMER_WRITERS),
    ),
    rule("GET", "/api/v1/customers/{id}/consents", true, Roles(CUSTOMER_READERS)),
    rule("POST", "/api/v1/customers/{id}/consents", true, Roles(CUSTOMER_WRITERS)),
    rule("GET", "/api/v1/payments", true, Roles(ORDER_STAFF)),
    rule("POST", "/api/v1/payments", false, Roles(&[Admin, OrderManager])),
    rule("GET", "/api/v1/payments/{id}", true, Roles(ORDER_STAFF)),
    rule("POST", "/api/v1/payments/{id}/refunds", false, Roles(ORDER_STAFF)),
    rule("GET", "/api/v1/notifications", true, Any),
    rule("POST", "/api/v1/notifications", false, Roles(CUSTOMER_WRITERS)),
    rule("POST", "/api/v1/notifications/read", true, Any),
    rule("PUT", "/api/v1/notifications/{id}/read", true, Any),
    rule("GET", "/api/v1/notifications/stream", true, Any),
    rule("POST", "/api/v1/notifications/stream-ticket", true, Any),
    rule("GET", "/api/v1/notifications/preferences", true, Any),
    rule("PUT", "/api/v1/notifications/preferences", true, Any),
    rule("GET", "/api/v1/audit/logs", false, Roles(&[Admin])),
    rule("POST", "/api/v1/audit/logs", false, Roles(&[Admin])),
    rule("GET", "/api/v1/audit/gdpr/{customerId}", false, Roles(CUSTOMER_WRITERS)),
    rule("GET", "/api/v1/analytics/summary", false, Roles(&[Admin, OrderManager])),
    rule("GET", "/api/v1/admin/system", false, Roles(&[Admin])),
    rule("GET", "/api/v1/admin/dead-letters", false, Roles(&[Admin])),
    rule("POST", "/api/v1/admin/dead-letters/{id}/replay", false, Roles(&[Admin])),
    rule(
        "POST",
        "/api/v1/admin/dead-letters/{id}/discard",
        false,
        Roles(&[Admin]),
    ),
];

/// The rule of `method` + `path`, if the route is known.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    MATRIX.iter().find(|r| r.method == method.as_str() && r.path == path)
}

/// Whether `principal` may call a route with `rule`: `Ok`, or 403.
pub fn authorize(rule: &Rule, principal: &Principal) -> Result<(), Problem> {
    let allowed = match principal {
        Principal::Client { .. } => rule.clients,
        Principal::Employee { .. } => match rule.employees {
            Employees::None => false,
            Employees::Any => true,
            Employees::Roles(roles) => principal.has_any_role(roles),
        },
        // Services call each other over gRPC; the BFF serves people.
        Principal::Service { .. } => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Problem::forbidden(match (principal, rule.employees) {
            (Principal::Employee { .. }, Employees::Roles(roles)) => format!(
                "this operation needs one of the roles {}",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
            _ => "this operation is not available to this kind of caller".to_owned(),
        }))
    }
}

/// Whether some method of `path` is served on a surface that does not serve employee-only
/// routes.
pub fn path_serves_clients(path: &str) -> bool {
    MATRIX.iter().any(|r| r.path == path && r.clients)
}

/// Whether the route is served on a surface that does not serve employee-only routes.
pub fn client_reachable(method: &str, path: &str) -> bool {
    MATRIX
        .iter()
        .any(|r| r.method.eq_ignore_ascii_case(method) && r.path == path && r.clients)
}

/// The matrix as the Markdown table in the README.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| method | path | client (own data only) | admin | order-manager | customer-service | employee without role |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mark = |ok: bool| if ok { "yes" } else { "–" };
    for r in MATRIX {
        let employee = |role: Option<Role>| match (r.employees, role) {
            (Employees::None, _) => false,
            (Employees::Any, _) => true,
            (Employees::Roles(roles), Some(role)) => roles.contains(&role),
            (Employees::Roles(_), None) => false,
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} |\n",
            r.method,
            r.path,
            mark(r.clients),
            mark(employee(Some(Admin))),
            mark(employee(Some(OrderManager))),
            mark(employee(Some(CustomerService))),
            mark(employee(None)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_role_matrix_is_current() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's role matrix is stale; replace it with:\n{table}"
        );
    }

    #[test]
    fn every_rule_is_unique() {
        for (i, a) in MATRIX.iter().enumerate() {
            for b in &MATRIX[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {}", a.method, a.path);
            }
        }
    }
}
