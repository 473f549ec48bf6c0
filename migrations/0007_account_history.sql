-- Each account's history (the transfers that debit or credit it, in commit order), kept apart from
-- the transfers table and folded in after commit.
--
-- Two B-tree indexes over (debit_account_id, seq) and (credit_account_id, seq) put two entries per
-- transfer into random leaf pages inside the commit: measured at ~60 ms of the ~112 ms that inserting
-- 8,190 transfers into 2M took, more than the heap and the primary key together. Instead, a
-- background step (src/store/history.rs) folds committed transfers into rows of this table: per account,
-- its transfer seqs in ascending order, in chunks of at most 200 (small enough to stay inline). One
-- fold writes a row per account it saw, sorted by account, so thousands of transfers of an account
-- cost one row instead of thousands of index entries.
--
-- account_history_head.folded_seq says how far the folds have come: every transfer with seq up to it
-- is in exactly the chunks of its two accounts, none after it is in any. Readers take both in one
-- snapshot and read the transfers after folded_seq (the tail, bounded by the fold policy) through the
-- seq index, so what they see is always exact.

CREATE TABLE account_history (
    account_id uuid NOT NULL,
    -- The chunk's last (largest) seq: chunks of an account follow each other in this order.
    last_seq bigint NOT NULL CHECK (last_seq > 0),
    seqs bigint[] NOT NULL CHECK (
        array_ndims(seqs) = 1 AND cardinality(seqs) BETWEEN 1 AND 200 AND seqs[cardinality(seqs)] = last_seq),
    PRIMARY KEY (account_id, last_seq)
);

CREATE TABLE account_history_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    folded_seq bigint NOT NULL CHECK (folded_seq >= 0)
);

CREATE TRIGGER account_history_is_append_only BEFORE UPDATE OR DELETE ON account_history
    FOR EACH ROW EXECUTE FUNCTION refuse_change('account history is append-only');
CREATE TRIGGER account_history_head_only_moves_on BEFORE UPDATE ON account_history_head
    FOR EACH ROW WHEN (NEW.folded_seq < OLD.folded_seq)
    EXECUTE FUNCTION refuse_change('the folded history only grows');
CREATE TRIGGER account_history_head_is_never_deleted BEFORE DELETE ON account_history_head
    FOR EACH ROW EXECUTE FUNCTION refuse_change('the history head is never deleted');

-- Transfers recorded before: folded here, once.
INSERT INTO account_history (account_id, last_seq, seqs)
SELECT account_id, max(seq), array_agg(seq ORDER BY seq)
FROM (
    SELECT account_id, seq, (row_number() OVER (PARTITION BY account_id ORDER BY seq) - 1) / 200 AS chunk
    FROM (SELECT debit_account_id AS account_id, seq FROM transfers
          UNION ALL
          SELECT credit_account_id, seq FROM transfers) entries
) numbered
GROUP BY account_id, chunk;

INSERT INTO account_history_head (id, folded_seq) VALUES (1, (SELECT COALESCE(max(seq), 0) FROM transfers));

DROP INDEX transfers_debit_account_seq;
DROP INDEX transfers_credit_account_seq;
