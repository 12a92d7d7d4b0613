-- Archival of audit entries past retention (SQLite). See the PostgreSQL migration for the scheme.

CREATE TABLE audit_checkpoints (
    last_sequence  INTEGER PRIMARY KEY CHECK (last_sequence > 0),
    last_hash      BLOB NOT NULL CHECK (length(last_hash) = 32),
    entries        INTEGER NOT NULL CHECK (entries > 0),
    archive_name   TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    archive_micros INTEGER NOT NULL
);

CREATE TRIGGER audit_checkpoints_valid BEFORE INSERT ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'a checkpoint must name a stored entry and its hash')
    WHERE NOT EXISTS (SELECT 1 FROM audit_entries WHERE sequence = NEW.last_sequence AND hash = NEW.last_hash);
    SELECT RAISE(ABORT, 'checkpoints only move forward')
    WHERE EXISTS (SELECT 1 FROM audit_checkpoints WHERE last_sequence >= NEW.last_sequence);
    SELECT RAISE(ABORT, 'the head of the chain is never archived')
    WHERE NEW.last_sequence >= (SELECT MAX(sequence) FROM audit_entries);
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE is not allowed');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE is not allowed');
END;

-- DELETE only of archived entries (at or below the latest checkpoint); UPDATE stays refused.
DROP TRIGGER audit_entries_no_delete;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
WHEN OLD.sequence > (SELECT COALESCE(MAX(last_sequence), 0) FROM audit_checkpoints)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: DELETE is not allowed');
END;
