//! audit-svc's retention job, `audit-archive`: entries older than the retention period are
//! archived to a file and removed from the database, with the hash chain verified first and a
//! checkpoint recording where the archive ends (see `Store::archive_next`). `VerifyChain` then
//! starts from the checkpoint; the archive files verify on their own (each line is an entry with
//! its `previous_hash` and `hash`; the first line's `previous_hash` is the previous checkpoint's
//! hash). Ship the archive directory to write-once storage.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventsConfig;
use ordermesh_platform::housekeeping::{Job, Report, common_jobs};
use serde_json::json;
use sha2::Digest;

use crate::domain::{Entry, micros};
use crate::store::Store;

/// How long audit entries stay in the database (10 years).
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(3653);
/// Entries per archive file (and per transaction).
const PER_ARCHIVE: i64 = 5000;

pub struct AuditArchive {
    /// Where archive files are written (`AUDIT_ARCHIVE_DIR`).
    pub dir: PathBuf,
}

#[async_trait]
impl Job for AuditArchive {
    fn name(&self) -> &'static str {
        "audit-archive"
    }

    fn rule(&self) -> String {
        format!(
            "archives audit entries older than 10 years to {} (chain verified first), then deletes them",
            self.dir.display()
        )
    }

    async fn run(&self, db: &Database, now: DateTime<Utc>) -> anyhow::Result<Report> {
        std::fs::create_dir_all(&self.dir)?;
        let store = Store::new(db);
        let (mut archived, mut files) = (0, 0);
        while let Some(checkpoint) = store
            .archive_next(now - RETENTION, PER_ARCHIVE, |entries| {
                write_archive(&self.dir, entries)
            })
            .await?
        {
            archived += checkpoint.entries as u64;
            files += 1;
        }
        Ok(Report(vec![
            ("audit entries archived", archived),
            ("archive files written", files),
        ]))
    }
}

/// Writes `entries` as JSON lines to `audit-<first>-<last>.jsonl` in `dir` (synced to disk);
/// returns the file's name and SHA-256. A file left by an attempt that did not commit is
/// overwritten by the next.
fn write_archive(dir: &std::path::Path, entries: &[Entry]) -> anyhow::Result<(String, String)> {
    let (first, last) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => (first.sequence, last.sequence),
        _ => anyhow::bail!("nothing to archive"),
    };
    let name = format!("audit-{first:020}-{last:020}.jsonl");
    let mut bytes = Vec::new();
    for e in entries {
        let line = json!({
            "sequence": e.sequence, "id": e.id, "actorKind": e.actor.kind.as_str(), "actorId": e.actor.id,
            "actorRoles": e.actor.roles, "action": e.action, "entityType": e.entity_type, "entityId": e.entity_id,
            "dataSubjectId": e.data_subject_id, "correlationId": e.correlation_id,
            "occurMicros": micros(e.occur_time), "recordMicros": micros(e.record_time), "details": e.details,
            "sourceService": e.source_service, "eventId": e.event_id,
            "previousHash": hex::encode(&e.previous_hash), "hash": hex::encode(&e.hash),
        });
        serde_json::to_writer(&mut bytes, &line)?;
        bytes.push(b'\n');
    }
    let mut file = std::fs::File::create(dir.join(&name))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    Ok((name, hex::encode(sha2::Sha256::digest(&bytes))))
}

/// Every housekeeping job of audit-svc, archiving to `archive_dir`.
pub fn jobs(events: &EventsConfig, archive_dir: PathBuf) -> Vec<Box<dyn Job>> {
    let mut jobs = common_jobs(events);
    jobs.push(Box::new(AuditArchive { dir: archive_dir }));
    jobs
}
