-- Audit records, one row per batch: the batch's records concatenated, and where each begins.
--
-- A row per record cost each 8,190-transfer batch ~24 ms inside its commit (a heap tuple, a primary
-- key entry and their WAL per record); the same bytes as one row cost ~8 ms. As with the outbox,
-- what costs is each row, not its bytes.
--
-- Record `i` (from 1) of a row has seq `first_seq + i - 1` and is
-- `substring(bytes FROM offsets[i] + 1 FOR offsets[i + 1] - offsets[i])`; the rows' seq ranges follow
-- each other with no gap. `bytes` is stored out of line uncompressed, so `substring` reads only the
-- ~2 kB chunks it covers: one record costs a few chunk reads, never the whole batch.

ALTER TABLE audit_records RENAME TO audit_records_by_seq;

CREATE TABLE audit_record_packs (
    first_seq bigint PRIMARY KEY CHECK (first_seq >= 0),
    bytes bytea NOT NULL,
    offsets integer[] NOT NULL CHECK (
        array_ndims(offsets) = 1 AND array_lower(offsets, 1) = 1 AND cardinality(offsets) > 1
        AND offsets[1] = 0 AND offsets[cardinality(offsets)] = length(bytes))
);

-- Hashes and signatures do not compress: store the bytes out of line without trying.
ALTER TABLE audit_record_packs ALTER COLUMN bytes SET STORAGE EXTERNAL;

CREATE TRIGGER audit_record_packs_are_append_only BEFORE UPDATE OR DELETE ON audit_record_packs
    FOR EACH ROW EXECUTE FUNCTION refuse_change('audit records are append-only');

-- Records written before: each run of consecutive seqs in packs of at most 8,190.
INSERT INTO audit_record_packs (first_seq, bytes, offsets)
SELECT min(seq), string_agg(bytes, '\x'::bytea ORDER BY seq), ARRAY[0] || array_agg(record_end::int4 ORDER BY seq)
FROM (
    SELECT seq, bytes, run, pack,
           sum(length(bytes)) OVER (PARTITION BY run, pack ORDER BY seq) AS record_end
    FROM (
        SELECT seq, bytes, run, (row_number() OVER (PARTITION BY run ORDER BY seq) - 1) / 8190 AS pack
        FROM (SELECT seq, bytes, seq - row_number() OVER (ORDER BY seq) AS run FROM audit_records_by_seq) runs
    ) packed
) ended
GROUP BY run, pack;

DROP TABLE audit_records_by_seq;

-- Every record with its seq, for reading by hand. It unpacks every row it scans: the service reads
-- ranges through the primary key instead (src/store/audit.rs, read_records).
CREATE VIEW audit_records AS
SELECT p.first_seq + i - 1 AS seq,
       substring(p.bytes FROM p.offsets[i] + 1 FOR p.offsets[i + 1] - p.offsets[i]) AS bytes
FROM audit_record_packs p, generate_series(1, cardinality(p.offsets) - 1) AS i;
