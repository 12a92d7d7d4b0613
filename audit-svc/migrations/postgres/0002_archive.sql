-- Archival of audit entries past retention (PostgreSQL). An archive job verifies the chain up to
-- an entry, writes the entries to an archive file, records a checkpoint (the last archived
-- sequence and its hash, and the file's SHA-256), then deletes the archived entries. Deletion is
-- allowed only at or below the latest checkpoint, and a checkpoint only where the chain really is
-- (its hash must be the stored entry's): nothing else may ever delete or change an entry.
-- VerifyChain starts from the latest checkpoint's hash.

CREATE TABLE audit_checkpoints (
    last_sequence  bigint PRIMARY KEY CHECK (last_sequence > 0),
    last_hash      bytea NOT NULL CHECK (length(last_hash) = 32),
    entries        bigint NOT NULL CHECK (entries > 0),
    archive_name   text NOT NULL,
    archive_sha256 text NOT NULL,
    archive_micros bigint NOT NULL
);

CREATE FUNCTION audit_checkpoint_valid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_entries WHERE sequence = NEW.last_sequence AND hash = NEW.last_hash) THEN
        RAISE EXCEPTION 'a checkpoint must name a stored entry and its hash'
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM audit_checkpoints WHERE last_sequence >= NEW.last_sequence) THEN
        RAISE EXCEPTION 'checkpoints only move forward' USING ERRCODE = 'check_violation';
    END IF;
    -- The head of the chain stays: appends continue from it.
    IF NEW.last_sequence >= (SELECT MAX(sequence) FROM audit_entries) THEN
        RAISE EXCEPTION 'the head of the chain is never archived' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_checkpoints_valid BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_valid();

CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();

-- Entries stay append-only: UPDATE and TRUNCATE are refused as before; DELETE only of archived
-- entries (at or below the latest checkpoint).
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
        AND OLD.sequence <= (SELECT COALESCE(MAX(last_sequence), 0) FROM audit_checkpoints) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
