//! The event plumbing of one service, started in one call: the bus of the profile, the outbox
//! relay of the service's database, and its consumers. Keeps the six services from each
//! repeating the same wiring.

use std::sync::Arc;

use super::{Consumer, ConsumerConfig, EventBus, EventHandler, Relay, RelayConfig};
use crate::config::ServiceConfig;
use crate::db::Database;
use crate::shutdown::Shutdown;

pub struct EventRuntime {
    bus: Arc<dyn EventBus>,
    db: Database,
    service: String,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The topics of the consumers started, in order.
    topics: Vec<String>,
    /// The configured retry policy of consumers.
    max_deliver: u64,
    retry_backoff: Vec<std::time::Duration>,
}

impl EventRuntime {
    /// Connects the bus (`NATS_URL`, else the process-wide in-process bus; or the bus injected
    /// in `config.bus`) and starts the relay of `db`'s outbox.
    pub async fn start(config: &ServiceConfig, db: &Database, shutdown: &Shutdown) -> anyhow::Result<Self> {
        let bus = match &config.bus {
            Some(bus) => bus.clone(),
            None => super::connect_bus(config.nats_url.as_deref(), config.events.clone()).await?,
        };
        let relay_config = if config.nats_url.is_some() {
            RelayConfig::default()
        } else {
            RelayConfig::embedded()
        };
        // The outbox backlog and the pool, as gauges (the relay's own counters say what it did).
        let mut tasks = vec![crate::metrics::sampler::spawn(
            crate::metrics::service_label(config.service),
            db.clone(),
            shutdown.clone(),
        )];
        if config.events.publish {
            tasks.push(Relay::new(db.clone(), bus.clone(), relay_config).spawn(shutdown.clone()));
        } else {
            tracing::warn!(
                service = config.service,
                "EVENTS_PUBLISH=off: events stay in the outbox"
            );
        }
        Ok(Self {
            bus,
            db: db.clone(),
            service: format!("{}-svc", config.service),
            shutdown: shutdown.clone(),
            tasks,
            topics: Vec::new(),
            max_deliver: config.events.max_deliver,
            retry_backoff: config.events.retry_backoff.clone(),
        })
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// The name the service's consumers and dead letters carry, e.g. `order-svc`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The topics the service consumes.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Starts the service's durable consumer of `topic` with the default settings.
    pub async fn consume(&mut self, topic: &str, handler: Arc<dyn EventHandler>) -> anyhow::Result<()> {
        self.consume_with(topic, handler, |_| {}).await
    }

    /// Like [`Self::consume`], with `tune` adjusting the consumer's settings (retries, lanes).
    pub async fn consume_with(
        &mut self,
        topic: &str,
        handler: Arc<dyn EventHandler>,
        tune: impl FnOnce(&mut ConsumerConfig),
    ) -> anyhow::Result<()> {
        let mut config = ConsumerConfig::new(&self.service, topic);
        config.max_deliver = self.max_deliver;
        config.backoff = self.retry_backoff.clone();
        tune(&mut config);
        let task = Consumer::spawn(
            self.bus.clone(),
            self.db.clone(),
            config,
            handler,
            self.shutdown.clone(),
        )
        .await?;
        self.tasks.push(task);
        self.topics.push(topic.to_owned());
        Ok(())
    }

    /// Waits for the relay and consumers to finish after shutdown was triggered.
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
