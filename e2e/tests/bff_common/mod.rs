//! HTTP helpers shared by the BFF suites.
#![allow(dead_code)]

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

/// One answer: status, headers and the JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with `status` and (when given) the `type` slug.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: Option<&str>) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], status, "{self:?}");
        let kind = self.body["type"].as_str().unwrap_or_default();
        assert!(kind.starts_with("https://ordermesh.dev/problems/"), "{self:?}");
        if let Some(slug) = slug {
            assert_eq!(kind, format!("https://ordermesh.dev/problems/{slug}"), "{self:?}");
        }
        self
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self
    }
}

impl Api {
    pub fn new(base: &str) -> Self {
        ordermesh_platform::install_crypto_provider();
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("BFF answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(token), Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.send(Method::PUT, path, Some(token), Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.send(Method::DELETE, path, Some(token), None, &[]).await
    }
}

pub fn address() -> Value {
    serde_json::json!({"line1": "Hauptstrasse 1", "city": "Berlin", "postalCode": "10115", "countryCode": "DE"})
}

pub fn order_body(product_id: &str, quantity: i32, payment_token: &str) -> Value {
    serde_json::json!({
        "items": [{"productId": product_id, "quantity": quantity}],
        "shippingAddress": address(),
        "paymentMethodToken": payment_token,
    })
}

/// One Server-Sent Event as the wire carries it (comments kept apart).
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    pub comments: Vec<String>,
    pub retry: Option<u64>,
}

impl SseEvent {
    /// Whether it carries data (not only comments or `retry:`).
    pub fn is_data(&self) -> bool {
        !self.data.is_empty() || self.id.is_some() || self.event.is_some()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is JSON ({e}): {self:?}"))
    }

    /// The notification id as a number.
    pub fn id_number(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .expect("numeric event id")
    }
}

/// A minimal SSE reader (the text/event-stream format of the HTML standard: events end with
/// a blank line; `field: value` lines; `:` comments).
pub struct SseStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    pub headers: HeaderMap,
}

impl SseStream {
    /// Opens `path` with GET; `Err` with the answer when the status is not 200.
    pub async fn open(api: &Api, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Result<Self, Answer> {
        let mut request = api.http.get(format!("{}{path}", api.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("BFF answers");
        let status = response.status();
        let headers = response.headers().clone();
        if status != StatusCode::OK {
            let bytes = response.bytes().await.expect("body");
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(Answer { status, headers, body });
        }
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("text/event-stream"),
            "{headers:?}"
        );
        Ok(Self {
            response,
            buffer: Vec::new(),
            headers,
        })
    }

    /// Opens the notification stream and waits for its opening comment.
    pub async fn notifications(api: &Api, token: Option<&str>, query: &str, headers: &[(&str, &str)]) -> Self {
        let path = format!("/api/v1/notifications/stream{query}");
        let mut stream = match Self::open(api, &path, token, headers).await {
            Ok(stream) => stream,
            Err(answer) => panic!("stream refused: {answer:?}"),
        };
        let first = stream
            .next(std::time::Duration::from_secs(10))
            .await
            .expect("the opening event");
        assert!(first.comments.iter().any(|c| c == "stream open"), "{first:?}");
        stream
    }

    /// The next event (data or comment); `None` when the stream ended. Panics after `timeout`.
    pub async fn next(&mut self, timeout: std::time::Duration) -> Option<SseEvent> {
        match tokio::time::timeout(timeout, self.next_event()).await {
            Ok(event) => event,
            Err(_) => panic!("no SSE event within {timeout:?}"),
        }
    }

    /// The next event within `timeout`: `Ok(None)` when the stream ended, `Err` on timeout.
    pub async fn try_next(&mut self, timeout: std::time::Duration) -> Result<Option<SseEvent>, ()> {
        tokio::time::timeout(timeout, self.next_event()).await.map_err(|_| ())
    }

    /// The next event with data (skipping heartbeats); panics when none comes within 30 s.
    pub async fn next_data(&mut self) -> SseEvent {
        loop {
            let event = self
                .next(std::time::Duration::from_secs(30))
                .await
                .expect("stream still open");
            if event.is_data() {
                return event;
            }
        }
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let block: Vec<u8> = self.buffer.drain(..end.0).collect();
                self.buffer.drain(..end.1 - end.0);
                let event = parse_block(&String::from_utf8(block).expect("UTF-8 event"));
                if event.is_data() || !event.comments.is_empty() || event.retry.is_some() {
                    return Some(event);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// Start and end of the first blank-line separator (`\n\n`, `\r\n\r\n` or `\r\r`).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    for i in 0..buffer.len() {
        for sep in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if buffer[i..].starts_with(sep) {
                return Some((i, i + sep.len()));
            }
        }
    }
    None
}

fn parse_block(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in block.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim_start().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => data.push(value),
            "retry" => event.retry = value.parse().ok(),
            _ => {}
        }
    }
    event.data = data.join("\n");
    event
}
