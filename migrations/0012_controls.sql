-- Controls that hold against a caller who tries to get around them, restated by the schema.
--
-- 1. A held transfer carries every reason it is held for (its initiator's approval limit, a fraud
--    rule), and moves by approval only once every reason is approved, each by a decider of its own;
--    one rejection voids it.
-- 2. A settlement period chain per account: the first settlement starts at the account's beginning
--    and every later one exactly where the previous one was cut off, so two settlements can never
--    overlap and no movement is paid out twice, whoever settles concurrently.

ALTER TABLE reviews ADD COLUMN reasons text[];
ALTER TABLE reviews DISABLE TRIGGER reviews_are_append_only;
UPDATE reviews SET reasons = ARRAY[reason];
ALTER TABLE reviews ENABLE TRIGGER reviews_are_append_only;
ALTER TABLE reviews
    ALTER COLUMN reasons SET NOT NULL,
    ADD CONSTRAINT reviews_reasons_are_known_and_distinct CHECK (
        cardinality(reasons) BETWEEN 1 AND 2
        AND reasons <@ ARRAY['approval_limit', 'fraud']::text[]
        AND (cardinality(reasons) = 1 OR reasons[1] <> reasons[2])),
    DROP COLUMN reason;

CREATE TABLE review_approvals (
    transfer_id uuid NOT NULL REFERENCES reviews (transfer_id),
    reason text NOT NULL CHECK (reason IN ('approval_limit', 'fraud')),
    approved_by text NOT NULL CHECK (length(approved_by) BETWEEN 1 AND 256),
    front_end text,
    approved_at timestamptz NOT NULL,
    PRIMARY KEY (transfer_id, reason),
    -- Each reason its own decider: nobody approves two reasons of one held transfer.
    CONSTRAINT review_approvals_one_reason_per_decider UNIQUE (transfer_id, approved_by)
);

-- Reviews approved before approvals were recorded one by one had a single reason, approved by their
-- decider.
INSERT INTO review_approvals (transfer_id, reason, approved_by, front_end, approved_at)
SELECT d.transfer_id, r.reasons[1], d.decided_by, d.front_end, d.decided_at
FROM review_decisions d JOIN reviews r ON r.transfer_id = d.transfer_id
WHERE d.decision = 'approve';

CREATE FUNCTION review_approval_is_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM reviews r WHERE r.transfer_id = NEW.transfer_id AND NEW.reason = ANY (r.reasons)) THEN
        RAISE EXCEPTION 'review of % is not held for %', NEW.transfer_id, NEW.reason USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM review_decisions d WHERE d.transfer_id = NEW.transfer_id) THEN
        RAISE EXCEPTION 'review of % is decided already', NEW.transfer_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER review_approvals_are_of_open_reasons BEFORE INSERT ON review_approvals
    FOR EACH ROW EXECUTE FUNCTION review_approval_is_open();
CREATE TRIGGER review_approvals_are_append_only BEFORE UPDATE OR DELETE ON review_approvals
    FOR EACH ROW EXECUTE FUNCTION refuse_change('review approvals are append-only');

CREATE FUNCTION review_decision_follows_every_approval() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.decision = 'approve' AND EXISTS (
        SELECT 1 FROM reviews r, unnest(r.reasons) AS held (reason)
        WHERE r.transfer_id = NEW.transfer_id
          AND NOT EXISTS (
            SELECT 1 FROM review_approvals a WHERE a.transfer_id = r.transfer_id AND a.reason = held.reason)
    ) THEN
        RAISE EXCEPTION 'review of % is approved before every reason it is held for', NEW.transfer_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER review_decisions_follow_every_approval BEFORE INSERT ON review_decisions
    FOR EACH ROW EXECUTE FUNCTION review_decision_follows_every_approval();

-- Concurrent settlements of one account read the same previous settlement, so they share a period
-- start: the unique index lets one commit and refuses the other.
ALTER TABLE settlements ADD CONSTRAINT settlements_one_period_per_start UNIQUE NULLS NOT DISTINCT (account_id, period_start);

CREATE FUNCTION settlement_continues_its_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.period_start IS DISTINCT FROM (SELECT max(s.cut_off) FROM settlements s WHERE s.account_id = NEW.account_id) THEN
        RAISE EXCEPTION 'settlement % of account % does not start where the previous one was cut off',
            NEW.id, NEW.account_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER settlements_continue_their_chain BEFORE INSERT ON settlements
    FOR EACH ROW EXECUTE FUNCTION settlement_continues_its_chain();
