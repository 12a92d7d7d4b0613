-- The audit log of audit-svc (SQLite). See the PostgreSQL migration for the scheme.

CREATE TABLE audit_entries (
    sequence        INTEGER PRIMARY KEY CHECK (sequence > 0),
    id              TEXT NOT NULL UNIQUE,
    actor_kind      TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    actor_roles     TEXT NOT NULL DEFAULT '',
    action          TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    data_subject_id TEXT NOT NULL DEFAULT '',
    correlation_id  TEXT NOT NULL DEFAULT '',
    occur_micros    INTEGER NOT NULL,
    record_micros   INTEGER NOT NULL,
    details         TEXT NOT NULL,
    source_service  TEXT NOT NULL,
    event_id        TEXT UNIQUE,
    previous_hash   BLOB NOT NULL CHECK (length(previous_hash) = 32),
    hash            BLOB NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX audit_by_time ON audit_entries (occur_micros, sequence);
CREATE INDEX audit_by_correlation ON audit_entries (correlation_id, occur_micros, sequence);
CREATE INDEX audit_by_entity ON audit_entries (entity_type, entity_id, occur_micros, sequence);
CREATE INDEX audit_by_actor ON audit_entries (actor_id, occur_micros, sequence);
CREATE INDEX audit_by_action ON audit_entries (action, occur_micros, sequence);
CREATE INDEX audit_by_subject ON audit_entries (data_subject_id, occur_micros, sequence)
    WHERE data_subject_id <> '';

-- Append-only, enforced by the database (guards against the application; whoever can write the
-- file can drop these triggers, which the hash chain then detects).
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: UPDATE is not allowed');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: DELETE is not allowed');
END;
