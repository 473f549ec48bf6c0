-- Held transfers and the decisions on them. A transfer held for a second principal's decision (above
-- its initiator's approval limit, or by a fraud rule) is a pending transfer with a review row written
-- in the same transaction; its approval posts it and its rejection voids it, each with a decision row
-- written in the same transaction as the posting or voiding. Both tables are append-only: a review's
-- status is derived from its decision and the pending transfer's state.

CREATE TABLE reviews (
    transfer_id uuid PRIMARY KEY REFERENCES transfers (id),
    reason text NOT NULL CHECK (reason IN ('approval_limit', 'fraud')),
    initiator text NOT NULL CHECK (length(initiator) BETWEEN 1 AND 256),
    -- The front-end that relayed the initiator's request, if any.
    front_end text,
    opened_at timestamptz NOT NULL,
    -- Why it is held, for the people deciding: limits and amounts, or rules hit.
    explanation jsonb NOT NULL CHECK (jsonb_typeof(explanation) = 'object')
);
CREATE INDEX reviews_by_opening ON reviews (opened_at, transfer_id);

CREATE TABLE review_decisions (
    transfer_id uuid PRIMARY KEY REFERENCES reviews (transfer_id),
    decision text NOT NULL CHECK (decision IN ('approve', 'reject')),
    -- The transfer that posted (approve) or voided (reject) the held one.
    resolution_id uuid NOT NULL UNIQUE REFERENCES transfers (id),
    decided_by text NOT NULL CHECK (length(decided_by) BETWEEN 1 AND 256),
    front_end text,
    decided_at timestamptz NOT NULL
);

CREATE FUNCTION review_decision_matches_resolution() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM transfers r
        WHERE r.id = NEW.resolution_id AND r.pending_id = NEW.transfer_id
          AND r.kind = CASE NEW.decision WHEN 'approve' THEN 'post_pending' ELSE 'void_pending' END
    ) THEN
        RAISE EXCEPTION 'review decision % on % does not match its resolution %',
            NEW.decision, NEW.transfer_id, NEW.resolution_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER review_decisions_match_their_resolution BEFORE INSERT ON review_decisions
    FOR EACH ROW EXECUTE FUNCTION review_decision_matches_resolution();

CREATE FUNCTION review_holds_a_pending_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = NEW.transfer_id AND t.kind = 'pending') THEN
        RAISE EXCEPTION 'review of % does not hold a pending transfer', NEW.transfer_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER reviews_hold_pending_transfers BEFORE INSERT ON reviews
    FOR EACH ROW EXECUTE FUNCTION review_holds_a_pending_transfer();

CREATE TRIGGER reviews_are_append_only BEFORE UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION refuse_change('reviews are append-only');
CREATE TRIGGER review_decisions_are_append_only BEFORE UPDATE OR DELETE ON review_decisions
    FOR EACH ROW EXECUTE FUNCTION refuse_change('review decisions are append-only');
