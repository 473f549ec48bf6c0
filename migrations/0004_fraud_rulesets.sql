-- Fraud rulesets proposed through the API, identified by the SHA-256 of their files (the id every
-- screening's audit record names), and their activations in order. A ruleset becomes active only by
-- an activation row written in the same transaction as its audit record, by a principal other than
-- its proposer (the authorization policies see to that). Both tables are append-only: the active
-- ruleset is the one activated last.

CREATE TABLE fraud_rulesets (
    id bytea PRIMARY KEY CHECK (length(id) = 32),
    -- The ruleset's files by name (fraud/rules.toml, fraud/features.toml, lists/<name>.toml).
    files jsonb NOT NULL CHECK (jsonb_typeof(files) = 'object'),
    proposed_by text NOT NULL CHECK (length(proposed_by) BETWEEN 1 AND 256),
    proposed_front_end text,
    proposed_at timestamptz NOT NULL
);

CREATE TABLE fraud_ruleset_activations (
    seq bigserial PRIMARY KEY,
    ruleset_id bytea NOT NULL REFERENCES fraud_rulesets (id),
    activated_by text NOT NULL CHECK (length(activated_by) BETWEEN 1 AND 256),
    front_end text,
    activated_at timestamptz NOT NULL
);
CREATE INDEX fraud_ruleset_activations_latest ON fraud_ruleset_activations (activated_at, seq);

CREATE TRIGGER fraud_rulesets_are_append_only BEFORE UPDATE OR DELETE ON fraud_rulesets
    FOR EACH ROW EXECUTE FUNCTION refuse_change('fraud rulesets are append-only');
CREATE TRIGGER fraud_ruleset_activations_are_append_only BEFORE UPDATE OR DELETE ON fraud_ruleset_activations
    FOR EACH ROW EXECUTE FUNCTION refuse_change('fraud ruleset activations are append-only');
