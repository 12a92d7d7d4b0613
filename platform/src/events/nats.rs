//! NATS JetStream implementation of [`EventBus`].
//!
//! * One stream per topic (`<stream_prefix><topic>`, subjects `<subject_prefix>.<topic>.>`,
//!   file storage, limits retention, duplicate window), created or updated at start-up.
//! * Publishes carry `Nats-Msg-Id` = event id and wait for the stream's ack; a timeout is
//!   reported as [`BusError::Unknown`] (retry with the same id).
//! * One durable pull consumer per (service, topic), explicit ack, ONE `filter_subject`
//!   (nats-server 2.9 ignores `filter_subjects`).
//! * Dead letters go to `<stream_prefix>ordermesh-dlq` on `<subject_prefix>.dlq.<service>.<topic>`
//!   with the original headers and payload plus `dlq-*` headers; the original is then
//!   terminated. Replay re-publishes the event (same event id, new `Nats-Msg-Id`) on its original
//!   subject, where consumers that already processed it skip it through their inbox.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull, context::PublishErrorKind, stream};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::bus::{Acker, BusError, ConsumerState, Delivery, EventBus, PublishAck, Subscription, SubscriptionSpec};
use super::dlq::DeadLetter;
use super::envelope::{EventsConfig, OutgoingEvent, ReceivedEvent, TOPICS, headers};

/// JetStream bus. Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: EventsConfig,
}

fn other(error: impl std::fmt::Display) -> BusError {
    BusError::Other(error.to_string())
}

fn header(map: Option<&HeaderMap>, name: &str) -> Option<String> {
    map.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned())
}

impl NatsBus {
    /// Connects and creates or updates the topic streams and the dead-letter stream.
    pub async fn connect(url: &str, config: EventsConfig) -> Result<Self, BusError> {
        let bus = Self::connect_only(url, config).await?;
        bus.ensure_streams().await?;
        Ok(bus)
    }

    /// Connects without touching streams (for tools such as `ordermesh dlq`).
    pub async fn connect_only(url: &str, config: EventsConfig) -> Result<Self, BusError> {
        let options = config
            .security
            .apply(async_nats::ConnectOptions::new())
            .await
            .map_err(|e| BusError::Unavailable(format!("NATS credentials: {e}")))?;
        let client = options
            .connection_timeout(Duration::from_secs(5))
            // Come back quickly after a broker restart.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2_000)))
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        Ok(Self { client, js, config })
    }

    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn stream_config(&self, name: String, subjects: String, max_age: Duration) -> stream::Config {
        stream::Config {
            name,
            subjects: vec![subjects],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: self.config.duplicate_window,
            max_age,
            num_replicas: self.config.replicas,
            ..Default::default()
        }
    }

    /// Creates or updates every stream (idempotent).
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        for topic in TOPICS {
            let config = self.stream_config(
                self.config.stream_name(topic),
                self.config.topic_subjects(topic),
                self.config.max_age,
            );
            self.js.create_or_update_stream(config).await.map_err(other)?;
        }
        let dlq = self.stream_config(
            self.config.dlq_stream(),
            self.config.dlq_subjects(),
            self.config.dlq_max_age(),
        );
        self.js.create_or_update_stream(dlq).await.map_err(other)?;
        Ok(())
    }

    /// Deletes every stream of this configuration's prefix (test clean-up).
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        for name in TOPICS
            .iter()
            .map(|t| self.config.stream_name(t))
            .chain([self.config.dlq_stream()])
        {
            let _ = self.js.delete_stream(&name).await;
        }
        Ok(())
    }

    fn publish_message(
        &self,
        event: &OutgoingEvent,
        message_id: &str,
        extra: &[(&str, String)],
    ) -> jetstream::message::PublishMessage {
        let mut map = HeaderMap::new();
        for (name, value) in event.headers() {
            map.insert(name, value);
        }
        for (name, value) in extra {
            map.insert(*name, value.clone());
        }
        jetstream::message::PublishMessage::build()
            .payload(event.payload.clone().into())
            .headers(map)
            .message_id(message_id)
    }

    async fn send(&self, subject: String, publish: jetstream::message::PublishMessage) -> Result<PublishAck, BusError> {
        let ack = self.js.send_publish(subject, publish).await.map_err(publish_error)?;
        let ack = ack.await.map_err(publish_error)?;
        Ok(PublishAck {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Publishes `event` again under a different `Nats-Msg-Id`, bypassing broker
    /// de-duplication (tests of consumer idempotency use it to simulate a duplicate delivery).
    pub async fn publish_duplicate(&self, event: &OutgoingEvent) -> Result<PublishAck, BusError> {
        let message_id = format!("{}-dup-{}", event.id, uuid::Uuid::now_v7());
        let publish = self.publish_message(event, &message_id, &[]);
        self.send(self.config.subject(&event.topic, &event.event_type), publish)
            .await
    }

    async fn dlq_stream(&self) -> Result<stream::Stream, BusError> {
        self.js
            .get_stream(self.config.dlq_stream())
            .await
            .map_err(|e| BusError::Other(format!("dead-letter stream {}: {e}", self.config.dlq_stream())))
    }

    async fn dead_letter_at(&self, stream: &stream::Stream, sequence: u64) -> Result<DeadLetter, BusError> {
        let message = stream
            .get_raw_message(sequence)
            .await
            .map_err(|_| BusError::NotFound(sequence.to_string()))?;
        let map = Some(&message.headers);
        let get = |name: &str| header(map, name);
        let topic = get(headers::DLQ_TOPIC).unwrap_or_default();
        let original_subject = get(headers::DLQ_SUBJECT).unwrap_or_default();
        let delivery_count = get(headers::DLQ_DELIVERIES).and_then(|v| v.parse().ok()).unwrap_or(0);
        let event =
            ReceivedEvent::from_headers(&topic, &original_subject, message.payload.clone(), delivery_count, get)
                .map_err(BusError::Other)?;
        Ok(DeadLetter {
            id: sequence,
            service: get(headers::DLQ_SERVICE).unwrap_or_default(),
            topic,
            error: get(headers::DLQ_ERROR).unwrap_or_default(),
            delivery_count,
            original_subject,
            original_sequence: get(headers::DLQ_STREAM_SEQ).and_then(|v| v.parse().ok()).unwrap_or(0),
            dead_lettered_at: get("dlq-time")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
            event,
        })
    }
}

/// Awaits the acknowledgements in order: how many from the first were stored, and the first
/// failure.
async fn settle_acks(pending: Vec<jetstream::context::PublishAckFuture>) -> (usize, Option<BusError>) {
    let mut stored = 0;
    for ack in pending {
        match ack.await {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::debug!(sequence = ack.sequence, "publish absorbed as duplicate");
                }
                stored += 1;
            }
            Err(error) => return (stored, Some(publish_error(error))),
        }
    }
    (stored, None)
}

fn publish_error(error: async_nats::jetstream::context::PublishError) -> BusError {
    match error.kind() {
        PublishErrorKind::TimedOut => BusError::Unknown(error.to_string()),
        PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound => BusError::Unavailable(error.to_string()),
        _ => BusError::Unknown(error.to_string()),
    }
}

#[async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, event: &OutgoingEvent) -> Result<PublishAck, BusError> {
        let publish = self.publish_message(event, &event.id.to_string(), &[]);
        self.send(self.config.subject(&event.topic, &event.event_type), publish)
            .await
    }

    /// Pipelined: every message is sent before the first acknowledgement is awaited, so a batch
    /// costs about one round trip to the broker instead of one per event (the relay of a busy
    /// service otherwise falls behind its own commits).
    async fn publish_all(&self, events: &[&OutgoingEvent]) -> (usize, Option<BusError>) {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let publish = self.publish_message(event, &event.id.to_string(), &[]);
            match self
                .js
                .send_publish(self.config.subject(&event.topic, &event.event_type), publish)
                .await
            {
                Ok(ack) => pending.push(ack),
                Err(error) => {
                    // Nothing after this one was sent; wait for what was.
                    let (stored, earlier) = settle_acks(pending).await;
                    return (stored, Some(earlier.unwrap_or_else(|| publish_error(error))));
                }
            }
        }
        settle_acks(pending).await
    }

    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<Box<dyn Subscription>, BusError> {
        let mut subscription = NatsSubscription {
            bus: self.clone(),
            spec: spec.clone(),
            messages: None,
        };
        subscription.open().await?;
        Ok(Box::new(subscription))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        let mut stream = self.dlq_stream().await?;
        let info = stream.info().await.map_err(other)?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut letters = Vec::new();
        if info.state.messages == 0 {
            return Ok(letters);
        }
        for sequence in first..=last {
            match self.dead_letter_at(&stream, sequence).await {
                Ok(letter) => letters.push(letter),
                Err(BusError::NotFound(_)) => continue, // deleted (already replayed)
                Err(error) => return Err(error),
            }
            if letters.len() >= 10_000 {
                break;
            }
        }
        Ok(letters)
    }

    async fn replay_dead_letter(&self, id: u64) -> Result<(), BusError> {
        let stream = self.dlq_stream().await?;
        let letter = self.dead_letter_at(&stream, id).await?;
        let event = letter.event.to_outgoing();
        let message_id = format!("{}-replay-{id}", event.id);
        let publish = self.publish_message(&event, &message_id, &[(headers::REPLAY_OF, id.to_string())]);
        let subject = if letter.original_subject.is_empty() {
            self.config.subject(&event.topic, &event.event_type)
        } else {
            letter.original_subject.clone()
        };
        self.send(subject, publish).await?;
        stream.delete_message(id).await.map_err(other)?;
        Ok(())
    }

    async fn discard_dead_letter(&self, id: u64) -> Result<(), BusError> {
        let stream = self.dlq_stream().await?;
        self.dead_letter_at(&stream, id).await?;
        stream.delete_message(id).await.map_err(other)?;
        Ok(())
    }

    async fn consumer_state(&self, service: &str, topic: &str) -> Result<ConsumerState, BusError> {
        let stream = self
            .js
            .get_stream(self.config.stream_name(topic))
            .await
            .map_err(|e| BusError::Unavailable(format!("stream of {topic}: {e}")))?;
        let durable = EventsConfig::durable_name(service, topic);
        let info = stream
            .consumer_info(&durable)
            .await
            .map_err(|_| BusError::NotFound(durable.clone()))?;
        Ok(ConsumerState {
            lag: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivering: info.num_redelivered as u64,
        })
    }

    fn kind(&self) -> &'static str {
        "nats-jetstream"
    }

    fn messaging_system(&self) -> &'static str {
        "nats"
    }
}

struct NatsSubscription {
    bus: NatsBus,
    spec: SubscriptionSpec,
    messages: Option<pull::Stream>,
}

impl NatsSubscription {
    async fn open(&mut self) -> Result<(), BusError> {
        let config = &self.bus.config;
        let stream = self
            .bus
            .js
            .get_stream(config.stream_name(&self.spec.topic))
            .await
            .map_err(other)?;
        let durable = EventsConfig::durable_name(&self.spec.service, &self.spec.topic);
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: config.topic_subjects(&self.spec.topic),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ack_wait: self.spec.ack_wait,
                    // One more than the runner's limit: see SubscriptionSpec::max_deliver.
                    max_deliver: self.spec.max_deliver as i64 + 1,
                    max_ack_pending: self.spec.max_ack_pending as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(other)?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.spec.max_ack_pending.clamp(1, 256))
            .heartbeat(Duration::from_secs(2))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(other)?;
        self.messages = Some(messages);
        Ok(())
    }
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Option<Delivery> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(messages) = self.messages.as_mut() else {
                if let Err(error) = self.open().await {
                    tracing::warn!(%error, topic = %self.spec.topic, "consumer: cannot open subscription, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                continue;
            };
            match messages.next().await {
                Some(Ok(message)) => {
                    let (delivered, sequence) = match message.info() {
                        Ok(info) => (info.delivered.max(1) as u64, info.stream_sequence),
                        Err(_) => (1, 0),
                    };
                    let subject = message.subject.to_string();
                    let map = message.headers.clone();
                    let parsed = ReceivedEvent::from_headers(
                        &self.spec.topic,
                        &subject,
                        message.payload.clone(),
                        delivered,
                        |name| header(map.as_ref(), name),
                    );
                    let acker = NatsAcker {
                        bus: self.bus.clone(),
                        message,
                        topic: self.spec.topic.clone(),
                        delivered,
                        sequence,
                    };
                    match parsed {
                        Ok(event) => {
                            return Some(Delivery {
                                event,
                                acker: Box::new(acker),
                            });
                        }
                        Err(error) => {
                            tracing::error!(%error, "malformed event message, dead-lettering");
                            if let Err(error) = acker.dead_letter(&self.spec.service, &error).await {
                                tracing::error!(%error, "could not dead-letter malformed message");
                            }
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, topic = %self.spec.topic, "consumer: message stream error, reopening");
                    self.messages = None;
                }
                None => self.messages = None,
            }
        }
    }
}

struct NatsAcker {
    bus: NatsBus,
    message: jetstream::Message,
    topic: String,
    delivered: u64,
    sequence: u64,
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.message.ack().await.map_err(other)
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.message.ack_with(AckKind::Nak(Some(delay))).await.map_err(other)
    }

    async fn dead_letter(&self, service: &str, error: &str) -> Result<(), BusError> {
        let config = &self.bus.config;
        let mut map = self.message.headers.clone().unwrap_or_default();
        let event_id = header(Some(&map), headers::EVENT_ID).unwrap_or_default();
        let stream = self.message.info().map(|i| i.stream.to_owned()).unwrap_or_default();
        let fields = [
            (
                headers::DLQ_ERROR,
                error.chars().take(2_000).collect::<String>().replace(['\r', '\n'], " "),
            ),
            (headers::DLQ_SERVICE, service.to_owned()),
            (headers::DLQ_TOPIC, self.topic.clone()),
            (headers::DLQ_DELIVERIES, self.delivered.to_string()),
            (headers::DLQ_SUBJECT, self.message.subject.to_string()),
            (headers::DLQ_STREAM, stream),
            (headers::DLQ_STREAM_SEQ, self.sequence.to_string()),
            (
                "dlq-time",
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        ];
        for (name, value) in fields {
            map.insert(name, value);
        }
        let message_id = format!("dlq-{service}-{event_id}-{}", self.sequence);
        let publish = jetstream::message::PublishMessage::build()
            .payload(self.message.payload.clone())
            .headers(map)
            .message_id(message_id);
        self.bus.send(config.dlq_subject(service, &self.topic), publish).await?;
        self.message.ack_with(AckKind::Term).await.map_err(other)
    }
}
