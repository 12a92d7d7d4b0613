//! Order load through the BFF, by a small client of our own: `POST /api/v1/orders` needs a fresh
//! `Idempotency-Key` per request and a count of 202s apart from other answers, and the latency
//! scenario needs a fixed arrival rate (open loop) and the notification stream read alongside.
//! The client is hyper (through reqwest) on this process's runtime; at the rates measured here it
//! takes a few per cent of one core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

/// What a stretch of order intake did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Intake {
    /// 202 answers per second.
    pub accepted_per_second: f64,
    pub accepted: u64,
    /// 5xx answers and transport errors: the scenarios require none.
    pub failures: u64,
    /// Answers that were neither 202 nor 5xx (4xx): a wrong body or token.
    pub refused: u64,
    pub p99_ms: f64,
}

/// `POST /api/v1/orders` of one unit of `product_id`, for the bearer of `token`.
#[derive(Clone)]
pub struct OrderRequest {
    http: reqwest::Client,
    url: String,
    token: String,
    body: Arc<str>,
}

impl OrderRequest {
    pub fn new(bff: SocketAddr, token: &str, product_id: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(bff.ip().is_loopback(), "refusing to load {bff}: not this machine");
        let body = serde_json::json!({
            "items": [{"productId": product_id, "quantity": 1}],
            "shippingAddress": {"line1": "1 Bench Street", "city": "Berlin", "postalCode": "10115", "countryCode": "DE"},
            "paymentMethodToken": "tok_approved",
        });
        Ok(Self {
            http: reqwest::Client::builder().pool_max_idle_per_host(1024).build()?,
            url: format!("http://{bff}/api/v1/orders"),
            token: token.to_owned(),
            body: body.to_string().into(),
        })
    }

    /// Places one order; returns the HTTP status and, on 202, the order's id.
    pub async fn place(&self) -> (u16, Option<String>) {
        let answer = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .body(self.body.to_string())
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let Ok(answer) = answer else { return (0, None) };
        let status = answer.status().as_u16();
        if status != 202 {
            return (status, None);
        }
        let id = answer
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        (status, id)
    }
}

#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    failures: AtomicU64,
    refused: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl Tally {
    async fn record(&self, status: u16, took: Duration) {
        match status {
            202 => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                self.latencies_us.lock().await.push(took.as_micros() as u64);
            }
            400..=499 => {
                if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("first refusal: HTTP {status}");
                }
            }
            _ => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn figure(&self, elapsed: Duration) -> Intake {
        let mut latencies = std::mem::take(&mut *self.latencies_us.lock().await);
        latencies.sort_unstable();
        let accepted = self.accepted.load(Ordering::Relaxed);
        Intake {
            accepted_per_second: accepted as f64 / elapsed.as_secs_f64(),
            accepted,
            failures: self.failures.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            p99_ms: percentile(&latencies, 99.0) as f64 / 1000.0,
        }
    }
}

/// `connections` clients each placing orders one after another for `duration` (closed loop).
pub async fn closed_loop(request: &OrderRequest, connections: usize, duration: Duration) -> Intake {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (request, tally) = (request.clone(), tally.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let (status, _) = request.place().await;
                    tally.record(status, sent.elapsed()).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    tally.figure(started.elapsed()).await
}

/// Orders at `rate` per second for `duration`, whatever the answers' latency (open loop: a slow
/// answer does not hold back the next arrival, so queueing shows in the latency).
pub async fn open_loop(request: &OrderRequest, rate: f64, duration: Duration) -> Intake {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::new();
    while started.elapsed() < duration {
        let scheduled = ticks.tick().await;
        let (request, tally) = (request.clone(), tally.clone());
        sent.push(tokio::spawn(async move {
            let (status, _) = request.place().await;
            // From the scheduled arrival: no coordinated omission.
            tally.record(status, scheduled.elapsed()).await;
        }));
    }
    for task in sent {
        let _ = task.await;
    }
    tally.figure(started.elapsed()).await
}

/// Latencies from an order's 202 to its CONFIRMED notification on the customer's stream.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ToConfirmed {
    pub orders: usize,
    pub confirmed: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Places an order with `request` every `every` for `duration` while reading the notification
/// stream of the same customer, and times each order from its 202 to its CONFIRMED event.
/// Orders not confirmed within 10 s after the last count as 10 s.
pub async fn to_confirmed(
    bff: SocketAddr,
    request: &OrderRequest,
    every: Duration,
    duration: Duration,
) -> anyhow::Result<ToConfirmed> {
    // When each order was placed and when its CONFIRMED event was seen (possibly first).
    let mut placed: HashMap<String, Instant> = HashMap::new();
    let confirmed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stream = request
        .http
        .get(format!("http://{bff}/api/v1/notifications/stream"))
        .bearer_auth(&request.token)
        .send()
        .await?;
    anyhow::ensure!(stream.status().is_success(), "stream: {}", stream.status());
    let reader = {
        let confirmed = confirmed.clone();
        let mut stream = stream;
        tokio::spawn(async move {
            let mut pending = String::new();
            while let Ok(Some(chunk)) = stream.chunk().await {
                let seen = Instant::now();
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    if let Some(order_id) = confirmed_order(&event) {
                        confirmed.lock().await.insert(order_id, seen);
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let mut ticks = tokio::time::interval(every);
    while started.elapsed() < duration {
        ticks.tick().await;
        if let (202, Some(id)) = request.place().await {
            placed.insert(id, Instant::now());
        }
    }
    let orders = placed.len();
    let wait_until = Instant::now() + Duration::from_secs(10);
    while confirmed.lock().await.len() < orders && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let seen = confirmed.lock().await;
    let mut latencies: Vec<u64> = placed
        .iter()
        .filter_map(|(id, at)| Some(seen.get(id)?.saturating_duration_since(*at).as_micros() as u64))
        .collect();
    let confirmed = latencies.len();
    latencies.extend(std::iter::repeat_n(10_000_000, orders - confirmed));
    latencies.sort_unstable();
    Ok(ToConfirmed {
        orders,
        confirmed,
        median_ms: percentile(&latencies, 50.0) as f64 / 1000.0,
        p99_ms: percentile(&latencies, 99.0) as f64 / 1000.0,
        max_ms: latencies.last().copied().unwrap_or_default() as f64 / 1000.0,
    })
}

/// The order id of an SSE event announcing a CONFIRMED order.
fn confirmed_order(event: &str) -> Option<String> {
    let data = event.lines().find_map(|l| l.strip_prefix("data:"))?;
    let notification: serde_json::Value = serde_json::from_str(data.trim()).ok()?;
    (notification["data"]["status"] == "CONFIRMED")
        .then(|| notification["data"]["order_id"].as_str().map(str::to_owned))?
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmed_event_names_its_order() {
        let event = "id: 7\nevent: order_status\ndata: {\"id\":\"7\",\"data\":{\"order_id\":\"o-1\",\"status\":\"CONFIRMED\"}}\n\n";
        assert_eq!(confirmed_order(event).as_deref(), Some("o-1"));
        let reserved = event.replace("CONFIRMED", "RESERVED");
        assert_eq!(confirmed_order(&reserved), None);
        assert_eq!(confirmed_order(": heartbeat\n\n"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&[5], 99.0), 5);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
