//! The in-process bus of the embedded profile: same semantics as JetStream as far as consumers
//! can tell. Each topic keeps a log; each (service, topic) consumer is a durable queue that
//! starts at the beginning of the log; publishes are de-duplicated on the event id; an
//! unsettled or nak'ed delivery is redelivered with its delivery count raised; dead letters are
//! kept in memory, listable and replayable.
//!
//! Nothing survives the process: durability comes from the outbox. Run the relay with
//! [`RelayConfig::republish_on_start`](super::RelayConfig) so rows sent shortly before a restart
//! are delivered again (the consumers' inboxes absorb what was already processed).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use uuid::Uuid;

use super::bus::{Acker, BusError, ConsumerState, Delivery, EventBus, PublishAck, Subscription, SubscriptionSpec};
use super::dlq::DeadLetter;
use super::envelope::{EventsConfig, OutgoingEvent, ReceivedEvent};

#[derive(Clone)]
struct Item {
    event: ReceivedEvent,
    sequence: u64,
}

#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<Item>>,
    ready: Notify,
    /// Deliveries handed out and not settled yet, and of those the redeliveries.
    ack_pending: AtomicU64,
    redelivering: AtomicU64,
}

impl Queue {
    fn with_items(items: VecDeque<Item>) -> Self {
        Self {
            items: Mutex::new(items),
            ..Self::default()
        }
    }

    fn push(&self, item: Item) {
        lock(&self.items).push_back(item);
        self.ready.notify_one();
    }

    fn handed_out(&self, item: &Item) {
        self.ack_pending.fetch_add(1, Ordering::Relaxed);
        if item.event.delivery_count > 1 {
            self.redelivering.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn settled(&self, item: &Item) {
        self.ack_pending.fetch_sub(1, Ordering::Relaxed);
        if item.event.delivery_count > 1 {
            self.redelivering.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct State {
    logs: HashMap<String, Vec<Item>>,
    seen: HashMap<Uuid, (u64, Instant)>,
    queues: HashMap<(String, String), Arc<Queue>>,
    dead: BTreeMap<u64, DeadLetter>,
    next_dead: u64,
}

/// In-process [`EventBus`]. Cheap to clone; clones share the bus.
#[derive(Clone)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    config: Arc<EventsConfig>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static SHARED: std::sync::LazyLock<MemoryBus> = std::sync::LazyLock::new(MemoryBus::new);

impl MemoryBus {
    /// The bus shared by every service of this process (what the embedded profile uses, so that
    /// services started together by `ordermesh up` see each other's events).
    pub fn shared() -> Self {
        SHARED.clone()
    }

    /// A new, separate bus (tests).
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            config: Arc::new(EventsConfig::default()),
        }
    }

    /// Delivers `event` to every consumer of its topic again, bypassing de-duplication (tests
    /// of consumer idempotency use it to simulate a duplicate delivery).
    pub fn publish_duplicate(&self, event: &OutgoingEvent) {
        let mut state = lock(&self.state);
        self.append(&mut state, event);
    }

    fn append(&self, state: &mut State, event: &OutgoingEvent) -> u64 {
        let log = state.logs.entry(event.topic.clone()).or_default();
        let sequence = log.len() as u64 + 1;
        let item = Item {
            event: event.to_received(self.config.subject(&event.topic, &event.event_type)),
            sequence,
        };
        log.push(item.clone());
        for ((_, topic), queue) in &state.queues {
            if *topic == event.topic {
                queue.push(item.clone());
            }
        }
        sequence
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, event: &OutgoingEvent) -> Result<PublishAck, BusError> {
        let mut state = lock(&self.state);
        let window = self.config.duplicate_window;
        if let Some((sequence, at)) = state.seen.get(&event.id)
            && at.elapsed() < window
        {
            return Ok(PublishAck {
                sequence: *sequence,
                duplicate: true,
            });
        }
        if state.seen.len() >= 4096 && state.seen.len().is_power_of_two() {
            state.seen.retain(|_, (_, at)| at.elapsed() < window);
        }
        let sequence = self.append(&mut state, event);
        state.seen.insert(event.id, (sequence, Instant::now()));
        Ok(PublishAck {
            sequence,
            duplicate: false,
        })
    }

    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<Box<dyn Subscription>, BusError> {
        let mut state = lock(&self.state);
        let key = (spec.service.clone(), spec.topic.clone());
        let queue = match state.queues.get(&key) {
            Some(queue) => queue.clone(),
            None => {
                let backlog = state.logs.get(&spec.topic).cloned().unwrap_or_default();
                let queue = Arc::new(Queue::with_items(backlog.into()));
                queue.ready.notify_one();
                state.queues.insert(key, queue.clone());
                queue
            }
        };
        Ok(Box::new(MemorySubscription {
            bus: self.clone(),
            queue,
            spec: spec.clone(),
        }))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        Ok(lock(&self.state).dead.values().cloned().collect())
    }

    async fn replay_dead_letter(&self, id: u64) -> Result<(), BusError> {
        let mut state = lock(&self.state);
        let letter = state
            .dead
            .remove(&id)
            .ok_or_else(|| BusError::NotFound(id.to_string()))?;
        let key = (letter.service.clone(), letter.topic.clone());
        let queue = state.queues.entry(key).or_default().clone();
        let mut event = letter.event;
        event.delivery_count = 1;
        queue.push(Item {
            event,
            sequence: letter.original_sequence,
        });
        Ok(())
    }

    async fn discard_dead_letter(&self, id: u64) -> Result<(), BusError> {
        lock(&self.state)
            .dead
            .remove(&id)
            .map(drop)
            .ok_or_else(|| BusError::NotFound(id.to_string()))
    }

    async fn consumer_state(&self, service: &str, topic: &str) -> Result<ConsumerState, BusError> {
        let state = lock(&self.state);
        let queue = state
            .queues
            .get(&(service.to_owned(), topic.to_owned()))
            .ok_or_else(|| BusError::NotFound(format!("{service} on {topic}")))?;
        let lag = lock(&queue.items).len() as u64;
        Ok(ConsumerState {
            lag,
            ack_pending: queue.ack_pending.load(Ordering::Relaxed),
            redelivering: queue.redelivering.load(Ordering::Relaxed),
        })
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn messaging_system(&self) -> &'static str {
        "in-process"
    }
}

struct MemorySubscription {
    bus: MemoryBus,
    queue: Arc<Queue>,
    spec: SubscriptionSpec,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let item = lock(&self.queue.items).pop_front();
            if let Some(item) = item {
                self.queue.handed_out(&item);
                let acker = MemoryAcker {
                    bus: self.bus.clone(),
                    queue: self.queue.clone(),
                    item: item.clone(),
                    topic: self.spec.topic.clone(),
                    settled: AtomicBool::new(false),
                    ack_wait: self.spec.ack_wait,
                };
                return Some(Delivery {
                    event: item.event,
                    acker: Box::new(acker),
                });
            }
            self.queue.ready.notified().await;
        }
    }
}

struct MemoryAcker {
    bus: MemoryBus,
    queue: Arc<Queue>,
    item: Item,
    topic: String,
    settled: AtomicBool,
    ack_wait: Duration,
}

impl MemoryAcker {
    /// Marks the delivery settled; false if it already was.
    fn settle(&self) -> bool {
        let first = !self.settled.swap(true, Ordering::SeqCst);
        if first {
            self.queue.settled(&self.item);
        }
        first
    }

    fn redeliver_after(&self, delay: Duration) {
        let mut item = self.item.clone();
        item.event.delivery_count += 1;
        let queue = self.queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.push(item);
        });
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.settle();
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        if self.settle() {
            self.redeliver_after(delay);
        }
        Ok(())
    }

    async fn dead_letter(&self, service: &str, error: &str) -> Result<(), BusError> {
        if !self.settle() {
            return Ok(());
        }
        let mut state = lock(&self.bus.state);
        state.next_dead += 1;
        let id = state.next_dead;
        state.dead.insert(
            id,
            DeadLetter {
                id,
                service: service.to_owned(),
                topic: self.topic.clone(),
                error: error.to_owned(),
                delivery_count: self.item.event.delivery_count,
                original_subject: self.item.event.subject.clone(),
                original_sequence: self.item.sequence,
                dead_lettered_at: Utc::now(),
                event: self.item.event.clone(),
            },
        );
        Ok(())
    }
}

impl Drop for MemoryAcker {
    /// A delivery dropped unsettled (its task died) is redelivered after `ack_wait`, like
    /// JetStream does.
    fn drop(&mut self) {
        if self.settle() && tokio::runtime::Handle::try_current().is_ok() {
            self.redeliver_after(self.ack_wait);
        }
    }
}
