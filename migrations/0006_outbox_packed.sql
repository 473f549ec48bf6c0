-- The outbox, one row per batch: a batch's events as parallel arrays.
--
-- A row per event cost the batch path about 30% of its throughput: what costs is each row (a heap
-- tuple, its index entries and their WAL records), not its bytes. A batch's events now go in one row
-- whose arrays PostgreSQL stores out of line in ~2 kB chunks; the readers unnest them (see
-- src/outbox/mod.rs, events_after). Event `i` (from 1) of a row has seq `first_seq + i - 1`, and the
-- rows' seq ranges follow each other with no gap.
--
-- Each key's last sequence number moves from an index over every event to where the key lives: an
-- account's in its balances row (which the batch updates anyway), the audit log's in ledger_head.

ALTER TABLE outbox RENAME TO outbox_by_event;
ALTER INDEX outbox_pkey RENAME TO outbox_by_event_pkey;

CREATE TABLE outbox (
    first_seq bigint PRIMARY KEY CHECK (first_seq > 0),
    -- The event types, by code: 1 ledger.transfer.posted.v1, 2 ledger.transfer.voided.v1,
    -- 3 ledger.transfer.expired.v1, 4 ledger.settlement.completed.v1, 5 ledger.payout.requested.v1,
    -- 6 ledger.audit.checkpoint.v1 (src/outbox/mod.rs, EventType::code).
    types smallint[] NOT NULL CHECK (array_ndims(types) = 1 AND 1 <= ALL (types) AND 6 >= ALL (types)),
    keys text[] NOT NULL,
    key_seqs bigint[] NOT NULL CHECK (0 < ALL (key_seqs)),
    subjects text[] NOT NULL,
    -- NULL for transfer events, whose data is rendered from the transfer row their subject names.
    payloads text[] NOT NULL,
    audit_seqs bigint[] NOT NULL,
    record_hashes bytea[] NOT NULL,
    created_at timestamptz NOT NULL,
    CHECK (cardinality(types) > 0
        AND cardinality(keys) = cardinality(types) AND cardinality(key_seqs) = cardinality(types)
        AND cardinality(subjects) = cardinality(types) AND cardinality(payloads) = cardinality(types)
        AND cardinality(audit_seqs) = cardinality(types) AND cardinality(record_hashes) = cardinality(types))
);

-- Random ids and hashes do not compress: store the arrays out of line without trying.
ALTER TABLE outbox
    ALTER COLUMN types SET STORAGE EXTERNAL,
    ALTER COLUMN keys SET STORAGE EXTERNAL,
    ALTER COLUMN key_seqs SET STORAGE EXTERNAL,
    ALTER COLUMN subjects SET STORAGE EXTERNAL,
    ALTER COLUMN payloads SET STORAGE EXTERNAL,
    ALTER COLUMN audit_seqs SET STORAGE EXTERNAL,
    ALTER COLUMN record_hashes SET STORAGE EXTERNAL;

CREATE TRIGGER outbox_is_append_only BEFORE UPDATE OR DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION refuse_change('the outbox is append-only');

-- The last sequence number of each key.
ALTER TABLE balances ADD COLUMN event_seq bigint NOT NULL DEFAULT 0 CHECK (event_seq >= 0);
ALTER TABLE ledger_head ADD COLUMN audit_log_event_seq bigint NOT NULL DEFAULT 0 CHECK (audit_log_event_seq >= 0);

-- Events written before: one row each, in order.
INSERT INTO outbox (first_seq, types, keys, key_seqs, subjects, payloads, audit_seqs, record_hashes, created_at)
SELECT seq,
       ARRAY[CASE type
           WHEN 'ledger.transfer.posted.v1' THEN 1
           WHEN 'ledger.transfer.voided.v1' THEN 2
           WHEN 'ledger.transfer.expired.v1' THEN 3
           WHEN 'ledger.settlement.completed.v1' THEN 4
           WHEN 'ledger.payout.requested.v1' THEN 5
           WHEN 'ledger.audit.checkpoint.v1' THEN 6
       END::smallint],
       ARRAY[key], ARRAY[key_seq], ARRAY[subject], ARRAY[payload], ARRAY[audit_seq], ARRAY[record_hash], created_at
FROM outbox_by_event ORDER BY seq;

UPDATE balances b SET event_seq = k.last
FROM (SELECT key::uuid AS account_id, max(key_seq) AS last FROM outbox_by_event WHERE key <> 'audit-log' GROUP BY key) k
WHERE b.account_id = k.account_id;

UPDATE ledger_head SET audit_log_event_seq = COALESCE((SELECT max(key_seq) FROM outbox_by_event WHERE key = 'audit-log'), 0);

DROP TABLE outbox_by_event;
