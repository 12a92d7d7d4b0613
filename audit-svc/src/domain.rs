//! Audit entries, their canonical encoding and hash chain, and the rules for what an entry may
//! hold. No I/O.
//!
//! # The chain
//!
//! Entries form ONE chain ordered by `sequence` (1, 2, 3, … with no gaps). Each entry stores the
//! `hash` of its predecessor as `previous_hash` (32 zero bytes for sequence 1) and its own
//!
//! ```text
//! hash = SHA-256( previous_hash (32 bytes) || canonical(entry) )
//! ```
//!
//! where `canonical(entry)` is the concatenation, in this fixed order, of the fields below, each
//! written as a 4-byte big-endian length followed by its UTF-8 bytes (integers in decimal):
//! the domain tag `ordermesh.audit.v1.entry`, sequence, id, actor kind, actor id, actor roles
//! (sorted, joined with `,`), action, entity type, entity id, data subject id, correlation id,
//! occur time and record time (microseconds since the Unix epoch), details (canonical JSON:
//! object keys sorted, no whitespace — stored verbatim, so the stored text is what is hashed),
//! source service, event id (empty when none). Length prefixes make the encoding unambiguous:
//! no two different entries encode to the same bytes.

use chrono::{DateTime, TimeZone, Utc};
use ordermesh_platform::{Actor, ActorKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `previous_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Largest serialised `details`.
pub const MAX_DETAILS_BYTES: usize = 8 * 1024;
/// Domain-separation tag of the canonical encoding (changes if the encoding ever changes).
const ENCODING_TAG: &str = "ordermesh.audit.v1.entry";

/// An entry to append: everything but its position in the chain.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub actor: Actor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub data_subject_id: String,
    pub correlation_id: String,
    pub occur_time: DateTime<Utc>,
    /// Non-personal facts; keys are sorted by the canonical encoding.
    pub details: Map<String, Value>,
    pub source_service: String,
    /// Id of the event it was derived from, or of a direct record's idempotency key.
    pub event_id: Option<String>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub sequence: i64,
    pub id: Uuid,
    pub actor: Actor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub data_subject_id: String,
    pub correlation_id: String,
    pub occur_time: DateTime<Utc>,
    pub record_time: DateTime<Utc>,
    /// Canonical JSON text, stored verbatim.
    pub details: String,
    pub source_service: String,
    pub event_id: Option<String>,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Microseconds since the Unix epoch (what both databases store).
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// `t` truncated to microseconds.
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(micros(t))
}

impl NewEntry {
    /// The entry at `sequence` after an entry whose hash is `previous_hash`.
    pub fn seal(&self, sequence: i64, id: Uuid, record_time: DateTime<Utc>, previous_hash: &[u8]) -> Entry {
        let mut entry = Entry {
            sequence,
            id,
            actor: self.actor.clone(),
            action: self.action.clone(),
            entity_type: self.entity_type.clone(),
            entity_id: self.entity_id.clone(),
            data_subject_id: self.data_subject_id.clone(),
            correlation_id: self.correlation_id.clone(),
            occur_time: truncate(self.occur_time),
            record_time: truncate(record_time),
            details: canonical_json(&Value::Object(self.details.clone())),
            source_service: self.source_service.clone(),
            event_id: self.event_id.clone(),
            previous_hash: previous_hash.to_vec(),
            hash: Vec::new(),
        };
        entry.hash = entry.compute_hash().to_vec();
        entry
    }
}

impl Entry {
    /// The canonical encoding of every field but the hashes (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.details.len());
        let mut field = |value: &str| {
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        };
        field(ENCODING_TAG);
        field(&self.sequence.to_string());
        field(&self.id.to_string());
        field(self.actor.kind.as_str());
        field(&self.actor.id);
        field(&self.actor.roles_text());
        field(&self.action);
        field(&self.entity_type);
        field(&self.entity_id);
        field(&self.data_subject_id);
        field(&self.correlation_id);
        field(&micros(self.occur_time).to_string());
        field(&micros(self.record_time).to_string());
        field(&self.details);
        field(&self.source_service);
        field(self.event_id.as_deref().unwrap_or(""));
        out
    }

    /// SHA-256(previous_hash || canonical_bytes), from the stored `previous_hash`.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(&self.previous_hash);
        hasher.update(self.canonical_bytes());
        hasher.finalize().into()
    }

    pub fn details_value(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.details) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub sequence: i64,
    /// Empty when the entry is missing.
    pub id: String,
    pub reason: String,
}

/// Walks entries in sequence order and reports the first break.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_sequence: i64,
    /// Hash the next entry must carry as `previous_hash`; `None`: not known (range starts in the
    /// middle and the predecessor is missing — reported as a gap by the caller).
    expected_previous: Vec<u8>,
    pub checked: i64,
    pub last_sequence: i64,
    pub last_hash: Vec<u8>,
}

impl ChainVerifier {
    /// A verifier starting at `from_sequence`, whose predecessor's stored hash is
    /// `previous_hash` (the genesis hash when `from_sequence` is 1).
    pub fn new(from_sequence: i64, previous_hash: Vec<u8>) -> Self {
        Self {
            expected_sequence: from_sequence,
            expected_previous: previous_hash.clone(),
            checked: 0,
            last_sequence: from_sequence - 1,
            last_hash: previous_hash,
        }
    }

    /// Checks the next entry; `Err` on the first break.
    pub fn check(&mut self, entry: &Entry) -> Result<(), ChainBreak> {
        if entry.sequence != self.expected_sequence {
            return Err(ChainBreak {
                sequence: self.expected_sequence,
                id: String::new(),
                reason: format!(
                    "sequence gap: entry {} is missing (next stored entry is {})",
                    self.expected_sequence, entry.sequence
                ),
            });
        }
        self.checked += 1;
        let broken = |reason: &str| ChainBreak {
            sequence: entry.sequence,
            id: entry.id.to_string(),
            reason: reason.to_owned(),
        };
        if entry.previous_hash != self.expected_previous {
            return Err(broken("previous_hash mismatch"));
        }
        if entry.hash.as_slice() != entry.compute_hash().as_slice() {
            return Err(broken("hash mismatch"));
        }
        self.expected_sequence += 1;
        self.expected_previous = entry.hash.clone();
        self.last_sequence = entry.sequence;
        self.last_hash = entry.hash.clone();
        Ok(())
    }

    /// Called after the last entry: `to_sequence` (when the range is closed) must have been
    /// reached.
    pub fn finish(&self, to_sequence: Option<i64>) -> Result<(), ChainBreak> {
        match to_sequence {
            Some(to) if self.last_sequence < to => Err(ChainBreak {
                sequence: self.expected_sequence,
                id: String::new(),
                reason: format!("sequence gap: entry {} is missing", self.expected_sequence),
            }),
            _ => Ok(()),
        }
    }
}

/// Substrings of detail keys that suggest personal data; such keys are refused.
const PERSONAL_KEY_MARKERS: &[&str] = &[
    "email", "e_mail", "mail", "name", "phone", "mobile", "address", "street", "postcode", "postal", "zip", "birth",
    "dob", "iban", "card", "cvv", "password", "ssn", "passport", "ip_addr", "title", "body", "note", "comment",
    "message", "text",
];

/// The first key (as a path, e.g. `details.contact.email`) of `details` that looks like personal
/// data.
pub fn personal_key(details: &Map<String, Value>, path: &str) -> Option<String> {
    for (key, value) in details {
        let normalized = key.to_ascii_lowercase().replace(['-', ' '], "_");
        let here = format!("{path}.{key}");
        if PERSONAL_KEY_MARKERS.iter().any(|m| normalized.contains(m)) {
            return Some(here);
        }
        let nested = match value {
            Value::Object(map) => personal_key(map, &here),
            Value::Array(items) => items.iter().find_map(|item| match item {
                Value::Object(map) => personal_key(map, &here),
                _ => None,
            }),
            _ => None,
        };
        if nested.is_some() {
            return nested;
        }
    }
    None
}

/// A valid action code: 1-128 characters of `a-z`, `0-9`, `.`, `_`.
pub fn is_action_code(action: &str) -> bool {
    !action.is_empty()
        && action.len() <= 128
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
}

/// The action code of an event type: `OrderPlaced` → `order.placed`,
/// `OrderStatusChanged` → `order.status_changed`, `CustomerDataExported` →
/// `customer.data_exported`.
pub fn action_of_event(short_type: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for c in short_type.chars() {
        if c.is_ascii_uppercase() || words.is_empty() {
            words.push(String::new());
        }
        if let Some(last) = words.last_mut()
            && (c.is_ascii_alphanumeric())
        {
            last.push(c.to_ascii_lowercase());
        }
    }
    words.retain(|w| !w.is_empty());
    match words.split_first() {
        Some((first, rest)) if !rest.is_empty() => format!("{first}.{}", rest.join("_")),
        Some((first, _)) => first.clone(),
        None => "event.unknown".to_owned(),
    }
}

/// Filters of QueryAuditLogs (empty: any).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Filter {
    pub actor_id: String,
    #[serde(serialize_with = "serialize_kind")]
    pub actor_kind: Option<ActorKind>,
    pub entity_type: String,
    pub entity_id: String,
    /// Exact action, or a prefix when `action_prefix` is set.
    pub action: String,
    pub action_prefix: bool,
    pub correlation_id: String,
    /// Microseconds, inclusive.
    pub start_micros: Option<i64>,
    /// Microseconds, exclusive.
    pub end_micros: Option<i64>,
}

/// The kind by its variant name (`"Employee"`), as the filter was serialised before the kind
/// became platform's type: page tokens fingerprint the serialised filter, so tokens handed out
/// earlier stay valid.
fn serialize_kind<S: serde::Serializer>(kind: &Option<ActorKind>, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    kind.map(|k| format!("{k:?}")).serialize(serializer)
}

/// Keyset position of an entry in time order: (occur time in µs, sequence).
pub type PageKey = (i64, i64);

pub fn page_key(entry: &Entry) -> PageKey {
    (micros(entry.occur_time), entry.sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewEntry {
        let mut details = Map::new();
        details.insert("to".into(), "RESERVED".into());
        details.insert("from".into(), "PENDING".into());
        NewEntry {
            actor: Actor::service("order-svc"),
            action: "order.status_changed".into(),
            entity_type: "order".into(),
            entity_id: "o1".into(),
            data_subject_id: "c1".into(),
            correlation_id: "corr".into(),
            occur_time: Utc::now(),
            details,
            source_service: "order-svc".into(),
            event_id: Some("e1".into()),
        }
    }

    #[test]
    fn actions_of_event_types() {
        assert_eq!(action_of_event("OrderPlaced"), "order.placed");
        assert_eq!(action_of_event("OrderStatusChanged"), "order.status_changed");
        assert_eq!(action_of_event("CustomerDataExported"), "customer.data_exported");
        assert_eq!(action_of_event("StockReserved"), "stock.reserved");
        assert!(is_action_code(&action_of_event("PaymentCaptured")));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let value: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(canonical_json(&value), r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn chain_links_and_detects_changes() {
        let first = sample().seal(1, Uuid::now_v7(), Utc::now(), &GENESIS_HASH);
        let second = sample().seal(2, Uuid::now_v7(), Utc::now(), &first.hash);
        let mut verifier = ChainVerifier::new(1, GENESIS_HASH.to_vec());
        verifier.check(&first).unwrap();
        verifier.check(&second).unwrap();
        assert_eq!(verifier.checked, 2);

        let mut tampered = first.clone();
        tampered.details = r#"{"from":"PENDING","to":"CANCELLED"}"#.into();
        let mut verifier = ChainVerifier::new(1, GENESIS_HASH.to_vec());
        let broken = verifier.check(&tampered).unwrap_err();
        assert_eq!((broken.sequence, broken.reason.as_str()), (1, "hash mismatch"));

        let mut verifier = ChainVerifier::new(1, GENESIS_HASH.to_vec());
        verifier.check(&first).unwrap();
        let third = sample().seal(3, Uuid::now_v7(), Utc::now(), &second.hash);
        let broken = verifier.check(&third).unwrap_err();
        assert_eq!(broken.sequence, 2);
        assert!(broken.id.is_empty());
    }

    /// The canonical encoding of the module docs, pinned: stored chains hash to exactly this, so
    /// any change here breaks every existing chain.
    #[test]
    fn the_encoding_of_a_known_entry_is_unchanged() {
        let mut new = sample();
        new.actor = Actor::new(ActorKind::Employee, "e-1", ["customer-service".into(), "admin".into()]);
        new.action = "customer.viewed".into();
        new.entity_type = "customer".into();
        (new.entity_id, new.data_subject_id, new.correlation_id) = ("c-1".into(), "c-1".into(), "corr-1".into());
        new.occur_time = from_micros(1_700_000_000_123_456);
        new.details = serde_json::from_str(r#"{"b":1,"a":"x"}"#).unwrap();
        new.source_service = "bff".into();
        new.event_id = Some("ev-1".into());
        let id = Uuid::parse_str("0190a000-0000-7000-8000-000000000001").unwrap();
        let entry = new.seal(7, id, from_micros(1_700_000_000_223_456), &[1; 32]);
        assert_eq!(
            hex::encode(&entry.hash),
            "4eaef9608c500ff190163f5f7572ccf0b506705f9bd43dad57921cb58173346a"
        );
    }

    #[test]
    fn filters_serialise_the_kind_by_its_variant_name() {
        let filter = Filter {
            actor_kind: Some(ActorKind::Employee),
            ..Filter::default()
        };
        let json = serde_json::to_string(&filter).unwrap();
        assert!(json.contains(r#""actor_kind":"Employee""#), "{json}");
        let json = serde_json::to_string(&Filter::default()).unwrap();
        assert!(json.contains(r#""actor_kind":null"#), "{json}");
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = sample();
        a.entity_type = "ab".into();
        a.entity_id = "c".into();
        let mut b = sample();
        b.entity_type = "a".into();
        b.entity_id = "bc".into();
        let (id, now) = (Uuid::now_v7(), Utc::now());
        assert_ne!(
            a.seal(1, id, now, &GENESIS_HASH).hash,
            b.seal(1, id, now, &GENESIS_HASH).hash
        );
    }

    #[test]
    fn personal_keys_are_found() {
        let details: Map<String, Value> = serde_json::from_str(r#"{"order_id":"1","contact":{"Email":"x"}}"#).unwrap();
        assert_eq!(
            personal_key(&details, "details").as_deref(),
            Some("details.contact.Email")
        );
        let clean: Map<String, Value> = serde_json::from_str(r#"{"order_id":"1","status":"OK"}"#).unwrap();
        assert_eq!(personal_key(&clean, "details"), None);
    }
}
