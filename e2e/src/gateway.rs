//! A recording payment gateway for the fault suite (issue 17). payment-svc reaches it through
//! `PAYMENT_GATEWAY_URL` with its real HTTP adapter, so "charged once" is checked where the money
//! would move, at the provider, and not in payment-svc's own tables, which the bug under test
//! could get wrong in the same way as the charging. It runs in the test process, so it outlives
//! restarts of the services under test and remembers their idempotency keys across them.
//!
//! # What `reference` is
//!
//! payment-svc sends the order id (a UUID; no personal data) as the `reference` of a charge
//! (`POST /v1/charges`). Captures, refunds and voids carry in `reference` an id this gateway
//! answered earlier instead: captures and voids the id of the authorization (the charge), refunds
//! the id of the capture, which after a one-step charge (`capture: true`) is the charge's id. The
//! gateway maps those ids back, so every [`Operation`] is recorded against the order id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What an operation did at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// A charge without capture: money reserved, not moved.
    Authorize,
    /// Money taken: a charge with `capture: true`, or a capture of an earlier authorization.
    Capture,
    Refund,
    /// An authorization released without capture.
    Void,
}

/// One operation the gateway performed. It performs each idempotency key once, so a replayed
/// key adds no operation: two operations for one order are two different keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    /// The order id the money belongs to (see the module docs).
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub idempotency_key: String,
    /// The id answered to payment-svc, which it sends back as `reference` of follow-ups.
    pub gateway_id: String,
    pub approved: bool,
    /// Why it was declined; `None` when approved.
    pub decline_reason: Option<String>,
}

impl Operation {
    fn approved(kind: OperationKind, reference: String, amount: &Money, key: &str, gateway_id: String) -> Self {
        Self {
            kind,
            reference,
            amount_minor: amount.minor,
            currency: amount.currency.clone(),
            idempotency_key: key.to_owned(),
            gateway_id,
            approved: true,
            decline_reason: None,
        }
    }

    fn money(&self) -> Money {
        Money {
            minor: self.amount_minor,
            currency: self.currency.clone(),
        }
    }

    fn declined(self, reason: &str) -> Self {
        Self {
            approved: false,
            decline_reason: Some(reason.to_owned()),
            ..self
        }
    }
}

/// Operations added up: approved ones by kind, with their amounts in minor units; declined ones
/// only counted, since no money moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub authorizations: usize,
    pub captures: usize,
    pub captured_minor: i64,
    pub refunds: usize,
    pub refunded_minor: i64,
    pub voids: usize,
    pub declines: usize,
}

impl Summary {
    fn add(mut self, op: &Operation) -> Self {
        if !op.approved {
            self.declines += 1;
            return self;
        }
        match op.kind {
            OperationKind::Authorize => self.authorizations += 1,
            OperationKind::Capture => {
                self.captures += 1;
                self.captured_minor += op.amount_minor;
            }
            OperationKind::Refund => {
                self.refunds += 1;
                self.refunded_minor += op.amount_minor;
            }
            OperationKind::Void => self.voids += 1,
        }
        self
    }
}

/// A payment provider on `127.0.0.1:0` speaking payment-svc's HTTP adapter protocol
/// (`payment-svc/src/gateway/http.rs`) and recording what it performs. Like a real provider it
/// performs an operation the first time it sees its `Idempotency-Key` and answers a repeated key
/// with the stored answer; payment-method tokens approve or decline as in payment-svc's sandbox.
/// Stops when dropped.
pub struct RecordingGateway {
    books: Shared,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl RecordingGateway {
    /// Serves on a free local port, in the test process's runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recording gateway");
        let addr = listener.local_addr().expect("bound address");
        let books = Shared::default();
        let app = router(books.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { books, addr, server }
    }

    /// The value for payment-svc's `PAYMENT_GATEWAY_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` requests with `status` AFTER performing them, as real providers
    /// sometimes do (a lost answer): only a retry with the same key then avoids a second charge.
    /// Replaces any failures still pending.
    pub fn fail_next(&self, n: usize, status: StatusCode) {
        let mut books = self.books();
        books.failing = n;
        books.failure = status;
    }

    /// Delays every answer by `latency`, after the operation is performed: a caller that times
    /// out does not know the outcome, the case same-key retries exist for.
    pub fn set_latency(&self, latency: Duration) {
        self.books().latency = latency;
    }

    /// Every operation performed so far, in order.
    pub fn record(&self) -> Vec<Operation> {
        self.books().operations.clone()
    }

    /// The operations of order `reference`, added up.
    pub fn summary_of(&self, reference: &str) -> Summary {
        let books = self.books();
        let ops = books.operations.iter().filter(|op| op.reference == reference);
        ops.fold(Summary::default(), Summary::add)
    }

    /// Approved captures of order `reference` (one-step charges included): 1 when charged once.
    pub fn captures_of(&self, reference: &str) -> usize {
        self.summary_of(reference).captures
    }

    /// Approved refunds of order `reference`.
    pub fn refunds_of(&self, reference: &str) -> usize {
        self.summary_of(reference).refunds
    }

    /// Approved voids of order `reference`.
    pub fn voids_of(&self, reference: &str) -> usize {
        self.summary_of(reference).voids
    }

    /// The orders with any operation, sorted.
    pub fn references(&self) -> Vec<String> {
        let books = self.books();
        let references: BTreeSet<&String> = books.operations.iter().map(|op| &op.reference).collect();
        references.into_iter().cloned().collect()
    }

    /// The orders captured more than once: empty when every order was charged at most once.
    pub fn captured_more_than_once(&self) -> Vec<String> {
        let books = self.books();
        let mut captures: BTreeMap<&str, usize> = BTreeMap::new();
        let approved = books.operations.iter().filter(|op| op.approved);
        for op in approved.filter(|op| op.kind == OperationKind::Capture) {
            *captures.entry(&op.reference).or_default() += 1;
        }
        let twice = captures.into_iter().filter(|(_, count)| *count > 1);
        twice.map(|(reference, _)| reference.to_owned()).collect()
    }

    /// All operations added up per currency (amounts of different currencies do not add).
    pub fn totals(&self) -> BTreeMap<String, Summary> {
        let books = self.books();
        let mut totals: BTreeMap<String, Summary> = BTreeMap::new();
        for op in &books.operations {
            let total = totals.entry(op.currency.clone()).or_default();
            *total = std::mem::take(total).add(op);
        }
        totals
    }

    /// HTTP requests received, retries and replays included.
    pub fn requests(&self) -> usize {
        self.books().requests
    }

    /// Requests refused as wrong (no `Idempotency-Key`, unreadable body, unknown reference, a key
    /// reused for another request): a correct caller makes none, so a run can assert zero.
    pub fn rejections(&self) -> usize {
        self.books().rejections
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        lock(&self.books)
    }
}

impl Drop for RecordingGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Shared = Arc<Mutex<Books>>;

/// A panicking test thread must not hide the record from the others.
fn lock(books: &Shared) -> MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Charges,
    Captures,
    Refunds,
    Voids,
}

fn router(books: Shared) -> axum::Router {
    axum::Router::new()
        .route("/v1/charges", route(Endpoint::Charges))
        .route("/v1/captures", route(Endpoint::Captures))
        .route("/v1/refunds", route(Endpoint::Refunds))
        .route("/v1/voids", route(Endpoint::Voids))
        .with_state(books)
}

fn route(endpoint: Endpoint) -> MethodRouter<Shared> {
    post(move |books: State<Shared>, headers: HeaderMap, body: Bytes| handle(endpoint, books, headers, body))
}

/// Performs (or replays) under the lock, then answers after the latency, outside it.
async fn handle(endpoint: Endpoint, State(books): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (answer, latency) = {
        let mut books = lock(&books);
        let answer = books.answer(endpoint, &headers, &body);
        (books.inject_fault(answer), books.latency)
    };
    tokio::time::sleep(latency).await;
    answer.into_response()
}

/// An HTTP answer, stored per idempotency key for replays.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn of(op: &Operation) -> Self {
        match &op.decline_reason {
            None => Self {
                status: StatusCode::OK,
                body: json!({"id": op.gateway_id, "status": "approved", "decline_reason": null}),
            },
            // 402, as real providers answer a card decline; the adapter reads it as an answer.
            Some(reason) => Self {
                status: StatusCode::PAYMENT_REQUIRED,
                body: json!({"id": op.gateway_id, "status": "declined", "decline_reason": reason}),
            },
        }
    }

    fn error(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({"error": message}),
        }
    }

    fn is_rejection(&self) -> bool {
        self.status.is_client_error() && self.status != StatusCode::PAYMENT_REQUIRED
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// What a key was first used for, to tell a retry from a key reused for another request.
struct Stored {
    endpoint: Endpoint,
    body: Value,
    answer: Answer,
}

struct Money {
    minor: i64,
    currency: String,
}

struct Charge {
    amount: Money,
    payment_method: String,
    reference: String,
    capture: bool,
}

struct FollowUp {
    /// The gateway id of the authorization (capture, void) or capture (refund).
    reference: String,
    amount: Money,
}

fn text(body: &Value, field: &str) -> Option<String> {
    let value = body.get(field)?.as_str()?;
    (!value.is_empty()).then(|| value.to_owned())
}

fn money(body: &Value) -> Option<Money> {
    Some(Money {
        minor: body.get("amount")?.as_i64().filter(|minor| *minor > 0)?,
        currency: text(body, "currency")?,
    })
}

impl Charge {
    fn parse(body: &Value) -> Option<Self> {
        Some(Self {
            amount: money(body)?,
            payment_method: text(body, "payment_method")?,
            reference: text(body, "reference")?,
            capture: body.get("capture")?.as_bool()?,
        })
    }
}

impl FollowUp {
    fn parse(body: &Value) -> Option<Self> {
        Some(Self {
            reference: text(body, "reference")?,
            amount: money(body)?,
        })
    }
}

/// The sandbox's token rules (`payment-svc/src/gateway/sandbox.rs`), so a load driver can mix
/// approved and declined payments with the same tokens against either gateway.
enum Verdict {
    Approve,
    Decline(&'static str),
    /// A transient provider error: answered 503 and not stored, so every retry fails alike.
    Unavailable,
}

fn verdict(token: &str) -> Verdict {
    match token {
        "tok_gateway_error" => Verdict::Unavailable,
        t if t == "tok_approved" || t.starts_with("tok_approved_") => Verdict::Approve,
        "tok_declined" => Verdict::Decline("card_declined"),
        "tok_insufficient_funds" => Verdict::Decline("insufficient_funds"),
        _ => Verdict::Decline("invalid_payment_method"),
    }
}

/// A charge's money, reserved and maybe captured.
struct Authorization {
    reference: String,
    amount: Money,
    captured: bool,
    voided: bool,
}

impl Authorization {
    /// Why a capture of `amount` is refused: a provider captures an authorization once, within
    /// its amount.
    fn refuses_capture(&self, amount: &Money) -> Option<&'static str> {
        if self.voided {
            Some("authorization_voided")
        } else if self.captured {
            Some("already_captured")
        } else if amount.currency != self.amount.currency {
            Some("currency_mismatch")
        } else {
            (amount.minor > self.amount.minor).then_some("amount_exceeds_authorization")
        }
    }

    fn refuses_void(&self) -> Option<&'static str> {
        if self.captured {
            Some("already_captured")
        } else {
            self.voided.then_some("already_voided")
        }
    }
}

/// Money taken, and how much of it went back.
struct Capture {
    reference: String,
    amount: Money,
    refunded_minor: i64,
}

impl Capture {
    /// Why a refund of `amount` is refused: never more back than was taken.
    fn refuses_refund(&self, amount: &Money) -> Option<&'static str> {
        if amount.currency != self.amount.currency {
            Some("currency_mismatch")
        } else {
            (self.refunded_minor + amount.minor > self.amount.minor).then_some("amount_exceeds_captured")
        }
    }
}

/// The provider's state: its answers per key, the money it holds, what it performed, and the
/// faults to inject.
struct Books {
    answers: HashMap<String, Stored>,
    authorizations: HashMap<String, Authorization>,
    captures: HashMap<String, Capture>,
    operations: Vec<Operation>,
    next_id: u64,
    requests: usize,
    rejections: usize,
    failing: usize,
    failure: StatusCode,
    latency: Duration,
}

impl Default for Books {
    fn default() -> Self {
        Self {
            answers: HashMap::new(),
            authorizations: HashMap::new(),
            captures: HashMap::new(),
            operations: Vec::new(),
            next_id: 0,
            requests: 0,
            rejections: 0,
            failing: 0,
            failure: StatusCode::SERVICE_UNAVAILABLE,
            latency: Duration::ZERO,
        }
    }
}

impl Books {
    fn answer(&mut self, endpoint: Endpoint, headers: &HeaderMap, body: &[u8]) -> Answer {
        self.requests += 1;
        let answer = self.answer_once(endpoint, headers, body);
        if answer.is_rejection() {
            self.rejections += 1;
        }
        answer
    }

    /// The stored answer of a known key, else the answer of performing the request. Transient
    /// errors are not stored: the retry gets another chance, as at a real provider.
    fn answer_once(&mut self, endpoint: Endpoint, headers: &HeaderMap, body: &[u8]) -> Answer {
        let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
            return Answer::error(StatusCode::BAD_REQUEST, "an Idempotency-Key header is required");
        };
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return Answer::error(StatusCode::BAD_REQUEST, "the body is not JSON");
        };
        if let Some(stored) = self.answers.get(key) {
            if stored.endpoint == endpoint && stored.body == body {
                return stored.answer.clone();
            }
            return Answer::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key reused for another request",
            );
        }
        let answer = self.perform(endpoint, &body, key);
        if !answer.status.is_server_error() {
            let stored = Stored {
                endpoint,
                body,
                answer: answer.clone(),
            };
            self.answers.insert(key.to_owned(), stored);
        }
        answer
    }

    fn inject_fault(&mut self, answer: Answer) -> Answer {
        if self.failing == 0 {
            return answer;
        }
        self.failing -= 1;
        Answer::error(
            self.failure,
            "injected fault: the operation was performed, its answer lost",
        )
    }

    fn perform(&mut self, endpoint: Endpoint, body: &Value, key: &str) -> Answer {
        let answer = match endpoint {
            Endpoint::Charges => Charge::parse(body).map(|charge| self.charge(&charge, key)),
            Endpoint::Captures => FollowUp::parse(body).map(|f| self.capture(&f, key)),
            Endpoint::Refunds => FollowUp::parse(body).map(|f| self.refund(&f, key)),
            Endpoint::Voids => FollowUp::parse(body).map(|f| self.void(&f, key)),
        };
        answer.unwrap_or_else(|| Answer::error(StatusCode::BAD_REQUEST, "missing or invalid fields"))
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    fn record(&mut self, op: Operation) -> Answer {
        let answer = Answer::of(&op);
        self.operations.push(op);
        answer
    }

    fn charge(&mut self, charge: &Charge, key: &str) -> Answer {
        let kind = match charge.capture {
            true => OperationKind::Capture,
            false => OperationKind::Authorize,
        };
        let id = self.new_id("ch");
        let op = Operation::approved(kind, charge.reference.clone(), &charge.amount, key, id);
        match verdict(&charge.payment_method) {
            Verdict::Unavailable => Answer::error(StatusCode::SERVICE_UNAVAILABLE, "sandbox gateway error"),
            Verdict::Decline(reason) => self.record(op.declined(reason)),
            Verdict::Approve => {
                self.open(&op, charge.capture);
                self.record(op)
            }
        }
    }

    /// Holds an approved charge's money: a one-step charge is its own capture, under its id.
    fn open(&mut self, op: &Operation, captured: bool) {
        let authorization = Authorization {
            reference: op.reference.clone(),
            amount: op.money(),
            captured,
            voided: false,
        };
        self.authorizations.insert(op.gateway_id.clone(), authorization);
        if captured {
            self.hold_capture(op);
        }
    }

    fn hold_capture(&mut self, op: &Operation) {
        let capture = Capture {
            reference: op.reference.clone(),
            amount: op.money(),
            refunded_minor: 0,
        };
        self.captures.insert(op.gateway_id.clone(), capture);
    }

    fn capture(&mut self, request: &FollowUp, key: &str) -> Answer {
        let Some(authorization) = self.authorizations.get_mut(&request.reference) else {
            return unknown(&request.reference);
        };
        let refusal = authorization.refuses_capture(&request.amount);
        authorization.captured |= refusal.is_none();
        let reference = authorization.reference.clone();
        let id = self.new_id("cp");
        let op = Operation::approved(OperationKind::Capture, reference, &request.amount, key, id);
        match refusal {
            Some(reason) => self.record(op.declined(reason)),
            None => {
                self.hold_capture(&op);
                self.record(op)
            }
        }
    }

    fn refund(&mut self, request: &FollowUp, key: &str) -> Answer {
        let Some(capture) = self.captures.get_mut(&request.reference) else {
            return unknown(&request.reference);
        };
        let refusal = capture.refuses_refund(&request.amount);
        if refusal.is_none() {
            capture.refunded_minor += request.amount.minor;
        }
        let reference = capture.reference.clone();
        let id = self.new_id("re");
        let op = Operation::approved(OperationKind::Refund, reference, &request.amount, key, id);
        self.record(match refusal {
            Some(reason) => op.declined(reason),
            None => op,
        })
    }

    fn void(&mut self, request: &FollowUp, key: &str) -> Answer {
        let Some(authorization) = self.authorizations.get_mut(&request.reference) else {
            return unknown(&request.reference);
        };
        let refusal = authorization.refuses_void();
        authorization.voided |= refusal.is_none();
        let reference = authorization.reference.clone();
        let id = self.new_id("vd");
        let op = Operation::approved(OperationKind::Void, reference, &request.amount, key, id);
        self.record(match refusal {
            Some(reason) => op.declined(reason),
            None => op,
        })
    }
}

/// A follow-up naming no id this gateway answered: payment-svc sent the wrong reference.
fn unknown(reference: &str) -> Answer {
    Answer::error(StatusCode::NOT_FOUND, &format!("no charge or capture {reference:?}"))
}

#[cfg(test)]
mod tests {
    use payment_svc::gateway::{
        Amount, ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, HttpGateway, HttpGatewayConfig,
        PaymentGateway,
    };

    use super::*;

    /// payment-svc's real adapter, with short backoffs so retries do not slow the tests.
    fn adapter(gateway: &RecordingGateway) -> HttpGateway {
        let mut config = HttpGatewayConfig::new(gateway.url());
        config.base_backoff = Duration::from_millis(5);
        HttpGateway::new(config).expect("HTTP gateway adapter")
    }

    fn order() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    fn eur(minor: i64) -> Amount {
        Amount {
            minor,
            currency: "EUR".into(),
        }
    }

    fn charge(order: &str, token: &str, key: &str, capture: bool) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            amount: eur(1999),
            payment_method_token: token.into(),
            reference: order.into(),
            capture,
        }
    }

    fn follow_up(gateway_reference: &str, key: &str, minor: i64) -> FollowUpRequest {
        FollowUpRequest {
            idempotency_key: key.into(),
            gateway_reference: gateway_reference.into(),
            amount: eur(minor),
        }
    }

    fn approved_id(outcome: Result<GatewayOutcome, GatewayError>) -> String {
        match outcome {
            Ok(GatewayOutcome::Approved { gateway_reference }) => gateway_reference,
            other => panic!("expected an approval, got {other:?}"),
        }
    }

    fn declined(reason: &str) -> Result<GatewayOutcome, GatewayError> {
        Ok(GatewayOutcome::Declined { reason: reason.into() })
    }

    #[tokio::test]
    async fn an_approved_capture_is_recorded_once_when_its_first_answer_is_lost() {
        let gateway = RecordingGateway::start().await;
        let order = order();
        gateway.fail_next(1, StatusCode::SERVICE_UNAVAILABLE);

        let id = approved_id(
            adapter(&gateway)
                .charge(&charge(&order, "tok_approved", "k1", true))
                .await,
        );

        assert_eq!(gateway.requests(), 2, "the adapter retried after the 503");
        assert_eq!(gateway.captures_of(&order), 1);
        let record = gateway.record();
        assert_eq!(record.len(), 1);
        assert_eq!(record[0].kind, OperationKind::Capture);
        assert_eq!(
            (record[0].gateway_id.as_str(), record[0].idempotency_key.as_str()),
            (id.as_str(), "k1")
        );
        assert_eq!((record[0].amount_minor, record[0].currency.as_str()), (1999, "EUR"));
        assert!(record[0].approved);
        assert!(gateway.captured_more_than_once().is_empty());
        assert_eq!(gateway.rejections(), 0);
    }

    #[tokio::test]
    async fn a_declined_token_records_no_capture() {
        let gateway = RecordingGateway::start().await;
        let adapter = adapter(&gateway);
        let cases = [
            ("tok_declined", "card_declined"),
            ("tok_insufficient_funds", "insufficient_funds"),
            ("tok_unknown", "invalid_payment_method"),
        ];
        for (token, reason) in cases {
            let order = order();
            assert_eq!(
                adapter.charge(&charge(&order, token, token, true)).await,
                declined(reason)
            );
            assert_eq!(gateway.captures_of(&order), 0);
            assert_eq!(gateway.summary_of(&order).declines, 1);
        }
        assert!(gateway.record().iter().all(|op| !op.approved));
    }

    #[tokio::test]
    async fn a_refund_is_recorded_against_its_order() {
        let gateway = RecordingGateway::start().await;
        let adapter = adapter(&gateway);
        let order = order();
        let charged = approved_id(adapter.charge(&charge(&order, "tok_approved", "c", true)).await);

        approved_id(adapter.refund(&follow_up(&charged, "r1", 500)).await);
        let too_much = adapter.refund(&follow_up(&charged, "r2", 1999)).await;

        assert_eq!(too_much, declined("amount_exceeds_captured"));
        assert_eq!(gateway.refunds_of(&order), 1);
        let summary = gateway.summary_of(&order);
        assert_eq!((summary.captured_minor, summary.refunded_minor), (1999, 500));
        assert_eq!(gateway.references(), vec![order]);
    }

    #[tokio::test]
    async fn follow_ups_of_a_two_step_payment_are_recorded_against_the_order() {
        let gateway = RecordingGateway::start().await;
        let adapter = adapter(&gateway);
        let order = order();
        let authorized = approved_id(adapter.charge(&charge(&order, "tok_approved_2step", "a", false)).await);
        gateway.fail_next(1, StatusCode::BAD_GATEWAY);
        let captured = approved_id(adapter.capture(&follow_up(&authorized, "cp", 1500)).await);
        approved_id(adapter.refund(&follow_up(&captured, "re", 1500)).await);

        let late_void = adapter.void(&follow_up(&authorized, "vd", 1999)).await;

        assert_eq!(late_void, declined("already_captured"));
        let expected = Summary {
            authorizations: 1,
            captures: 1,
            captured_minor: 1500,
            refunds: 1,
            refunded_minor: 1500,
            voids: 0,
            declines: 1,
        };
        assert_eq!(gateway.summary_of(&order), expected);
        assert_eq!(gateway.totals().get("EUR"), Some(&expected));
    }

    #[tokio::test]
    async fn a_second_key_for_one_order_is_a_second_capture() {
        let gateway = RecordingGateway::start().await;
        let adapter = adapter(&gateway);
        let order = order();

        approved_id(adapter.charge(&charge(&order, "tok_approved", "first", true)).await);
        approved_id(adapter.charge(&charge(&order, "tok_approved", "second", true)).await);

        assert_eq!(gateway.captures_of(&order), 2);
        assert_eq!(gateway.captured_more_than_once(), vec![order]);
    }

    #[tokio::test]
    async fn a_slow_answer_is_performed_once_across_timeouts_and_retries() {
        let gateway = RecordingGateway::start().await;
        let mut config = HttpGatewayConfig::new(gateway.url());
        config.timeout = Duration::from_millis(100);
        config.max_attempts = 2;
        config.base_backoff = Duration::from_millis(5);
        let adapter = HttpGateway::new(config).expect("HTTP gateway adapter");
        let order = order();
        let request = charge(&order, "tok_approved", "slow", true);
        gateway.set_latency(Duration::from_millis(300));

        let timed_out = adapter.charge(&request).await;
        gateway.set_latency(Duration::ZERO);
        let id = approved_id(adapter.charge(&request).await);

        assert!(timed_out.unwrap_err().is_transient());
        assert_eq!(gateway.captures_of(&order), 1);
        assert_eq!(gateway.record()[0].gateway_id, id);
    }

    #[tokio::test]
    async fn a_key_reused_for_another_request_is_rejected() {
        let gateway = RecordingGateway::start().await;
        let adapter = adapter(&gateway);
        let order = order();
        approved_id(adapter.charge(&charge(&order, "tok_approved", "k", true)).await);

        let other = ChargeRequest {
            amount: eur(1),
            ..charge(&order, "tok_approved", "k", true)
        };
        let reused = adapter.charge(&other).await;

        assert!(matches!(reused, Err(GatewayError::Rejected(_))), "{reused:?}");
        assert_eq!(gateway.rejections(), 1);
        assert_eq!(gateway.captures_of(&order), 1);
    }

    #[tokio::test]
    async fn a_gateway_error_token_is_transient_and_records_nothing() {
        let gateway = RecordingGateway::start().await;
        let order = order();

        let failed = adapter(&gateway)
            .charge(&charge(&order, "tok_gateway_error", "e", true))
            .await;

        assert!(failed.unwrap_err().is_transient());
        assert_eq!(gateway.requests(), 4, "every attempt was answered 503");
        assert!(gateway.record().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_reference_is_rejected_and_recorded_nowhere() {
        let gateway = RecordingGateway::start().await;

        let refund = adapter(&gateway).refund(&follow_up("ch_404", "r", 100)).await;

        assert!(matches!(refund, Err(GatewayError::Rejected(_))), "{refund:?}");
        assert_eq!(gateway.rejections(), 1);
        assert!(gateway.references().is_empty());
    }
}
