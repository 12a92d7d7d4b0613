//! [`Tx`]: a database transaction of either backend, in which services write their effects,
//! enqueue outgoing events and (in handlers) the inbox row is recorded.
//!
//! A transaction may be begun lazily ([`Tx::lazy`]): it begins on its first statement. Event
//! handlers get such a one, so the remote calls they make before their first write hold no
//! transaction — on SQLite a transaction is the database's one write lock, and a lock held
//! across a network call stalls every other writer of the file.

use sqlx::{PgConnection, Postgres, Sqlite, Transaction};

use super::envelope::OutgoingEvent;
use super::outbox;
use crate::db::Database;
use crate::db::writer::{self, WriteTurn};

/// The backend-specific transaction inside a [`Tx`].
#[derive(Debug)]
pub enum TxConn {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// A transaction on the service's [`Database`]. Services run their own SQL through
/// [`crate::on_tx!`] or [`Tx::conn`] (match on the backend):
///
/// ```ignore
/// match tx.conn().await? {
///     TxConn::Postgres(c) => sqlx::query("UPDATE …").execute(&mut **c).await?,
///     TxConn::Sqlite(c) => sqlx::query("UPDATE …").execute(&mut **c).await?,
/// };
/// tx.enqueue(&event).await?;
/// tx.commit().await?;
/// ```
pub struct Tx {
    db: Database,
    /// `None` until the transaction has begun.
    conn: Option<TxConn>,
    /// On SQLite, this process's turn to write the file, held while the transaction is open.
    turn: Option<WriteTurn>,
    /// Times the connection was handed out (statements run, roughly): tells a caller whether a
    /// step of its own ran anything in a transaction that others share.
    uses: u64,
    /// Names recorded by [`Tx::first_in_transaction`] since the transaction began.
    done: Vec<&'static str>,
    enqueued: usize,
    /// Run in order after a successful commit; dropped on rollback.
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("begun", &self.conn.is_some())
            .field("enqueued", &self.enqueued)
            .field("after_commit", &self.after_commit.len())
            .finish()
    }
}

impl Tx {
    /// Begins a transaction now (on SQLite `BEGIN IMMEDIATE`: writers queue for the single
    /// write lock).
    pub async fn begin(db: &Database) -> Result<Self, sqlx::Error> {
        let mut tx = Self::lazy(db);
        tx.conn().await?;
        Ok(tx)
    }

    /// A transaction that begins on its first statement (or enqueued event).
    pub fn lazy(db: &Database) -> Self {
        Self {
            db: db.clone(),
            conn: None,
            turn: None,
            uses: 0,
            done: Vec::new(),
            enqueued: 0,
            after_commit: Vec::new(),
        }
    }

    /// The transaction's connection, beginning the transaction if it has not begun.
    pub async fn conn(&mut self) -> Result<&mut TxConn, sqlx::Error> {
        self.uses += 1;
        if self.conn.is_none() {
            self.conn = Some(match &self.db {
                Database::Postgres(pool) => TxConn::Postgres(pool.begin().await?),
                // The process's turn first (see `db::writer`), then IMMEDIATE: the write lock up
                // front, so a transaction that reads before it writes never fails to upgrade.
                Database::Sqlite(pool) => {
                    let turn = writer::turn(pool).await;
                    let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    self.turn = Some(turn);
                    TxConn::Sqlite(tx)
                }
            });
        }
        Ok(self.conn.as_mut().expect("begun above"))
    }

    /// The PostgreSQL connection, if this is a PostgreSQL transaction (begun if need be).
    pub async fn postgres(&mut self) -> Result<Option<&mut PgConnection>, sqlx::Error> {
        Ok(match self.conn().await? {
            TxConn::Postgres(tx) => Some(&mut **tx),
            TxConn::Sqlite(_) => None,
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Database::Postgres(_))
    }

    /// Whether a statement has run (the transaction has begun).
    pub fn is_begun(&self) -> bool {
        self.conn.is_some()
    }

    /// How many times the connection has been handed out so far ([`Tx::conn`]): unchanged
    /// across a step means the step ran nothing in this transaction.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    /// `true` the first time `what` is asked for in this transaction, `false` after: for work
    /// done once per transaction, such as taking a transaction-scoped lock, when several
    /// handlers' writes share it (see [`crate::events::EventHandler::shares_transactions`]).
    pub fn first_in_transaction(&mut self, what: &'static str) -> bool {
        if self.done.contains(&what) {
            return false;
        }
        self.done.push(what);
        true
    }

    /// Ends a transaction that has only read, so that the caller can make a network call
    /// without holding it; the next statement begins a new one. Refused once the transaction
    /// has enqueued events (nothing written may be dropped silently: a store write, too, must
    /// come after the network call).
    pub async fn release(&mut self) -> Result<(), sqlx::Error> {
        if self.enqueued > 0 {
            return Err(sqlx::Error::Protocol(
                "a transaction that enqueued events cannot be released".into(),
            ));
        }
        let rolled_back = match self.conn.take() {
            Some(TxConn::Postgres(tx)) => tx.rollback().await,
            Some(TxConn::Sqlite(tx)) => tx.rollback().await,
            None => Ok(()),
        };
        self.turn = None;
        self.done.clear();
        rolled_back
    }

    /// Inserts `event` into the outbox of this transaction: it is published after (and only if)
    /// the transaction commits.
    pub async fn enqueue(&mut self, event: &OutgoingEvent) -> Result<(), sqlx::Error> {
        match self.conn().await? {
            TxConn::Postgres(tx) => outbox::enqueue_pg(tx, event).await?,
            TxConn::Sqlite(tx) => outbox::enqueue_sqlite(tx, event).await?,
        }
        self.enqueued += 1;
        Ok(())
    }

    /// The database this transaction writes.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `hook` once this transaction has committed (never if it rolls back or the commit
    /// fails): work that must only follow a durable change, such as waking a live feed, without
    /// anyone polling the store to find out.
    pub fn after_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(hook));
    }

    /// Commits (a transaction that never began has nothing to commit), then wakes the relays of
    /// this database in this process if events were enqueued (on PostgreSQL, one NOTIFY sent
    /// before the commit wakes those of other processes when it commits), then runs the [`Tx::after_commit`] hooks in the order they were
    /// added.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn {
            Some(TxConn::Postgres(mut tx)) => {
                if self.enqueued > 0 {
                    outbox::signal_pg(&mut tx).await?;
                }
                tx.commit().await?
            }
            Some(TxConn::Sqlite(tx)) => tx.commit().await?,
            None => {}
        }
        drop(self.turn);
        if self.enqueued > 0 {
            outbox::notify_committed(&self.db);
        }
        for hook in self.after_commit {
            hook();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.conn {
            Some(TxConn::Postgres(tx)) => tx.rollback().await,
            Some(TxConn::Sqlite(tx)) => tx.rollback().await,
            None => Ok(()),
        }
    }
}
