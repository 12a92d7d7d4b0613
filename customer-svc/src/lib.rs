//! The customer service: profiles, identity links, preferences and consents. `run` starts it
//! on a listener it is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers; [`convert`] for the generated types) → [`domain`]
//! (types and rules, no I/O) ← [`store`] (PostgreSQL or SQLite), which publishes [`events`] on
//! `customer-events` and `gdpr-events` through the outbox, in the transaction of each write.
//! GDPR: [`export`] builds export bundles in the background from every service's part; an
//! erasure completes when [`events::ErasureConfirmations`] has heard from every participant.

pub mod convert;
pub mod domain;
pub mod events;
pub mod export;
pub mod grpc;
pub mod housekeeping;
pub mod store;

use chrono::TimeDelta;
use ordermesh_platform::{ConfigError, Env, Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::customer::customer_service_server::CustomerServiceServer;
use ordermesh_proto::event_types::{GdprEvent, OrderEvent};

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "customer";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50052;

/// Serves the customer service on `listen` until `shutdown` is triggered.
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let segments = segment_rules_from_env(&Env::from_process())?;
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = store::Store::new(host.db());
    // Erasures are rare: one lane.
    host.consume_with::<GdprEvent, _>(events::ErasureConfirmations::new(store.clone()), |c| c.lanes = 1)
        .await?;
    host.consume::<OrderEvent, _>(events::OrderEventsHandler::new(store.clone()))
        .await?;
    let wake = export::ExportWake::default();
    let exporter = export::Exporter::new(store.clone(), host.config())?.spawn(wake.clone(), host.shutdown().clone());
    let served = host
        .serve(CustomerServiceServer::new(grpc::CustomerApi::new(
            store, wake, segments,
        )))
        .await;
    exporter.abort();
    served
}

/// The thresholds of the customer segments: `CUSTOMER_NEW_DAYS` (default 30),
/// `CUSTOMER_HIGH_VALUE_MINOR` (default 100000, i.e. 1,000.00 in a currency with two decimals) and
/// `CUSTOMER_DORMANT_DAYS` (default 180).
pub fn segment_rules_from_env(env: &Env) -> Result<domain::SegmentRules, ConfigError> {
    let defaults = domain::SegmentRules::default();
    let days = |name: &str, default: TimeDelta| -> Result<TimeDelta, ConfigError> {
        let days: i64 = env.parse_or(name, default.num_days())?;
        if !(1..=3650).contains(&days) {
            return Err(ConfigError::new(name, "must be 1 to 3650 days"));
        }
        Ok(TimeDelta::days(days))
    };
    let new_within = days("CUSTOMER_NEW_DAYS", defaults.new_within)?;
    let dormant_after = days("CUSTOMER_DORMANT_DAYS", defaults.dormant_after)?;
    let high_value_minor: i64 = env.parse_or("CUSTOMER_HIGH_VALUE_MINOR", defaults.high_value_minor)?;
    if high_value_minor < 1 {
        return Err(ConfigError::new("CUSTOMER_HIGH_VALUE_MINOR", "must be at least 1"));
    }
    Ok(domain::SegmentRules {
        new_within,
        high_value_minor,
        dormant_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_rules_default_and_are_checked() {
        assert_eq!(
            segment_rules_from_env(&Env::default()).unwrap(),
            domain::SegmentRules::default()
        );
        let env = Env::from_pairs([
            ("CUSTOMER_NEW_DAYS", "14"),
            ("CUSTOMER_HIGH_VALUE_MINOR", "50000"),
            ("CUSTOMER_DORMANT_DAYS", "90"),
        ]);
        assert_eq!(
            segment_rules_from_env(&env).unwrap(),
            domain::SegmentRules {
                new_within: TimeDelta::days(14),
                high_value_minor: 50_000,
                dormant_after: TimeDelta::days(90),
            }
        );
        for (name, bad) in [
            ("CUSTOMER_NEW_DAYS", "0"),
            ("CUSTOMER_DORMANT_DAYS", "ten"),
            ("CUSTOMER_HIGH_VALUE_MINOR", "0"),
        ] {
            let error = segment_rules_from_env(&Env::from_pairs([(name, bad)])).unwrap_err();
            assert_eq!(error.var, name);
        }
    }
}
