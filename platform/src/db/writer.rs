//! One writer at a time per SQLite file in this process.
//!
//! SQLite has one write lock per database file. When two connections want it, the one that
//! loses does not queue: it sleeps in SQLite's busy handler (1, 2, 5, … up to 100 ms a try) and
//! tries again. Under concurrent writes — intake, every consumer and the relay of a service —
//! the process then spends its time asleep while the lock is free, and throughput collapses
//! into a convoy. So a writer first takes its turn here (first come, first served), and only then
//! a pooled connection and `BEGIN IMMEDIATE`: inside the process the lock is never contended,
//! and a waiting writer holds no connection that readers need. (Another process writing the
//! same file still meets the busy handler; the embedded profile runs in one process.)

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::SqlitePool;
use tokio::sync::OwnedMutexGuard;

/// The right to write a SQLite file, held from `BEGIN IMMEDIATE` to commit or rollback.
#[derive(Debug)]
pub struct WriteTurn(#[allow(dead_code)] OwnedMutexGuard<()>);

/// One gate per database file, shared by every pool of this process on that file.
static GATES: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// Keyed by the file's [`super::identity`]; two spellings of one file would only fall back to
/// SQLite's busy handler between them, never to a wrong result.
fn gate(pool: &SqlitePool) -> Arc<tokio::sync::Mutex<()>> {
    let mut gates = GATES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    gates.entry(super::sqlite_identity(pool)).or_default().clone()
}

/// Waits for this process's turn to write `pool`'s file.
pub async fn turn(pool: &SqlitePool) -> WriteTurn {
    WriteTurn(gate(pool).lock_owned().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    async fn pool(path: &std::path::Path) -> SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        SqlitePoolOptions::new().connect_with(options).await.unwrap()
    }

    #[tokio::test]
    async fn pools_of_one_file_share_a_turn_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            pool(&dir.path().join("a.db")).await,
            pool(&dir.path().join("a.db")).await,
        );
        let other = pool(&dir.path().join("b.db")).await;
        let held = turn(&a).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), turn(&b)).await;
        assert!(
            waiting.is_err(),
            "a second pool on the same file got a turn while one was held"
        );
        tokio::time::timeout(std::time::Duration::from_millis(50), turn(&other))
            .await
            .expect("another file has its own turn");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_millis(50), turn(&b))
            .await
            .expect("the turn passes on once released");
    }
}
