-- The audit log of audit-svc (PostgreSQL). Runs inside the service's own schema.
--
-- One append-only hash chain: `sequence` 1, 2, 3, ... with no gaps; `hash` =
-- SHA-256(previous_hash || canonical encoding of the row), see audit-svc/src/domain.rs.
-- Times are microseconds since the Unix epoch (the same on both backends, and what is hashed).
-- `details` is canonical JSON text, stored verbatim (jsonb would re-encode it).

CREATE TABLE audit_entries (
    sequence        bigint PRIMARY KEY CHECK (sequence > 0),
    id              text NOT NULL UNIQUE,
    actor_kind      text NOT NULL,
    actor_id        text NOT NULL,
    actor_roles     text NOT NULL DEFAULT '',
    action          text NOT NULL,
    entity_type     text NOT NULL,
    entity_id       text NOT NULL,
    data_subject_id text NOT NULL DEFAULT '',
    correlation_id  text NOT NULL DEFAULT '',
    occur_micros    bigint NOT NULL,
    record_micros   bigint NOT NULL,
    details         text NOT NULL,
    source_service  text NOT NULL,
    -- Unique: one entry per event (consumers) or idempotency key (RecordAuditEvent).
    event_id        text UNIQUE,
    previous_hash   bytea NOT NULL CHECK (length(previous_hash) = 32),
    hash            bytea NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX audit_by_time ON audit_entries (occur_micros, sequence);
CREATE INDEX audit_by_correlation ON audit_entries (correlation_id, occur_micros, sequence);
CREATE INDEX audit_by_entity ON audit_entries (entity_type, entity_id, occur_micros, sequence);
CREATE INDEX audit_by_actor ON audit_entries (actor_id, occur_micros, sequence);
CREATE INDEX audit_by_action ON audit_entries (action, occur_micros, sequence);
CREATE INDEX audit_by_subject ON audit_entries (data_subject_id, occur_micros, sequence)
    WHERE data_subject_id <> '';

-- Append-only, enforced by the database: UPDATE, DELETE and TRUNCATE raise. This guards against
-- the application (and anyone using its role); the table owner or a superuser can still disable
-- or drop the trigger, which is why the hash chain exists (VerifyChain detects such changes).
CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_entries_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();

CREATE TRIGGER audit_entries_no_truncate
    BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();
