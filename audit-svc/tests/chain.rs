//! The audit chain in the store, on both backends (a fresh PostgreSQL database and an SQLite
//! file per test): entries link into one chain, concurrent appends (also from two "instances",
//! i.e. two pools on one database) keep it one contiguous chain, appends are idempotent per event
//! id, the database refuses UPDATE and DELETE, and a row changed or deleted behind the
//! application's back (after disabling the guard trigger, as the table owner can) is reported by
//! the verification as the first broken entry.

use audit_svc::domain::{Entry, NewEntry};
use audit_svc::store;
use audit_svc::store::Store;
use chrono::Utc;
use ordermesh_platform::Actor;
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The store on `db` (a clone of the pool).
fn chain(db: &Database) -> Store {
    Store::new(db)
}

async fn open(db: &TestDatabase) -> Database {
    let database = Database::connect(db.url(), audit_svc::SERVICE).await.unwrap();
    database.migrate(&store::migrations()).await.unwrap();
    database
}

fn new_entry(n: usize, event_id: Option<String>) -> NewEntry {
    let mut details = Map::new();
    details.insert("n".into(), json!(n));
    details.insert("status".into(), json!("PENDING"));
    NewEntry {
        actor: Actor::service("order-svc"),
        action: "order.placed".into(),
        entity_type: "order".into(),
        entity_id: format!("order-{n}"),
        data_subject_id: Uuid::now_v7().to_string(),
        correlation_id: "corr-chain".into(),
        occur_time: Utc::now(),
        details,
        source_service: "order-svc".into(),
        event_id,
    }
}

async fn append_n(db: &Database, n: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    for i in 0..n {
        entries.push(
            chain(db)
                .append_one(&new_entry(i, Some(Uuid::now_v7().to_string())))
                .await
                .unwrap(),
        );
    }
    entries
}

/// Runs raw SQL as the database owner, bypassing the application's store.
async fn raw(db: &Database, sql: &str) -> Result<u64, sqlx::Error> {
    match db {
        Database::Postgres(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Database::Sqlite(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
}

/// Removes the append-only guard, as a table owner / superuser (or whoever can write the SQLite
/// file) could: the trigger guards against the application, the hash chain against everyone.
async fn disable_guard(db: &Database) {
    let sql = match db {
        Database::Postgres(_) => "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_update_delete",
        Database::Sqlite(_) => "DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete",
    };
    raw(db, sql).await.unwrap();
}

#[tokio::test]
async fn entries_link_into_one_chain() {
    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        let entries = append_n(&db, 5).await;
        let sequences: Vec<i64> = entries.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, [1, 2, 3, 4, 5]);
        assert_eq!(entries[0].previous_hash, vec![0u8; 32]);
        for pair in entries.windows(2) {
            assert_eq!(pair[1].previous_hash, pair[0].hash);
        }
        // What is stored is what was returned (round trip of every hashed field).
        let stored = chain(&db).range(1, 5, 10).await.unwrap();
        assert_eq!(stored, entries);
        let result = chain(&db).verify(None, None).await.unwrap();
        assert_eq!(result.broken, None, "{test_db:?}", test_db = test_db.url());
        assert_eq!(result.checked, 5);
        assert_eq!(result.last_sequence, 5);
        assert_eq!(result.last_hash, entries[4].hash);
        // A sub-range verifies from its predecessor's hash.
        let part = chain(&db).verify(Some(3), Some(4)).await.unwrap();
        assert_eq!((part.broken, part.checked, part.last_sequence), (None, 2, 4));
        // A closed range past the head is reported as missing entries.
        let beyond = chain(&db).verify(Some(1), Some(7)).await.unwrap();
        assert_eq!(beyond.broken.unwrap().sequence, 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_two_instances_keep_one_contiguous_chain() {
    for test_db in TestDatabase::both().await.unwrap() {
        // Two pools on one database: two service instances.
        let instances = [open(&test_db).await, open(&test_db).await];
        let mut tasks = Vec::new();
        for i in 0..50 {
            let db = instances[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                chain(&db)
                    .append_one(&new_entry(i, Some(Uuid::now_v7().to_string())))
                    .await
                    .unwrap()
            }));
        }
        let mut sequences = Vec::new();
        for task in tasks {
            sequences.push(task.await.unwrap().sequence);
        }
        sequences.sort();
        assert_eq!(sequences, (1..=50).collect::<Vec<i64>>(), "{}", test_db.url());
        let stored = chain(&instances[0]).range(1, 100, 100).await.unwrap();
        assert_eq!(stored.len(), 50);
        let result = chain(&instances[1]).verify(None, None).await.unwrap();
        assert_eq!(result.broken, None, "{}", test_db.url());
        assert_eq!((result.checked, result.last_sequence), (50, 50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_are_idempotent_per_event_id() {
    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        let event_id = Uuid::now_v7().to_string();
        let first = chain(&db)
            .append_one(&new_entry(1, Some(event_id.clone())))
            .await
            .unwrap();
        let again = chain(&db)
            .append_one(&new_entry(2, Some(event_id.clone())))
            .await
            .unwrap();
        assert_eq!(again, first);
        // Racing repeats of one event id: still one entry.
        let shared = Uuid::now_v7().to_string();
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (db, id) = (db.clone(), shared.clone());
                tokio::spawn(async move { chain(&db).append_one(&new_entry(i, Some(id))).await.unwrap() })
            })
            .collect();
        let mut sequences = Vec::new();
        for task in tasks {
            sequences.push(task.await.unwrap().sequence);
        }
        sequences.dedup();
        assert_eq!(sequences, [2]);
        // Entries without an event id are never merged.
        chain(&db).append_one(&new_entry(3, None)).await.unwrap();
        chain(&db).append_one(&new_entry(3, None)).await.unwrap();
        assert_eq!(chain(&db).head_sequence().await.unwrap(), 4);
        assert_eq!(chain(&db).by_event_id(&event_id).await.unwrap().unwrap(), first);
        assert!(chain(&db).verify(None, None).await.unwrap().broken.is_none());
    }
}

#[tokio::test]
async fn the_database_refuses_update_and_delete() {
    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        append_n(&db, 2).await;
        for sql in [
            "UPDATE audit_entries SET details = '{}' WHERE sequence = 1",
            "DELETE FROM audit_entries WHERE sequence = 2",
            "DELETE FROM audit_entries",
        ] {
            let error = raw(&db, sql).await.expect_err(sql).to_string();
            assert!(error.contains("append-only"), "{sql}: {error}");
        }
        if matches!(db, Database::Postgres(_)) {
            let error = raw(&db, "TRUNCATE audit_entries").await.unwrap_err().to_string();
            assert!(error.contains("append-only"), "{error}");
        }
        assert_eq!(chain(&db).head_sequence().await.unwrap(), 2);
        assert!(chain(&db).verify(None, None).await.unwrap().broken.is_none());
    }
}

#[tokio::test]
async fn a_changed_row_is_the_first_broken_entry() {
    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        let entries = append_n(&db, 6).await;
        disable_guard(&db).await;
        let changed = raw(
            &db,
            r#"UPDATE audit_entries SET details = '{"n":2,"status":"CANCELLED"}' WHERE sequence = 3"#,
        )
        .await
        .unwrap();
        assert_eq!(changed, 1);
        let result = chain(&db).verify(None, None).await.unwrap();
        let broken = result.broken.expect("a changed row breaks the chain");
        assert_eq!(broken.sequence, 3, "{}", test_db.url());
        assert_eq!(broken.id, entries[2].id.to_string());
        assert_eq!(broken.reason, "hash mismatch");
        assert_eq!(result.checked, 3);
        assert_eq!(result.last_sequence, 2);

        // Re-hashing the changed row to hide it moves the break to its successor, whose
        // previous_hash no longer matches.
        let mut forged: Entry = chain(&db).range(3, 3, 1).await.unwrap().remove(0);
        forged.hash = forged.compute_hash().to_vec();
        let sql = format!(
            "UPDATE audit_entries SET hash = {} WHERE sequence = 3",
            match db {
                Database::Postgres(_) => format!("'\\x{}'::bytea", hex::encode(&forged.hash)),
                Database::Sqlite(_) => format!("X'{}'", hex::encode(&forged.hash)),
            }
        );
        raw(&db, &sql).await.unwrap();
        let broken = chain(&db).verify(None, None).await.unwrap().broken.unwrap();
        assert_eq!((broken.sequence, broken.reason.as_str()), (4, "previous_hash mismatch"));
        assert_eq!(broken.id, entries[3].id.to_string());
    }
}

#[tokio::test]
async fn a_deleted_row_is_reported_as_a_gap() {
    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        append_n(&db, 5).await;
        disable_guard(&db).await;
        assert_eq!(
            raw(&db, "DELETE FROM audit_entries WHERE sequence = 2").await.unwrap(),
            1
        );
        let result = chain(&db).verify(None, None).await.unwrap();
        let broken = result.broken.expect("a deleted row breaks the chain");
        assert_eq!(broken.sequence, 2, "{}", test_db.url());
        assert!(broken.id.is_empty());
        assert!(broken.reason.starts_with("sequence gap"), "{}", broken.reason);
        // A range starting right after the hole cannot be anchored either.
        let broken = chain(&db).verify(Some(3), None).await.unwrap().broken.unwrap();
        assert_eq!(broken.sequence, 2);
    }
}

#[tokio::test]
async fn details_are_canonical_and_round_trip() {
    let test_db = TestDatabase::sqlite().unwrap();
    let db = open(&test_db).await;
    let mut entry = new_entry(1, None);
    let details: Value = serde_json::from_str(r#"{"z":1,"a":{"y":[2,{"k":true}],"b":"x"}}"#).unwrap();
    entry.details = details.as_object().unwrap().clone();
    let stored = chain(&db).append_one(&entry).await.unwrap();
    assert_eq!(stored.details, r#"{"a":{"b":"x","y":[2,{"k":true}]},"z":1}"#);
    assert_eq!(Value::Object(stored.details_value()), details);
}

/// There is no update or delete path in the code: no statement of the crate changes or removes
/// an audit entry (the database triggers refuse them anyway).
#[test]
fn no_update_or_delete_statement_in_the_code() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap().to_ascii_uppercase();
        let squashed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for forbidden in [
            "UPDATE AUDIT_ENTRIES",
            "TRUNCATE AUDIT_ENTRIES",
            "TRUNCATE TABLE",
            "DROP TRIGGER",
        ] {
            assert!(
                !squashed.contains(forbidden),
                "{} contains {forbidden:?}",
                path.display()
            );
        }
        // The one DELETE: archival, of verified entries behind the checkpoint it inserts first.
        let deletes = squashed.matches("DELETE FROM AUDIT_ENTRIES").count();
        if path.ends_with("store.rs") {
            assert_eq!(deletes, 1, "store.rs: only the archive deletes entries");
            let checkpoint = squashed
                .find("INSERT INTO AUDIT_CHECKPOINTS")
                .expect("the archive's checkpoint");
            assert!(checkpoint < squashed.find("DELETE FROM AUDIT_ENTRIES").unwrap());
        } else {
            assert_eq!(deletes, 0, "{} deletes audit entries", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 4);
}

/// An entry that occurred at `at`.
async fn append_at(db: &Database, n: usize, at: chrono::DateTime<Utc>) -> Entry {
    let new = NewEntry {
        occur_time: at,
        ..new_entry(n, Some(Uuid::now_v7().to_string()))
    };
    chain(db).append_one(&new).await.unwrap()
}

/// `audit-archive`: entries past retention are archived (chain verified first) to a file that
/// verifies on its own, then deleted; younger entries and the head stay; VerifyChain starts from
/// the checkpoint and appends continue the chain; the database still refuses any other DELETE,
/// any UPDATE and a checkpoint that does not name a stored entry; two archivers at once archive
/// each entry once.
#[tokio::test]
async fn entries_past_retention_are_archived_behind_a_verified_checkpoint() {
    use audit_svc::housekeeping::{AuditArchive, RETENTION};
    use ordermesh_platform::housekeeping::Job;

    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        let now = Utc::now();
        let old = now - RETENTION - chrono::TimeDelta::days(1);
        let mut entries = Vec::new();
        for n in 0..4 {
            entries.push(append_at(&db, n, old).await);
        }
        // A younger entry stops the archive: what follows it stays, even if old.
        entries.push(append_at(&db, 4, now).await);
        entries.push(append_at(&db, 5, old).await);
        let dir = tempfile::tempdir().unwrap();
        let archive = AuditArchive {
            dir: dir.path().to_owned(),
        };
        let (first, second) = (archive.run(&db, now), archive.run(&db, now));
        let (a, b) = tokio::join!(first, second);
        let archived = a.unwrap().count("audit entries archived") + b.unwrap().count("audit entries archived");
        assert_eq!(archived, 4, "each old entry archived once");

        let store = chain(&db);
        let checkpoint = store.latest_checkpoint().await.unwrap().unwrap();
        assert_eq!((checkpoint.last_sequence, &checkpoint.last_hash), (4, &entries[3].hash));
        let file = std::fs::read(dir.path().join(&checkpoint.archive_name)).unwrap();
        assert_eq!(
            checkpoint.archive_sha256,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&file))
        );
        let lines: Vec<Value> = file
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let hashes: Vec<&str> = lines.iter().map(|l| l["hash"].as_str().unwrap()).collect();
        let expected: Vec<String> = entries[..4].iter().map(|e| hex::encode(&e.hash)).collect();
        assert_eq!(hashes, expected, "the archive holds the entries, chained");
        assert_eq!(lines[0]["previousHash"], hex::encode([0u8; 32]));

        // What is left verifies from the checkpoint, and the chain goes on from its head.
        let head = append_at(&db, 6, now).await;
        assert_eq!(head.sequence, 7);
        let verification = store.verify(None, None).await.unwrap();
        assert!(verification.broken.is_none(), "{verification:?}");
        assert_eq!(verification.checked, 3);

        // Nothing else may delete or change an entry, or forge a checkpoint.
        assert!(raw(&db, "DELETE FROM audit_entries WHERE sequence = 5").await.is_err());
        assert!(
            raw(&db, "UPDATE audit_entries SET action = 'x' WHERE sequence = 5")
                .await
                .is_err()
        );
        let zeros = match db {
            Database::Postgres(_) => format!("decode('{}', 'hex')", "00".repeat(32)),
            Database::Sqlite(_) => format!("X'{}'", "00".repeat(32)),
        };
        let forged = format!(
            "INSERT INTO audit_checkpoints (last_sequence, last_hash, entries, archive_name, archive_sha256, \
             archive_micros) VALUES (5, {zeros}, 1, 'f', 's', 0)"
        );
        let error = raw(&db, &forged).await.unwrap_err().to_string();
        assert!(error.contains("must name a stored entry"), "{error}");
        assert!(raw(&db, "DELETE FROM audit_checkpoints").await.is_err());
        db.close().await;
    }
}
