//! The payment use cases: idempotent authorize/capture/void/refund around the gateway, and the
//! refund of a cancelled order. Calls the gateway OUTSIDE database transactions:
//!
//! 1. **Intent**: in one transaction, the idempotency key is looked up (a repeat with the same
//!    request returns the first result, or resumes it if its outcome is still unknown; another
//!    request with the same key is FAILED_PRECONDITION) and a PENDING transaction row (plus the
//!    PENDING payment or refund) is committed.
//! 2. **Gateway**: the operation is sent with the caller's idempotency key, so the gateway
//!    performs it at most once however often it is sent.
//! 3. **Outcome**: in one transaction, the transaction row, the payment (and refund) and the
//!    outbox event are written. A transient gateway error writes nothing and is UNAVAILABLE: the
//!    caller retries with the same key, which resumes at step 2. A crash between steps 2 and 3
//!    is recovered the same way.
//!
//! The event consumer ([`crate::events`]) runs the three steps inside its handler's transaction
//! instead (see [`Payments::refund_cancelled_order`]).

use std::sync::Arc;

use ordermesh_platform::convert::now;
use ordermesh_platform::events::{HandlerError, Tx};
use ordermesh_platform::{Actor, ServiceError};
use uuid::Uuid;

use crate::domain::{
    self, Authorize, FollowUp, Outcome, Payment, PaymentFilter, PaymentStatus, PaymentView, Refund, RefundStatus,
    Settlement, Transaction, TransactionKind, TransactionStatus,
};
use crate::events;
use crate::gateway::{Amount, ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, PaymentGateway};
use crate::store::Store;

/// Idempotency key of the refund of a cancelled order (the consumer of `order-events`).
pub fn cancel_refund_key(order_id: Uuid) -> String {
    format!("order-{order_id}-cancel-refund")
}

/// Idempotency key the order saga uses to charge an order.
pub fn charge_key(order_id: Uuid) -> String {
    format!("order-{order_id}-charge")
}

pub struct Payments {
    store: Store,
    gateway: Arc<dyn PaymentGateway>,
}

/// Where step 1 left an operation.
enum Started {
    /// The key's operation is finished: its result is returned as is.
    Done(Transaction),
    /// The operation is PENDING: send it to the gateway.
    Pending(Transaction),
    /// Nothing to do: the payment is already where the operation would take it (a void of a
    /// VOIDED payment returns it unchanged).
    Unchanged(Uuid),
}

fn resume_or_done(existing: Transaction, kind: TransactionKind, hash: &str) -> Result<Started, ServiceError> {
    if existing.kind != kind || existing.request_hash != hash {
        return Err(domain::key_reused());
    }
    Ok(if existing.status == TransactionStatus::Pending {
        Started::Pending(existing)
    } else {
        Started::Done(existing)
    })
}

fn order_has_payment() -> ServiceError {
    ServiceError::AlreadyExists {
        resource: "payment",
        field: "order_id",
    }
}

/// The gateway's answer as an outcome to record, or UNAVAILABLE when it is not known.
fn outcome_of(result: Result<GatewayOutcome, GatewayError>) -> Result<Outcome, GatewayError> {
    match result {
        Ok(GatewayOutcome::Approved { gateway_reference }) => Ok(Outcome::Approved { gateway_reference }),
        Ok(GatewayOutcome::Declined { reason }) => Ok(Outcome::Declined { reason }),
        Err(GatewayError::Rejected(message)) => {
            tracing::error!(%message, "payment gateway rejected the request");
            Ok(Outcome::Failed {
                reason: "gateway_rejected".into(),
            })
        }
        Err(error) => Err(error),
    }
}

fn unavailable(error: GatewayError) -> ServiceError {
    tracing::warn!(%error, "payment gateway unavailable");
    ServiceError::Unavailable(format!(
        "{error}; nothing was recorded as declined, retry with the same idempotency key"
    ))
}

impl Payments {
    pub fn new(store: Store, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { store, gateway }
    }

    /// Revenue in `range`: per day and currency, and the range's totals per currency.
    pub async fn revenue(
        &self,
        range: &ordermesh_platform::analytics::DayRange,
    ) -> Result<(Vec<crate::domain::DayRevenue>, Vec<crate::domain::DayRevenue>), ServiceError> {
        let rows = self.store.revenue(range).await?;
        Ok(crate::domain::revenue_by_day(&rows))
    }

    pub async fn get(&self, id: Uuid) -> Result<PaymentView, ServiceError> {
        self.store
            .get_payment(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", id))
    }

    pub async fn list(
        &self,
        filter: &PaymentFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PaymentView>, ServiceError> {
        Ok(self.store.list_payments(filter, after, limit).await?)
    }

    /// AuthorizePayment (with `capture`: a one-step charge). Idempotent by key. An order has at
    /// most one payment that is not DECLINED or FAILED: another key for it is ALREADY_EXISTS,
    /// so an order is never charged twice.
    pub async fn authorize(&self, cmd: &Authorize, correlation_id: &str) -> Result<PaymentView, ServiceError> {
        let hash = cmd.hash();
        let transaction = match self.start_authorize(cmd, &hash).await? {
            Started::Done(t) => return self.get(t.payment_id).await,
            Started::Unchanged(id) => return self.get(id).await,
            Started::Pending(t) => t,
        };
        let request = ChargeRequest {
            idempotency_key: cmd.idempotency_key.clone(),
            amount: Amount {
                minor: cmd.amount.amount_minor,
                currency: cmd.amount.currency_code.clone(),
            },
            payment_method_token: cmd.payment_method_token.clone(),
            reference: cmd.order_id.to_string(),
            capture: cmd.capture,
        };
        let outcome = outcome_of(self.gateway.charge(&request).await).map_err(unavailable)?;
        self.settle(transaction.id, &outcome, "", correlation_id).await?;
        self.get(transaction.payment_id).await
    }

    async fn start_authorize(&self, cmd: &Authorize, hash: &str) -> Result<Started, ServiceError> {
        let db = self.store.database();
        for attempt in 0.. {
            let mut tx = Tx::begin(db).await?;
            if let Some(existing) = self.store.transaction_by_key(&mut tx, &cmd.idempotency_key).await? {
                tx.rollback().await?;
                return resume_or_done(existing, TransactionKind::Authorize, hash);
            }
            if self
                .store
                .active_payment_for_order(&mut tx, cmd.order_id)
                .await?
                .is_some()
            {
                tx.rollback().await?;
                return Err(order_has_payment());
            }
            let now = now();
            let payment = Payment {
                id: Uuid::now_v7(),
                order_id: cmd.order_id,
                customer_id: cmd.customer_id,
                amount: cmd.amount.clone(),
                captured_minor: 0,
                refunded_minor: 0,
                status: PaymentStatus::Pending,
                decline_reason: String::new(),
                gateway_reference: String::new(),
                create_time: now,
                update_time: now,
            };
            let transaction = Transaction {
                id: Uuid::now_v7(),
                payment_id: payment.id,
                kind: TransactionKind::Authorize,
                amount_minor: cmd.amount.amount_minor,
                status: TransactionStatus::Pending,
                gateway_reference: String::new(),
                failure_reason: String::new(),
                idempotency_key: Some(cmd.idempotency_key.clone()),
                request_hash: hash.to_owned(),
                capture: cmd.capture,
                refund_id: None,
                create_time: now,
                update_time: now,
            };
            let mut written = self.store.insert_payment(&mut tx, &payment).await;
            if written.is_ok() {
                written = self.store.insert_transaction(&mut tx, &transaction).await;
            }
            match written {
                Ok(()) => {
                    tx.commit().await?;
                    return Ok(Started::Pending(transaction));
                }
                // A concurrent request took the key or the order first: look again.
                Err(ServiceError::AlreadyExists { .. }) if attempt < 2 => {
                    tx.rollback().await?;
                }
                Err(error) => {
                    tx.rollback().await?;
                    return Err(error);
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// CapturePayment, VoidPayment or RefundPayment, idempotent by key. Returns the payment and,
    /// for a refund, the refund.
    pub async fn follow_up(
        &self,
        op: &FollowUp,
        actor: &Actor,
        correlation_id: &str,
    ) -> Result<(PaymentView, Option<Refund>), ServiceError> {
        let hash = op.hash();
        let mut tx = Tx::begin(self.store.database()).await?;
        let started = match self.start_follow_up(&mut tx, op, &hash, actor).await {
            Ok(started) => {
                tx.commit().await?;
                started
            }
            Err(error) => {
                tx.rollback().await?;
                return Err(error);
            }
        };
        let transaction = match started {
            Started::Done(t) => return self.result_of(&t).await,
            Started::Unchanged(id) => return Ok((self.get(id).await?, None)),
            Started::Pending(t) => t,
        };
        let request = self.gateway_request(&transaction).await?;
        let outcome = outcome_of(self.call(transaction.kind, &request).await).map_err(unavailable)?;
        self.settle(transaction.id, &outcome, &op.reason, correlation_id)
            .await?;
        self.result_of(&transaction).await
    }

    async fn result_of(&self, t: &Transaction) -> Result<(PaymentView, Option<Refund>), ServiceError> {
        let view = self.get(t.payment_id).await?;
        let refund = t
            .refund_id
            .and_then(|id| view.refunds.iter().find(|r| r.id == id).cloned());
        Ok((view, refund))
    }

    async fn call(&self, kind: TransactionKind, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        match kind {
            TransactionKind::Capture => self.gateway.capture(request).await,
            TransactionKind::Void => self.gateway.void(request).await,
            TransactionKind::Refund => self.gateway.refund(request).await,
            TransactionKind::Authorize => Err(GatewayError::Rejected("authorize is not a follow-up".into())),
        }
    }

    /// Step 1 of a follow-up operation, in `tx`.
    async fn start_follow_up(
        &self,
        tx: &mut Tx,
        op: &FollowUp,
        hash: &str,
        actor: &Actor,
    ) -> Result<Started, ServiceError> {
        if let Some(existing) = self.store.transaction_by_key(tx, &op.idempotency_key).await? {
            return resume_or_done(existing, op.kind, hash);
        }
        let payment = self
            .store
            .lock_payment(tx, op.payment_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", op.payment_id))?;
        if op.kind == TransactionKind::Void && payment.status == PaymentStatus::Voided {
            return Ok(Started::Unchanged(payment.id));
        }
        let transactions = self.store.transactions_of(tx, payment.id).await?;
        let amount = domain::check_follow_up(op, &payment, &transactions)?;
        let now = now();
        let refund = (op.kind == TransactionKind::Refund).then(|| Refund {
            id: Uuid::now_v7(),
            payment_id: payment.id,
            amount_minor: amount,
            reason: op.reason.clone(),
            status: RefundStatus::Pending,
            gateway_reference: String::new(),
            requested_by: actor.clone(),
            create_time: now,
            update_time: now,
        });
        let transaction = Transaction {
            id: Uuid::now_v7(),
            payment_id: payment.id,
            kind: op.kind,
            amount_minor: amount,
            status: TransactionStatus::Pending,
            gateway_reference: String::new(),
            failure_reason: String::new(),
            idempotency_key: Some(op.idempotency_key.clone()),
            request_hash: hash.to_owned(),
            capture: false,
            refund_id: refund.as_ref().map(|r| r.id),
            create_time: now,
            update_time: now,
        };
        if let Some(refund) = &refund {
            self.store.insert_refund(tx, refund).await?;
        }
        self.store
            .insert_transaction(tx, &transaction)
            .await
            .map_err(|error| match error {
                ServiceError::AlreadyExists { .. } => {
                    ServiceError::Aborted("a concurrent request used the same idempotency key; retry with it".into())
                }
                other => other,
            })?;
        Ok(Started::Pending(transaction))
    }

    /// The gateway request of a PENDING follow-up: captures and voids refer to the
    /// authorisation, refunds to the capture.
    async fn gateway_request(&self, t: &Transaction) -> Result<FollowUpRequest, ServiceError> {
        let view = self.get(t.payment_id).await?;
        Ok(follow_up_request(&view.payment, &view.transactions, t))
    }

    /// Step 3 in its own transaction.
    async fn settle(
        &self,
        transaction_id: Uuid,
        outcome: &Outcome,
        void_reason: &str,
        correlation_id: &str,
    ) -> Result<(), ServiceError> {
        let mut tx = Tx::begin(self.store.database()).await?;
        match self
            .settle_in(&mut tx, transaction_id, outcome, void_reason, correlation_id)
            .await
        {
            Ok(Some(_)) => tx.commit().await?,
            // Settled meanwhile by a concurrent repeat: its result stands.
            Ok(None) => tx.rollback().await?,
            Err(error) => {
                tx.rollback().await?;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Step 3 in `tx`: records `outcome` of the PENDING transaction, the new state of its
    /// payment (and refund) and the event. `None` if the transaction was settled already.
    async fn settle_in(
        &self,
        tx: &mut Tx,
        transaction_id: Uuid,
        outcome: &Outcome,
        void_reason: &str,
        correlation_id: &str,
    ) -> Result<Option<Settlement>, ServiceError> {
        let transaction = self
            .store
            .lock_transaction(tx, transaction_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("transaction", transaction_id))?;
        if transaction.status != TransactionStatus::Pending {
            return Ok(None);
        }
        let payment = self
            .store
            .lock_payment(tx, transaction.payment_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("payment", transaction.payment_id))?;
        let refund = match transaction.refund_id {
            Some(id) => self.store.refund(tx, id).await?,
            None => None,
        };
        let settlement = domain::settle(&payment, &transaction, refund.as_ref(), outcome, void_reason, now());
        self.store.update_transaction(tx, &settlement.transaction).await?;
        self.store.update_payment(tx, &settlement.payment).await?;
        if let Some(extra) = &settlement.extra {
            self.store.insert_transaction(tx, extra).await?;
        }
        if let Some(refund) = &settlement.refund {
            self.store.update_refund(tx, refund).await?;
        }
        if let Some(event) = &settlement.event {
            tx.enqueue(&events::outgoing(&settlement.payment, event, correlation_id))
                .await?;
        }
        Ok(Some(settlement))
    }

    /// The consumer's reaction to `OrderCancelled` of a paid order: refunds what remains
    /// refundable of the order's payment, with key `order-<order_id>-cancel-refund`, all in the
    /// handler's transaction `tx` (intent, gateway call, outcome and event). Exception to the
    /// rule above, on purpose: the handler's transaction already holds the inbox row, and the
    /// key is derived from the order, so a rollback or crash after the gateway call is
    /// recovered by the redelivery, which sends the same key again. Idempotent: a repeat finds
    /// the key's refund and does nothing; a payment with nothing left to refund is left alone.
    pub async fn refund_cancelled_order(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        payment_id: Option<Uuid>,
        actor: &Actor,
        reason: &str,
        correlation_id: &str,
    ) -> Result<(), HandlerError> {
        let key = cancel_refund_key(order_id);
        // Step 1, the refund's intent, commits on its own as in `follow_up`, so that no
        // transaction is held across the gateway call; a redelivery resumes it by its key. The
        // outcome then commits in the handler's transaction, with the inbox row.
        let mut intent = Tx::begin(self.store.database()).await?;
        let payment = match payment_id {
            Some(id) => self.store.lock_payment(&mut intent, id).await,
            None => self.store.active_payment_for_order(&mut intent, order_id).await,
        }?;
        let Some(payment) = payment else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "order {order_id} was paid but payment-svc has no payment for it"
            )));
        };
        let reason: String = format!("order cancelled: {reason}")
            .chars()
            .take(domain::MAX_REASON_LEN)
            .collect();
        let op = FollowUp {
            kind: TransactionKind::Refund,
            payment_id: payment.id,
            amount: None,
            reason,
            idempotency_key: key,
        };
        let hash = op.hash();
        let transaction = match self.start_follow_up(&mut intent, &op, &hash, actor).await {
            Ok(Started::Pending(t)) => t,
            Ok(Started::Done(_) | Started::Unchanged(_)) => return Ok(()),
            Err(ServiceError::FailedPrecondition { message, .. }) => {
                tracing::info!(%order_id, %message, "cancelled order: nothing to refund");
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let transactions = self.store.transactions_of(&mut intent, payment.id).await?;
        intent.commit().await?;
        let request = follow_up_request(&payment, &transactions, &transaction);
        // The gateway's answer is unknown: the redelivery sends the same key again.
        let outcome = outcome_of(self.gateway.refund(&request).await).map_err(HandlerError::transient)?;
        if let Outcome::Declined { reason } | Outcome::Failed { reason } = &outcome {
            tracing::error!(%order_id, %reason, "refund of a cancelled order was refused by the gateway");
        }
        self.settle_in(tx, transaction.id, &outcome, "", correlation_id).await?;
        Ok(())
    }
}

fn follow_up_request(payment: &Payment, transactions: &[Transaction], t: &Transaction) -> FollowUpRequest {
    let gateway_reference = match t.kind {
        TransactionKind::Refund => transactions
            .iter()
            .rev()
            .find(|c| c.kind == TransactionKind::Capture && c.status == TransactionStatus::Succeeded)
            .map(|c| c.gateway_reference.clone())
            .unwrap_or_else(|| payment.gateway_reference.clone()),
        _ => payment.gateway_reference.clone(),
    };
    FollowUpRequest {
        idempotency_key: t.idempotency_key.clone().unwrap_or_default(),
        gateway_reference,
        amount: Amount {
            minor: t.amount_minor,
            currency: payment.amount.currency_code.clone(),
        },
    }
}
