//! Workloads and their identities: a Kubernetes ServiceAccount in the mesh, the same name in a
//! SPIFFE id (`spiffe://<trust-domain>/ns/<namespace>/sa/<workload>`) in a certificate outside it.

use std::fmt;
use std::str::FromStr;

/// Everything that calls or serves gRPC in the platform, by its ServiceAccount name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Product,
    Customer,
    Order,
    Payment,
    Audit,
    Notification,
    /// The BFF serving the client portal.
    BffExternal,
    /// The BFF serving the employee portal (and, in development, both portals).
    BffInternal,
    /// Operators with grpcurl: health, reflection and read RPCs of every service.
    Ops,
    /// `ordermesh up`'s loader of demo data. Development only: never rendered into `istio/`.
    DemoSeed,
}

impl Workload {
    pub const ALL: [Workload; 10] = [
        Workload::Product,
        Workload::Customer,
        Workload::Order,
        Workload::Payment,
        Workload::Audit,
        Workload::Notification,
        Workload::BffExternal,
        Workload::BffInternal,
        Workload::Ops,
        Workload::DemoSeed,
    ];

    /// The six domain services: the workloads that serve gRPC.
    pub const SERVICES: [Workload; 6] = [
        Workload::Product,
        Workload::Customer,
        Workload::Order,
        Workload::Payment,
        Workload::Audit,
        Workload::Notification,
    ];

    /// The ServiceAccount (and Kubernetes Service) name.
    pub const fn name(self) -> &'static str {
        match self {
            Workload::Product => "product-svc",
            Workload::Customer => "customer-svc",
            Workload::Order => "order-svc",
            Workload::Payment => "payment-svc",
            Workload::Audit => "audit-svc",
            Workload::Notification => "notification-svc",
            Workload::BffExternal => "bff-external",
            Workload::BffInternal => "bff-internal",
            Workload::Ops => "ops",
            Workload::DemoSeed => "demo-seed",
        }
    }

    /// The short name of a domain service (`order` for `order-svc`), as in configuration and
    /// events; the workload's name for the others.
    pub fn service(self) -> &'static str {
        let name = self.name();
        name.strip_suffix("-svc").unwrap_or(name)
    }

    /// The domain service called `service` in configuration (`order`, `product`, …).
    pub fn of_service(service: &str) -> Option<Workload> {
        Workload::SERVICES
            .into_iter()
            .find(|w| w.name().strip_suffix("-svc") == Some(service))
    }

    /// The domain service serving the gRPC service `full_name` (`ordermesh.order.v1.OrderService`).
    /// `None` for a service that several serve (see [`Workload::serves`]).
    pub fn serving(full_name: &str) -> Option<Workload> {
        let domain = full_name.strip_prefix("ordermesh.")?.split('.').next()?;
        Workload::of_service(domain)
    }

    /// Whether this workload serves the gRPC service `full_name`: its own domain's, or a platform
    /// service it serves beside it (the GDPR `PersonalDataService` of every export source, the
    /// `OpsService` of every domain service).
    pub fn serves(self, full_name: &str) -> bool {
        if full_name == crate::gdpr::PERSONAL_DATA_SERVICE {
            return crate::gdpr::EXPORT_SOURCES.contains(&self);
        }
        if full_name == crate::ops::OPS_SERVICE {
            return Workload::SERVICES.contains(&self);
        }
        Workload::serving(full_name) == Some(self)
    }

    /// Whether the workload exists in a cluster (and so in `istio/`).
    pub fn in_cluster(self) -> bool {
        self != Workload::DemoSeed
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("{s:?} is not a workload of this platform"))
    }
}

/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, the identity Istio gives a
/// workload and the one our own certificates carry as a URI subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, workload: Workload) -> Self {
        Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: workload.name().to_owned(),
        }
    }

    /// The principal Istio's AuthorizationPolicy names: the id without its scheme.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}", self.principal())
    }
}

impl FromStr for SpiffeId {
    type Err = String;
    fn from_str(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| format!("{uri:?} is not a spiffe:// URI"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [domain, "ns", namespace, "sa", account] if [domain, namespace, account].iter().all(|p| is_segment(p)) => {
                Ok(Self {
                    trust_domain: (*domain).to_owned(),
                    namespace: (*namespace).to_owned(),
                    service_account: (*account).to_owned(),
                })
            }
            _ => Err(format!(
                "{uri:?} is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<account>"
            )),
        }
    }
}

fn is_segment(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_round_trip_and_refuse_other_shapes() {
        let id = SpiffeId::new("cluster.local", "ordermesh", Workload::Order);
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/ordermesh/sa/order-svc");
        assert_eq!(id.principal(), "cluster.local/ns/ordermesh/sa/order-svc");
        assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
        for bad in [
            "https://cluster.local/ns/ordermesh/sa/order-svc",
            "spiffe://cluster.local/ns/ordermesh/order-svc",
            "spiffe://cluster.local/ns//sa/order-svc",
            "spiffe://cluster.local/ns/ordermesh/sa/order-svc/extra",
            "spiffe://cluster.local/ns/Order/sa/x",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn workloads_are_named_as_their_service_accounts() {
        for workload in Workload::ALL {
            assert_eq!(workload.name().parse::<Workload>().unwrap(), workload);
        }
        assert_eq!(Workload::of_service("order"), Some(Workload::Order));
        assert_eq!(
            Workload::serving("ordermesh.payment.v1.PaymentService"),
            Some(Workload::Payment)
        );
        assert_eq!(Workload::serving("grpc.health.v1.Health"), None);
        assert!(!Workload::DemoSeed.in_cluster());
    }
}
