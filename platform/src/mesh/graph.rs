//! The call graph: for each calling workload, the RPCs it calls and on which workload. This is
//! the one list to change when code starts calling something new; `ordermesh mesh render`
//! writes `istio/` from it, and the tests hold both `istio/` and this list to what the code
//! really calls.
//!
//! `ops` is not listed: it may call health, reflection, every read RPC (see
//! [`contracts::Method::read`]) and the whole `OpsService` of every service.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::Workload::{self, *};
use super::contracts;

/// One RPC a workload calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    pub callee: Workload,
    /// `/ordermesh.order.v1.OrderService/PlaceOrder`.
    pub path: &'static str,
}

const fn call(callee: Workload, path: &'static str) -> Call {
    Call { callee, path }
}

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// The calls of order-svc: the checks of PlaceOrder and the payment step of the saga.
const ORDER_CALLS: &[Call] = &[
    call(Product, "/ordermesh.product.v1.ProductService/BatchGetProducts"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/GetCustomer"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/GetCustomerByIdentity"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/AuthorizePayment"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/RefundPayment"),
];

/// notification-svc resolves a client caller to its customer.
const NOTIFICATION_CALLS: &[Call] = &[call(
    Customer,
    "/ordermesh.customer.v1.CustomerService/GetCustomerByIdentity",
)];

/// customer-svc collects each service's part of a GDPR export.
const CUSTOMER_CALLS: &[Call] = &[
    call(Order, EXPORT_PERSONAL_DATA),
    call(Payment, EXPORT_PERSONAL_DATA),
    call(Notification, EXPORT_PERSONAL_DATA),
    call(Audit, EXPORT_PERSONAL_DATA),
];

const EXPORT_PERSONAL_DATA: &str = "/ordermesh.gdpr.v1.PersonalDataService/ExportPersonalData";

/// The client portal's BFF: the routes a client may reach, and its readiness checks.
const BFF_EXTERNAL_CALLS: &[Call] = &[
    call(Product, "/ordermesh.product.v1.ProductService/ListProducts"),
    call(Product, "/ordermesh.product.v1.ProductService/SearchProducts"),
    call(Product, "/ordermesh.product.v1.ProductService/GetProduct"),
    call(Product, "/ordermesh.product.v1.ProductService/BatchGetStockLevels"),
    call(Product, "/ordermesh.product.v1.ProductService/ListCategories"),
    call(Order, "/ordermesh.order.v1.OrderService/PlaceOrder"),
    call(Order, "/ordermesh.order.v1.OrderService/ListOrders"),
    call(Order, "/ordermesh.order.v1.OrderService/GetOrder"),
    call(Order, "/ordermesh.order.v1.OrderService/CancelOrder"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/GetCustomerByIdentity"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/GetCustomer"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/CreateCustomer"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/UpdateCustomer"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/ExportCustomerData"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/GetCustomerDataExport"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/EraseCustomer"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/ListConsents"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/RecordConsent"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/ListPayments"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/GetPayment"),
    call(
        Notification,
        "/ordermesh.notification.v1.NotificationService/ListNotifications",
    ),
    call(Notification, "/ordermesh.notification.v1.NotificationService/MarkRead"),
    call(Notification, "/ordermesh.notification.v1.NotificationService/Subscribe"),
    call(Notification, "/ordermesh.notification.v1.NotificationService/CatchUp"),
    call(
        Notification,
        "/ordermesh.notification.v1.NotificationService/GetPreferences",
    ),
    call(
        Notification,
        "/ordermesh.notification.v1.NotificationService/UpdatePreferences",
    ),
    call(Product, HEALTH_CHECK),
    call(Customer, HEALTH_CHECK),
    call(Order, HEALTH_CHECK),
    call(Payment, HEALTH_CHECK),
    call(Audit, HEALTH_CHECK),
    call(Notification, HEALTH_CHECK),
];

/// What only the employee portal's BFF calls, on top of [`BFF_EXTERNAL_CALLS`]: catalogue and
/// order administration, customer lists, payments and refunds by staff, staff notifications,
/// the audit log, and the audit record of every employee's read of a customer.
const BFF_EMPLOYEE_ONLY_CALLS: &[Call] = &[
    call(Product, "/ordermesh.product.v1.ProductService/CreateProduct"),
    call(Product, "/ordermesh.product.v1.ProductService/UpdateProduct"),
    call(Product, "/ordermesh.product.v1.ProductService/CreateCategory"),
    call(Product, "/ordermesh.product.v1.ProductService/GetStockLevel"),
    call(Product, "/ordermesh.product.v1.ProductService/AdjustStock"),
    call(Order, "/ordermesh.order.v1.OrderService/UpdateOrderStatus"),
    call(Order, "/ordermesh.order.v1.OrderService/GetOrderAnalytics"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/GetRevenueAnalytics"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/ListCustomers"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/AuthorizePayment"),
    call(Payment, "/ordermesh.payment.v1.PaymentService/RefundPayment"),
    call(
        Notification,
        "/ordermesh.notification.v1.NotificationService/SendNotification",
    ),
    call(Audit, "/ordermesh.audit.v1.AuditService/QueryAuditLogs"),
    call(Audit, "/ordermesh.audit.v1.AuditService/RecordAuditEvent"),
    call(Audit, "/ordermesh.audit.v1.AuditService/GetGdprTrail"),
    // The admin dashboard and dead letters (`/api/v1/admin/*`), on every service.
    call(Product, OPS_STATUS),
    call(Customer, OPS_STATUS),
    call(Order, OPS_STATUS),
    call(Payment, OPS_STATUS),
    call(Audit, OPS_STATUS),
    call(Notification, OPS_STATUS),
    call(Product, OPS_LIST_DEAD_LETTERS),
    call(Customer, OPS_LIST_DEAD_LETTERS),
    call(Order, OPS_LIST_DEAD_LETTERS),
    call(Payment, OPS_LIST_DEAD_LETTERS),
    call(Audit, OPS_LIST_DEAD_LETTERS),
    call(Notification, OPS_LIST_DEAD_LETTERS),
    call(Product, OPS_REPLAY_DEAD_LETTER),
    call(Customer, OPS_REPLAY_DEAD_LETTER),
    call(Order, OPS_REPLAY_DEAD_LETTER),
    call(Payment, OPS_REPLAY_DEAD_LETTER),
    call(Audit, OPS_REPLAY_DEAD_LETTER),
    call(Notification, OPS_REPLAY_DEAD_LETTER),
    call(Product, OPS_DISCARD_DEAD_LETTER),
    call(Customer, OPS_DISCARD_DEAD_LETTER),
    call(Order, OPS_DISCARD_DEAD_LETTER),
    call(Payment, OPS_DISCARD_DEAD_LETTER),
    call(Audit, OPS_DISCARD_DEAD_LETTER),
    call(Notification, OPS_DISCARD_DEAD_LETTER),
];

const OPS_STATUS: &str = "/ordermesh.ops.v1.OpsService/GetServiceStatus";
const OPS_LIST_DEAD_LETTERS: &str = "/ordermesh.ops.v1.OpsService/ListDeadLetters";
const OPS_REPLAY_DEAD_LETTER: &str = "/ordermesh.ops.v1.OpsService/ReplayDeadLetter";
const OPS_DISCARD_DEAD_LETTER: &str = "/ordermesh.ops.v1.OpsService/DiscardDeadLetter";

/// `ordermesh up`'s demo catalogue and customers.
const DEMO_SEED_CALLS: &[Call] = &[
    call(Product, "/ordermesh.product.v1.ProductService/ListCategories"),
    call(Product, "/ordermesh.product.v1.ProductService/CreateCategory"),
    call(Product, "/ordermesh.product.v1.ProductService/SearchProducts"),
    call(Product, "/ordermesh.product.v1.ProductService/CreateProduct"),
    call(Product, "/ordermesh.product.v1.ProductService/AdjustStock"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/GetCustomerByIdentity"),
    call(Customer, "/ordermesh.customer.v1.CustomerService/CreateCustomer"),
];

/// Every call `caller` makes, as declared (for `ops`: health, reflection and every read RPC of
/// every service, derived from the contracts).
pub fn declared(caller: Workload) -> Vec<Call> {
    let lists: &[&[Call]] = match caller {
        Order => &[ORDER_CALLS],
        Notification => &[NOTIFICATION_CALLS],
        Customer => &[CUSTOMER_CALLS],
        Product | Payment | Audit => &[],
        BffExternal => &[BFF_EXTERNAL_CALLS],
        BffInternal => &[BFF_EXTERNAL_CALLS, BFF_EMPLOYEE_ONLY_CALLS],
        DemoSeed => &[DEMO_SEED_CALLS],
        Ops => return ops_calls(),
    };
    let mut calls: Vec<Call> = lists.iter().flat_map(|l| l.iter().copied()).collect();
    calls.sort();
    calls.dedup();
    calls
}

fn ops_calls() -> Vec<Call> {
    let mut calls = Vec::new();
    for callee in Workload::SERVICES {
        for path in contracts::infrastructure_paths() {
            calls.push(call(callee, path));
        }
    }
    let operable = |m: &&contracts::Method| m.read || m.service == crate::ops::OPS_SERVICE;
    for method in contracts::methods().iter().filter(operable) {
        for callee in Workload::SERVICES.into_iter().filter(|w| w.serves(&method.service)) {
            calls.push(call(callee, method.path.as_str()));
        }
    }
    calls.sort();
    calls
}

/// Whether the graph lets `caller` call `path` on `callee`.
pub fn allows(caller: Workload, callee: Workload, path: &str) -> bool {
    static ALLOWED: OnceLock<HashSet<(Workload, Workload, &'static str)>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            Workload::ALL
                .into_iter()
                .flat_map(|caller| declared(caller).into_iter().map(move |c| (caller, c.callee, c.path)))
                .collect()
        })
        .contains(&(caller, callee, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_path_is_served_by_its_callee() {
        for caller in Workload::ALL {
            for call in declared(caller) {
                let served = match contracts::method(call.path) {
                    Some(method) => call.callee.serves(&method.service),
                    None => contracts::infrastructure_paths().contains(&call.path),
                };
                assert!(
                    served,
                    "{caller} declares {} on {}, which does not serve it",
                    call.path, call.callee
                );
                assert_ne!(caller, call.callee, "{caller} declares a call to itself");
            }
        }
    }

    #[test]
    fn the_graph_allows_what_is_declared_and_nothing_else() {
        let place = "/ordermesh.order.v1.OrderService/PlaceOrder";
        assert!(allows(BffExternal, Order, place));
        assert!(!allows(Payment, Order, place));
        assert!(
            !allows(BffExternal, Product, place),
            "the right path on the wrong callee"
        );
        let refund = "/ordermesh.payment.v1.PaymentService/RefundPayment";
        assert!(allows(BffInternal, Payment, refund) && !allows(BffExternal, Payment, refund));
        // Operators read, and never write.
        assert!(allows(Ops, Order, "/ordermesh.order.v1.OrderService/GetOrder"));
        assert!(allows(
            Ops,
            Audit,
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!allows(Ops, Order, place));
        assert!(!allows(Ops, Payment, refund));
    }
}
