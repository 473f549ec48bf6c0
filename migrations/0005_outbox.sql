-- The transactional outbox: the events consumers read from Kafka (or, without Kafka, from the API),
-- written by the sequencer in the same transaction as the change each describes, so no change commits
-- without its event and no event without its change.
--
-- `seq` is the commit order (assigned by the sequencer, like transfer seq, and counted in ledger_head),
-- so a reader walking seq upwards skips nothing however many batches commit meanwhile. `key` is what
-- Kafka partitions by (an account id, or the audit log for checkpoints) and `key_seq` counts each
-- key's events from 1 with no gaps: a consumer tells a duplicate (key_seq already seen) from a gap
-- (key_seq jumps). Each event names the audit record of its change and that record's leaf hash.

ALTER TABLE ledger_head ADD COLUMN event_seq bigint NOT NULL DEFAULT 0 CHECK (event_seq >= 0);

CREATE TABLE outbox (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    -- UUIDv5 of the type and subject: unique by construction (a subject is a transfer, settlement or
    -- checkpoint, each with one event of a type), so no index is kept for it.
    id uuid NOT NULL,
    type text NOT NULL CHECK (type ~ '^ledger(\.[a-z_]+)+\.v[0-9]+$'),
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 256),
    key_seq bigint NOT NULL CHECK (key_seq > 0),
    subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 256),
    -- The event's data as produced to Kafka; NULL for transfer events, whose data is rendered from
    -- the transfer row their subject names (see src/outbox/mod.rs, events_after), so that the batch
    -- path does not write each transfer twice.
    payload text CHECK ((payload IS NULL) = (type LIKE 'ledger.transfer.%')),
    audit_seq bigint CHECK (audit_seq >= 0),
    record_hash bytea CHECK (length(record_hash) = 32),
    created_at timestamptz NOT NULL,
    UNIQUE (key, key_seq)
);

CREATE TRIGGER outbox_is_append_only BEFORE UPDATE OR DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION refuse_change('the outbox is append-only');

-- How far the relay has delivered: every event up to delivered_seq was acknowledged by the broker.
CREATE TABLE outbox_relay (
    id smallint PRIMARY KEY CHECK (id = 1),
    delivered_seq bigint NOT NULL CHECK (delivered_seq >= 0),
    delivered_at timestamptz
);
INSERT INTO outbox_relay (id, delivered_seq) VALUES (1, 0);

-- Settlement runs: a merchant account's posted movements netted over (period_start, cut_off], paid
-- out by a settlement transfer to a clearing account. One per (account, cut_off); each period starts
-- where the account's previous one ended.
CREATE TABLE settlements (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    period_start timestamptz,
    cut_off timestamptz NOT NULL CHECK (period_start IS NULL OR period_start < cut_off),
    -- Credits minus debits of the included transfers, in minor units; paid out when positive.
    net bigint NOT NULL,
    transfer_count bigint NOT NULL CHECK (transfer_count >= 0),
    -- SHA-256 over the included transfer ids (16 bytes each) in commit order.
    transfers_hash bytea NOT NULL CHECK (length(transfers_hash) = 32),
    transfer_id uuid REFERENCES transfers (id) CHECK ((transfer_id IS NULL) = (net <= 0)),
    clearing_account_id uuid NOT NULL REFERENCES accounts (id),
    requested_by text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 256),
    created_at timestamptz NOT NULL,
    audit_seq bigint CHECK (audit_seq >= 0),
    UNIQUE (account_id, cut_off)
);
CREATE INDEX settlements_latest ON settlements (account_id, cut_off DESC);
CREATE INDEX settlements_transfer ON settlements (transfer_id) WHERE transfer_id IS NOT NULL;

CREATE TRIGGER settlements_are_append_only BEFORE UPDATE OR DELETE ON settlements
    FOR EACH ROW EXECUTE FUNCTION refuse_change('settlements are append-only');
