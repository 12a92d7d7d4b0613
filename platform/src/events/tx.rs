//! [`Tx`]: a database transaction of either backend, in which services write their effects,
//! enqueue outgoing events and (in handlers) the inbox row is recorded.

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use super::envelope::OutgoingEvent;
use super::outbox;
use crate::db::Database;

/// The backend-specific transaction inside a [`Tx`].
#[derive(Debug)]
pub enum TxConn {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// A transaction on the service's [`Database`]. Services run their own SQL through
/// [`Tx::conn`] (match on the backend) or [`Tx::postgres`]/[`Tx::sqlite`]:
///
/// ```ignore
/// match tx.conn() {
///     TxConn::Postgres(c) => sqlx::query("UPDATE …").execute(&mut **c).await?,
///     TxConn::Sqlite(c) => sqlx::query("UPDATE …").execute(&mut **c).await?,
/// };
/// tx.enqueue(&event).await?;
/// tx.commit().await?;
/// ```
pub struct Tx {
    conn: TxConn,
    enqueued: usize,
    /// Run in order after a successful commit; dropped on rollback.
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("conn", &self.conn)
            .field("enqueued", &self.enqueued)
            .field("after_commit", &self.after_commit.len())
            .finish()
    }
}

impl Tx {
    /// Begins a transaction (on SQLite `BEGIN IMMEDIATE`: writers queue for the single write lock).
    pub async fn begin(db: &Database) -> Result<Self, sqlx::Error> {
        let conn = match db {
            Database::Postgres(pool) => TxConn::Postgres(pool.begin().await?),
            // IMMEDIATE: take the write lock up front, so a transaction that reads before it
            // writes waits (busy_timeout) instead of failing to upgrade under concurrency.
            Database::Sqlite(pool) => TxConn::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Self {
            conn,
            enqueued: 0,
            after_commit: Vec::new(),
        })
    }

    pub fn conn(&mut self) -> &mut TxConn {
        &mut self.conn
    }

    /// The PostgreSQL connection, if this is a PostgreSQL transaction.
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.conn {
            TxConn::Postgres(tx) => Some(&mut **tx),
            TxConn::Sqlite(_) => None,
        }
    }

    /// The SQLite connection, if this is an SQLite transaction.
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.conn {
            TxConn::Sqlite(tx) => Some(&mut **tx),
            TxConn::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, TxConn::Postgres(_))
    }

    /// Inserts `event` into the outbox of this transaction: it is published after (and only if)
    /// the transaction commits.
    pub async fn enqueue(&mut self, event: &OutgoingEvent) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            TxConn::Postgres(tx) => outbox::enqueue_pg(tx, event).await?,
            TxConn::Sqlite(tx) => outbox::enqueue_sqlite(tx, event).await?,
        }
        self.enqueued += 1;
        Ok(())
    }

    /// Runs `hook` once this transaction has committed (never if it rolls back or the commit
    /// fails): work that must only follow a durable change, such as waking a live feed, without
    /// anyone polling the store to find out.
    pub fn after_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(hook));
    }

    /// Commits, then wakes the relays of this process if events were enqueued (PostgreSQL relays
    /// are also woken by NOTIFY, which is delivered on commit), then runs the
    /// [`Tx::after_commit`] hooks in the order they were added.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn {
            TxConn::Postgres(tx) => tx.commit().await?,
            TxConn::Sqlite(tx) => tx.commit().await?,
        }
        if self.enqueued > 0 {
            outbox::notify_committed();
        }
        for hook in self.after_commit {
            hook();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.conn {
            TxConn::Postgres(tx) => tx.rollback().await,
            TxConn::Sqlite(tx) => tx.rollback().await,
        }
    }
}
