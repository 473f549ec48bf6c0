-- The account check of 0008 as one anti-join that counts, so the planner costs all of it.
--
-- Inside `IF EXISTS (...)` the planner plans for the first row and expects most transfers to miss
-- (a transition table has no statistics), so it chose a nested loop of index probes: two per
-- transfer, ~14 ms of an 8,190-transfer insert. Counting every miss makes it weigh the whole join:
-- with thousands of transfers against tens of thousands of accounts it hashes the accounts once
-- (~6 ms for both sides), and it still probes the index when the accounts far outnumber the batch.
--
-- PL/pgSQL plans a query once per session and keeps that plan, made for the first call's batch
-- size. Small batches (the API's single transfers) keep such a plan, of probes, which costs nothing
-- to reuse; larger ones are planned on every call (EXECUTE, ~0.1 ms) for their own size.

CREATE OR REPLACE FUNCTION transfers_name_what_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- Transfers up to this many keep the first plan made.
    small_batch CONSTANT bigint := 64;
    check_accounts CONSTANT text := '
        SELECT count(*)
        FROM (SELECT debit_account_id AS account_id, currency FROM inserted
              UNION ALL
              SELECT credit_account_id, currency FROM inserted) named
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = named.account_id AND a.currency = named.currency)';
    missing bigint;
BEGIN
    IF (SELECT count(*) FROM inserted) <= small_batch THEN
        -- check_accounts, as a query whose plan is kept.
        SELECT count(*) INTO missing
        FROM (SELECT debit_account_id AS account_id, currency FROM inserted
              UNION ALL
              SELECT credit_account_id, currency FROM inserted) named
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = named.account_id AND a.currency = named.currency);
    ELSE
        EXECUTE check_accounts INTO missing;
    END IF;
    IF missing > 0 THEN
        RAISE EXCEPTION 'a transfer names a missing account or an account of another currency'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM inserted t
        WHERE t.pending_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM transfers p WHERE p.id = t.pending_id AND p.kind = 'pending')
    ) THEN
        RAISE EXCEPTION 'a transfer resolves a pending transfer that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
