//! Who performed an action: the one domain type every service stores with its changes (refunds,
//! consents, audit entries, status history), free of generated types. Its proto form is in
//! [`crate::convert`].

use crate::auth::Principal;

/// The kind of principal behind an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ActorKind {
    #[default]
    Unspecified,
    /// A client acting for its own customer record.
    Customer,
    /// An employee of the workforce identity provider.
    Employee,
    /// Another ordermesh service acting on its own.
    Service,
    /// A scheduled or housekeeping job.
    System,
}

impl ActorKind {
    /// The stored name (`customer`, `employee`, …; `unspecified` for none).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Customer => "customer",
            Self::Employee => "employee",
            Self::Service => "service",
            Self::System => "system",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "unspecified" => Self::Unspecified,
            "customer" => Self::Customer,
            "employee" => Self::Employee,
            "service" => Self::Service,
            "system" => Self::System,
            _ => return None,
        })
    }
}

/// Who performed an action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub kind: ActorKind,
    /// Customer id, employee subject, service name or job name.
    pub id: String,
    /// Application roles (employees only), sorted and without repeats.
    pub roles: Vec<String>,
}

impl Actor {
    pub fn new(kind: ActorKind, id: impl Into<String>, roles: impl IntoIterator<Item = String>) -> Self {
        let mut roles: Vec<String> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        Self {
            kind,
            id: id.into(),
            roles,
        }
    }

    /// A service acting on its own, e.g. `order-svc`.
    pub fn service(name: &str) -> Self {
        Self::new(ActorKind::Service, name, [])
    }

    /// The authenticated caller of a request. A client is identified by its subject; services
    /// that know the client's customer id replace it.
    pub fn of(principal: &Principal) -> Self {
        match principal {
            Principal::Employee { subject, roles } => Self::new(
                ActorKind::Employee,
                subject.clone(),
                roles.iter().map(|r| r.as_str().to_owned()),
            ),
            Principal::Client { subject, .. } => Self::new(ActorKind::Customer, subject.clone(), []),
            Principal::Service { name } => Self::service(name),
        }
    }

    /// Roles as stored: sorted, joined with `,`.
    pub fn roles_text(&self) -> String {
        self.roles.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in [
            ActorKind::Unspecified,
            ActorKind::Customer,
            ActorKind::Employee,
            ActorKind::Service,
            ActorKind::System,
        ] {
            assert_eq!(ActorKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ActorKind::parse("robot"), None);
    }

    #[test]
    fn roles_are_sorted_and_unique() {
        let actor = Actor::new(
            ActorKind::Employee,
            "e-1",
            ["b".to_owned(), "a".to_owned(), "b".to_owned()],
        );
        assert_eq!(actor.roles, ["a", "b"]);
        assert_eq!(actor.roles_text(), "a,b");
    }
}

/// Who caused a write, and in which business flow: carried into the events the write publishes
/// (in its own transaction, through the outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub actor: Actor,
    pub correlation_id: String,
}

impl Origin {
    /// The principal of a request and its correlation id (a fresh one if the request had none).
    pub fn of(principal: &Principal, correlation_id: Option<&str>) -> Self {
        Self {
            actor: Actor::of(principal),
            correlation_id: correlation_id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned),
        }
    }

    /// The caller of a gRPC request and the request's correlation id; UNAUTHENTICATED without
    /// a caller.
    pub fn of_request<T>(request: &tonic::Request<T>) -> Result<Self, tonic::Status> {
        let caller = crate::grpc::principal(request)?;
        let correlation_id = request
            .extensions()
            .get::<crate::grpc::CorrelationId>()
            .map(|c| c.0.as_str());
        Ok(Self::of(caller, correlation_id))
    }

    /// A scheduled or housekeeping job (and tests).
    pub fn system(job: &str) -> Self {
        Self {
            actor: Actor::new(ActorKind::System, job, []),
            correlation_id: uuid::Uuid::now_v7().to_string(),
        }
    }
}
