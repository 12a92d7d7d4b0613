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
