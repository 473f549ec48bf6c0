-- The tamper-evident audit log (see the audit crate). Written by the sequencer in the same
-- transaction as the changes the records describe.

-- Records appended so far: the next record's seq. Moved by the head update of every batch.
ALTER TABLE ledger_head ADD COLUMN audit_size bigint NOT NULL DEFAULT 0 CHECK (audit_size >= 0);

-- Each record exactly as hashed: its leaf hash is SHA-256(0x00 || bytes). The hash itself is not
-- stored; whoever checks a record computes it from these bytes.
CREATE TABLE audit_records (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    bytes bytea NOT NULL
);

-- Hashes of the Merkle tree's complete perfect subtrees at every fourth level (16, 256, 4096, ...
-- records), so any subtree hash is at most 8 stored hashes or 16 records away: a proof is O(log n)
-- reads, never a rebuild.
CREATE TABLE audit_subtrees (
    level smallint NOT NULL CHECK (level > 0 AND level % 4 = 0 AND level < 63),
    index bigint NOT NULL CHECK (index >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, index)
);

-- Signed checkpoints (C2SP signed notes), one per tree size signed.
CREATE TABLE audit_checkpoints (
    size bigint PRIMARY KEY CHECK (size > 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    note text NOT NULL,
    signed_at timestamptz NOT NULL
);

CREATE TRIGGER audit_records_are_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION refuse_change('audit records are append-only');
CREATE TRIGGER audit_subtrees_are_append_only BEFORE UPDATE OR DELETE ON audit_subtrees
    FOR EACH ROW EXECUTE FUNCTION refuse_change('audit subtree hashes are append-only');
CREATE TRIGGER audit_checkpoints_are_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change('signed checkpoints are append-only');

-- Where each account's and transfer's records are: the record of its creation, and for a pending
-- transfer the record of its post, void or expiry.
ALTER TABLE accounts ADD COLUMN audit_seq bigint;
ALTER TABLE transfers ADD COLUMN audit_seq bigint, ADD COLUMN resolution_audit_seq bigint;

DROP TRIGGER transfers_change_only_pending_state ON transfers;
CREATE TRIGGER transfers_change_only_pending_state BEFORE UPDATE ON transfers
    FOR EACH ROW WHEN (
        OLD.state IS DISTINCT FROM 'pending' OR NEW.state NOT IN ('posted', 'voided', 'expired')
        OR (to_jsonb(NEW) - 'state' - 'resolution_audit_seq') IS DISTINCT FROM (to_jsonb(OLD) - 'state' - 'resolution_audit_seq'))
    EXECUTE FUNCTION refuse_change('only a pending transfer''s state changes, once');
