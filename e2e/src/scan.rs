//! Looks for personal data wherever the platform keeps anything: every table of every service
//! (listed from the database's catalog at run time, so a table added later is covered), the raw
//! SQLite files (free pages and write-ahead log included), Redis keys, and the messages of every
//! JetStream stream and of the dead-letter queue. Each finding names where the string was seen.

use std::path::Path;

use futures::StreamExt;
use ordermesh_platform::events::{EventsConfig, TOPICS};
use sqlx::{Connection, PgConnection, Row};

/// The forms a needle may take in stored bytes: itself, and the hex digits PostgreSQL prints for
/// `bytea` (protobuf payloads, an order's encoded address).
fn forms(needle: &str) -> [String; 2] {
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    [needle.to_owned(), hex]
}

fn found_in(haystack: &[u8], needles: &[&str]) -> Vec<String> {
    needles
        .iter()
        .filter(|needle| {
            forms(needle).iter().any(|form| {
                let form = form.as_bytes();
                haystack.windows(form.len()).any(|w| w == form)
            })
        })
        .map(|needle| (*needle).to_owned())
        .collect()
}

/// Every row of every table of every schema of the PostgreSQL database at `url` (catalog
/// schemas aside), each read as its text form.
pub async fn postgres(url: &str, needles: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut conn = PgConnection::connect(url).await?;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await?;
    anyhow::ensure!(tables.len() >= 12, "the catalog lists only {} tables", tables.len());
    let mut findings = Vec::new();
    for (schema, table) in tables {
        let sql = format!("SELECT CAST(t AS text) FROM \"{schema}\".\"{table}\" AS t");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await?;
        for row in rows {
            let text: String = row.try_get(0)?;
            for needle in found_in(text.as_bytes(), needles) {
                findings.push(format!("{needle:?} in table {schema}.{table}"));
            }
        }
    }
    conn.close().await?;
    Ok(findings)
}

/// The raw bytes of every file in `dir` (the SQLite databases, their logs and shared memory).
pub fn files(dir: &Path, needles: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut findings = Vec::new();
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        scanned += 1;
        let bytes = std::fs::read(&path)?;
        for needle in found_in(&bytes, needles) {
            findings.push(format!("{needle:?} in file {}", path.display()));
        }
    }
    anyhow::ensure!(scanned >= 6, "only {scanned} files in {}", dir.display());
    Ok(findings)
}

/// Every key under `prefix` in the Redis at `url`, and its value (strings only: the BFF stores
/// nothing else).
pub async fn redis(url: &str, prefix: &str, needles: &[&str]) -> anyhow::Result<Vec<String>> {
    use fred::prelude::{ClientLike, Config, KeysInterface};
    use fred::types::scan::Scanner;
    let client = fred::prelude::Builder::from_config(Config::from_url(url)?).build()?;
    client.init().await?;
    let mut keys = Vec::new();
    let mut pages = client.scan(format!("{prefix}*"), Some(500), None);
    while let Some(page) = pages.next().await {
        let mut page = page?;
        keys.extend(page.take_results().unwrap_or_default());
    }
    anyhow::ensure!(!keys.is_empty(), "no Redis keys under {prefix}");
    let mut findings = Vec::new();
    for key in keys {
        let name = key.as_str().map(str::to_owned).unwrap_or_default();
        let value: Option<Vec<u8>> = client.get(key).await.unwrap_or(None);
        let mut bytes = name.clone().into_bytes();
        bytes.extend(value.unwrap_or_default());
        for needle in found_in(&bytes, needles) {
            findings.push(format!("{needle:?} in Redis key {name}"));
        }
    }
    client.quit().await?;
    Ok(findings)
}

/// Every message (headers and payload) of every stream of the platform, listed from the server
/// (so a stream added later is covered), the dead-letter stream included.
pub async fn streams(nats_url: &str, events: &EventsConfig, needles: &[&str]) -> anyhow::Result<Vec<String>> {
    use futures::TryStreamExt as _;
    let client = async_nats::connect(nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let names: Vec<String> = jetstream
        .stream_names()
        .try_filter(|name| std::future::ready(name.starts_with(&events.stream_prefix)))
        .try_collect()
        .await?;
    // Every topic's stream exists once the platform ran: a listing that misses one is wrong.
    for topic in TOPICS {
        anyhow::ensure!(
            names.contains(&events.stream_name(topic)),
            "stream of {topic} not listed: {names:?}"
        );
    }
    let mut findings = Vec::new();
    let mut messages = 0;
    for name in names {
        let Ok(mut stream) = jetstream.get_stream(&name).await else {
            continue;
        };
        let (first, last) = {
            let state = &stream.info().await?.state;
            (state.first_sequence, state.last_sequence)
        };
        for sequence in first..=last {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            messages += 1;
            let mut bytes = message.payload.to_vec();
            for (header, values) in message.headers.iter() {
                bytes.extend(header.to_string().into_bytes());
                for value in values {
                    bytes.extend(value.as_str().as_bytes());
                }
            }
            for needle in found_in(&bytes, needles) {
                findings.push(format!("{needle:?} in stream {name}, message {sequence}"));
            }
        }
    }
    anyhow::ensure!(messages > 0, "no messages in the streams");
    Ok(findings)
}
